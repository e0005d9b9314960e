"""SQL pushdown: source relations of one ClickHouse store, and query results that stay inside
ClickHouse until they are written (``INSERT ... SELECT``) or pulled into Polars.

:func:`runs_inside` is the one place that decides whether a SQL body runs inside ClickHouse.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from loom_resources._lazy import lazy_import
from loom_resources.clickhouse._client import ClickHouseConnection
from loom_resources.clickhouse._read import read_sql
from loom_resources.clickhouse._sql import qi
from loom_resources.clickhouse._types import from_clickhouse
from loom_resources.dtypes import ColumnSchema, Schema
from loom_resources.errors import LoomError
from loom_resources.model import TableRef
from loom_resources.polars_types import polars_schema
from loom_resources.sql import PolarsSQLExecutor

if TYPE_CHECKING:
    import polars as pl
else:
    pl = lazy_import("polars")  # imported when data moves, not when the code location loads

__all__ = ["ClickHouseQuery", "ClickHouseRelation", "bind_aliases", "describe", "execute_sql", "runs_inside"]


def describe(conn: ClickHouseConnection, sql: str) -> list[tuple[str, str]]:
    """``(name, clickhouse type)`` of a query's result, from ``DESCRIBE`` (no data is read)."""
    rows = conn.query_rows(f"DESCRIBE ({sql})", what="describe a query")
    return [(str(r[0]), str(r[1])) for r in rows]


def _schema(cols: list[tuple[str, str]]) -> Schema:
    return tuple(ColumnSchema(n, *from_clickhouse(t)) for n, t in cols)




@dataclass(frozen=True)
class ClickHouseRelation:
    """A source table that lives in a ClickHouse store, passed to ``execute_sql`` in place of a
    frame so the SQL can run inside ClickHouse. Create with :meth:`~loom_resources.clickhouse.ClickHouseResource.relation`.

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
    conn: ClickHouseConnection = field(repr=False)
    sources: tuple[TableRef, ...] = ()

    #: Where the SQL ran, reported in materialization metadata.
    engine_name: ClassVar[str] = "clickhouse"

    def ch_columns(self) -> list[tuple[str, str]]:
        """``(name, clickhouse type)`` of the result, from ``DESCRIBE`` (no data is read)."""
        return describe(self.conn, self.sql)

    def loom_schema(self) -> Schema:
        """The result's columns in the Loom table model."""
        return _schema(self.ch_columns())

    def collect_schema(self) -> pl.Schema:
        """The result's Polars schema, without running the query."""
        return polars_schema(self.loom_schema())

    def to_lazyframe(self, *, streaming: bool = True) -> pl.LazyFrame:
        """Run the query and return its rows as a LazyFrame (spooled to disk when streaming)."""
        return read_sql(self.conn, self.sql, self.loom_schema(), streaming=streaming)

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


def runs_inside(frames: Mapping[str, Any], store: str) -> bool:
    """Whether SQL over ``frames`` runs inside the ClickHouse store ``store``: when every source
    is a :class:`ClickHouseRelation` of it."""
    return bool(frames) and all(isinstance(f, ClickHouseRelation) and f.store == store for f in frames.values())


def execute_sql(conn: ClickHouseConnection, frames: Mapping[str, Any], query: str) -> ClickHouseQuery | pl.LazyFrame:
    """Run ``query`` over named sources: inside ClickHouse (a lazy :class:`ClickHouseQuery`) when
    :func:`runs_inside` says so, otherwise in Polars with relations read through the spool."""
    if runs_inside(frames, conn.store()):
        rels = dict(frames)
        return ClickHouseQuery(bind_aliases(rels, query), conn, tuple(r.ref for r in rels.values()))
    resolved: dict[str, Any] = {}
    for alias, f in frames.items():
        if isinstance(f, ClickHouseRelation):
            if f.store != conn.store():
                raise LoomError(f"source {f.ref} lives in another ClickHouse store ({f.store}); read it with that resource")
            resolved[alias] = read_sql(conn, f.select, _schema(describe(conn, f.select)), streaming=True)
        elif isinstance(f, ClickHouseQuery):
            resolved[alias] = f.to_lazyframe(streaming=True)
        else:
            resolved[alias] = f
    return PolarsSQLExecutor().execute_sql(resolved, query)
