"""Exact mapping between Loom data types and Arrow data types."""

from __future__ import annotations

import pyarrow as pa

from loom_resources import dtypes as t
from loom_resources.dtypes import ColumnSchema, Schema
from loom_resources.errors import UnsupportedTypeError

_TO_PA: dict[type[t.DataType], pa.DataType] = {
    t.Int8: pa.int8(), t.Int16: pa.int16(), t.Int32: pa.int32(), t.Int64: pa.int64(),
    t.UInt8: pa.uint8(), t.UInt16: pa.uint16(), t.UInt32: pa.uint32(), t.UInt64: pa.uint64(),
    t.Float32: pa.float32(), t.Float64: pa.float64(), t.String: pa.large_string(),
    t.Binary: pa.large_binary(), t.Boolean: pa.bool_(), t.Date: pa.date32(),
    t.Time: pa.time64("ns"), t.Null: pa.null(),
}


def to_arrow(dtype: t.DataType) -> pa.DataType:
    """Return the Arrow type of a Loom type (strings and lists use the large variants, as
    Polars exports them)."""
    simple = _TO_PA.get(type(dtype))
    if simple is not None:
        return simple
    if isinstance(dtype, t.Decimal):
        return pa.decimal128(dtype.precision, dtype.scale)
    if isinstance(dtype, t.Datetime):
        return pa.timestamp(dtype.unit, dtype.tz)
    if isinstance(dtype, t.Duration):
        return pa.duration(dtype.unit)
    if isinstance(dtype, t.List):
        return pa.large_list(to_arrow(dtype.inner))
    if isinstance(dtype, t.Struct):
        return pa.struct([pa.field(f.name, to_arrow(f.dtype), f.nullable) for f in dtype.fields])
    if isinstance(dtype, (t.Categorical, t.Enum)):
        return pa.dictionary(pa.uint32(), pa.large_string())
    raise UnsupportedTypeError(f"no Arrow type for {dtype}")


def from_arrow(dtype: pa.DataType) -> t.DataType:
    """Return the Loom type of an Arrow type. Dictionary-encoded strings become categorical."""
    for loom_cls, pa_type in _TO_PA.items():
        if dtype == pa_type:
            return loom_cls()
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype) or pa.types.is_string_view(dtype):
        return t.String()
    if pa.types.is_binary(dtype) or pa.types.is_large_binary(dtype) or pa.types.is_binary_view(dtype):
        return t.Binary()
    if pa.types.is_fixed_size_binary(dtype):
        return t.Binary()
    if pa.types.is_time(dtype):
        return t.Time()
    if pa.types.is_date(dtype):
        return t.Date()
    if pa.types.is_decimal(dtype):
        return t.Decimal(dtype.precision, dtype.scale)
    if pa.types.is_timestamp(dtype):
        return t.Datetime(dtype.unit if dtype.unit != "s" else "ms", dtype.tz)  # type: ignore[arg-type]
    if pa.types.is_duration(dtype):
        return t.Duration(dtype.unit if dtype.unit != "s" else "ms")  # type: ignore[arg-type]
    if pa.types.is_list(dtype) or pa.types.is_large_list(dtype) or pa.types.is_fixed_size_list(dtype):
        return t.List(from_arrow(dtype.value_type))
    if pa.types.is_list_view(dtype) or pa.types.is_large_list_view(dtype):
        return t.List(from_arrow(dtype.value_type))
    if pa.types.is_struct(dtype):
        return t.Struct(tuple(t.Field(f.name, from_arrow(f.type), f.nullable) for f in dtype))
    if pa.types.is_dictionary(dtype):
        return t.Categorical()
    raise UnsupportedTypeError(f"no Loom type for Arrow type {dtype}")


def arrow_schema(columns: Schema) -> pa.Schema:
    """Return the Arrow schema of declared columns, with nullability."""
    return pa.schema([pa.field(c.name, to_arrow(c.dtype), c.nullable) for c in columns])


def schema_from_arrow(schema: pa.Schema) -> Schema:
    """Return Loom columns for an Arrow schema."""
    return tuple(ColumnSchema(f.name, from_arrow(f.type), f.nullable) for f in schema)
