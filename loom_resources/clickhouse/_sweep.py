"""Sweeping leftovers of killed ClickHouse writes: staging tables nobody will publish."""

from __future__ import annotations

from loom_resources.clickhouse._client import ClickHouseConnection
from loom_resources.clickhouse._discovery import table_engine
from loom_resources.clickhouse._ledger import LEDGER, open_entries
from loom_resources.clickhouse._publish import STAGE_PREFIX
from loom_resources.clickhouse._sql import lit, qt
from loom_resources.model import TableRef

__all__ = ["sweep_staging"]


def sweep_staging(conn: ClickHouseConnection, min_age_s: float) -> list[str]:
    """Drop staging tables older than ``min_age_s`` that no unfinished publication needs (those
    are completed by recovery, never dropped). A younger table may belong to a live write and
    is left alone. Returns the dropped tables."""
    keep: set[str] = set()
    if table_engine(conn, LEDGER) is not None:
        for entry in open_entries(conn):
            target = TableRef.parse(entry.target)
            keep.add(f"{target.schema}.{entry.staging.partition('|')[0]}")
    like = STAGE_PREFIX.replace("_", "\\_") + "%"
    rows = conn.query_rows(
        f"SELECT database, name FROM system.tables WHERE name LIKE {lit(like)} "
        f"AND metadata_modification_time <= now() - toIntervalSecond({int(min_age_s)})",
        what="list stale staging tables",
    )
    dropped = []
    for db, name in rows:
        ref = TableRef(str(db), str(name))
        if str(ref) in keep:
            continue
        conn.command(f"DROP TABLE IF EXISTS {qt(ref)} SYNC", what=f"drop stale staging table {ref}")
        dropped.append(str(ref))
    return dropped
