"""ClickHouse ``merge`` mode (ReplacingMergeTree on the merge keys, read with FINAL) against the
embedded engine, then over HTTP: reruns change nothing, and an update that moves a key to
another partition leaves exactly one row for it. Everything is read back with a separate
clickhouse-connect client, as readers see the table (FINAL) and as it is stored."""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl
import pytest

from loom_resources.clickhouse import ClickHouseResource
from loom_resources.dtypes import ColumnSchema
from loom_resources.model import RunParams, SourceSpec, TableRef, TargetSpec, WriteContext

COLS = (
    ColumnSchema("id", "int64", nullable=False),
    ColumnSchema("day", "date", nullable=False),
    ColumnSchema("amount", "float64"),
)
D1, D2, D3 = dt.date(2024, 1, 1), dt.date(2024, 1, 2), dt.date(2024, 1, 3)


def frame(rows: list[tuple[int, dt.date, float]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema={"id": pl.Int64, "day": pl.Date, "amount": pl.Float64}, orient="row")


def spec(schema: str, *, partitioned: bool) -> TargetSpec:
    return TargetSpec(ref=TableRef(schema, "t"), backend="clickhouse", columns=COLS, mode="merge", merge_keys=("id",),
                      partition_by=("day",) if partitioned else ())


def seen(raw: Any, ref: TableRef) -> list[tuple[Any, ...]]:
    """The table as its readers see it (FINAL)."""
    return list(raw.query(f"SELECT id, day, amount FROM `{ref.schema}`.`{ref.table}` FINAL ORDER BY id").result_rows)


def stored(raw: Any, ref: TableRef) -> int:
    """Rows physically stored (replaced ones included until merges collapse them)."""
    return int(raw.command(f"SELECT count() FROM `{ref.schema}`.`{ref.table}`"))


@pytest.mark.parametrize("partitioned", [False, True], ids=["flat", "by_day"])
def test_rerun_of_a_merge_changes_nothing(res: ClickHouseResource, raw: Any, unique_schema: str, partitioned: bool) -> None:
    s = spec(unique_schema, partitioned=partitioned)
    res.write(frame([(i, (D1, D2, D3)[i % 3], 1.0) for i in range(30)]), s, RunParams())
    changes = frame([(i, (D1, D2, D3)[i % 3], 2.0) for i in range(25, 35)])  # 5 updates, 5 inserts
    ctx = WriteContext(run_id="run-1", asset_key="m/t")
    res.write(changes, s, RunParams(), write_ctx=ctx)
    after = seen(raw, s.ref)
    assert [r[0] for r in after] == list(range(35))
    assert [r[2] for r in after] == [1.0] * 25 + [2.0] * 10
    physical = stored(raw, s.ref)
    # a retry of the same run's write is recognized and skipped: nothing is stored twice
    res.write(changes, s, RunParams(), write_ctx=WriteContext(run_id="run-1", asset_key="m/t", attempt=2))
    assert seen(raw, s.ref) == after and stored(raw, s.ref) == physical
    # a new run with the same changes: readers see the same table, before and after the parts merge
    res.write(changes, s, RunParams(), write_ctx=WriteContext(run_id="run-2", asset_key="m/t"))
    assert seen(raw, s.ref) == after
    read = res.read(SourceSpec(s.ref), RunParams()).collect().sort("id")
    assert list(read.select("id", "day", "amount").iter_rows()) == after
    res.optimize_final(s.ref)
    assert seen(raw, s.ref) == after and stored(raw, s.ref) == 35


@pytest.mark.parametrize("newer_day", [D3, dt.date(2023, 12, 1)], ids=["to_a_later_day", "to_an_earlier_day"])
def test_update_moving_a_key_to_another_partition_leaves_one_row(
    res: ClickHouseResource, raw: Any, unique_schema: str, newer_day: dt.date
) -> None:
    s = spec(unique_schema, partitioned=True)
    d9 = dt.date(2024, 1, 9)
    res.write(frame([(1, D1, 1.0), (2, D1, 1.0), (3, D2, 1.0), (9, d9, 1.0)]), s, RunParams())
    # id 2 moves from D1 to another day, id 3 stays in D2, id 4 is new, id 9 leaves its day empty
    res.write(frame([(2, newer_day, 2.0), (3, D2, 2.0), (4, D1, 2.0), (9, D1, 2.0)]), s, RunParams())
    expect = [(1, D1, 1.0), (2, newer_day, 2.0), (3, D2, 2.0), (4, D1, 2.0), (9, D1, 2.0)]
    assert seen(raw, s.ref) == expect
    # not only FINAL's pick: the old rows of ids 2 and 9 are gone from their partitions
    assert raw.query(f"SELECT id, day FROM `{unique_schema}`.t WHERE id IN (2, 9) ORDER BY id").result_rows == \
        [(2, newer_day), (9, D1)]
    # and again, back to the first day, then a rerun
    res.write(frame([(2, D1, 3.0)]), s, RunParams())
    res.write(frame([(2, D1, 3.0)]), s, RunParams())
    final = [(1, D1, 1.0), (2, D1, 3.0), (3, D2, 2.0), (4, D1, 2.0), (9, D1, 2.0)]
    assert seen(raw, s.ref) == final
    res.optimize_final(s.ref)
    assert raw.query(f"SELECT id, day, amount FROM `{unique_schema}`.t ORDER BY id").result_rows == final


def test_moving_keys_through_pushed_down_sql(res: ClickHouseResource, raw: Any, unique_schema: str) -> None:
    """The same through a query that runs inside ClickHouse (INSERT ... SELECT into staging)."""
    s = spec(unique_schema, partitioned=True)
    src = TargetSpec(ref=TableRef(unique_schema, "src"), backend="clickhouse", columns=COLS, mode="overwrite")
    res.write(frame([(1, D1, 1.0), (2, D1, 1.0)]), s, RunParams())
    res.write(frame([(2, D2, 5.0)]), src, RunParams())
    query = res.execute_sql({"src": res.relation(src.ref)}, "SELECT id, day, amount FROM src")
    res.write(query, s, RunParams())
    assert seen(raw, s.ref) == [(1, D1, 1.0), (2, D2, 5.0)]
    assert stored(raw, s.ref) == 2


def test_moved_keys_under_a_partition_expression(res: ClickHouseResource, raw: Any, unique_schema: str) -> None:
    """A key moving between months of ``PARTITION BY toYYYYMM(day)``; a change of day inside its
    month is an update in place (no partition is rebuilt)."""
    from loom_resources.model import ClickHouseTableOptions

    s = TargetSpec(ref=TableRef(unique_schema, "t"), backend="clickhouse", columns=COLS, mode="merge",
                   merge_keys=("id",), clickhouse=ClickHouseTableOptions(partition_by="toYYYYMM(day)"))
    feb = dt.date(2024, 2, 1)
    res.write(frame([(1, D1, 1.0), (2, D1, 1.0), (3, feb, 1.0)]), s, RunParams())
    res.write(frame([(1, D2, 2.0), (2, feb, 2.0)]), s, RunParams())
    expect = [(1, D2, 2.0), (2, feb, 2.0), (3, feb, 1.0)]
    assert seen(raw, s.ref) == expect
    assert raw.query(f"SELECT id, day FROM `{unique_schema}`.t WHERE id = 2").result_rows == [(2, feb)]
    res.optimize_final(s.ref)
    assert raw.query(f"SELECT id, day, amount FROM `{unique_schema}`.t ORDER BY id").result_rows == expect


def test_moved_keys_with_composite_merge_keys(res: ClickHouseResource, raw: Any, unique_schema: str) -> None:
    """Merge keys of two columns (a tuple key in the moved-key look-up), the partition column not
    among them: a key moving to another day leaves one row; the same id under another region is
    another key and stays."""
    cols = (*COLS, ColumnSchema("region", "string", nullable=False))
    s = TargetSpec(ref=TableRef(unique_schema, "t"), backend="clickhouse", columns=cols, mode="merge",
                   merge_keys=("id", "region"), partition_by=("day",))
    schema = {"id": pl.Int64, "day": pl.Date, "amount": pl.Float64, "region": pl.String}
    res.write(pl.DataFrame([(1, D1, 1.0, "a"), (1, D1, 1.0, "b"), (2, D2, 1.0, "a")], schema=schema, orient="row"),
              s, RunParams())
    res.write(pl.DataFrame([(1, D3, 2.0, "a"), (2, D2, 2.0, "a")], schema=schema, orient="row"), s, RunParams())
    expect = [(1, D3, 2.0, "a"), (1, D1, 1.0, "b"), (2, D2, 2.0, "a")]
    q = f"SELECT id, day, amount, region FROM `{unique_schema}`.t{{}} ORDER BY id, region"
    assert raw.query(q.format(" FINAL")).result_rows == sorted(expect, key=lambda r: (r[0], r[3]))
    res.optimize_final(s.ref)
    assert raw.query(q.format("")).result_rows == sorted(expect, key=lambda r: (r[0], r[3]))


def test_no_moved_key_lookup_when_the_partition_column_is_a_merge_key(
        res: ClickHouseResource, raw: Any, unique_schema: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 27: with the partition column among the merge keys no key can change partition (a
    row under another day is another key), so the look-up over the staged partitions is not run.
    Both rows stay, as the keys say."""
    s = TargetSpec(ref=TableRef(unique_schema, "t"), backend="clickhouse", columns=COLS, mode="merge",
                   merge_keys=("id", "day"), partition_by=("day",))
    res.write(frame([(1, D1, 1.0), (2, D1, 1.0)]), s, RunParams())
    asked: list[str] = []
    real = ClickHouseResource.query_rows

    def spy(self: ClickHouseResource, sql: str, **kw: Any) -> Any:
        asked.append(kw.get("what", ""))
        return real(self, sql, **kw)

    monkeypatch.setattr(ClickHouseResource, "query_rows", spy)
    res.write(frame([(1, D2, 2.0), (2, D1, 2.0)]), s, RunParams(), write_ctx=WriteContext(run_id="r", asset_key="m/t"))
    assert not [w for w in asked if w.startswith("find keys moving")]
    assert sorted(seen(raw, s.ref)) == [(1, D1, 1.0), (1, D2, 2.0), (2, D1, 2.0)]


@pytest.mark.parametrize(("rendered", "bare"), [
    ("id", {"id"}), ("id, `order`", {"id", "order"}), ("cityHash64(a, b), c", {"c"}),
    ("`a,b`, x", {"a,b", "x"}), ("tuple('x,y'), z", {"z"}), ("intDiv(day, 7)", set()),
])
def test_bare_columns_of_a_rendered_key(rendered: str, bare: set[str]) -> None:
    """Only plain column names count as key elements (an expression of a column does not fix it)."""
    from loom_resources.clickhouse._moved import bare_columns

    assert bare_columns(rendered) == bare


@pytest.mark.parametrize("how", ["stream", "sql"])
def test_duplicate_keys_in_one_batch_are_refused(res: ClickHouseResource, raw: Any, unique_schema: str, how: str) -> None:
    """Two rows of one key in one insert (a streamed batch, or a query run inside ClickHouse) are
    refused, naming the table and key, and the table is unchanged: the staging insert keeps both
    rows (``optimize_on_insert = 0``) so the staged-keys check sees them, where the engine's default
    collapsed them on insert and kept one of the two silently."""
    from loom_resources.errors import DataValidationError

    s = spec(unique_schema, partitioned=True)
    res.write(frame([(1, D1, 1.0)]), s, RunParams())
    dupes = frame([(2, D1, 2.0), (2, D1, 3.0)])
    with pytest.raises(DataValidationError, match=r"t\.id.*duplicate merge key|duplicate merge key"):
        if how == "stream":
            res.write(dupes.lazy(), s, RunParams(), streaming=True)
        else:
            src = TargetSpec(ref=TableRef(unique_schema, "src"), backend="clickhouse", columns=COLS, mode="overwrite")
            res.write(dupes, src, RunParams())
            res.write(res.execute_sql({"src": res.relation(src.ref)}, "SELECT id, day, amount FROM src"), s, RunParams())
    assert seen(raw, s.ref) == [(1, D1, 1.0)]
    assert stored(raw, s.ref) == 1
