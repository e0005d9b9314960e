"""Tests of loom_resources.delta: discovery, reads, every write mode, bad input, maintenance.

Every write is checked by reading the table back independently (deltalake / polars), never by
trusting what the writer returned. The write-mode tests take the ``delta`` fixture, so
tests/test_delta_s3.py runs the same tests against an S3 root.
"""

from __future__ import annotations

import datetime as dt
import glob
import os
import threading
import uuid
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest
from deltalake import DeltaTable

from loom_resources.delta import DeltaResource
from loom_resources.dtypes import ColumnSchema as C
from loom_resources.errors import (
    BackendUnavailableError,
    DataValidationError,
    LoomError,
    PredicateError,
    SchemaMismatchError,
)
from loom_resources.model import HistoryOptions, RunParams, SourceSpec, TableRef, TargetSpec, WriteContext
from loom_resources.predicates import col, param

COLS = (C("id", "int64", nullable=False), C("day", "date", nullable=False), C("amount", "float64"))
D1, D2, D3 = dt.date(2024, 1, 1), dt.date(2024, 1, 2), dt.date(2024, 1, 3)


# -- helpers shared with test_delta_s3.py -----------------------------------------------------
def new_ref() -> str:
    return f"s_{uuid.uuid4().hex[:6]}.t_{uuid.uuid4().hex[:6]}"


def dtable(delta: DeltaResource, ref: str) -> DeltaTable:
    return DeltaTable(delta.table_uri(ref), storage_options=delta.storage_options or None)


def version(delta: DeltaResource, ref: str) -> int | None:
    try:
        return dtable(delta, ref).version()
    except Exception:
        return None


def content(delta: DeltaResource, ref: str, *sort: str) -> pl.DataFrame:
    df = pl.read_delta(delta.table_uri(ref), storage_options=delta.storage_options or None)
    return df.sort(list(sort) or df.columns)


def frame(ids: list[int], days: list[dt.date], amounts: list[float] | None = None) -> pl.DataFrame:
    return pl.DataFrame(
        {"id": ids, "day": days, "amount": amounts if amounts is not None else [float(i) for i in ids]},
        schema={"id": pl.Int64, "day": pl.Date, "amount": pl.Float64},
    )


def spec(ref: str, **kw: Any) -> TargetSpec:
    return TargetSpec(ref, "delta", kw.pop("columns", COLS), **kw)


def run(*days: str, column: str = "day") -> RunParams:
    return RunParams(partition_keys=days, partitions=tuple({column: d} for d in days))


def ctx(run_id: str = "run-1", keys: tuple[str, ...] = ()) -> WriteContext:
    return WriteContext(run_id=run_id, asset_key="s/t", partition_keys=keys,
                        timestamp=dt.datetime(2024, 5, 1, 12, tzinfo=dt.UTC))


def seeded(delta: DeltaResource, **kw: Any) -> tuple[str, pl.DataFrame]:
    """A partitioned table with days D1, D2 (two rows each) at version 0."""
    ref = new_ref()
    df = frame([1, 2, 3, 4], [D1, D1, D2, D2])
    delta.write(df, spec(ref, partition_by=("day",), **kw), RunParams())
    assert version(delta, ref) == 0
    return ref, content(delta, ref, "id")


def assert_unchanged(delta: DeltaResource, ref: str, v: int | None, before: pl.DataFrame | None) -> None:
    assert version(delta, ref) == v
    if before is not None:
        assert content(delta, ref, "id").equals(before)


@pytest.fixture(params=["polars", "delta-rs"])
def delta(tmp_path: Path, request: pytest.FixtureRequest) -> DeltaResource:
    """Every test runs with both Parquet writers: Polars' files committed as add actions, and
    delta-rs' own writer (``DeltaResource.parquet_writer``)."""
    root = tmp_path / "lake"
    root.mkdir()
    return DeltaResource(root=str(root), parquet_writer=request.param)


# -- write modes (also run against S3) -----------------------------------------------------------
def test_append_creates_from_declared_schema(delta: DeltaResource) -> None:
    ref = new_ref()
    # id arrives as int32: the table must still be created as the declared long, not null
    df = frame([1, 2], [D1, D2]).with_columns(pl.col("id").cast(pl.Int32))
    delta.write(df, spec(ref, partition_by=("day",)), RunParams())
    t = dtable(delta, ref)
    fields = {f.name: (str(f.type), f.nullable) for f in t.schema().fields}
    assert fields == {"id": ('PrimitiveType("long")', False), "day": ('PrimitiveType("date")', False),
                      "amount": ('PrimitiveType("double")', True)}
    assert t.metadata().partition_columns == ["day"]
    delta.write(frame([3], [D3]), spec(ref, partition_by=("day",)), RunParams())
    assert content(delta, ref, "id")["id"].to_list() == [1, 2, 3]
    assert version(delta, ref) == 1


