"""ClickHouse SQL rendering: quoted names, SELECTs of source specs, DDL of declared tables,
and the SQL pushdown objects (:class:`ClickHouseRelation`, :class:`ClickHouseQuery`).

Every identifier goes through :func:`qi` and every literal through
:func:`loom_resources.predicates.sql_literal`, so names and values cannot inject SQL.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import polars as pl

from loom_resources.clickhouse_types import from_clickhouse, to_clickhouse
from loom_resources.dtypes import ColumnSchema, Schema
from loom_resources.errors import SpecError
from loom_resources.model import TableRef, TargetSpec, WriteMode
from loom_resources.polars_types import polars_schema
from loom_resources.predicates import Predicate, quote_identifier, sql_literal, to_sql

if TYPE_CHECKING:
    from loom_resources.clickhouse import ClickHouseResource

__all__ = ["ClickHouseQuery", "ClickHouseRelation", "create_table_sql", "lit", "qi", "qt"]

# Engines whose rows collapse at merge time: reads add FINAL so readers see merged rows.
_COLLAPSING = ("Replacing", "Collapsing", "Summing", "Aggregating")
# Types Arrow output cannot give back as their Loom type; read as text instead.
_AS_TEXT = re.compile(r"^(Nullable\()?(Enum8|Enum16|UUID|IPv4|IPv6)\b")


def qi(name: str) -> str:
    """Quote one identifier."""
    return quote_identifier(name, "clickhouse")


def qt(ref: TableRef | tuple[str, str]) -> str:
    """Quote ``database.table``."""
    db, table = (ref.schema, ref.table) if isinstance(ref, TableRef) else ref
    return f"{qi(db)}.{qi(table)}"


def lit(value: Any) -> str:
    """Render a literal with quotes and backslashes escaped."""
    return sql_literal(value, "clickhouse")


def needs_final(engine: str) -> bool:
    """Whether reads of a table with this engine must use FINAL to see merged rows."""
    return any(e in engine for e in _COLLAPSING)


def select_sql(
    ref: TableRef,
    columns: Sequence[tuple[str, str]],
    *,
    engine: str = "",
    predicate: Predicate | None = None,
) -> str:
    """``SELECT`` the given ``(name, clickhouse type)`` columns of ``ref``, with FINAL for
    collapsing engines and the bound predicate as WHERE."""
    exprs = [f"toString({qi(n)}) AS {qi(n)}" if _AS_TEXT.match(ty) else qi(n) for n, ty in columns]
    sql = f"SELECT {', '.join(exprs)} FROM {qt(ref)}"
    if needs_final(engine):
        sql += " FINAL"
    if predicate is not None:
        sql += f" WHERE {to_sql(predicate, 'clickhouse')}"
    return sql


def _check_clause(text: str, what: str, spec: TargetSpec) -> str:
    # Engine/TTL/partition expressions are code, declared by the engineer; still refuse statement breaks.
    if ";" in text:
        raise SpecError(f"table {spec.ref}: ClickHouse {what} {text!r} must not contain ';'")
    return text


def table_engine(spec: TargetSpec) -> str:
    """The engine a declared table is created with; merge tables default to ReplacingMergeTree."""
    engine = _check_clause(spec.clickhouse.engine, "engine", spec)
    if spec.mode is WriteMode.MERGE and engine.strip() == "MergeTree":
        return "ReplacingMergeTree"
    return engine


def engine_clause(spec: TargetSpec) -> str:
    """``ENGINE = ... PARTITION BY ... ORDER BY ... TTL ... SETTINGS ...`` of a declared table."""
    opts = spec.clickhouse
    order = opts.order_by or spec.merge_keys
    order_sql = f"({', '.join(qi(c) for c in order)})" if order else "tuple()"
    if opts.partition_by:
        part_sql: str | None = _check_clause(opts.partition_by, "partition_by", spec)
    elif spec.partition_by:
        cols = [qi(c) for c in spec.partition_by]
        part_sql = cols[0] if len(cols) == 1 else f"({', '.join(cols)})"
    else:
        part_sql = None
    sql = f"ENGINE = {table_engine(spec)}"
    if part_sql:
        sql += f" PARTITION BY {part_sql}"
    sql += f" ORDER BY {order_sql}"
    if opts.ttl:
        sql += f" TTL {_check_clause(opts.ttl, 'ttl', spec)}"
    # deduplication window: insert_deduplication_token works on non-replicated tables too
    sql += " SETTINGS non_replicated_deduplication_window = 1000, allow_nullable_key = 1"
    return sql


def columns_sql(columns: Sequence[tuple[str, str]]) -> str:
    """``(`a` Int64, `b` Nullable(String))`` from ``(name, clickhouse type)`` pairs."""
    return "(" + ", ".join(f"{qi(n)} {ty}" for n, ty in columns) + ")"


def ch_columns(columns: Schema) -> list[tuple[str, str]]:
    """``(name, clickhouse type)`` of declared columns (raises on unstorable types)."""
    return [(c.name, to_clickhouse(c)) for c in columns]


def create_table_sql(ref: TableRef, columns: Sequence[tuple[str, str]], engine_sql: str) -> str:
    """``CREATE TABLE`` statement for ``ref``."""
    return f"CREATE TABLE {qt(ref)} {columns_sql(columns)} {engine_sql}"


def partition_predicate_sql(values: Sequence[Mapping[str, Any]]) -> str:
    """SQL condition true for rows inside any of the given partitions (``false`` for none)."""
    if not values:
        return "false"
    ors = [" AND ".join(f"{qi(k)} = {lit(v)}" for k, v in p.items()) for p in values]
    return "(" + " OR ".join(f"({o})" for o in ors) + ")"


# --- SQL pushdown -------------------------------------------------------------------------


@dataclass(frozen=True)
class ClickHouseRelation:
    """A source table that lives in a ClickHouse store, passed to ``execute_sql`` in place of a
    frame so the SQL can run inside ClickHouse. Create with :meth:`ClickHouseResource.relation`.

    Attributes:
        ref: The table.
        store: The store's URL without credentials (pushdown needs every source in one store).
        select: The SELECT that yields the source (projection, predicate and FINAL applied).
    """

    ref: TableRef
    store: str
    select: str


@dataclass(frozen=True)
class ClickHouseQuery:
    """A SQL result that stays inside ClickHouse until written or read.

    Returned by :meth:`ClickHouseResource.execute_sql` when every source lives in that
    ClickHouse. Writing it with the same resource runs ``INSERT INTO ... SELECT`` inside
    ClickHouse; :meth:`to_lazyframe` pulls it into Polars (spooled, bounded memory).
    """

    sql: str
    resource: ClickHouseResource = field(repr=False)
    sources: tuple[TableRef, ...] = ()

    #: Where the SQL ran, reported in materialization metadata.
    engine_name: ClassVar[str] = "clickhouse"

    def ch_columns(self) -> list[tuple[str, str]]:
        """``(name, clickhouse type)`` of the result, from ``DESCRIBE`` (no data is read)."""
        return self.resource._describe_query(self.sql)

    def loom_schema(self) -> Schema:
        """The result's columns in the Loom table model."""
        out = []
        for name, ty in self.ch_columns():
            dtype, nullable = from_clickhouse(ty)
            out.append(ColumnSchema(name, dtype, nullable))
        return tuple(out)

    def collect_schema(self) -> pl.Schema:
        """The result's Polars schema, without running the query."""
        return polars_schema(self.loom_schema())

    def to_lazyframe(self, *, streaming: bool = True) -> pl.LazyFrame:
        """Run the query and return its rows as a LazyFrame (spooled to disk when streaming)."""
        return self.resource._read_sql(self.sql, self.loom_schema(), self.ch_columns(), streaming=streaming)

    def collect(self) -> pl.DataFrame:
        """Run the query and return its rows."""
        return self.to_lazyframe(streaming=False).collect()


_LEADING_WITH = re.compile(r"^\s*WITH\s", re.IGNORECASE)


def bind_aliases(relations: Mapping[str, ClickHouseRelation], query: str) -> str:
    """Prefix ``query`` with one CTE per alias, so the aliases name the real tables."""
    ctes = ", ".join(f"{qi(alias)} AS ({rel.select})" for alias, rel in relations.items())
    m = _LEADING_WITH.match(query)
    if m:
        return f"WITH {ctes}, {query[m.end():]}"
    return f"WITH {ctes} {query}"
