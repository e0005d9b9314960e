"""Unit tests of the in-memory implementation of the Loom contracts."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from loom_resources.contracts import SourceReader, SQLExecutor, StreamingSourceReader, TableDiscovery, TargetWriter
from loom_resources.dtypes import ColumnSchema, Date, Datetime, Float64, Int32, Int64, String
from loom_resources.errors import (
    DataValidationError,
    LoomError,
    PredicateError,
    SchemaMismatchError,
    SpecError,
    TableNotFoundError,
)
from loom_resources.model import (
    AUDIT_COLUMNS,
    Backend,
    RunParams,
    SchemaMode,
    SourceSpec,
    TableRef,
    TargetSpec,
    WriteContext,
    WriteMode,
)
from loom_resources.polars_types import schema_from_polars as schema_of
from loom_resources.predicates import col, param
from loom_resources.testing import InMemoryTables, PolarsSQLExecutor

REF = TableRef("mart", "sales")
COLS = (
    ColumnSchema("id", Int64(), nullable=False),
    ColumnSchema("day", Date(), nullable=False),
    ColumnSchema("amount", Float64()),
)
D1, D2, D3 = dt.date(2024, 1, 1), dt.date(2024, 1, 2), dt.date(2024, 1, 3)


def spec(**kw: object) -> TargetSpec:
    args: dict[str, object] = {"ref": REF, "backend": Backend.DELTA, "columns": COLS}
    args.update(kw)
    return TargetSpec(**args)  # type: ignore[arg-type]


def frame(rows: list[tuple[int, dt.date, float | None]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema={"id": pl.Int64, "day": pl.Date, "amount": pl.Float64}, orient="row")


def rows(tables: InMemoryTables, ref: TableRef = REF) -> list[tuple[object, ...]]:
    return sorted(tables.get(ref).select("id", "day", "amount").rows())


INITIAL = [(1, D1, 1.0), (2, D1, 2.0), (3, D2, 3.0), (4, D3, 4.0)]


def seeded(**kw: object) -> tuple[InMemoryTables, TargetSpec]:
    t = InMemoryTables()
    s = spec(**kw)
    t.write(frame(INITIAL), spec(), RunParams())
    return t, s


def test_implements_all_protocols() -> None:
    t = InMemoryTables()
    assert isinstance(t, TableDiscovery)
    assert isinstance(t, SourceReader)
    assert isinstance(t, StreamingSourceReader)
    assert isinstance(t, SQLExecutor)
    assert isinstance(t, TargetWriter)
    assert isinstance(PolarsSQLExecutor(), SQLExecutor)
    assert not isinstance(PolarsSQLExecutor(), TargetWriter)


def test_discovery() -> None:
    t = InMemoryTables()
    assert not t.exists(REF)
    assert t.columns(REF) == ()
    assert t.schema(REF) is None
    with pytest.raises(TableNotFoundError, match="mart.sales"):
        t.get(REF)
    with pytest.raises(TableNotFoundError, match="mart.sales"):
        t.update_schema(REF, COLS)
    t.put(REF, frame(INITIAL))
    assert t.exists(REF)
    assert t.columns(REF) == ("id", "day", "amount")
    assert t.schema(REF) == schema_of(frame(INITIAL).schema)
    # like the real backends: update_schema adds missing nullable columns, never changes a type
    t.update_schema(REF, COLS + (ColumnSchema("note", String()),))
    assert t.schema(REF) == schema_of(frame(INITIAL).schema) + (ColumnSchema("note", String()),)
    assert t.get(REF)["note"].to_list() == [None] * len(INITIAL)
    with pytest.raises(SchemaMismatchError, match="'amount'"):
        t.update_schema(REF, (ColumnSchema("amount", String()),))
    with pytest.raises(SchemaMismatchError, match="'other'"):
        t.update_schema(REF, (ColumnSchema("other", Int64(), nullable=False),))


def test_append_creates_then_appends() -> None:
    t = InMemoryTables()
    r1 = t.write(frame(INITIAL[:2]), spec(), RunParams())
    assert r1.rows_written == 2 and r1.mode is WriteMode.APPEND and r1.version == 0
    assert r1.table == REF and r1.uri == "memory://mart.sales"
    assert r1.schema == COLS
    assert t.schema(REF) == COLS
    r2 = t.write(frame(INITIAL[2:]).lazy(), spec(), RunParams(), streaming=True)
    assert r2.rows_written == 2 and r2.version == 1 and r2.streaming is True
    assert rows(t) == INITIAL


def test_overwrite() -> None:
    t, s = seeded(mode=WriteMode.OVERWRITE)
    t.write(frame([(9, D3, 9.0)]), s, RunParams())
    assert rows(t) == [(9, D3, 9.0)]


def test_replace_partitions_from_frame() -> None:
    t, s = seeded(mode=WriteMode.REPLACE_PARTITIONS, partition_by=("day",))
    # no run partitions: the frame's partitions (D1) are replaced; D2, D3 untouched
    t.write(frame([(10, D1, 10.0)]), s, RunParams())
    assert rows(t) == [(3, D2, 3.0), (4, D3, 4.0), (10, D1, 10.0)]


def test_replace_partitions_from_run() -> None:
    t, s = seeded(mode=WriteMode.REPLACE_PARTITIONS, partition_by=("day",))
    params = RunParams(partition_keys=("2024-01-01", "2024-01-02"), partitions=({"day": "2024-01-01"}, {"day": "2024-01-02"}))
    # the run owns D1 and D2: both are replaced even though the frame only has D2 rows
    t.write(frame([(20, D2, 20.0)]), s, params)
    assert rows(t) == [(4, D3, 4.0), (20, D2, 20.0)]


def test_replace_partitions_rejects_rows_outside_run() -> None:
    t, s = seeded(mode=WriteMode.REPLACE_PARTITIONS, partition_by=("day",))
    params = RunParams(partition_keys=("2024-01-02",), partitions=({"day": "2024-01-02"},))
    with pytest.raises(DataValidationError, match="mart.sales.day"):
        t.write(frame([(20, D2, 20.0), (21, D3, 21.0)]), s, params)
    assert rows(t) == INITIAL


def test_replace_where() -> None:
    pred = col("day").ge(param("partition_start_date")) & col("day").lt(param("partition_end_date"))
    t, s = seeded(mode=WriteMode.REPLACE_WHERE, replace_predicate=pred)
    params = RunParams(window_start=dt.datetime(2024, 1, 2), window_end=dt.datetime(2024, 1, 4))
    t.write(frame([(30, D2, 30.0), (31, D3, None)]), s, params)
    assert rows(t) == [(1, D1, 1.0), (2, D1, 2.0), (30, D2, 30.0), (31, D3, None)]
    with pytest.raises(DataValidationError, match="mart.sales"):
        t.write(frame([(32, D1, 0.0)]), s, params)
    with pytest.raises(PredicateError, match="partition_start_date"):
        t.write(frame([(33, D2, 0.0)]), s, RunParams())


def test_merge() -> None:
    t, s = seeded(mode=WriteMode.MERGE, merge_keys=("id",))
    t.write(frame([(2, D1, 22.0), (3, D2, None), (5, D3, 5.0)]), s, RunParams())
    assert rows(t) == [(1, D1, 1.0), (2, D1, 22.0), (3, D2, None), (4, D3, 4.0), (5, D3, 5.0)]
    with pytest.raises(DataValidationError, match="duplicate merge key"):
        t.write(frame([(6, D1, 1.0), (6, D2, 2.0)]), s, RunParams())
    assert len(rows(t)) == 5


def test_history_not_simulated() -> None:
    t, s = seeded(mode=WriteMode.HISTORY, merge_keys=("id",))
    assert WriteMode.HISTORY not in t.capabilities.write_modes
    with pytest.raises(SpecError, match="history"):
        t.write(frame(INITIAL), s, RunParams())


def test_write_checks_schema_and_nulls_before_writing() -> None:
    t, s = seeded()
    with pytest.raises(SchemaMismatchError, match="'amount'"):
        t.write(frame(INITIAL).drop("amount"), s, RunParams())
    bad = pl.DataFrame({"id": [7], "day": pl.Series([None], dtype=pl.Date), "amount": [1.0]})
    with pytest.raises(DataValidationError, match="mart.sales.day"):
        t.write(bad, s, RunParams())
    assert rows(t) == INITIAL


def test_write_safe_cast_and_evolve() -> None:
    t, _ = seeded()
    s = spec(schema_mode=SchemaMode.EVOLVE)
    df = frame([(7, D3, 7.0)]).with_columns(pl.col("id").cast(pl.Int32), note=pl.lit("new"))
    res = t.write(df, s, RunParams())
    assert t.schema(REF) == COLS + (ColumnSchema("note", String()),)
    assert res.schema == t.schema(REF)
    stored = t.get(REF)
    assert stored.schema["id"] == pl.Int64
    assert stored.filter(pl.col("id") == 7)["note"].to_list() == ["new"]
    assert stored.filter(pl.col("id") == 1)["note"].to_list() == [None]
    # a second evolve write keeps writing the now-stored extra column
    t.write(frame([(8, D3, 8.0)]).with_columns(note=pl.lit("again")), s, RunParams())
    assert t.get(REF).filter(pl.col("id") == 8)["note"].to_list() == ["again"]


def test_write_audit_columns() -> None:
    t = InMemoryTables()
    s = spec(audit_columns=True)
    ts = dt.datetime(2024, 6, 1, tzinfo=dt.UTC)
    t.write(frame(INITIAL[:1]), s, RunParams(), write_ctx=WriteContext("run-1", "mart/sales", ("2024-01-01",), timestamp=ts))
    assert t.schema(REF) == COLS + AUDIT_COLUMNS
    row = t.get(REF).row(0, named=True)
    assert row["_loom_run_id"] == "run-1"
    assert row["_loom_partition_key"] == "2024-01-01"
    assert row["_loom_written_at"] == ts


def test_read_projection_and_predicate_from_params() -> None:
    t, _ = seeded()
    pred = col("day").window(param("partition_start_date"), param("partition_end_date")) & col("amount").gt(param("min"))
    src = SourceSpec(REF, columns=("id", "amount"), predicate=pred)
    params = RunParams(window_start=dt.datetime(2024, 1, 1), window_end=dt.datetime(2024, 1, 3), values={"min": 1.5})
    lf = t.read(src, params)
    assert isinstance(lf, pl.LazyFrame)
    out = lf.collect()
    assert out.columns == ["id", "amount"]
    assert sorted(out.rows()) == [(2, 2.0), (3, 3.0)]
    assert sorted(t.read_streaming(src, params).collect().rows()) == [(2, 2.0), (3, 3.0)]
    assert t.read(SourceSpec(REF), RunParams()).collect().height == 4


def test_read_errors() -> None:
    t, _ = seeded()
    with pytest.raises(PredicateError, match="unknown column.*'nope'"):
        t.read(SourceSpec(REF, predicate=col("nope").eq(1)), RunParams())
    with pytest.raises(PredicateError, match="'min'"):
        t.read(SourceSpec(REF, predicate=col("amount").gt(param("min"))), RunParams())
    with pytest.raises(TableNotFoundError, match="mart.missing"):
        t.read(SourceSpec(TableRef("mart", "missing")), RunParams())
    with pytest.raises(SchemaMismatchError, match="nope"):
        t.read(SourceSpec(REF, columns=("id", "nope")), RunParams())


def test_read_partition_key_in_predicate() -> None:
    t, _ = seeded()
    src = SourceSpec(REF, predicate=col("id").is_in(param("ids")))
    out = t.read(src, RunParams(values={"ids": [1, 4]})).collect()
    assert sorted(out["id"].to_list()) == [1, 4]


def test_polars_sql_executor_join_group_by_lazy() -> None:
    orders = pl.DataFrame({"id": [1, 2, 3, 4], "cust": [10, 10, 20, 30], "amount": [5.0, 7.0, 1.0, 2.0]}).lazy()
    customers = pl.DataFrame({"cust": [10, 20, 30], "country": ["DE", "FR", "DE"]})
    ex = PolarsSQLExecutor()
    assert ex.engine_name == "polars"
    lf = ex.execute_sql(
        {"orders": orders, "customers": customers},
        "SELECT c.country, SUM(o.amount) AS total, COUNT(*) AS n "
        "FROM orders o JOIN customers c ON o.cust = c.cust GROUP BY c.country ORDER BY c.country",
    )
    assert isinstance(lf, pl.LazyFrame)
    assert lf.collect().rows() == [("DE", 14.0, 3), ("FR", 1.0, 1)]


def test_in_memory_execute_sql_over_read() -> None:
    t, _ = seeded()
    lf = t.execute_sql({"s": t.read(SourceSpec(REF), RunParams())}, "SELECT day, SUM(amount) AS total FROM s GROUP BY day ORDER BY day")
    assert isinstance(lf, pl.LazyFrame)
    assert lf.collect().rows() == [(D1, 3.0), (D2, 3.0), (D3, 4.0)]


def test_polars_sql_executor_error_names_tables() -> None:
    with pytest.raises(LoomError, match=r"\['a', 'b'\]"):
        PolarsSQLExecutor().execute_sql({"b": pl.LazyFrame({"x": [1]}), "a": pl.LazyFrame({"y": [1]})}, "SELEC y FROM a")


def test_write_new_table_with_int32_declared() -> None:
    t = InMemoryTables()
    cols = (ColumnSchema("k", Int32(), nullable=False), ColumnSchema("ts", Datetime("us", "UTC")))
    s = TargetSpec(TableRef("raw", "events"), Backend.CLICKHOUSE, cols)
    df = pl.DataFrame({"k": pl.Series([1, 2], dtype=pl.Int16), "ts": [dt.datetime(2024, 1, 1, tzinfo=dt.UTC), None]})
    t.write(df, s, RunParams())
    assert t.schema(TableRef("raw", "events")) == cols
    assert t.get(TableRef("raw", "events")).schema["k"] == pl.Int32