def test_append_retry_of_same_step_is_skipped(delta: DeltaResource) -> None:
    ref = new_ref()
    s = spec(ref)
    delta.write(frame([1, 2], [D1, D1]), s, RunParams(), write_ctx=ctx("r1"))
    retried = delta.write(frame([1, 2], [D1, D1]), s, RunParams(), write_ctx=ctx("r1"))
    assert retried.skipped
    assert content(delta, ref)["id"].to_list() == [1, 2]
    delta.write(frame([3], [D1]), s, RunParams(), write_ctx=ctx("r2"))
    assert content(delta, ref)["id"].to_list() == [1, 2, 3]
    # a re-execution of r1 (root_run_id) is the same logical write
    again = WriteContext(run_id="r1-reexec", asset_key="s/t", root_run_id="r1")
    assert delta.write(frame([1, 2], [D1, D1]), s, RunParams(), write_ctx=again).skipped
    assert version(delta, ref) == 1


def test_replace_records_its_app_transaction(delta: DeltaResource) -> None:
    ref, _ = seeded(delta)
    s = spec(ref, mode="replace_partitions", partition_by=("day",))
    c = ctx("r9", ("2024-01-02",))
    delta.write(frame([5], [D2]), s, run("2024-01-02"), write_ctx=c)
    assert dtable(delta, ref).transaction_version(f"loom-{c.idempotency_token()}") == 1
    delta.write(frame([5], [D2]), s, run("2024-01-02"), write_ctx=c)  # a retry replaces, never duplicates
    assert content(delta, ref, "id")["id"].to_list() == [1, 2, 5]


def test_overwrite(delta: DeltaResource) -> None:
    ref, _ = seeded(delta)
    delta.write(frame([9], [D3]), spec(ref, mode="overwrite", partition_by=("day",)), RunParams())
    assert content(delta, ref)["id"].to_list() == [9]


def test_replace_partitions_present_in_frame(delta: DeltaResource) -> None:
    ref, _ = seeded(delta)
    delta.write(frame([30, 31], [D2, D3]), spec(ref, mode="replace_partitions", partition_by=("day",)), RunParams())
    out = content(delta, ref, "id")
    assert out["id"].to_list() == [1, 2, 30, 31]
    assert version(delta, ref) == 1  # one commit


def test_replace_partitions_run_range_is_one_commit(delta: DeltaResource) -> None:
    ref, _ = seeded(delta)
    s = spec(ref, mode="replace_partitions", partition_by=("day",))
    # the run owns D1..D3; D1 gets no rows, so its old rows must go (exactly the run's keys)
    delta.write(frame([20, 30], [D2, D3]), s, run("2024-01-01", "2024-01-02", "2024-01-03"), streaming=True)
    assert content(delta, ref, "id")["id"].to_list() == [20, 30]
    assert version(delta, ref) == 1
    hist = dtable(delta, ref).history(1)[0]
    assert "predicate" in str(hist.get("operationParameters", {}))


@pytest.mark.parametrize(
    ("dtype", "values", "key", "expect"),
    [
        ("date", [D1, D2], "2024-01-02", D2),
        ("datetime(us)", [dt.datetime(2024, 1, 1, 5), dt.datetime(2024, 1, 1, 6)], "2024-01-01-06:00",
         dt.datetime(2024, 1, 1, 6)),
        ("datetime(us, UTC)", [dt.datetime(2024, 1, 1, 5, tzinfo=dt.UTC), dt.datetime(2024, 1, 1, 6, tzinfo=dt.UTC)],
         "2024-01-01-06:00", dt.datetime(2024, 1, 1, 6, tzinfo=dt.UTC)),
        ("string", ["b", "o'neil"], "o'neil", "o'neil"),
        ("int32", [7, 8], "8", 8),
    ],
)
def test_replace_partitions_by_actual_column_type(
    delta: DeltaResource, dtype: str, values: list[Any], key: str, expect: Any
) -> None:
    ref = new_ref()
    cols = (C("p", dtype, nullable=False), C("v", "int64"))
    s = spec(ref, columns=cols, mode="replace_partitions", partition_by=("p",))
    from loom_resources.polars_types import to_polars

    ptype = to_polars(cols[0].dtype)
    delta.write(pl.DataFrame({"p": pl.Series(values, dtype=ptype), "v": [1, 2]}), s, RunParams())
    new = pl.DataFrame({"p": pl.Series([expect], dtype=ptype), "v": [99]})
    delta.write(new, s, run(key, column="p"))
    out = content(delta, ref, "v")
    assert out["v"].to_list() == [1, 99]  # the other partition is untouched, the run's one replaced
    assert version(delta, ref) == 1


