"""Round trips of every Loom data type through DeltaResource, read back with deltalake.

For each declared type: the Delta log holds the documented Delta type, the schema maps back to
``storable(declared)``, and the values read back equal the written ones.
"""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from deltalake import DeltaTable

from loom_resources import dtypes as t
from loom_resources.delta import DeltaResource
from loom_resources.delta._types import from_delta, schema_from_delta, storable, to_delta
from loom_resources.dtypes import ColumnSchema
from loom_resources.errors import DataValidationError, UnsupportedTypeError
from loom_resources.model import RunParams, TargetSpec
from loom_resources.polars_types import to_polars

UTC = dt.UTC
CASES: list[tuple[str, str, list[Any], str]] = [
    # declared type, Delta type in the log, values (None = null), reads back as
    ("int8", "byte", [-128, 127, None], "int8"),
    ("int16", "short", [-32768, 32767, None], "int16"),
    ("int32", "integer", [-(2**31), 2**31 - 1, None], "int32"),
    ("int64", "long", [-(2**63), 2**63 - 1, None], "int64"),
    ("uint8", "short", [0, 255, None], "int16"),
    ("uint16", "integer", [0, 65535, None], "int32"),
    ("uint32", "long", [0, 2**32 - 1, None], "int64"),
    ("float32", "float", [1.5, -0.25, None], "float32"),
    ("float64", "double", [1e300, -2.5, None], "float64"),
    ("decimal(18,2)", "decimal(18,2)", [decimal.Decimal("12345.67"), decimal.Decimal("-0.01"), None], "decimal(18,2)"),
    ("decimal(38,10)", "decimal(38,10)", [decimal.Decimal("1234567890123456789012345678.0123456789"), None, None],
     "decimal(38,10)"),
    ("string", "string", ["a", "ünï'code", None], "string"),
    ("binary", "binary", [b"\x00\xff", b"", None], "binary"),
    ("boolean", "boolean", [True, False, None], "boolean"),
    ("date", "date", [dt.date(1970, 1, 1), dt.date(2999, 12, 31), None], "date"),
    ("categorical", "string", ["x", "y", None], "string"),
    ("enum('lo','hi')", "string", ["lo", "hi", None], "string"),
    ("datetime(ms)", "timestamp_ntz", [dt.datetime(2024, 1, 1, 5, 6, 7, 8000), None, None], "datetime(us)"),
    ("datetime(us)", "timestamp_ntz", [dt.datetime(2024, 1, 1, 5, 6, 7, 8), dt.datetime(1900, 1, 1), None],
     "datetime(us)"),
    ("datetime(ns)", "timestamp_ntz", [dt.datetime(2024, 1, 1, 5, 6, 7, 8), None, None], "datetime(us)"),
    ("datetime(us, UTC)", "timestamp", [dt.datetime(2024, 1, 1, 5, tzinfo=UTC), None, None], "datetime(us, UTC)"),
    ("datetime(ms, Europe/Berlin)", "timestamp", [dt.datetime(2024, 6, 1, 5, tzinfo=UTC), None, None],
     "datetime(us, UTC)"),
    ("list<int64>", "array<long>", [[1, None, 3], [], None], "list<int64>"),
    ("list<uint8>", "array<short>", [[0, 255], None, []], "list<int16>"),
    ("struct<a: int32, b: string, c: list<enum('p','q')>>", "struct", [{"a": 1, "b": "x", "c": ["p"]}, None,
     {"a": None, "b": None, "c": None}], "struct<a: int32, b: string, c: list<string>>"),
    ("list<struct<k: string, v: decimal(10,3)>>", "array<struct>", [[{"k": "a", "v": decimal.Decimal("1.500")}], None, []],
     "list<struct<k: string, v: decimal(10,3)>>"),
]


@pytest.fixture(params=["polars", "delta-rs"])
def delta(tmp_path: Path, request: pytest.FixtureRequest) -> DeltaResource:
    """Both Parquet writers store and read back every type the same way."""
    return DeltaResource(root=str(tmp_path), parquet_writer=request.param)


def _series(declared: t.DataType, values: list[Any]) -> pl.Series:
    ptype = to_polars(declared)
    if isinstance(declared, t.Datetime) and declared.tz:
        base = pl.Series("v", values, dtype=pl.Datetime(declared.unit, "UTC"))
        return base.dt.convert_time_zone(declared.tz)
    return pl.Series("v", values, dtype=ptype)


def _delta_type_name(dtype: Any) -> str:
    name = getattr(dtype, "type", "")
    if name == "array":
        return f"array<{_delta_type_name(dtype.element_type)}>"
    return str(name)


@pytest.mark.parametrize(("declared", "delta_type", "values", "reads_as"), CASES, ids=[c[0] for c in CASES])
def test_round_trip(delta: DeltaResource, declared: str, delta_type: str, values: list[Any], reads_as: str) -> None:
    dtype = t.parse_dtype(declared)
    cols = (ColumnSchema("id", t.Int64(), nullable=False), ColumnSchema("v", dtype))
    ref = f"types.t_{uuid.uuid4().hex[:8]}"
    df = pl.DataFrame({"id": [1, 2, 3]}).with_columns(_series(dtype, values))
    delta.write(df, TargetSpec(ref, "delta", cols), RunParams())

    table = DeltaTable(delta.table_uri(ref))
    field = next(f for f in table.schema().fields if f.name == "v")
    assert _delta_type_name(field.type) == delta_type
    expected_type = t.parse_dtype(reads_as)
    assert storable(dtype) == expected_type
    assert from_delta(field.type) == expected_type
    assert schema_from_delta(table.schema())[1] == ColumnSchema("v", expected_type)

    got = pl.read_delta(delta.table_uri(ref)).sort("id")
    assert got.schema["v"] == to_polars(expected_type)
    want = df.select(pl.col("v").cast(to_polars(expected_type)) if not (isinstance(dtype, t.Datetime) and dtype.tz)
                     else pl.col("v").dt.convert_time_zone("UTC").cast(to_polars(expected_type)))
    assert got["v"].to_list() == want["v"].to_list()


@pytest.mark.parametrize("declared", ["uint64", "time", "duration(us)", "null", "list<uint64>", "struct<a: time>"])
def test_unrepresentable_types_raise_naming_the_column(delta: DeltaResource, declared: str) -> None:
    dtype = t.parse_dtype(declared)
    with pytest.raises(UnsupportedTypeError, match="column 'bad_col"):
        to_delta(dtype, column="bad_col")
    with pytest.raises(UnsupportedTypeError, match="bad_col"):
        storable(dtype, column="bad_col")
    cols = (ColumnSchema("id", t.Int64()), ColumnSchema("bad_col", dtype))
    df = pl.DataFrame({"id": [1]}).with_columns(pl.Series("bad_col", [None], dtype=to_polars(dtype)))
    with pytest.raises(UnsupportedTypeError, match="bad_col"):
        delta.write(df, TargetSpec("types.unsupported", "delta", cols), RunParams())
    assert not delta.exists("types.unsupported")  # type: ignore[arg-type]


def test_sub_microsecond_timestamps_are_rejected(delta: DeltaResource) -> None:
    cols = (ColumnSchema("ts", t.Datetime("ns")),)
    df = pl.DataFrame({"ts": pl.Series([1_000, 1_001], dtype=pl.Int64).cast(pl.Datetime("ns"))})
    with pytest.raises(DataValidationError, match="sub-microsecond"):
        delta.write(df, TargetSpec("types.ns", "delta", cols), RunParams())
    assert not delta.exists("types.ns")  # type: ignore[arg-type]
