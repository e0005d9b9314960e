"""Exact mapping between Loom data types and ClickHouse type strings.

Rules (the writer creates tables with :func:`to_clickhouse`, discovery reads them back with
:func:`from_clickhouse`; :func:`storable` says what a declared type reads back as):

- integers, floats, ``Decimal(p, s)``, ``Bool``, ``String``, ``UInt64`` (kept unsigned) map 1:1;
- ``Date`` -> ``Date32`` (the full Polars date range), ``Time`` -> ``Time64(9)``;
- ``Datetime(unit, tz)`` -> ``DateTime64(3|6|9[, 'tz'])``; a naive datetime is stored as its
  UTC epoch and read back naive;
- ``Binary`` -> ``String`` (ClickHouse strings are bytes): it reads back as ``String``;
- ``Categorical`` -> ``LowCardinality(String)``; ``Enum`` -> ``Enum8``/``Enum16``;
- ``List(T)`` -> ``Array(Nullable(T))`` and ``Struct`` -> ``Tuple(name T, ...)``. ClickHouse
  cannot wrap ``Array``/``Tuple`` in ``Nullable``, so such columns are stored non-nullable and
  the writer rejects NULL lists/structs instead of turning them into empty values;
- ``Duration`` and ``Null`` have no storable ClickHouse type (interval types cannot be stored,
  ``Nullable(Nothing)`` cannot be a column): :class:`UnsupportedTypeError` names the column.
"""

from __future__ import annotations

import re

from loom_resources import dtypes as t
from loom_resources.dtypes import ColumnSchema
from loom_resources.errors import UnsupportedTypeError

__all__ = ["from_clickhouse", "storable", "to_clickhouse", "type_of"]

_SIMPLE_TO_CH: dict[type[t.DataType], str] = {
    t.Int8: "Int8", t.Int16: "Int16", t.Int32: "Int32", t.Int64: "Int64",
    t.UInt8: "UInt8", t.UInt16: "UInt16", t.UInt32: "UInt32", t.UInt64: "UInt64",
    t.Float32: "Float32", t.Float64: "Float64", t.String: "String", t.Binary: "String",
    t.Boolean: "Bool", t.Date: "Date32", t.Time: "Time64(9)",
}
_SIMPLE_FROM_CH: dict[str, t.DataType] = {
    "Int8": t.Int8(), "Int16": t.Int16(), "Int32": t.Int32(), "Int64": t.Int64(),
    "UInt8": t.UInt8(), "UInt16": t.UInt16(), "UInt32": t.UInt32(), "UInt64": t.UInt64(),
    "Float32": t.Float32(), "Float64": t.Float64(), "String": t.String(), "Bool": t.Boolean(),
    "Boolean": t.Boolean(), "Date": t.Date(), "Date32": t.Date(), "Time": t.Time(), "Nothing": t.Null(),
    "UUID": t.String(), "IPv4": t.String(), "IPv6": t.String(),
}
_UNIT_PRECISION = {"ms": 3, "us": 6, "ns": 9}