def test_replace_where(delta: DeltaResource) -> None:
    ref, _ = seeded(delta)
    s = spec(ref, mode="replace_where", partition_by=("day",),
             replace_predicate=col("day").ge(param("since")))
    delta.write(frame([40], [D2]), s, RunParams(values={"since": D2}))
    assert content(delta, ref, "id")["id"].to_list() == [1, 2, 40]


def test_merge_updates_inserts_and_deletes_within_written_partitions(delta: DeltaResource) -> None:
    ref, _ = seeded(delta)
    s = spec(ref, mode="merge", merge_keys=("id",), partition_by=("day",), delete_unmatched=True)
    # D2 holds ids 3, 4: 3 updated, 4 deleted (unmatched in a written partition), 5 inserted;
    # D1 is not written, so ids 1, 2 stay
    delta.write(frame([3, 5], [D2, D2], [33.0, 55.0]), s, RunParams())
    out = content(delta, ref, "id")
    assert out.select("id", "amount").rows() == [(1, 1.0), (2, 2.0), (3, 33.0), (5, 55.0)]
    assert version(delta, ref) == 1


def test_merge_with_evolve_adds_column(delta: DeltaResource) -> None:
    ref, _ = seeded(delta)
    s = spec(ref, mode="merge", merge_keys=("id",), partition_by=("day",), schema_mode="evolve")
    delta.write(frame([1], [D1]).with_columns(note=pl.lit("x")), s, RunParams())
    out = content(delta, ref, "id")
    assert out["note"].to_list() == ["x", None, None, None]


def test_append_with_evolve_adds_nullable_column(delta: DeltaResource) -> None:
    ref, _ = seeded(delta)
    s = spec(ref, partition_by=("day",), schema_mode="evolve")
    delta.write(frame([5], [D3]).with_columns(note=pl.lit("n")), s, RunParams())
    # delta-rs' schema merge keeps partition columns last, so compare names, not positions
    fields = {f.name: f.nullable for f in dtable(delta, ref).schema().fields}
    assert fields == {"id": False, "day": False, "amount": True, "note": True}
    assert content(delta, ref, "id")["note"].to_list() == [None, None, None, None, "n"]


def test_safe_cast_applied_lossy_cast_rejected(delta: DeltaResource) -> None:
    ref = new_ref()
    cols = (C("id", "int64", nullable=False), C("small", "int32"))
    delta.write(pl.DataFrame({"id": pl.Series([1], dtype=pl.Int16), "small": pl.Series([1], dtype=pl.Int8)}),
                spec(ref, columns=cols), RunParams())
    assert content(delta, ref).schema == pl.Schema({"id": pl.Int64, "small": pl.Int32})
    with pytest.raises(SchemaMismatchError, match="small"):
        delta.write(pl.DataFrame({"id": [2], "small": pl.Series([2], dtype=pl.Int64)}), spec(ref, columns=cols),
                    RunParams())
    assert version(delta, ref) == 0


def test_audit_columns(delta: DeltaResource) -> None:
    ref = new_ref()
    delta.write(frame([1], [D1]), spec(ref, audit_columns=True), RunParams(), write_ctx=ctx("run-a", ("2024-01-01",)))
    row = content(delta, ref).row(0, named=True)
    assert row["_loom_run_id"] == "run-a" and row["_loom_asset_key"] == "s/t"
    assert row["_loom_partition_key"] == "2024-01-01"
    assert row["_loom_written_at"] == dt.datetime(2024, 5, 1, 12, tzinfo=dt.UTC)


def test_global_audit_opt_in(tmp_path: Path) -> None:
    d = DeltaResource(root=str(tmp_path), audit_columns=True)
    ref = new_ref()
    d.write(frame([1], [D1]), spec(ref), RunParams(), write_ctx=ctx("g"))
    assert content(d, ref)["_loom_run_id"].to_list() == ["g"]


def test_concurrent_writers_to_disjoint_partitions(delta: DeltaResource) -> None:
    ref, _ = seeded(delta)
    s = spec(ref, mode="replace_partitions", partition_by=("day",))
    errors: list[BaseException] = []

    def writer(day: dt.date, key: str, base: int) -> None:
        try:
            delta.write(frame([base, base + 1], [day, day]), s, run(key))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(d, k, b)) for d, k, b in
               [(D1, "2024-01-01", 100), (D2, "2024-01-02", 200), (D3, "2024-01-03", 300)]]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    assert content(delta, ref, "id")["id"].to_list() == [100, 101, 200, 201, 300, 301]
    assert version(delta, ref) == 3


