"""Backend-neutral data types and column schemas of the Loom table model.

The table model imports neither Dagster nor any backend library: the mappings to Polars,
Arrow, Delta and ClickHouse live in their own ``*_types`` modules.

Types are immutable values. Declare them as objects (``Int64()``, ``Decimal(18, 2)``,
``Datetime("us", "UTC")``) or as strings parsed by :func:`parse_dtype`
(``"int64"``, ``"decimal(18,2)"``, ``"datetime(us, UTC)"``, ``"list<string>"``,
``"struct<a: int32, b: string>"``, ``"enum('a','b')"``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

TimeUnit = Literal["ms", "us", "ns"]


class DataType:
    """Base class of every Loom data type."""

    def __str__(self) -> str:  # pragma: no cover - overridden
        return type(self).__name__.lower()


@dataclass(frozen=True)
class _Simple(DataType):
    def __str__(self) -> str:
        return type(self).__name__.lower()


@dataclass(frozen=True)
class Int8(_Simple):
    """Signed 8-bit integer."""


@dataclass(frozen=True)
class Int16(_Simple):
    """Signed 16-bit integer."""


@dataclass(frozen=True)
class Int32(_Simple):
    """Signed 32-bit integer."""


@dataclass(frozen=True)
class Int64(_Simple):
    """Signed 64-bit integer."""


@dataclass(frozen=True)
class UInt8(_Simple):
    """Unsigned 8-bit integer."""


@dataclass(frozen=True)
class UInt16(_Simple):
    """Unsigned 16-bit integer."""


@dataclass(frozen=True)
class UInt32(_Simple):
    """Unsigned 32-bit integer."""


@dataclass(frozen=True)
class UInt64(_Simple):
    """Unsigned 64-bit integer."""


@dataclass(frozen=True)
class Float32(_Simple):
    """32-bit IEEE float."""


@dataclass(frozen=True)
class Float64(_Simple):
    """64-bit IEEE float."""


@dataclass(frozen=True)
class String(_Simple):
    """UTF-8 string."""


@dataclass(frozen=True)
class Binary(_Simple):
    """Raw bytes."""


@dataclass(frozen=True)
class Boolean(_Simple):
    """True/false."""


@dataclass(frozen=True)
class Date(_Simple):
    """Calendar date without time."""


@dataclass(frozen=True)
class Time(_Simple):
    """Time of day (nanosecond precision in Polars)."""


@dataclass(frozen=True)
class Categorical(_Simple):
    """String with dictionary encoding and open categories."""


@dataclass(frozen=True)
class Null(_Simple):
    """Column that only holds nulls."""


@dataclass(frozen=True)
class Decimal(DataType):
    """Fixed-point decimal with ``precision`` digits, ``scale`` of them after the point."""

    precision: int
    scale: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.precision <= 38:
            raise ValueError(f"decimal precision must be 1..38, got {self.precision}")
        if not 0 <= self.scale <= self.precision:
            raise ValueError(f"decimal scale must be 0..precision, got {self.scale}")

    def __str__(self) -> str:
        return f"decimal({self.precision},{self.scale})"


@dataclass(frozen=True)
class Datetime(DataType):
    """Timestamp with a unit; ``tz`` None means a naive (wall-clock) timestamp."""

    unit: TimeUnit = "us"
    tz: str | None = None

    def __post_init__(self) -> None:
        if self.unit not in ("ms", "us", "ns"):
            raise ValueError(f"datetime unit must be ms, us or ns, got {self.unit!r}")

    def __str__(self) -> str:
        return f"datetime({self.unit}, {self.tz})" if self.tz else f"datetime({self.unit})"


@dataclass(frozen=True)
class Duration(DataType):
    """Elapsed time with a unit."""

    unit: TimeUnit = "us"

    def __post_init__(self) -> None:
        if self.unit not in ("ms", "us", "ns"):
            raise ValueError(f"duration unit must be ms, us or ns, got {self.unit!r}")

    def __str__(self) -> str:
        return f"duration({self.unit})"


@dataclass(frozen=True)
class List(DataType):
    """Variable-length list of ``inner`` values."""

    inner: DataType

    def __str__(self) -> str:
        return f"list<{self.inner}>"


@dataclass(frozen=True)
class Field:
    """One named field of a :class:`Struct`."""

    name: str
    dtype: DataType
    nullable: bool = True


@dataclass(frozen=True)
class Struct(DataType):
    """Record of named fields."""

    fields: tuple[Field, ...]

    def __str__(self) -> str:
        inner = ", ".join(f"{f.name}: {f.dtype}{'' if f.nullable else ' not null'}" for f in self.fields)
        return f"struct<{inner}>"


@dataclass(frozen=True)
class Enum(DataType):
    """String restricted to a fixed, ordered set of categories."""

    categories: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(set(self.categories)) != len(self.categories):
            raise ValueError(f"enum categories must be unique, got {self.categories}")

    def __str__(self) -> str:
        cats = ",".join("'" + c.replace("\\", "\\\\").replace("'", "\\'") + "'" for c in self.categories)
        return f"enum({cats})"


INTEGER_TYPES: tuple[type[DataType], ...] = (Int8, Int16, Int32, Int64, UInt8, UInt16, UInt32, UInt64)
SIGNED_INTEGER_TYPES: tuple[type[DataType], ...] = (Int8, Int16, Int32, Int64)
UNSIGNED_INTEGER_TYPES: tuple[type[DataType], ...] = (UInt8, UInt16, UInt32, UInt64)
_BITS: dict[type[DataType], int] = {
    Int8: 8, Int16: 16, Int32: 32, Int64: 64, UInt8: 8, UInt16: 16, UInt32: 32, UInt64: 64,
}


def integer_bits(dtype: DataType) -> int | None:
    """Return the width of an integer type, or ``None`` for non-integers."""
    return _BITS.get(type(dtype))


def is_safe_cast(source: DataType, target: DataType) -> bool:
    """Return ``True`` when every value of ``source`` is exactly representable in ``target``.

    Safe: identity, integer widening (signed to wider signed, unsigned to wider unsigned or
    strictly wider signed), float32 to float64, small integers (<= 32 bits) to float64,
    naive datetime unit changes to a finer unit, categorical/enum to string, null to anything.
    """
    if source == target or isinstance(source, Null):
        return True
    sb, tb = integer_bits(source), integer_bits(target)
    if sb is not None and tb is not None:
        s_signed = isinstance(source, SIGNED_INTEGER_TYPES)
        t_signed = isinstance(target, SIGNED_INTEGER_TYPES)
        if s_signed == t_signed:
            return tb >= sb
        return (not s_signed) and t_signed and tb > sb
    if isinstance(source, Float32) and isinstance(target, Float64):
        return True
    if sb is not None and sb <= 32 and isinstance(target, Float64):
        return True
    if isinstance(source, Datetime) and isinstance(target, Datetime):
        order = {"ms": 0, "us": 1, "ns": 2}
        return source.tz == target.tz and order[target.unit] >= order[source.unit]
    if isinstance(source, (Categorical, Enum)) and isinstance(target, String):
        return True
    if isinstance(source, String) and isinstance(target, Categorical):
        return True
    if isinstance(source, List) and isinstance(target, List):
        return is_safe_cast(source.inner, target.inner)
    return False


@dataclass(frozen=True)
class ColumnSchema:
    """One column of a table: its name, backend-neutral type and nullability.

    ``dtype`` may be given as a string; it is parsed with :func:`parse_dtype`.
    """

    name: str
    dtype: DataType
    nullable: bool = True

    if TYPE_CHECKING:  # the generated __init__ also takes a type string; tell the type checker

        def __init__(self, name: str, dtype: DataType | str, nullable: bool = True) -> None: ...

    def __post_init__(self) -> None:
        if isinstance(self.dtype, str):
            object.__setattr__(self, "dtype", parse_dtype(self.dtype))
        if not isinstance(self.dtype, DataType):
            raise TypeError(f"column {self.name!r}: dtype must be a DataType or string, got {self.dtype!r}")
        if not self.name or not isinstance(self.name, str):
            raise ValueError(f"column name must be a non-empty string, got {self.name!r}")

    def __str__(self) -> str:
        return f"{self.name} {self.dtype}{'' if self.nullable else ' not null'}"


# --- string parser -------------------------------------------------------------------------
# Hand-written because no library parses this small, backend-neutral type grammar.

_SIMPLE: dict[str, DataType] = {
    "int8": Int8(), "int16": Int16(), "int32": Int32(), "int64": Int64(),
    "uint8": UInt8(), "uint16": UInt16(), "uint32": UInt32(), "uint64": UInt64(),
    "float32": Float32(), "float64": Float64(), "float": Float64(), "double": Float64(),
    "string": String(), "str": String(), "utf8": String(), "binary": Binary(),
    "boolean": Boolean(), "bool": Boolean(), "date": Date(), "time": Time(),
    "categorical": Categorical(), "null": Null(), "datetime": Datetime(), "duration": Duration(),
}


def _split_top(text: str, sep: str = ",") -> list[str]:
    parts, depth, buf, quote, escaped = [], 0, "", False, False
    for ch in text:
        if quote and escaped:
            escaped = False
        elif quote and ch == "\\":
            escaped = True
        elif ch == "'":
            quote = not quote
        if not quote and ch in "<(":
            depth += 1
        elif not quote and ch in ">)":
            depth -= 1
        if ch == sep and depth == 0 and not quote:
            parts.append(buf.strip())
            buf = ""
        else:
            buf += ch
    if buf.strip():
        parts.append(buf.strip())
    return parts


def parse_dtype(text: str) -> DataType:
    """Parse a type string such as ``"decimal(18,2)"`` or ``"list<int64>"``.

    Raises:
        ValueError: naming the text when it is not a known type.
    """
    t = text.strip()
    low = t.lower()
    if low in _SIMPLE:
        return _SIMPLE[low]
    m = re.fullmatch(r"decimal\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\)", low)
    if m:
        return Decimal(int(m.group(1)), int(m.group(2) or 0))
    m = re.fullmatch(r"datetime\(\s*(ms|us|ns)\s*(?:,\s*(.+?)\s*)?\)", t, flags=re.IGNORECASE)
    if m:
        tz = m.group(2)
        return Datetime(m.group(1).lower(), None if tz in (None, "", "None") else tz)  # type: ignore[arg-type]
    m = re.fullmatch(r"duration\(\s*(ms|us|ns)\s*\)", low)
    if m:
        return Duration(m.group(1))  # type: ignore[arg-type]
    if low.startswith("list<") and low.endswith(">"):
        try:
            return List(parse_dtype(t[5:-1]))
        except ValueError as exc:
            raise ValueError(f"{exc} in {text!r}") from exc
    if low.startswith("struct<") and low.endswith(">"):
        fields = []
        for part in _split_top(t[7:-1]):
            name, _, rest = part.partition(":")
            if not rest:
                raise ValueError(f"struct field needs 'name: type', got {part!r} in {text!r}")
            rest = rest.strip()
            nullable = True
            if rest.lower().endswith(" not null"):
                nullable, rest = False, rest[: -len(" not null")]
            fields.append(Field(name.strip(), parse_dtype(rest), nullable))
        return Struct(tuple(fields))
    if low.startswith("enum(") and low.endswith(")"):
        cats = [c.strip() for c in _split_top(t[5:-1])]
        if not all(len(c) >= 2 and c[0] == c[-1] == "'" for c in cats):
            raise ValueError(f"enum categories must be quoted strings, got {text!r}")
        return Enum(tuple(re.sub(r"\\([\\'])", r"\1", c[1:-1]) for c in cats))
    raise ValueError(f"unknown data type {text!r}")


Schema = tuple[ColumnSchema, ...]


def schema_diff(expected: Schema, actual: Schema, *, check_order: bool = True) -> list[str]:
    """Describe how ``actual`` differs from ``expected`` (names, types, nullability, order).

    Returns:
        One line per difference; an empty list when the schemas match.
    """
    problems: list[str] = []
    exp = {c.name: c for c in expected}
    act = {c.name: c for c in actual}
    for c in expected:
        a = act.get(c.name)
        if a is None:
            problems.append(f"column {c.name!r} ({c.dtype}) is missing")
            continue
        if a.dtype != c.dtype:
            problems.append(f"column {c.name!r} has type {a.dtype}, expected {c.dtype}")
        if a.nullable != c.nullable:
            want = "nullable" if c.nullable else "not null"
            problems.append(f"column {c.name!r} nullability differs: expected {want}")
    for a in actual:
        if a.name not in exp:
            problems.append(f"column {a.name!r} ({a.dtype}) is not declared")
    if check_order and not problems:
        if [c.name for c in expected] != [a.name for a in actual]:
            problems.append(
                f"column order differs: expected {[c.name for c in expected]}, got {[a.name for a in actual]}"
            )
    return problems
