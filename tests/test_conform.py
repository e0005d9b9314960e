"""Unit tests of the checks run on a frame before anything is written."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from loom_resources.conform import (
    check_nulls,
    check_partition_values,
    check_unique_keys,
    conform,
    frame_partitions,
    frame_schema,
    partition_filter,
    require_partition_values_for,
    run_partition_values,
    with_audit_columns,
)
from loom_resources.dtypes import ColumnSchema, Date, Datetime, Float64, Int32, Int64, String, UInt32
from loom_resources.errors import DataValidationError, SchemaMismatchError, SpecError
from loom_resources.model import (
    Backend,
    HistoryOptions,
    RunParams,
    SchemaMode,
    TableRef,
    TargetSpec,
    WriteContext,
    WriteMode,
)

COLS = (
    ColumnSchema("id", Int64(), nullable=False),
    ColumnSchema("day", Date(), nullable=False),
    ColumnSchema("name", String()),
)


def spec(**kw: object) -> TargetSpec:
    args: dict[str, object] = {"ref": TableRef("mart", "t"), "backend": Backend.DELTA, "columns": COLS}
    args.update(kw)
    return TargetSpec(**args)  # type: ignore[arg-type]


def good_frame() -> pl.DataFrame:
    return pl.DataFrame(
        {"id": [1, 2, 3], "day": [dt.date(2024, 1, 1), dt.date(2024, 1, 2), dt.date(2024, 1, 2)], "name": ["a", None, "c"]},
        schema={"id": pl.Int64, "day": pl.Date, "name": pl.String},
    )


# --- conform -------------------------------------------------------------------------------------


def test_conform_identity_reorders_to_declaration() -> None:
    df = good_frame().select("name", "day", "id")
    c = conform(df, spec(), None)
    assert isinstance(c.frame, pl.DataFrame)
    assert c.frame.columns == ["id", "day", "name"]
    assert c.columns == COLS
    assert c.new_columns == ()
    assert c.frame.equals(good_frame())


def test_conform_missing_column() -> None:
    with pytest.raises(SchemaMismatchError) as exc:
        conform(good_frame().drop("name"), spec(), None)
    assert exc.value.table == "mart.t"
    assert exc.value.problems == ["column 'name' (string) is declared but missing from the frame"]
    assert "mart.t" in str(exc.value) and "nothing was written" in str(exc.value)


def test_conform_extra_column_strict() -> None:
    df = good_frame().with_columns(extra=pl.lit(1.5))
    with pytest.raises(SchemaMismatchError) as exc:
        conform(df, spec(), None)
    assert exc.value.problems == ["column 'extra' (float64) is not declared (schema_mode='strict')"]


def test_conform_extra_column_evolve() -> None:
    df = good_frame().with_columns(extra=pl.lit(1.5), more=pl.lit("x"))
    c = conform(df, spec(schema_mode=SchemaMode.EVOLVE), None)
    assert c.new_columns == (ColumnSchema("extra", Float64()), ColumnSchema("more", String()))
    assert c.columns == COLS + c.new_columns
    assert c.frame.columns == ["id", "day", "name", "extra", "more"]
    assert c.frame["extra"].to_list() == [1.5, 1.5, 1.5]  # type: ignore[index]


def test_conform_evolve_extra_column_already_stored_is_kept() -> None:
    # a column added by an earlier evolve write is in the stored table, not declared, and
    # still in the frame: its values must be written, not dropped
    df = good_frame().with_columns(extra=pl.lit(2.5))
    stored = COLS + (ColumnSchema("extra", Float64()),)
    c = conform(df, spec(schema_mode=SchemaMode.EVOLVE), stored)
    assert c.new_columns == ()
    assert c.frame.columns == ["id", "day", "name", "extra"]
    assert c.frame["extra"].to_list() == [2.5, 2.5, 2.5]  # type: ignore[index]


def test_conform_evolve_extra_column_already_stored_types() -> None:
    stored = COLS + (ColumnSchema("extra", Int64()),)
    s = spec(schema_mode=SchemaMode.EVOLVE)
    widened = conform(good_frame().with_columns(extra=pl.lit(7, pl.Int32)), s, stored)
    assert widened.frame.schema["extra"] == pl.Int64  # type: ignore[union-attr]
    assert widened.columns[-1] == ColumnSchema("extra", Int64())
    with pytest.raises(SchemaMismatchError, match="'extra' is stored as int64 but the frame has string"):
        conform(good_frame().with_columns(extra=pl.lit("x")), s, stored)


def test_conform_safe_cast_applied() -> None:
    cols = COLS + (ColumnSchema("qty", Int64()), ColumnSchema("price", Float64()), ColumnSchema("ts", Datetime("us")))
    df = good_frame().with_columns(
        qty=pl.Series([1, None, -2_000_000_000], dtype=pl.Int32),
        price=pl.Series([1.5, 2.25, None], dtype=pl.Float32),
        ts=pl.Series([dt.datetime(2024, 1, 1, 1, 2, 3, 4000)] * 3, dtype=pl.Datetime("ms")),
    )
    c = conform(df, spec(columns=cols), None)
    out = c.frame
    assert isinstance(out, pl.DataFrame)
    assert out.schema["qty"] == pl.Int64
    assert out.schema["price"] == pl.Float64
    assert out.schema["ts"] == pl.Datetime("us")
    assert out["qty"].to_list() == [1, None, -2_000_000_000]
    assert out["price"].to_list() == [1.5, 2.25, None]
    assert out["ts"].to_list() == [dt.datetime(2024, 1, 1, 1, 2, 3, 4000)] * 3


def test_conform_lossy_types_listed_at_once() -> None:
    cols = COLS + (ColumnSchema("qty", Int32()), ColumnSchema("ref", UInt32()))
    df = pl.DataFrame(
        {
            "id": ["1", "2"],  # string in an int column
            "day": [dt.date(2024, 1, 1)] * 2,
            "qty": pl.Series([1, 2], dtype=pl.Int64),  # narrowing
            "ref": pl.Series([1, 2], dtype=pl.Int32),  # signed -> unsigned
            "surprise": [True, False],
        }
    )
    with pytest.raises(SchemaMismatchError) as exc:
        conform(df, spec(columns=cols), None)
    assert exc.value.problems == [
        "column 'id' has type string, expected int64 (no lossless cast)",
        "column 'name' (string) is declared but missing from the frame",
        "column 'qty' has type int64, expected int32 (no lossless cast)",
        "column 'ref' has type int32, expected uint32 (no lossless cast)",
        "column 'surprise' (boolean) is not declared (schema_mode='strict')",
    ]
    msg = str(exc.value)
    for p in exc.value.problems:
        assert p in msg


def test_conform_unsupported_frame_type() -> None:
    df = good_frame().with_columns(name=pl.Series([object(), object(), object()], dtype=pl.Object))
    with pytest.raises(SchemaMismatchError, match="column 'name'"):
        conform(df, spec(), None)


def test_conform_stored_schema_mismatch() -> None:
    stored = (
        ColumnSchema("id", Int32(), nullable=False),
        ColumnSchema("day", Date(), nullable=False),
    )
    with pytest.raises(SchemaMismatchError) as exc:
        conform(good_frame(), spec(), stored)
    assert exc.value.problems == [
        "column 'id' is stored as int32 but declared as int64",
        "the stored table has no column 'name'; declare it nullable with schema_mode='evolve' to add it",
    ]


def test_conform_stored_evolve_adds_nullable_declared_column() -> None:
    stored = COLS[:2]
    c = conform(good_frame(), spec(schema_mode=SchemaMode.EVOLVE), stored)
    assert c.new_columns == (COLS[2],)
    assert c.columns == COLS


def test_conform_stored_evolve_refuses_not_null_new_column() -> None:
    cols = COLS + (ColumnSchema("req", Int64(), nullable=False),)
    df = good_frame().with_columns(req=pl.lit(1, pl.Int64))
    with pytest.raises(SchemaMismatchError, match="no column 'req'"):
        conform(df, spec(columns=cols, schema_mode=SchemaMode.EVOLVE), COLS)


def test_conform_storable_mapping() -> None:
    cols = (ColumnSchema("id", Int64(), nullable=False), ColumnSchema("u", UInt32()))
    stored = (ColumnSchema("id", Int64(), nullable=False), ColumnSchema("u", Int64()))
    df = pl.DataFrame({"id": [1], "u": pl.Series([7], dtype=pl.UInt32)})
    widen = lambda d: Int64() if d == UInt32() else d  # noqa: E731
    c = conform(df, spec(columns=cols), stored, storable=widen)
    assert c.frame.schema["u"] == pl.UInt32  # type: ignore[union-attr]
    with pytest.raises(SchemaMismatchError, match="stored as int64 but declared as uint32"):
        conform(df, spec(columns=cols), stored)


def test_conform_schema_overwrite_ignores_stored() -> None:
    stored = (ColumnSchema("other", String()),)
    s = spec(mode=WriteMode.OVERWRITE, schema_mode=SchemaMode.OVERWRITE)
    c = conform(good_frame(), s, stored)
    assert c.columns == COLS


def test_conform_lazy_stays_lazy() -> None:
    cols = COLS + (ColumnSchema("qty", Int64()),)
    lf = good_frame().lazy().with_columns(qty=pl.lit(3, pl.Int32))
    c = conform(lf, spec(columns=cols), None)
    assert isinstance(c.frame, pl.LazyFrame)
    assert frame_schema(c.frame)["qty"] == pl.Int64
    assert c.frame.collect()["qty"].to_list() == [3, 3, 3]


def test_conform_keeps_maintained_columns() -> None:
    s = spec(audit_columns=True)
    df = with_audit_columns(good_frame(), s, WriteContext("r1", "mart/t"))
    c = conform(df, s, None)
    assert c.frame.columns == ["id", "day", "name", "_loom_run_id", "_loom_asset_key", "_loom_partition_key", "_loom_written_at"]


# --- data checks -----------------------------------------------------------------------------------


def test_check_nulls() -> None:
    check_nulls(good_frame(), spec())  # 'name' is nullable
    check_nulls(good_frame().head(0), spec())
    bad = good_frame().with_columns(day=pl.Series([None, dt.date(2024, 1, 1), None], dtype=pl.Date))
    with pytest.raises(DataValidationError) as exc:
        check_nulls(bad, spec())
    assert exc.value.table == "mart.t" and exc.value.column == "day"
    assert str(exc.value) == "Invalid data for mart.t.day: 2 null value(s) in a column declared not null; nothing was written"


def test_check_unique_keys() -> None:
    s = spec(mode=WriteMode.MERGE, merge_keys=("id", "day"))
    check_unique_keys(good_frame(), s)
    check_unique_keys(pl.concat([good_frame(), good_frame()]), spec())  # no keys: nothing to check
    dup = pl.concat([good_frame(), good_frame().head(1)])
    with pytest.raises(DataValidationError) as exc:
        check_unique_keys(dup, s)
    assert exc.value.column == "id,day"
    assert "1 duplicate merge key(s)" in str(exc.value)
    assert "'id': 1" in str(exc.value)


def test_run_partition_values_and_filter() -> None:
    s = spec(mode=WriteMode.REPLACE_PARTITIONS, partition_by=("day",))
    params = RunParams(partition_keys=("2024-01-02",), partitions=({"day": "2024-01-02"},))
    values = run_partition_values(s, params, {"day": Date()})
    assert values == ({"day": dt.date(2024, 1, 2)},)
    assert run_partition_values(s, RunParams(), {"day": Date()}) == ()
    assert good_frame().filter(partition_filter(values))["id"].to_list() == [2, 3]
    assert good_frame().filter(partition_filter(()))["id"].to_list() == [1, 2, 3]
    with pytest.raises(SchemaMismatchError, match="'region'"):
        run_partition_values(s, RunParams(partitions=({"region": "EU"},)), {"day": Date()})
    with pytest.raises(SpecError, match=r"mart\.t\.day"):
        run_partition_values(s, RunParams(partitions=({"day": "tomorrow"},)), {"day": Date()})


def test_partition_filter_multi_column() -> None:
    values = ({"day": dt.date(2024, 1, 2), "name": "c"}, {"day": dt.date(2024, 1, 1), "name": "a"})
    assert good_frame().filter(partition_filter(values))["id"].to_list() == [1, 3]


def test_check_partition_values() -> None:
    s = spec(mode=WriteMode.REPLACE_PARTITIONS, partition_by=("day",))
    check_partition_values(good_frame(), s, ({"day": dt.date(2024, 1, 1)}, {"day": dt.date(2024, 1, 2)}))
    check_partition_values(good_frame(), s, ())
    with pytest.raises(DataValidationError) as exc:
        check_partition_values(good_frame(), s, ({"day": dt.date(2024, 1, 2)},))
    assert exc.value.column == "day"
    msg = str(exc.value)
    assert "1 row(s) have partition values outside the run's partitions" in msg
    assert "datetime.date(2024, 1, 1)" in msg


def test_frame_partitions() -> None:
    s = spec(mode=WriteMode.REPLACE_PARTITIONS, partition_by=("day",))
    assert frame_partitions(good_frame(), s) == ({"day": dt.date(2024, 1, 1)}, {"day": dt.date(2024, 1, 2)})
    assert frame_partitions(good_frame().head(0), s) == ()
    assert frame_partitions(good_frame(), spec()) == ()
    s2 = spec(partition_by=("day", "name"))
    assert len(frame_partitions(good_frame(), s2)) == 3


def test_require_partition_values_for() -> None:
    assert require_partition_values_for(spec(mode=WriteMode.REPLACE_PARTITIONS, partition_by=("day",)))
    assert not require_partition_values_for(spec())


def test_with_audit_columns() -> None:
    ts = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
    ctx = WriteContext("run-9", "mart/t", ("2024-01-01", "2024-01-02"), timestamp=ts)
    s = spec(audit_columns=True)
    out = with_audit_columns(good_frame(), s, ctx)
    assert isinstance(out, pl.DataFrame)
    assert out.columns[-4:] == ["_loom_run_id", "_loom_asset_key", "_loom_partition_key", "_loom_written_at"]
    assert out.schema["_loom_written_at"] == pl.Datetime("us", "UTC")
    assert out.row(0)[-4:] == ("run-9", "mart/t", "2024-01-01...2024-01-02", ts)
    assert out.height == 3
    # spec without audit columns: unchanged
    assert with_audit_columns(good_frame(), spec(), ctx).columns == ["id", "day", "name"]
    # lazy stays lazy
    lazy = with_audit_columns(good_frame().lazy(), s, ctx)
    assert isinstance(lazy, pl.LazyFrame)
    assert lazy.collect()["_loom_run_id"].to_list() == ["run-9"] * 3


def test_conform_history_spec_allows_maintained_columns_in_frame() -> None:
    s = spec(mode=WriteMode.HISTORY, merge_keys=("id",), history=HistoryOptions())
    df = good_frame().with_columns(is_current=pl.lit(True))
    c = conform(df, s, None)
    assert c.frame.columns == ["id", "day", "name", "is_current"]