def test_streaming_write_validates_each_batch_and_aborts(delta: DeltaResource) -> None:
    ref, before = seeded(delta)
    lf = pl.LazyFrame().select(
        id=pl.int_range(0, 300_000, dtype=pl.Int64),
        day=pl.lit(D3),
        amount=pl.when(pl.int_range(0, 300_000) == 299_999).then(None).otherwise(1.0),
    ).with_columns(id=pl.when(pl.col("id") == 299_999).then(None).otherwise(pl.col("id")))
    with pytest.raises(DataValidationError, match="id"):
        delta.write(lf, spec(ref, partition_by=("day",)), RunParams(), streaming=True)
    assert_unchanged(delta, ref, 0, before)
    ok = lf.filter(pl.col("id").is_not_null())
    res = delta.write(ok, spec(ref, partition_by=("day",)), RunParams(), streaming=True)
    assert res.streaming
    assert dtable(delta, ref).count() == 4 + 299_999


def test_history_snapshot_close_and_rerun(delta: DeltaResource) -> None:
    ref = new_ref()
    cols = (C("id", "int64", nullable=False), C("name", "string"))
    s = spec(ref, columns=cols, mode="history", merge_keys=("id",))

    def at(day: dt.date, ids: list[int], names: list[str]) -> None:
        delta.write(pl.DataFrame({"id": ids, "name": names}), s, RunParams(values={"effective_date": day}))

    at(D1, [1, 2], ["a", "b"])
    at(D2, [1, 3], ["a1", "c"])  # 1 changes, 2 disappears (closed), 3 is new
    v = version(delta, ref)
    at(D2, [1, 3], ["a2", "c"])  # re-run of D2 with a correction: replaces D2's changes
    out = content(delta, ref, "id", "valid_from").select("id", "name", "valid_from", "valid_to", "is_current")
    t1, t2 = dt.datetime(2024, 1, 1), dt.datetime(2024, 1, 2)
    assert out.rows() == [
        (1, "a", t1, t2, False), (1, "a2", t2, None, True),
        (2, "b", t1, t2, False),
        (3, "c", t2, None, True),
    ]
    assert version(delta, ref) == (v or 0) + 1
    with pytest.raises(LoomError, match="only moves forward"):
        at(D1, [1], ["z"])


def test_history_soft_delete_and_changelog(delta: DeltaResource) -> None:
    ref = new_ref()
    cols = (C("id", "int64", nullable=False), C("name", "string"))
    s = spec(ref, columns=cols, mode="history", merge_keys=("id",),
             history=HistoryOptions(input="changelog", delete_policy="soft_delete"))
    p = lambda d: RunParams(values={"effective_date": d})  # noqa: E731
    delta.write(pl.DataFrame({"id": [1, 2], "name": ["a", "b"], "op": ["upsert", "upsert"]}), s, p(D1))
    delta.write(pl.DataFrame({"id": [2, 3], "name": [None, "c"], "op": ["delete", "upsert"]}), s, p(D2))
    out = content(delta, ref, "id", "valid_from").select("id", "name", "valid_to", "is_current", "is_deleted")
    t2 = dt.datetime(2024, 1, 2)
    assert out.rows() == [
        (1, "a", None, True, False),
        (2, "b", t2, False, False), (2, "b", None, True, True),
        (3, "c", None, True, False),
    ]


def test_history_ignore_policy(delta: DeltaResource) -> None:
    ref = new_ref()
    cols = (C("id", "int64", nullable=False), C("name", "string"))
    s = spec(ref, columns=cols, mode="history", merge_keys=("id",), history=HistoryOptions(delete_policy="ignore"))
    delta.write(pl.DataFrame({"id": [1, 2], "name": ["a", "b"]}), s, RunParams(values={"effective_date": D1}))
    delta.write(pl.DataFrame({"id": [1], "name": ["a"]}), s, RunParams(values={"effective_date": D2}))
    out = content(delta, ref, "id")
    assert out.select("id", "is_current").rows() == [(1, True), (2, True)]


# -- bad input: clear error, table unchanged -----------------------------------------------------
@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: frame([5], [D1]).drop("amount"), SchemaMismatchError, "amount.*missing"),
        (lambda: frame([5], [D1]).with_columns(extra=pl.lit(1)), SchemaMismatchError, "extra.*not declared"),
        (lambda: frame([5], [D1]).with_columns(pl.col("id").cast(pl.String)), SchemaMismatchError, "id.*string"),
        (lambda: pl.DataFrame({"id": [5, None], "day": [D1, D1], "amount": [1.0, 2.0]}), DataValidationError, "id"),
    ],
    ids=["missing-column", "extra-column", "string-in-int", "null-in-not-null"],
)
def test_bad_frame_leaves_table_unchanged(delta: DeltaResource, make: Any, error: type, match: str) -> None:
    ref, before = seeded(delta)
    with pytest.raises(error, match=match):
        delta.write(make(), spec(ref, partition_by=("day",)), RunParams())
    assert_unchanged(delta, ref, 0, before)


