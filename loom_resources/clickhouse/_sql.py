"""ClickHouse SQL rendering: quoted names, literals, conditions, SELECTs of source specs and
DDL of declared tables.

Every identifier goes through :func:`qi` and every literal through
:func:`loom_resources.predicates.sql_literal`, so names and values cannot inject SQL.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from loom_resources.clickhouse._types import to_clickhouse
from loom_resources.dtypes import Schema
from loom_resources.errors import SpecError
from loom_resources.model import TableRef, TargetSpec, WriteMode
from loom_resources.predicates import Predicate, quote_identifier, sql_literal, to_sql

__all__ = ["create_table_sql", "lit", "qi", "qt", "render"]

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
    from loom_resources.clickhouse._cluster import replicated_engine  # it renders with this module

    sql = f"ENGINE = {replicated_engine(spec, table_engine(spec))}"
    if part_sql:
        sql += f" PARTITION BY {part_sql}"
    sql += f" ORDER BY {order_sql}"
    if opts.ttl:
        sql += f" TTL {_check_clause(opts.ttl, 'ttl', spec)}"
    # no insert deduplication window: every write inserts into a fresh staging table and is
    # published exactly once through the ledger, and the window's block hashing costs ~20% of
    # insert time
    sql += " SETTINGS allow_nullable_key = 1"
    return sql


def columns_sql(columns: Sequence[tuple[str, str]]) -> str:
    """``(`a` Int64, `b` Nullable(String))`` from ``(name, clickhouse type)`` pairs."""
    return "(" + ", ".join(f"{qi(n)} {ty}" for n, ty in columns) + ")"


def ch_columns(columns: Schema) -> list[tuple[str, str]]:
    """``(name, clickhouse type)`` of declared columns (raises on unstorable types)."""
    return [(c.name, to_clickhouse(c)) for c in columns]


def create_table_sql(ref: TableRef, columns: Sequence[tuple[str, str]], engine_sql: str, on_cluster: str = "") -> str:
    """``CREATE TABLE`` statement for ``ref`` (``on_cluster``: `` ON CLUSTER `c``` or ``""``)."""
    return f"CREATE TABLE {qt(ref)}{on_cluster} {columns_sql(columns)} {engine_sql}"


def render(pred: Predicate) -> str:
    """A bound predicate as a ClickHouse condition (an empty OR is ``false``)."""
    return to_sql(pred, "clickhouse")