def _quote_str(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _quote_name(name: str) -> str:
    # bare when plain, as system.columns prints it, so rendered and stored types compare equal
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        return name
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def _unsupported(where: str, dtype: t.DataType, why: str) -> UnsupportedTypeError:
    return UnsupportedTypeError(f"column {where!r}: ClickHouse cannot store {dtype} ({why})")


def type_of(dtype: t.DataType, nullable: bool, *, column: str = "?") -> str:
    """Render ``dtype`` as a ClickHouse type string; ``column`` names errors."""
    if isinstance(dtype, t.Categorical):
        return "LowCardinality(Nullable(String))" if nullable else "LowCardinality(String)"
    if isinstance(dtype, t.List):
        return f"Array({type_of(dtype.inner, True, column=column)})"
    if isinstance(dtype, t.Struct):
        if not dtype.fields:
            raise _unsupported(column, dtype, "a struct needs at least one field")
        parts = ", ".join(f"{_quote_name(f.name)} {type_of(f.dtype, f.nullable, column=column)}" for f in dtype.fields)
        return f"Tuple({parts})"
    base = _SIMPLE_TO_CH.get(type(dtype))
    if base is None:
        if isinstance(dtype, t.Decimal):
            base = f"Decimal({dtype.precision}, {dtype.scale})"
        elif isinstance(dtype, t.Datetime):
            p = _UNIT_PRECISION[dtype.unit]
            base = f"DateTime64({p}, {_quote_str(dtype.tz)})" if dtype.tz else f"DateTime64({p})"
        elif isinstance(dtype, t.Enum):
            n = len(dtype.categories)
            if n == 0:
                raise _unsupported(column, dtype, "an enum needs at least one category")
            if n > 32767:
                raise _unsupported(column, dtype, "Enum16 holds at most 32767 categories")
            pairs = ", ".join(f"{_quote_str(c)} = {i}" for i, c in enumerate(dtype.categories, start=1))
            base = f"Enum{'8' if n <= 127 else '16'}({pairs})"
        elif isinstance(dtype, t.Duration):
            raise _unsupported(column, dtype, "interval types cannot be stored; declare an integer count of units")
        elif isinstance(dtype, t.Null):
            raise _unsupported(column, dtype, "Nullable(Nothing) cannot be a column; declare the intended type")
        else:
            raise _unsupported(column, dtype, "no mapping")
    return f"Nullable({base})" if nullable else base


def to_clickhouse(column: ColumnSchema) -> str:
    """The ClickHouse type string of a declared column (with its Nullable/LowCardinality wrapping)."""
    return type_of(column.dtype, column.nullable, column=column.name)


def storable(dtype: t.DataType) -> t.DataType:
    """The Loom type a column declared as ``dtype`` reads back as from ClickHouse.

    Raises:
        UnsupportedTypeError: when ClickHouse cannot store the type at all.
    """
    if isinstance(dtype, t.Binary):
        return t.String()
    if isinstance(dtype, (t.Duration, t.Null)):
        type_of(dtype, True)  # raises with the reason
    if isinstance(dtype, t.List):
        return t.List(storable(dtype.inner))
    if isinstance(dtype, t.Struct):
        return t.Struct(tuple(t.Field(f.name, storable(f.dtype), f.nullable) for f in dtype.fields))
    return dtype


# --- parsing type strings as system.columns prints them ---------------------------------


def _split_args(text: str) -> list[str]:
    """Split ``text`` on top-level commas, respecting quotes, backticks and parentheses."""
    parts: list[str] = []
    depth, buf, quote, i = 0, [], "", 0
    while i < len(text):
        ch = text[i]
        if quote:
            buf.append(ch)
            if ch == "\\" and i + 1 < len(text):
                buf.append(text[i + 1])
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "'`":
            quote = ch
            buf.append(ch)
        elif ch == "(":
            depth += 1
            buf.append(ch)
        elif ch == ")":
            depth -= 1
            buf.append(ch)
        elif ch == "," and depth == 0:
            parts.append("".join(buf).strip())
            buf = []
        else:
            buf.append(ch)
        i += 1
    if "".join(buf).strip():
        parts.append("".join(buf).strip())
    return parts


def _unquote(text: str) -> str:
    """Strip the quotes of a '...' or `...` token and undo backslash escapes."""
    body = text[1:-1]
    out, i = [], 0
    while i < len(body):
        if body[i] == "\\" and i + 1 < len(body):
            out.append(body[i + 1])
            i += 2
        elif body[i] == text[0] and i + 1 < len(body) and body[i + 1] == text[0]:
            out.append(body[i])
            i += 2
        else:
            out.append(body[i])
            i += 1
    return "".join(out)


def _tuple_element(text: str) -> tuple[str | None, str]:
    """Split a tuple element into (name, type); unnamed elements have no name."""
    if text.startswith("`"):
        end = 1
        while end < len(text) and not (text[end] == "`" and text[end - 1] != "\\"):
            end += 1
        return _unquote(text[: end + 1]), text[end + 1 :].strip()
    head, sep, rest = text.partition(" ")
    if sep and "(" not in head and rest and not rest.startswith("="):
        return head, rest.strip()
    return None, text


def _precision_unit(p: int) -> t.TimeUnit:
    return "ms" if p <= 3 else "us" if p <= 6 else "ns"


def from_clickhouse(type_string: str) -> tuple[t.DataType, bool]:
    """Parse a ClickHouse type string into ``(Loom type, nullable)``.

    Raises:
        UnsupportedTypeError: naming the type when Loom has no exact equivalent.
    """
    s = type_string.strip()
    name, _, rest = s.partition("(")
    name = name.strip()
    args = _split_args(rest[:-1]) if rest else []
    if not rest and name in _SIMPLE_FROM_CH:
        return _SIMPLE_FROM_CH[name], False
    if name == "Nullable":
        inner, _ = from_clickhouse(args[0])
        return inner, True
    if name == "LowCardinality":
        inner, nullable = from_clickhouse(args[0])
        return (t.Categorical() if isinstance(inner, t.String) else inner), nullable
    if name == "SimpleAggregateFunction" and len(args) == 2:
        return from_clickhouse(args[1])
    if name == "FixedString":
        return t.Binary(), False
    if name in ("Decimal", "Decimal32", "Decimal64", "Decimal128"):
        if name == "Decimal":
            p, sc = int(args[0]), int(args[1]) if len(args) > 1 else 0
        else:
            p, sc = {"Decimal32": 9, "Decimal64": 18, "Decimal128": 38}[name], int(args[0])
        if p > 38:
            raise UnsupportedTypeError(f"ClickHouse type {type_string} has more than 38 digits")
        return t.Decimal(p, sc), False
    if name == "DateTime64":
        tz = _unquote(args[1]) if len(args) > 1 else None
        return t.Datetime(_precision_unit(int(args[0])), tz), False
    if name == "DateTime":
        return t.Datetime("ms", _unquote(args[0]) if args else None), False
    if name == "Time64":
        return t.Time(), False
    if name in ("Enum8", "Enum16", "Enum"):
        pairs = []
        for a in args:
            label, _, value = a.rpartition("=")
            pairs.append((int(value.strip()), _unquote(label.strip())))
        return t.Enum(tuple(label for _, label in sorted(pairs))), False
    if name == "Array":
        inner, _ = from_clickhouse(args[0])
        return t.List(inner), False
    if name == "Tuple":
        fields = []
        for i, a in enumerate(args, start=1):
            fname, ftype = _tuple_element(a)
            fdtype, fnull = from_clickhouse(ftype)
            fields.append(t.Field(fname or str(i), fdtype, fnull))
        return t.Struct(tuple(fields)), False
    if name == "Map":
        key, _ = from_clickhouse(args[0])
        val, vnull = from_clickhouse(args[1])
        # Arrow (and Polars) read a Map as a list of key/value structs
        return t.List(t.Struct((t.Field("key", key, False), t.Field("value", val, vnull)))), False
    raise UnsupportedTypeError(f"ClickHouse type {type_string} has no Loom equivalent")
