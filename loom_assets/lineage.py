"""Column-level lineage: for each column of a declared table, the source columns it derives from.

For a SQL body it is derived with sqlglot's lineage (:func:`sqlglot.lineage.lineage`) over the
statement qualified with the sources' columns, known at load (a declared table's stored
columns, an external table's declared ones, or a source's own ``columns=`` projection), so
joins, aliases, aggregates, expressions, CTEs, subqueries, ``UNION`` and ``SELECT *`` resolve
to the columns of the tables the statement reads. Only the columns a value is computed from
count (not those of ``WHERE``, ``JOIN ... ON`` or ``GROUP BY``), as in sqlglot and Dagster's UI.

Unknown means no entry, never a guess: an output column is left out when any of its inputs
cannot be resolved to a source and a column that source has (a star over a source of unknown
columns, a column of a table whose columns are not declared that sqlglot cannot attribute), when
it derives from no column (a literal, ``count(*)``), or when it is not a declared column.

A table (SQL or Python) may declare lineage with ``Table(column_lineage=...)``; a declared
column replaces the derived one. The result is Dagster's ``dagster/column_lineage``
(:class:`dagster.TableColumnLineage`), set on the asset definition and on every materialization
by :mod:`loom_assets.factory`. Derived lineage is remembered across loads
(:mod:`loom_assets.sql_cache`), so an unchanged location loads without sqlglot.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import dagster as dg

from loom_assets.external import ExternalTable
from loom_assets.sql_body import neutral_sql
from loom_assets.sql_cache import LINEAGE_CACHE, ColumnSources
from loom_resources import SpecError

if TYPE_CHECKING:
    from loom_assets.declare import Source, Table

__all__ = ["ColumnRef", "column_lineage", "resolve_declared", "source_columns", "sql_lineage"]

#: A source column in ``Table(column_lineage=...)``: ``"schema.table.column"`` or ``(source, column)``,
#: where ``source`` is the source's alias or its ``schema.table``.
ColumnRef = str | tuple[str, str]

#: Bumped when the derivation changes, so remembered results of an older one are not reused.
_ALGORITHM = 1

_log = logging.getLogger(__name__)
#: A lineage leaf named ``table.column`` with plain identifiers.
_PLAIN_COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\.([A-Za-z_][A-Za-z0-9_]*)$")


def source_columns(source: Source, by_name: Mapping[str, Any]) -> tuple[str, ...] | None:
    """The columns the body sees of ``source``: its projection, else the upstream's stored
    columns; ``None`` when unknown (a plain Dagster asset, an external table declared without
    columns)."""
    if source.columns is not None:
        return tuple(source.columns)
    if source.asset:
        return None
    upstream = by_name.get(str(source.ref))
    if upstream is None:
        return None
    if isinstance(upstream, ExternalTable):
        return None if upstream.columns is None else tuple(c.name for c in upstream.columns)
    return tuple(c.name for c in upstream.target.stored_columns())


def sql_lineage(sql: str, sources: Mapping[str, Sequence[str] | None], *, table: str) -> dict[str, list[tuple[str, str]]]:
    """Each output column of ``sql`` whose inputs are all known -> its ``(source alias, column)``
    pairs, sorted.

    Args:
        sql: The SQL body (``{name}`` parameters are read as ``NULL``: they contribute no column).
        sources: Source alias -> the columns the statement sees, or ``None`` when unknown.
        table: The declaring table, for the log line when sqlglot cannot follow the statement.

    Returns ``{}`` when nothing is known (sqlglot cannot follow the statement).
    """
    neutral = neutral_sql(sql)
    key = json.dumps([_ALGORITHM, neutral, sorted((a, list(c) if c is not None else None) for a, c in sources.items())])
    known = LINEAGE_CACHE.get(key)
    if known is None:
        known = _derive(neutral, sources, table=table)
        LINEAGE_CACHE.put(key, known)
    return {col: [(a, c) for a, c in deps] for col, deps in known.items()}


def _derive(neutral: str, sources: Mapping[str, Sequence[str] | None], *, table: str) -> ColumnSources:
    import sqlglot  # here, not at load: a location whose lineage is cached never needs it
    from sqlglot import exp
    from sqlglot.lineage import lineage

    schema = {alias: dict.fromkeys(cols, "UNKNOWN") for alias, cols in sources.items() if cols is not None}
    try:
        tree = sqlglot.parse_one(neutral, read="clickhouse")
        nodes = lineage(None, tree, schema, dialect="clickhouse", copy=False)
    except Exception as exc:  # noqa: BLE001 - sqlglot's optimizer raises assorted types; lineage is metadata, unknown is "none"
        _log.warning("table %s: no column lineage, sqlglot cannot follow the SQL body (%s: %s)",
                     table, type(exc).__name__, exc)
        return {}
    names = [s.alias_or_name for s in tree.selects] if isinstance(tree, exp.Query) else []
    out: ColumnSources = {}
    for column, node in nodes.items():
        if names.count(column) > 1:
            continue  # two outputs of one name: which one is stored is the engine's choice, not ours
        deps: list[list[str]] = []
        for leaf in node.walk():
            if leaf.downstream:
                continue
            if isinstance(leaf.expression, exp.Table):
                dep = _leaf_column(leaf.name, leaf.expression.name, sources)
                if dep is None:
                    break
                if dep not in deps:
                    deps.append(dep)
            elif isinstance(leaf.expression, exp.Placeholder) or leaf.name.endswith("*"):
                break  # a column sqlglot could not attribute to a source, or a star it could not expand
            # else a projection that reads no column (a literal, count(*)): nothing to add
        else:
            if deps:
                out[column] = sorted(deps)  # sqlglot walks a set: its order differs between processes
    return out


def _leaf_column(name: str, source: str, sources: Mapping[str, Sequence[str] | None]) -> list[str] | None:
    """``[alias, column]`` of a lineage leaf read from ``source``, or ``None`` when not a known
    column of a declared source (a star, an undeclared table or column)."""
    from sqlglot import exp, parse_one

    if source not in sources:
        return None
    plain = _PLAIN_COLUMN.match(name)  # the leaf's name is the qualified column as SQL text
    if plain is not None:
        column = plain.group(1)  # the usual case, read without a parse (~0.1 ms each)
    else:
        try:
            parsed = parse_one(name)
        except Exception:  # noqa: BLE001 - a name sqlglot cannot read back is an unknown column
            return None
        if not isinstance(parsed, exp.Column) or isinstance(parsed.this, exp.Star):
            return None
        column = parsed.name
    cols = sources[source]
    if cols is not None and column not in cols:
        return None
    return [source, column]


def resolve_declared(declared: Mapping[str, Sequence[ColumnRef]], *, table: str, columns: Sequence[str],
                     sources: Sequence[Source]) -> dict[str, tuple[tuple[str, str], ...]]:
    """Check ``Table(column_lineage=...)`` against the table's columns and sources and return it
    as output column -> ``(source alias, column)`` pairs.

    Raises:
        SpecError: naming the table and column when a key is not a declared column, or an entry
            is malformed or names a table that is not a source.
    """
    by_ref = {str(s.ref): s.name for s in sources}
    aliases = {s.name for s in sources}
    out: dict[str, tuple[tuple[str, str], ...]] = {}
    for column, refs in declared.items():
        if column not in columns:
            raise SpecError(f"table {table}: column_lineage names column {column!r}, which is not declared "
                            f"(columns: {list(columns)})")
        if isinstance(refs, str | tuple):
            raise SpecError(f"table {table}: column_lineage of column {column!r} must be a list of source columns, "
                            f"got {refs!r}")
        pairs: list[tuple[str, str]] = []
        for ref in refs:
            if isinstance(ref, str):
                src, _, col = ref.rpartition(".")
            elif isinstance(ref, tuple | list) and len(ref) == 2 and all(isinstance(x, str) for x in ref):
                src, col = ref
            else:
                src = col = ""
            if not src or not col:
                raise SpecError(f"table {table}: column_lineage of column {column!r} has entry {ref!r}; expected "
                                "'schema.table.column' or (source, column)")
            alias = src if src in aliases else by_ref.get(src)
            if alias is None:
                raise SpecError(f"table {table}: column_lineage of column {column!r} names {src!r}, which is not a "
                                f"source (sources: {sorted(by_ref)})")
            pairs.append((alias, col))
        out[column] = tuple(pairs)
    return out


def column_lineage(table: Table, by_name: Mapping[str, Any]) -> dg.TableColumnLineage | None:
    """The table's ``dagster/column_lineage``: derived from its SQL body, overridden by its
    declared ``column_lineage``; ``None`` when no column's lineage is known.

    Raises:
        SpecError: naming the table, column and source when a declared entry names a column the
            source does not have (when the source's columns are known).
    """
    sources = cast("dict[str, Source]", {s.name: s for s in table.sources})  # type: ignore[union-attr]
    seen = {alias: source_columns(s, by_name) for alias, s in sources.items()}
    deps: dict[str, list[tuple[str, str]]] = {}
    if table.sql is not None:
        deps.update(sql_lineage(table.sql, seen, table=str(table.ref)))
    for column, pairs in table.declared_lineage.items():
        for alias, col in pairs:
            cols = seen[alias]
            if cols is not None and col not in cols:
                raise SpecError(f"table {table.ref}: column_lineage of column {column!r} names column {col!r} of "
                                f"source {sources[alias].table}, which has no such column (columns: {list(cols)})")
        deps[column] = list(pairs)
    declared = set(table.target.column_names)
    by_column = {
        column: [dg.TableColumnDep(asset_key=_asset_key(sources[a], by_name), column_name=c) for a, c in pairs]
        for column, pairs in deps.items() if column in declared and pairs
    }
    return dg.TableColumnLineage(deps_by_column=by_column) if by_column else None


def _asset_key(source: Source, by_name: Mapping[str, Any]) -> dg.AssetKey:
    if source.asset:
        return dg.AssetKey([source.ref.schema, source.ref.table])
    return by_name[str(source.ref)].asset_key