def test_duplicate_merge_keys_rejected(delta: DeltaResource) -> None:
    ref, before = seeded(delta)
    s = spec(ref, mode="merge", merge_keys=("id",), partition_by=("day",))
    with pytest.raises(DataValidationError, match="duplicate merge key"):
        delta.write(frame([1, 1], [D1, D1]), s, RunParams())
    assert_unchanged(delta, ref, 0, before)


def test_partition_value_outside_run_key_rejected(delta: DeltaResource) -> None:
    ref, before = seeded(delta)
    s = spec(ref, mode="replace_partitions", partition_by=("day",))
    with pytest.raises(DataValidationError, match="outside the run's partitions"):
        delta.write(frame([7, 8], [D1, D2]), s, run("2024-01-01"))
    assert_unchanged(delta, ref, 0, before)
    with pytest.raises(DataValidationError, match="outside the run's partitions"):
        delta.write(frame([7, 8], [D1, D2]).lazy(), s, run("2024-01-01"), streaming=True)
    assert_unchanged(delta, ref, 0, before)


def test_replace_where_rows_outside_predicate_rejected(delta: DeltaResource) -> None:
    ref, before = seeded(delta)
    s = spec(ref, mode="replace_where", partition_by=("day",), replace_predicate=col("day").eq(D2))
    with pytest.raises(DataValidationError, match="outside the replace predicate"):
        delta.write(frame([7], [D1]), s, RunParams())
    assert_unchanged(delta, ref, 0, before)


def test_predicate_on_unknown_column(delta: DeltaResource) -> None:
    ref, before = seeded(delta)
    with pytest.raises(PredicateError, match="nope"):
        spec(ref, mode="replace_where", replace_predicate=col("nope").eq(1))
    with pytest.raises(PredicateError, match="nope"):
        delta.read(SourceSpec(ref, predicate=col("nope").eq(1)), RunParams())
    assert_unchanged(delta, ref, 0, before)


def test_invalid_table_name(delta: DeltaResource) -> None:
    with pytest.raises(ValueError, match="invalid"):
        delta.table_uri("not a table")
    with pytest.raises(ValueError, match="invalid schema name 'bad-schema'"):
        spec("bad-schema.t")
    with pytest.raises(ValueError, match="invalid"):
        TableRef.parse("a.b.c")


def test_root_missing_or_not_writable(tmp_path: Path) -> None:
    missing = DeltaResource(root=str(tmp_path / "nope"))
    with pytest.raises(BackendUnavailableError, match="does not exist"):
        missing.write(frame([1], [D1]), spec("s.t"), RunParams())
    assert not (tmp_path / "nope").exists()
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(BackendUnavailableError, match="not a directory"):
        DeltaResource(root=str(a_file)).write(frame([1], [D1]), spec("s.t"), RunParams())
    if os.geteuid() != 0:  # root ignores permission bits
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        with pytest.raises(BackendUnavailableError, match="not writable"):
            DeltaResource(root=str(ro)).write(frame([1], [D1]), spec("s.t"), RunParams())


def test_strict_schema_against_stored_table(delta: DeltaResource) -> None:
    ref, before = seeded(delta)
    wider = (*COLS, C("note", "string"))
    with pytest.raises(SchemaMismatchError, match="note"):
        delta.write(frame([9], [D1]).with_columns(note=pl.lit("x")), spec(ref, columns=wider, partition_by=("day",)),
                    RunParams())
    assert_unchanged(delta, ref, 0, before)


# -- discovery, reads, maintenance (local root) ---------------------------------------------------
def test_discovery_from_log(delta: DeltaResource) -> None:
    ref = new_ref()
    assert not delta.exists(TableRef.parse(ref))
    assert delta.columns(TableRef.parse(ref)) == ()
    assert delta.schema(TableRef.parse(ref)) is None
    cols = (C("id", "int64", nullable=False), C("ts", "datetime(us, UTC)"), C("ntz", "datetime(us)"),
            C("amt", "decimal(12,3)"), C("tags", "list<string>"), C("st", "struct<a: int32, b: string>"))
    s = spec(ref, columns=cols)
    from loom_resources.polars_types import empty_frame

    delta.write(empty_frame(cols), s, RunParams())
    r = TableRef.parse(ref)
    assert delta.exists(r)
    assert delta.columns(r) == ("id", "ts", "ntz", "amt", "tags", "st")
    assert delta.schema(r) == cols


def test_read_prunes_partitions(delta: DeltaResource) -> None:
    ref, _ = seeded(delta)
    # remove D2's data files: a pruned read of D1 never opens them, a full read fails
    for f in glob.glob(os.path.join(delta.table_uri(ref), "day=2024-01-02", "*.parquet")):
        os.remove(f)
    lf = delta.read(SourceSpec(ref, columns=("id",), predicate=col("day").eq(D1)), RunParams())
    assert lf.collect()["id"].sort().to_list() == [1, 2]
    with pytest.raises(Exception, match="No such file|not found|os error"):
        delta.read(SourceSpec(ref), RunParams()).collect()


