"""Exact mapping between Loom data types and Polars data types, and predicates as Polars
expressions."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

from loom_resources import dtypes as t
from loom_resources._lazy import lazy_import
from loom_resources.dtypes import ColumnSchema, Schema
from loom_resources.errors import PredicateError, UnsupportedTypeError
from loom_resources.predicates import And, Compare, In, IsNull, Not, Or, Param, Predicate

if TYPE_CHECKING:
    import polars as pl
else:
    pl = lazy_import("polars")  # imported when data moves, not when the code location loads

@cache
def _to_pl() -> dict[type[t.DataType], pl.DataType]:
    """Loom type class -> Polars type, for the types without parameters (built on first use:
    polars is imported when data moves)."""
    return {
        t.Int8: pl.Int8(), t.Int16: pl.Int16(), t.Int32: pl.Int32(), t.Int64: pl.Int64(),
        t.UInt8: pl.UInt8(), t.UInt16: pl.UInt16(), t.UInt32: pl.UInt32(), t.UInt64: pl.UInt64(),
        t.Float32: pl.Float32(), t.Float64: pl.Float64(), t.String: pl.String(), t.Binary: pl.Binary(),
        t.Boolean: pl.Boolean(), t.Date: pl.Date(), t.Time: pl.Time(), t.Categorical: pl.Categorical(),
        t.Null: pl.Null(),
    }


@cache
def _from_pl() -> dict[type[pl.DataType], t.DataType]:
    return {type(v): k() for k, v in _to_pl().items()}


def to_polars(dtype: t.DataType) -> pl.DataType:
    """Return the Polars type of a Loom type."""
    simple = _to_pl().get(type(dtype))
    if simple is not None:
        return simple
    if isinstance(dtype, t.Decimal):
        return pl.Decimal(dtype.precision, dtype.scale)
    if isinstance(dtype, t.Datetime):
        return pl.Datetime(dtype.unit, dtype.tz)
    if isinstance(dtype, t.Duration):
        return pl.Duration(dtype.unit)
    if isinstance(dtype, t.List):
        return pl.List(to_polars(dtype.inner))
    if isinstance(dtype, t.Struct):
        return pl.Struct([pl.Field(f.name, to_polars(f.dtype)) for f in dtype.fields])
    if isinstance(dtype, t.Enum):
        return pl.Enum(list(dtype.categories))
    raise UnsupportedTypeError(f"no Polars type for {dtype}")


def from_polars(dtype: pl.DataType) -> t.DataType:
    """Return the Loom type of a Polars type."""
    simple = _from_pl().get(type(dtype))
    if simple is not None:
        return simple
    if isinstance(dtype, pl.Decimal):
        return t.Decimal(dtype.precision or 38, dtype.scale or 0)
    if isinstance(dtype, pl.Datetime):
        return t.Datetime(dtype.time_unit or "us", dtype.time_zone)  # type: ignore[arg-type]
    if isinstance(dtype, pl.Duration):
        return t.Duration(dtype.time_unit or "us")  # type: ignore[arg-type]
    if isinstance(dtype, pl.List):
        return t.List(from_polars(dtype.inner))  # type: ignore[arg-type]
    if isinstance(dtype, pl.Array):
        return t.List(from_polars(dtype.inner))  # type: ignore[arg-type]
    if isinstance(dtype, pl.Struct):
        return t.Struct(tuple(t.Field(f.name, from_polars(f.dtype)) for f in dtype.fields))  # type: ignore[arg-type]
    if isinstance(dtype, pl.Enum):
        return t.Enum(tuple(dtype.categories.to_list()))
    raise UnsupportedTypeError(f"no Loom type for Polars type {dtype}")


def polars_schema(columns: Schema) -> pl.Schema:
    """Return the Polars schema of declared columns."""
    return pl.Schema([(c.name, to_polars(c.dtype)) for c in columns])


def schema_from_polars(schema: pl.Schema, *, nullable: bool = True) -> Schema:
    """Return Loom columns for a Polars schema (Polars does not track nullability)."""
    return tuple(ColumnSchema(n, from_polars(d), nullable) for n, d in schema.items())


def empty_frame(columns: Schema) -> pl.DataFrame:
    """An empty DataFrame with the declared schema."""
    return pl.DataFrame(schema=polars_schema(columns))


def to_expr(pred: Predicate) -> pl.Expr:
    """Render a bound predicate as a Polars expression (pushed down by ``scan_*``)."""
    if isinstance(pred, Compare):
        if isinstance(pred.value, Param):
            raise PredicateError(f"parameter {pred.value.name!r} is unbound; bind the predicate first")
        c = pl.col(pred.column)
        if pred.value is None:
            if pred.op in ("=", "!="):
                return c.is_null() if pred.op == "=" else c.is_not_null()
            return pl.lit(None, dtype=pl.Boolean)  # like SQL: "a < NULL" is unknown
        v = pl.lit(pred.value)
        ops = {"=": c == v, "!=": c != v, "<": c < v, "<=": c <= v, ">": c > v, ">=": c >= v}
        return ops[pred.op]
    if isinstance(pred, In):
        if isinstance(pred.values, Param):
            raise PredicateError(f"parameter {pred.values.name!r} is unbound; bind the predicate first")
        return pl.col(pred.column).is_in(list(pred.values))
    if isinstance(pred, IsNull):
        return pl.col(pred.column).is_not_null() if pred.negate else pl.col(pred.column).is_null()
    if isinstance(pred, And):
        return pl.all_horizontal([to_expr(p) for p in pred.parts]) if pred.parts else pl.lit(True)
    if isinstance(pred, Or):
        return pl.any_horizontal([to_expr(p) for p in pred.parts]) if pred.parts else pl.lit(False)
    if isinstance(pred, Not):
        return ~to_expr(pred.part)
    raise PredicateError(f"unknown predicate node {pred!r}")
