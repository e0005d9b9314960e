"""A small, backend-neutral predicate language for source filters and replace predicates.

One predicate must become a Polars expression (Delta reads), a ClickHouse SQL condition with
escaped literals, and a delta-rs (DataFusion) SQL condition for partition replaces. No library
renders one expression tree to all three, so this module keeps the tree and its renderers.

Build predicates with :func:`col` and combine them with ``&``, ``|`` and ``~``::

    col("day").between(param("partition_start"), param("partition_end")) & col("country").eq("DE")

``param(name)`` is a placeholder bound from the run's parameters (:meth:`Predicate.bind`).
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from loom_resources.errors import PredicateError

Op = Literal["=", "!=", "<", "<=", ">", ">="]


@dataclass(frozen=True)
class Param:
    """A run parameter placeholder, such as ``partition_start``."""

    name: str


def param(name: str) -> Param:
    """Return a placeholder for the run parameter ``name``."""
    return Param(name)


class Predicate:
    """Base of predicate nodes; combine with ``&``, ``|`` and ``~``."""

    def __and__(self, other: Predicate) -> Predicate:
        return And((self, other))

    def __or__(self, other: Predicate) -> Predicate:
        return Or((self, other))

    def __invert__(self) -> Predicate:
        return Not(self)

    def columns(self) -> set[str]:
        """Return the names of every column the predicate references."""
        raise NotImplementedError

    def params(self) -> set[str]:
        """Return the names of every run parameter the predicate needs."""
        raise NotImplementedError

    def bind(self, values: Mapping[str, Any]) -> Predicate:
        """Replace every :class:`Param` with its value; an unknown parameter is an error."""
        raise NotImplementedError


def _bind_value(v: Any, values: Mapping[str, Any]) -> Any:
    if isinstance(v, Param):
        if v.name not in values:
            raise PredicateError(f"predicate parameter {v.name!r} has no value in this run (known: {sorted(values)})")
        return values[v.name]
    return v


@dataclass(frozen=True)
class Compare(Predicate):
    """``column <op> value``."""

    column: str
    op: Op
    value: Any

    def columns(self) -> set[str]:
        return {self.column}

    def params(self) -> set[str]:
        return {self.value.name} if isinstance(self.value, Param) else set()

    def bind(self, values: Mapping[str, Any]) -> Predicate:
        return Compare(self.column, self.op, _bind_value(self.value, values))


@dataclass(frozen=True)
class In(Predicate):
    """``column IN (values...)``."""

    column: str
    values: tuple[Any, ...] | Param

    def columns(self) -> set[str]:
        return {self.column}

    def params(self) -> set[str]:
        return {self.values.name} if isinstance(self.values, Param) else set()

    def bind(self, values: Mapping[str, Any]) -> Predicate:
        bound = _bind_value(self.values, values)
        if isinstance(bound, (str, bytes)) or not isinstance(bound, Iterable):
            bound = (bound,)  # one value (e.g. partition_key), not its characters
        return In(self.column, tuple(bound))


@dataclass(frozen=True)
class IsNull(Predicate):
    """``column IS NULL`` (or ``IS NOT NULL`` when ``negate``)."""

    column: str
    negate: bool = False

    def columns(self) -> set[str]:
        return {self.column}

    def params(self) -> set[str]:
        return set()

    def bind(self, values: Mapping[str, Any]) -> Predicate:
        return self


@dataclass(frozen=True)
class And(Predicate):
    """Conjunction of predicates."""

    parts: tuple[Predicate, ...]

    def columns(self) -> set[str]:
        return set().union(*(p.columns() for p in self.parts))

    def params(self) -> set[str]:
        return set().union(*(p.params() for p in self.parts))

    def bind(self, values: Mapping[str, Any]) -> Predicate:
        return And(tuple(p.bind(values) for p in self.parts))


@dataclass(frozen=True)
class Or(Predicate):
    """Disjunction of predicates."""

    parts: tuple[Predicate, ...]

    def columns(self) -> set[str]:
        return set().union(*(p.columns() for p in self.parts))

    def params(self) -> set[str]:
        return set().union(*(p.params() for p in self.parts))

    def bind(self, values: Mapping[str, Any]) -> Predicate:
        return Or(tuple(p.bind(values) for p in self.parts))


@dataclass(frozen=True)
class Not(Predicate):
    """Negation of a predicate."""

    part: Predicate

    def columns(self) -> set[str]:
        return self.part.columns()

    def params(self) -> set[str]:
        return self.part.params()

    def bind(self, values: Mapping[str, Any]) -> Predicate:
        return Not(self.part.bind(values))


@dataclass(frozen=True)
class ColumnRef:
    """Builder returned by :func:`col`."""

    name: str

    def eq(self, value: Any) -> Predicate:
        """``column = value``."""
        return Compare(self.name, "=", value)

    def ne(self, value: Any) -> Predicate:
        """``column != value``."""
        return Compare(self.name, "!=", value)

    def lt(self, value: Any) -> Predicate:
        """``column < value``."""
        return Compare(self.name, "<", value)

    def le(self, value: Any) -> Predicate:
        """``column <= value``."""
        return Compare(self.name, "<=", value)

    def gt(self, value: Any) -> Predicate:
        """``column > value``."""
        return Compare(self.name, ">", value)

    def ge(self, value: Any) -> Predicate:
        """``column >= value``."""
        return Compare(self.name, ">=", value)

    def between(self, low: Any, high: Any) -> Predicate:
        """``low <= column <= high`` (both ends inclusive)."""
        return And((Compare(self.name, ">=", low), Compare(self.name, "<=", high)))

    def window(self, start: Any, end: Any) -> Predicate:
        """``start <= column < end`` (half-open, like a Dagster time window)."""
        return And((Compare(self.name, ">=", start), Compare(self.name, "<", end)))

    def is_in(self, values: Iterable[Any] | Param) -> Predicate:
        """``column IN values``."""
        return In(self.name, values if isinstance(values, Param) else tuple(values))

    def is_null(self) -> Predicate:
        """``column IS NULL``."""
        return IsNull(self.name)

    def is_not_null(self) -> Predicate:
        """``column IS NOT NULL``."""
        return IsNull(self.name, negate=True)


def col(name: str) -> ColumnRef:
    """Start a predicate on column ``name``."""
    return ColumnRef(name)


def check_columns(pred: Predicate, known: Iterable[str], *, table: str) -> None:
    """Raise :class:`PredicateError` when ``pred`` references a column not in ``known``."""
    unknown = sorted(pred.columns() - set(known))
    if unknown:
        raise PredicateError(f"predicate on table {table} references unknown column(s) {unknown}")


# --- SQL rendering ----------------------------------------------------------------------

Dialect = Literal["clickhouse", "datafusion"]


def quote_identifier(name: str, dialect: Dialect) -> str:
    """Quote an identifier so any character in it is safe."""
    if dialect == "clickhouse":
        return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"
    return '"' + name.replace('"', '""') + '"'


def sql_literal(value: Any, dialect: Dialect) -> str:
    """Render a Python value as a typed SQL literal with quotes and backslashes escaped."""
    if isinstance(value, Param):
        raise PredicateError(f"parameter {value.name!r} is unbound; bind the predicate first")
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise PredicateError(f"cannot render non-finite float {value!r} as a SQL literal")
        return repr(value)
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, dt.datetime):
        if dialect == "clickhouse":
            if value.tzinfo is not None:
                utc = value.astimezone(dt.UTC).replace(tzinfo=None)
                return f"toDateTime64('{utc.isoformat(sep=' ')}', 6, 'UTC')"
            return f"toDateTime64('{value.isoformat(sep=' ')}', 6)"
        # arrow_cast pins microseconds: DataFusion's TIMESTAMP literals are nanoseconds, which
        # delta-rs cannot compare with Delta's microsecond columns.
        if value.tzinfo is not None:
            utc = value.astimezone(dt.UTC).replace(tzinfo=None)
            return f"arrow_cast('{utc.isoformat()}', 'Timestamp(Microsecond, Some(\"UTC\"))')"
        return f"arrow_cast('{value.isoformat()}', 'Timestamp(Microsecond, None)')"
    if isinstance(value, dt.date):
        if dialect == "clickhouse":
            return f"toDate32('{value.isoformat()}')"
        return f"DATE '{value.isoformat()}'"
    if isinstance(value, str):
        if dialect == "clickhouse":
            return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, bytes):
        return sql_literal(value.decode("utf-8"), dialect)
    raise PredicateError(f"cannot render {type(value).__name__} value {value!r} as a SQL literal")


def to_sql(pred: Predicate, dialect: Dialect, *, qualifier: str | None = None) -> str:
    """Render a bound predicate as a SQL condition in ``dialect``; ``qualifier`` prefixes every
    column (a table alias, as in a MERGE condition). An empty OR is ``false``, an empty AND ``true``."""
    def q(n: str) -> str:
        quoted = quote_identifier(n, dialect)
        return f"{qualifier}.{quoted}" if qualifier else quoted

    def sub(p: Predicate) -> str:
        return to_sql(p, dialect, qualifier=qualifier)

    if isinstance(pred, Compare):
        if pred.value is None:
            if pred.op == "=":
                return f"{q(pred.column)} IS NULL"
            if pred.op == "!=":
                return f"{q(pred.column)} IS NOT NULL"
        return f"{q(pred.column)} {pred.op} {sql_literal(pred.value, dialect)}"
    if isinstance(pred, In):
        if isinstance(pred.values, Param):
            raise PredicateError(f"parameter {pred.values.name!r} is unbound; bind the predicate first")
        if not pred.values:
            return "false"
        return f"{q(pred.column)} IN ({', '.join(sql_literal(v, dialect) for v in pred.values)})"
    if isinstance(pred, IsNull):
        return f"{q(pred.column)} IS {'NOT ' if pred.negate else ''}NULL"
    if isinstance(pred, And):
        return "(" + " AND ".join(sub(p) for p in pred.parts) + ")" if pred.parts else "true"
    if isinstance(pred, Or):
        return "(" + " OR ".join(sub(p) for p in pred.parts) + ")" if pred.parts else "false"
    if isinstance(pred, Not):
        return f"(NOT {sub(pred.part)})"
    raise PredicateError(f"unknown predicate node {pred!r}")
