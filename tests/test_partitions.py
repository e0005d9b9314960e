"""Which rows belong to a run's partitions (:mod:`loom_resources.partitions`), the qualified and
empty renderings of predicates, and the promise that one Predicate selects the same rows in
DataFusion (delta-rs), ClickHouse (chdb) and Polars on real stored data."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl
import pytest
from deltalake import DeltaTable, QueryBuilder, write_deltalake

from loom_resources import ColumnSchema, RunParams, TableRef, TargetSpec
from loom_resources.clickhouse import ClickHouseResource
from loom_resources.dtypes import Date, Int64, String
from loom_resources.partitions import partition_predicate, run_partition_values, slice_predicate
from loom_resources.polars_types import to_expr
from loom_resources.predicates import And, Compare, In, IsNull, Not, Or, Predicate, col, to_sql

BERLIN = ZoneInfo("Europe/Berlin")
COLS = (
    ColumnSchema("id", "int64", False), ColumnSchema("d", "date", False), ColumnSchema("ts", "datetime(us)", False),
    ColumnSchema("tz", "datetime(us, UTC)", False), ColumnSchema("s", "string"), ColumnSchema("n", "int64"),
)
SPEC = TargetSpec("p.t", "delta", COLS)


def window(start: dt.datetime, end: dt.datetime, *keys: str) -> RunParams:
    return RunParams(partition_keys=keys or (start.date().isoformat(),), window_start=start, window_end=end)


UTC_DAY = window(dt.datetime(2024, 1, 2, tzinfo=dt.UTC), dt.datetime(2024, 1, 3, tzinfo=dt.UTC))
BERLIN_DAY = window(dt.datetime(2024, 1, 2, tzinfo=BERLIN), dt.datetime(2024, 1, 3, tzinfo=BERLIN))


# -- slice_predicate -----------------------------------------------------------------------------

def test_no_partitions_means_all_rows() -> None:
    assert slice_predicate(SPEC, {}, UTC_DAY) is None
    assert slice_predicate(SPEC, {"": "d"}, RunParams()) is None


def test_time_window_on_a_date_column() -> None:
    assert slice_predicate(SPEC, {"": "d"}, UTC_DAY) == col("d").window(dt.date(2024, 1, 2), dt.date(2024, 1, 3))


def test_multi_day_window_is_one_range() -> None:
    params = window(dt.datetime(2024, 1, 1, tzinfo=dt.UTC), dt.datetime(2024, 1, 6, tzinfo=dt.UTC),
                    *(f"2024-01-0{i}" for i in range(1, 6)))
    assert slice_predicate(SPEC, {"": "d"}, params) == And(
        (Compare("d", ">=", dt.date(2024, 1, 1)), Compare("d", "<", dt.date(2024, 1, 6))))


def test_time_window_on_a_naive_datetime_column_is_utc_wall_clock() -> None:
    pred = slice_predicate(SPEC, {"": "ts"}, UTC_DAY)
    assert pred == col("ts").window(dt.datetime(2024, 1, 2), dt.datetime(2024, 1, 3))
    berlin = slice_predicate(SPEC, {"": "ts"}, BERLIN_DAY)
    assert berlin == col("ts").window(dt.datetime(2024, 1, 1, 23), dt.datetime(2024, 1, 2, 23))


def test_time_window_on_a_tz_column_keeps_the_instant() -> None:
    pred = slice_predicate(SPEC, {"": "tz"}, BERLIN_DAY)
    assert isinstance(pred, And)
    lo, hi = (p.value for p in pred.parts)  # type: ignore[attr-defined]
    assert lo == dt.datetime(2024, 1, 1, 23, tzinfo=dt.UTC) and hi == dt.datetime(2024, 1, 2, 23, tzinfo=dt.UTC)


def test_static_keys_become_typed_values() -> None:
    params = RunParams(partition_keys=("a", "b"), partitions=({"s": "a"}, {"s": "b"}))
    assert slice_predicate(SPEC, {"": "s"}, params) == In("s", ("a", "b"))
    ints = RunParams(partition_keys=("1", "3"), partitions=({"n": "1"}, {"n": "3"}))
    assert slice_predicate(SPEC, {"": "n"}, ints) == In("n", (1, 3))


def test_multi_keys_become_or_of_ands_even_with_a_time_dimension() -> None:
    params = RunParams(
        partition_keys=("2024-01-02|a", "2024-01-03|b"),
        partitions=({"d": "2024-01-02", "s": "a"}, {"d": "2024-01-03", "s": "b"}),
        window_start=dt.datetime(2024, 1, 2, tzinfo=dt.UTC), window_end=dt.datetime(2024, 1, 4, tzinfo=dt.UTC),
    )
    assert slice_predicate(SPEC, {"date": "d", "region": "s"}, params) == Or((
        And((Compare("d", "=", dt.date(2024, 1, 2)), Compare("s", "=", "a"))),
        And((Compare("d", "=", dt.date(2024, 1, 3)), Compare("s", "=", "b"))),
    ))


def test_run_partition_values_and_partition_predicate() -> None:
    assert run_partition_values(SPEC, RunParams(), {"d": Date()}) == ()
    vals = run_partition_values(SPEC, RunParams(partitions=({"d": "2024-01-02", "s": "x"},)), {"d": Date(), "s": String()})
    assert vals == ({"d": dt.date(2024, 1, 2), "s": "x"},)
    assert partition_predicate(()) == Or(())
    assert partition_predicate(({"n": 1}, {"n": 2})) == In("n", (1, 2))
    assert run_partition_values(SPEC, RunParams(partitions=({"n": "5"},)), {"n": Int64()}) == ({"n": 5},)


# -- to_sql: qualifier, empty Or/And -------------------------------------------------------------

def test_qualifier_prefixes_every_column_in_both_dialects() -> None:
    pred = Not(In("s", ("a",))) & (col("d").eq(dt.date(2024, 1, 2)) | IsNull("n"))
    assert to_sql(pred, "datafusion", qualifier="t") == (
        "((NOT t.\"s\" IN ('a')) AND (t.\"d\" = DATE '2024-01-02' OR t.\"n\" IS NULL))"
    )
    assert to_sql(pred, "clickhouse", qualifier="t") == (
        "((NOT t.`s` IN ('a')) AND (t.`d` = toDate32('2024-01-02') OR t.`n` IS NULL))"
    )
    assert "t." not in to_sql(pred, "clickhouse")


@pytest.mark.parametrize("dialect", ["clickhouse", "datafusion"])
def test_empty_or_and_render_as_false_and_true(dialect: Any) -> None:
    assert to_sql(Or(()), dialect) == "false"
    assert to_sql(And(()), dialect) == "true"
    assert to_sql(In("s", ()), dialect) == "false"
    assert to_sql(Or(()), dialect, qualifier="t") == "false"
    assert to_sql(And((Or(()), col("n").eq(1))), dialect, qualifier="t").startswith("(false AND t.")


# -- one predicate, three engines, the same rows ---------------------------------------------------

ROWS = pl.DataFrame(
    {
        "id": [1, 2, 3, 4, 5, 6],
        "d": [dt.date(2024, 1, 1), dt.date(2024, 1, 2), dt.date(2024, 1, 2), dt.date(2024, 1, 3),
              dt.date(2024, 1, 4), dt.date(2024, 1, 5)],
        "ts": [dt.datetime(2024, 1, 1, 22, 30), dt.datetime(2024, 1, 1, 23), dt.datetime(2024, 1, 2, 12),
               dt.datetime(2024, 1, 2, 22, 59, 59, 999999), dt.datetime(2024, 1, 2, 23), dt.datetime(2024, 1, 3)],
        "s": ["a", "o'b", None, "a", "b\\c", "b"],
        "n": [1, None, 3, 3, 5, None],
    },
    schema_overrides={"ts": pl.Datetime("us")},
).with_columns(tz=pl.col("ts").dt.replace_time_zone("UTC")).select([c.name for c in COLS])

MULTI = RunParams(partition_keys=("2024-01-02|a", "2024-01-03|a"),
                  partitions=({"d": "2024-01-02", "s": "a"}, {"d": "2024-01-03", "s": "a"}))
STATIC = RunParams(partition_keys=("o'b", "b\\c"), partitions=({"s": "o'b"}, {"s": "b\\c"}))
INTS = RunParams(partition_keys=("3",), partitions=({"n": "3"},))
RANGE = window(dt.datetime(2024, 1, 2, tzinfo=dt.UTC), dt.datetime(2024, 1, 4, tzinfo=dt.UTC), "2024-01-02", "2024-01-03")


def _slice(columns: dict[str, str], params: RunParams) -> Predicate:
    pred = slice_predicate(SPEC, columns, params)
    assert pred is not None
    return pred


CASES: dict[str, Predicate] = {
    "date_window": _slice({"": "d"}, UTC_DAY),
    "date_range": _slice({"": "d"}, RANGE),
    "naive_ts_window": _slice({"": "ts"}, UTC_DAY),
    "naive_ts_berlin_window": _slice({"": "ts"}, BERLIN_DAY),
    "tz_window": _slice({"": "tz"}, UTC_DAY),
    "tz_berlin_window": _slice({"": "tz"}, BERLIN_DAY),
    "static_keys_with_quotes": _slice({"": "s"}, STATIC),
    "int_keys": _slice({"": "n"}, INTS),
    "multi_keys": _slice({"date": "d", "region": "s"}, MULTI),
    "empty_or": Or(()),
    "empty_and": And(()),
    "is_null": IsNull("s"),
    "is_not_null": IsNull("n", negate=True),
    "eq_none": Compare("n", "=", None),
    "not_in_with_nulls": Not(In("n", (1, 5))),
    "not_eq_with_nulls": Not(Compare("s", "=", "a")),
    "ne": Compare("s", "!=", "a"),
}
EXPECTED = {  # by hand, so no engine is compared only with another engine
    "date_window": {2, 3}, "date_range": {2, 3, 4}, "naive_ts_window": {3, 4, 5}, "naive_ts_berlin_window": {2, 3, 4},
    "tz_window": {3, 4, 5}, "tz_berlin_window": {2, 3, 4}, "static_keys_with_quotes": {2, 5}, "int_keys": {3, 4},
    "multi_keys": {4}, "empty_or": set(), "empty_and": {1, 2, 3, 4, 5, 6}, "is_null": {3}, "is_not_null": {1, 3, 4, 5},
    "eq_none": {2, 6}, "not_in_with_nulls": {3, 4}, "not_eq_with_nulls": {2, 5, 6}, "ne": {2, 5, 6},
}


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory, chdb_url: str) -> Iterator[dict[str, Any]]:
    import uuid

    path = tmp_path_factory.mktemp("partitions") / "t"
    write_deltalake(str(path), ROWS.to_arrow())
    db = "t_" + uuid.uuid4().hex[:10]
    ch = ClickHouseResource(url=chdb_url)
    ch.write(ROWS, TargetSpec(TableRef(db, "t"), "clickhouse", COLS, mode="overwrite"), RunParams())
    try:
        yield {"delta": DeltaTable(str(path)), "ch": ch, "db": db}
    finally:
        ch.command(f"DROP DATABASE IF EXISTS `{db}`")
        ch.close()


def _polars(pred: Predicate) -> set[int]:
    return set(ROWS.filter(to_expr(pred))["id"].to_list())


def _datafusion(table: DeltaTable, pred: Predicate, qualifier: str | None = None) -> set[int]:
    alias = f" AS {qualifier}" if qualifier else ""
    sql = f"SELECT id FROM tbl{alias} WHERE {to_sql(pred, 'datafusion', qualifier=qualifier)}"
    out = QueryBuilder().register("tbl", table).execute(sql).read_all()
    return set(out.column("id").to_pylist())


def _clickhouse(stores: dict[str, Any], pred: Predicate, qualifier: str | None = None) -> set[int]:
    alias = f" AS {qualifier}" if qualifier else ""
    sql = f"SELECT id FROM `{stores['db']}`.t{alias} WHERE {to_sql(pred, 'clickhouse', qualifier=qualifier)}"
    return {r[0] for r in stores["ch"].query_rows(sql)}


@pytest.mark.parametrize("case", list(CASES))
def test_same_rows_in_datafusion_clickhouse_and_polars(stores: dict[str, Any], case: str) -> None:
    pred = CASES[case]
    got = {
        "polars": _polars(pred),
        "datafusion": _datafusion(stores["delta"], pred),
        "clickhouse": _clickhouse(stores, pred),
    }
    assert got == dict.fromkeys(got, EXPECTED[case])


@pytest.mark.parametrize("case", ["multi_keys", "date_window", "tz_berlin_window", "static_keys_with_quotes"])
def test_qualified_rendering_selects_the_same_rows(stores: dict[str, Any], case: str) -> None:
    pred = CASES[case]
    assert _datafusion(stores["delta"], pred, qualifier="q") == EXPECTED[case]
    assert _clickhouse(stores, pred, qualifier="q") == EXPECTED[case]


def test_delta_rs_predicate_parser_replaces_the_same_rows(tmp_path: Path) -> None:
    """The replace condition reaches delta-rs as a predicate string (not a SELECT): a delete with
    it removes exactly the rows the Polars expression selects."""
    for i, case in enumerate(["multi_keys", "tz_berlin_window", "naive_ts_window", "static_keys_with_quotes"]):
        path = str(tmp_path / f"t{i}")
        write_deltalake(path, ROWS.to_arrow())
        table = DeltaTable(path)
        table.delete(to_sql(CASES[case], "datafusion"))
        left = set(pl.from_arrow(DeltaTable(path).to_pyarrow_table())["id"].to_list())  # type: ignore[index]
        assert set(ROWS["id"].to_list()) - left == EXPECTED[case], case
