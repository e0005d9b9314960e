"""ClickHouse discovery: a table's engine and columns from the system tables."""

from __future__ import annotations

from loom_resources.clickhouse._client import ClickHouseConnection
from loom_resources.clickhouse._sql import lit
from loom_resources.clickhouse._types import from_clickhouse
from loom_resources.dtypes import ColumnSchema, Schema
from loom_resources.model import TableRef

__all__ = ["ch_columns", "stored_schema", "table_engine"]


def ch_columns(conn: ClickHouseConnection, ref: TableRef) -> list[tuple[str, str]]:
    """``(name, clickhouse type)`` of the table's columns in order; empty when it is missing."""
    rows = conn.query_rows(
        f"SELECT name, type FROM system.columns WHERE database = {lit(ref.schema)} "
        f"AND table = {lit(ref.table)} ORDER BY position",
        what=f"list the columns of {ref}",
    )
    return [(str(n), str(t)) for n, t in rows]


def table_engine(conn: ClickHouseConnection, ref: TableRef) -> str | None:
    """The table's ``engine_full`` text, or ``None`` when the table is missing."""
    rows = conn.query_rows(
        f"SELECT engine_full FROM system.tables WHERE database = {lit(ref.schema)} AND name = {lit(ref.table)}",
        what=f"look up table {ref}",
    )
    return str(rows[0][0]) if rows else None


def stored_schema(conn: ClickHouseConnection, ref: TableRef) -> Schema | None:
    """The table's stored schema in the Loom table model; ``None`` when it is missing."""
    cols = ch_columns(conn, ref)
    if not cols:
        return None
    return tuple(ColumnSchema(name, *from_clickhouse(ty)) for name, ty in cols)