def test_read_binds_params_time_travel_and_streaming(delta: DeltaResource) -> None:
    ref, _ = seeded(delta)
    delta.write(frame([9], [D3]), spec(ref, partition_by=("day",)), RunParams())
    s = SourceSpec(ref, predicate=col("day").ge(param("since")))
    got = delta.read(s, RunParams(values={"since": D2})).collect()
    assert sorted(got["id"].to_list()) == [3, 4, 9]
    old = delta.read(SourceSpec(ref, version=0), RunParams()).collect()
    assert sorted(old["id"].to_list()) == [1, 2, 3, 4]
    lf = delta.read_streaming(SourceSpec(ref), RunParams())
    assert isinstance(lf, pl.LazyFrame)
    assert lf.select(pl.len()).collect(engine="streaming").item() == 5


def test_optimize_and_vacuum_guard(delta: DeltaResource) -> None:
    ref = new_ref()
    for i in range(4):
        delta.write(frame([i], [D1]), spec(ref), RunParams())
    metrics = delta.optimize(ref)
    assert metrics["numFilesRemoved"] == 4 and metrics["numFilesAdded"] == 1
    assert content(delta, ref)["id"].to_list() == [0, 1, 2, 3]
    delta.optimize(ref, z_order=("id",))
    with pytest.raises(ValueError, match="below the guard"):
        delta.vacuum(ref, retention_hours=0)
    assert delta.vacuum(ref, dry_run=True) == []  # nothing older than 7 days
    unguarded = DeltaResource(root=delta.root, min_vacuum_retention_hours=0)
    removed = unguarded.vacuum(ref, retention_hours=0)
    assert len(removed) >= 4
    assert content(delta, ref)["id"].to_list() == [0, 1, 2, 3]


def test_default_root_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOOM_DELTA_ROOT", raising=False)
    monkeypatch.setenv("LOOM_HOME", str(tmp_path / "home"))
    d = DeltaResource()
    assert d.table_uri("a.b") == str(tmp_path / "home" / "delta" / "a" / "b")
    d.write(frame([1], [D1]), spec("a.b"), RunParams())  # default root is created on demand
    assert (tmp_path / "home" / "delta" / "a" / "b" / "_delta_log").is_dir()
    monkeypatch.setenv("LOOM_DELTA_ROOT", "s3://bucket/x")
    assert DeltaResource().table_uri("a.b") == "s3://bucket/x/a/b"


def test_merge_prunes_to_written_partitions(delta: DeltaResource) -> None:
    ref, _ = seeded(delta)
    s = spec(ref, mode="merge", merge_keys=("id",), partition_by=("day",))
    delta.write(frame([3], [D2], [30.0]), s, RunParams())
    metrics = dtable(delta, ref).history(1)[0]["operationMetrics"]
    assert metrics["num_target_files_skipped_during_scan"] == 1  # D1's file never read
    assert metrics["num_target_files_scanned"] == 1
    assert content(delta, ref, "id")["amount"].to_list() == [1.0, 2.0, 30.0, 4.0]


def test_streaming_replace_of_partitions_present_in_lazy_frame(delta: DeltaResource) -> None:
    ref, _ = seeded(delta)
    s = spec(ref, mode="replace_partitions", partition_by=("day",))
    delta.write(frame([50, 51], [D2, D2]).lazy(), s, RunParams(), streaming=True)
    assert content(delta, ref, "id")["id"].to_list() == [1, 2, 50, 51]
    assert version(delta, ref) == 1


def test_stored_columns_missing_from_frame_are_written_as_nulls(delta: DeltaResource) -> None:
    ref = new_ref()
    delta.write(frame([1], [D1]), spec(ref, audit_columns=True), RunParams(), write_ctx=ctx("a"))
    # no write context: audit columns are off for this write, and stay null in its rows
    delta.write(frame([2], [D1]), spec(ref, audit_columns=True), RunParams())
    out = content(delta, ref, "id")
    assert out["_loom_run_id"].to_list() == ["a", None]


def test_update_schema_adds_nullable_columns_only(delta: DeltaResource) -> None:
    ref, before = seeded(delta)
    r = TableRef.parse(ref)
    delta.update_schema(r, (*COLS, C("note", "string")))
    assert delta.columns(r) == ("id", "day", "amount", "note")
    v = version(delta, ref)
    with pytest.raises(SchemaMismatchError, match="amount"):
        delta.update_schema(r, (C("amount", "string"),))
    with pytest.raises(SchemaMismatchError, match="other"):
        delta.update_schema(r, (C("other", "int64", nullable=False),))
    assert version(delta, ref) == v


