"""Exact mapping between Loom data types and Delta Lake types.

Delta has fewer types than the table model, so every declared type has one *storable* type it
is written and read back as (:func:`storable`):

============================  ==========================  ==============================
declared Loom type            Delta type                  reads back as
============================  ==========================  ==============================
int8 / int16 / int32 / int64  byte / short / integer / long  the same
uint8 / uint16 / uint32       short / integer / long      int16 / int32 / int64 (widened)
float32 / float64             float / double              the same
decimal(p,s)                  decimal(p,s)                the same
string / binary / boolean     string / binary / boolean   the same
categorical / enum            string                      string
date                          date                        date
datetime(unit)                timestamp_ntz               datetime(us) (ms widens; ns must
                                                          hold whole microseconds)
datetime(unit, tz)            timestamp (UTC instant)     datetime(us, UTC)
list<T> / struct<...>         array / struct              list / struct of the storable types
uint64, time, duration, null  --                          :class:`UnsupportedTypeError`
============================  ==========================  ==============================
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from loom_resources import dtypes as t
from loom_resources.dtypes import ColumnSchema, DataType, Schema
from loom_resources.errors import UnsupportedTypeError

if TYPE_CHECKING:  # deltalake (~20-40 ms) loads when a table is read or written, not when a code location loads
    from deltalake.schema import ArrayType, MapType, PrimitiveType, StructType
    from deltalake.schema import Schema as DeltaSchema

    DeltaType = PrimitiveType | ArrayType | StructType | MapType

_TO_DELTA: dict[type[DataType], str] = {
    t.Int8: "byte", t.Int16: "short", t.Int32: "integer", t.Int64: "long",
    t.UInt8: "short", t.UInt16: "integer", t.UInt32: "long",
    t.Float32: "float", t.Float64: "double", t.String: "string", t.Binary: "binary",
    t.Boolean: "boolean", t.Date: "date", t.Categorical: "string",
}
_FROM_DELTA: dict[str, DataType] = {
    "byte": t.Int8(), "short": t.Int16(), "integer": t.Int32(), "long": t.Int64(),
    "float": t.Float32(), "double": t.Float64(), "string": t.String(), "binary": t.Binary(),
    "boolean": t.Boolean(), "date": t.Date(), "timestamp": t.Datetime("us", "UTC"),
    "timestamp_ntz": t.Datetime("us"),
}
_WIDENED: dict[type[DataType], DataType] = {t.UInt8: t.Int16(), t.UInt16: t.Int32(), t.UInt32: t.Int64()}
_WHY_NOT: dict[type[DataType], str] = {
    t.UInt64: "Delta has no unsigned 64-bit integer and no wider signed one; declare int64 or decimal(20,0)",
    t.Time: "Delta has no time-of-day type; declare a string or an integer of microseconds",
    t.Duration: "Delta has no duration type; declare an integer count of a unit",
    t.Null: "Delta has no null type; declare the column's real type as nullable",
}


def _unsupported(dtype: DataType, column: str | None) -> UnsupportedTypeError:
    where = f"column {column!r}: " if column else ""
    why = _WHY_NOT.get(type(dtype), "no Delta equivalent")
    return UnsupportedTypeError(f"{where}type {dtype} cannot be stored in Delta Lake ({why})")


def storable(dtype: DataType, *, column: str | None = None) -> DataType:
    """The Loom type a column declared as ``dtype`` reads back as from Delta.

    Raises:
        UnsupportedTypeError: naming ``column`` when Delta cannot represent the type.
    """
    if type(dtype) in _WHY_NOT:
        raise _unsupported(dtype, column)
    if type(dtype) in _WIDENED:
        return _WIDENED[type(dtype)]
    if isinstance(dtype, (t.Categorical, t.Enum)):
        return t.String()
    if isinstance(dtype, t.Datetime):
        return t.Datetime("us", "UTC" if dtype.tz else None)
    if isinstance(dtype, t.List):
        return t.List(storable(dtype.inner, column=column))
    if isinstance(dtype, t.Struct):
        return t.Struct(
            tuple(t.Field(f.name, storable(f.dtype, column=f"{column}.{f.name}" if column else f.name), f.nullable)
                  for f in dtype.fields)
        )
    return dtype


def to_delta(dtype: DataType, *, column: str | None = None) -> DeltaType:
    """The Delta type a declared Loom type is stored as.

    Raises:
        UnsupportedTypeError: naming ``column`` when Delta cannot represent the type.
    """
    from deltalake.schema import ArrayType, PrimitiveType, StructType
    from deltalake.schema import Field as DeltaField

    name = _TO_DELTA.get(type(dtype))
    if name is not None:
        return PrimitiveType(name)
    if isinstance(dtype, t.Enum):
        return PrimitiveType("string")
    if isinstance(dtype, t.Decimal):
        return PrimitiveType(f"decimal({dtype.precision},{dtype.scale})")
    if isinstance(dtype, t.Datetime):
        return PrimitiveType("timestamp" if dtype.tz else "timestamp_ntz")
    if isinstance(dtype, t.List):
        return ArrayType(to_delta(dtype.inner, column=column), contains_null=True)
    if isinstance(dtype, t.Struct):
        return StructType(
            [DeltaField(f.name, to_delta(f.dtype, column=f"{column}.{f.name}" if column else f.name), nullable=f.nullable)
             for f in dtype.fields]
        )
    raise _unsupported(dtype, column)


def from_delta(dtype: Any, *, column: str | None = None) -> DataType:
    """The Loom type of a Delta type (as found in a table's log).

    Raises:
        UnsupportedTypeError: for Delta types the table model lacks (maps, variants).
    """
    from deltalake.schema import ArrayType, PrimitiveType, StructType

    if isinstance(dtype, PrimitiveType):
        name = dtype.type
        if name in _FROM_DELTA:
            return _FROM_DELTA[name]
        if name.startswith("decimal("):
            p, s = name[len("decimal("):-1].split(",")
            return t.Decimal(int(p), int(s))
    if isinstance(dtype, ArrayType):
        return t.List(from_delta(dtype.element_type, column=column))
    if isinstance(dtype, StructType):
        return t.Struct(tuple(t.Field(f.name, from_delta(f.type, column=f.name), f.nullable) for f in dtype.fields))
    where = f"column {column!r}: " if column else ""
    raise UnsupportedTypeError(f"{where}Delta type {dtype} has no Loom equivalent")


def schema_from_delta(schema: DeltaSchema) -> Schema:
    """Loom columns of a Delta schema, in stored order."""
    return tuple(ColumnSchema(f.name, from_delta(f.type, column=f.name), f.nullable) for f in schema.fields)


def storable_columns(columns: Schema) -> Schema:
    """The columns as Delta stores them (see :func:`storable`)."""
    return tuple(ColumnSchema(c.name, storable(c.dtype, column=c.name), c.nullable) for c in columns)