def test_resource_in_dagster_definitions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOM_TEST_SECRET", "s3cr3t")
    ref = new_ref()

    @dg.asset
    def orders(delta: DeltaResource) -> dg.MaterializeResult:
        res = delta.write(frame([1, 2], [D1, D2]), spec(ref), RunParams())
        return dg.MaterializeResult(metadata={"dagster/row_count": res.rows_written, "dagster/uri": res.uri})

    resource = DeltaResource(root=str(tmp_path), storage_options={"token": dg.EnvVar("LOOM_TEST_SECRET")})
    result = dg.materialize([orders], resources={"delta": resource})
    assert result.success
    assert content(DeltaResource(root=str(tmp_path)), ref)["id"].to_list() == [1, 2]


def test_schema_mode_overwrite_replaces_stored_schema(delta: DeltaResource) -> None:
    ref, _ = seeded(delta)
    cols = (C("id", "int64", nullable=False), C("day", "date", nullable=False), C("amount", "string"))
    s = spec(ref, columns=cols, mode="overwrite", schema_mode="overwrite", partition_by=("day",))
    delta.write(frame([7], [D3]).with_columns(pl.col("amount").cast(pl.String)), s, RunParams())
    assert delta.schema(TableRef.parse(ref)) == cols
    assert content(delta, ref).rows() == [(7, D3, "7.0")]
    # without schema_mode='overwrite' the same change is a mismatch
    with pytest.raises(SchemaMismatchError, match="amount"):
        delta.write(frame([8], [D3]), spec(ref, mode="overwrite", partition_by=("day",)), RunParams())


def test_replace_partitions_with_two_partition_columns(delta: DeltaResource) -> None:
    ref = new_ref()
    cols = (C("day", "date", nullable=False), C("region", "string", nullable=False), C("v", "int64"))
    s = spec(ref, columns=cols, mode="replace_partitions", partition_by=("day", "region"))
    seed = pl.DataFrame({"day": [D1, D1, D2], "region": ["eu", "us", "eu"], "v": [1, 2, 3]})
    delta.write(seed, s, RunParams())
    params = RunParams(partition_keys=("2024-01-01|eu",), partitions=({"day": "2024-01-01", "region": "eu"},))
    delta.write(pl.DataFrame({"day": [D1], "region": ["eu"], "v": [10]}), s, params)
    assert content(delta, ref, "v").rows() == [(D1, "us", 2), (D2, "eu", 3), (D1, "eu", 10)]
    assert version(delta, ref) == 1


@pytest.mark.parametrize("writer", ["delta-rs", "polars"])
def test_commit_conflicts_are_retried_with_a_bound(tmp_path: Path, writer: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from deltalake import DeltaTable
    from deltalake.exceptions import CommitFailedError

    import loom_resources.delta._commit as dw

    (tmp_path / "lake").mkdir()
    delta = DeltaResource(root=str(tmp_path / "lake"), parquet_writer=writer)  # type: ignore[arg-type]
    ref, _ = seeded(delta)
    calls = {"n": 0}
    if writer == "delta-rs":
        real = dw.write_deltalake

        def flaky(*args: Any, **kwargs: Any) -> None:
            calls["n"] += 1
            if calls["n"] <= 2:
                raise CommitFailedError("Transaction failed: a concurrent transaction conflicted")
            real(*args, **kwargs)

        monkeypatch.setattr(dw, "write_deltalake", flaky)
    else:
        real_txn = DeltaTable.create_write_transaction

        def flaky_txn(self: DeltaTable, *args: Any, **kwargs: Any) -> None:
            calls["n"] += 1
            if calls["n"] <= 2:
                raise CommitFailedError("Transaction failed: a concurrent transaction conflicted")
            real_txn(self, *args, **kwargs)

        monkeypatch.setattr(DeltaTable, "create_write_transaction", flaky_txn)
    delta.write(frame([9], [D3]), spec(ref, partition_by=("day",)), RunParams())
    assert calls["n"] == 3
    assert content(delta, ref, "id")["id"].to_list() == [1, 2, 3, 4, 9]

    calls["n"] = -100  # conflicts forever: gives up after max_commit_retries + 1 attempts
    bounded = DeltaResource(root=delta.root, storage_options=delta.storage_options, max_commit_retries=2,
                            parquet_writer=writer)  # type: ignore[arg-type]
    with pytest.raises(CommitFailedError):
        bounded.write(frame([10], [D3]), spec(ref, partition_by=("day",)), RunParams())
    assert calls["n"] == -97
    # the failed write left no data file behind (its files were never committed)
    root = delta.table_uri(ref)
    on_disk = {os.path.relpath(f, root) for f in glob.glob(os.path.join(root, "**", "*.parquet"), recursive=True)
               if "_delta_log" not in f}
    assert on_disk == {os.path.relpath(u.removeprefix("file://"), root) for u in dtable(delta, ref).file_uris()}
    assert version(delta, ref) == 1


def test_first_write_of_a_table_sweeps_its_old_orphans(delta: DeltaResource) -> None:
    import os
    import time
    from pathlib import Path

    ref = new_ref()
    delta.write(frame([1], [D1]), spec(ref), RunParams())  # creates the table: nothing to sweep yet
    root = Path(delta.table_uri(ref))
    old, young = root / "part-00000-dead.parquet", root / "part-00001-live.parquet#1"
    for f in (old, young):
        f.write_bytes(b"left by a killed writer")
    past = time.time() - 7 * 3600
    os.utime(old, (past, past))
    delta.write(frame([2], [D1]), spec(ref), RunParams())
    assert not old.exists() and young.exists()  # the young one may belong to a live write
    assert content(delta, ref, "id")["id"].to_list() == [1, 2]


# -- checkpoints of the tables Loom creates --------------------------------------------------------

@pytest.mark.parametrize("interval", [10, 0])
def test_created_tables_checkpoint_every_checkpoint_interval_commits(tmp_path: Path, interval: int) -> None:
    """Opening a table reads every commit since its last checkpoint; Loom's tables (the run records
    get one commit per write) checkpoint every 10 commits, as Delta on Spark does (0: delta-rs' 100)."""
    delta = DeltaResource(root=str(tmp_path), checkpoint_interval=interval)
    ref = new_ref()
    for i in range(12):
        delta.write(frame([i], [D1]), spec(ref, mode="append"), RunParams())
    table = dtable(delta, ref)
    configured = table.metadata().configuration.get("delta.checkpointInterval")
    checkpoints = sorted(Path(p).name for p in glob.glob(os.path.join(delta.table_uri(ref), "_delta_log", "*.checkpoint.parquet")))
    if interval:
        assert configured == "10" and checkpoints == ["00000000000000000009.checkpoint.parquet"]
    else:
        assert configured is None and checkpoints == []
    assert table.version() == 11 and content(delta, ref)["id"].to_list() == list(range(12))


def test_sweeping_a_checkpointed_table_keeps_its_files_and_does_not_import_pandas(tmp_path: Path) -> None:
    """Issue 27: the first write of a process to a table with a checkpoint (the run records after
    10 runs) sweeps its orphans, reading the checkpoint's file actions; through ``pq.read_table``
    that imported pandas (0.3-1.5 s per process). In a process of its own (pytest has pandas
    loaded): 12 appends (a checkpoint at version 9), an old orphan; the next write removes the
    orphan, keeps every file the checkpoint names (read back whole), and pandas is not imported."""
    import subprocess
    import sys

    script = f"""
import os, sys, time, datetime as dt, polars as pl
from pathlib import Path
from loom_resources import ColumnSchema, RunParams, TableRef, TargetSpec
from loom_resources.delta import DeltaResource
spec = TargetSpec(TableRef("s", "t"), "delta", [ColumnSchema("id", "int64", False)], mode="append")
first = DeltaResource(root="{tmp_path}")
for i in range(12):
    first.write(pl.DataFrame({{"id": [i]}}), spec, RunParams())
print("PRE", "pandas" in sys.modules, flush=True)
"""
    second = f"""
import os, sys, time, polars as pl
from pathlib import Path
from loom_resources import ColumnSchema, RunParams, TableRef, TargetSpec
from loom_resources.delta import DeltaResource
spec = TargetSpec(TableRef("s", "t"), "delta", [ColumnSchema("id", "int64", False)], mode="append")
res = DeltaResource(root="{tmp_path}")
root = Path(res.table_uri(spec.ref))
assert list(root.glob("_delta_log/*.checkpoint.parquet"))
old = root / "part-00000-dead.parquet"
old.write_bytes(b"left by a killed writer")
past = time.time() - 7 * 3600
os.utime(old, (past, past))
res.write(pl.DataFrame({{"id": [12]}}), spec, RunParams())
pandas = "pandas" in sys.modules
ids = sorted(pl.read_delta(res.table_uri(spec.ref))["id"].to_list())
print("RESULT", pandas, old.exists(), ids == list(range(13)), flush=True)
os._exit(0)
"""
    for code, tag in ((script + "os._exit(0)\n", "PRE"), (second, "RESULT")):
        out = subprocess.run([sys.executable, "-c", "import os\n" + code], capture_output=True, text=True, timeout=300)
        line = [x for x in out.stdout.splitlines() if x.startswith(tag)]
        assert line, out.stderr[-3000:]
    assert line[0] == "RESULT False False True"
