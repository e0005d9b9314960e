"""Table versions of ClickHouse tables: a write counter kept by the resource.

ClickHouse has no table version like Delta's log, so each successful Loom write to a table
appends one row to ``loom.table_versions`` (``table``, ``version``, ``written_at``): version 1
is the first write through Loom, each later write adds one. A table's version therefore counts
the writes Loom published to it; changes made outside Loom do not move it. The counter is
exact when writes to one table do not overlap (the embedded engine's pool serializes them; on a
server, one run per table at a time, as Dagster's partitioned runs of one asset are).

On a cluster, like Loom's ledger (:mod:`._ledger`), the counter must be one table every node
shares: in a ``Replicated`` ``loom`` database it is created as a ``ReplicatedMergeTree``; anywhere
else as the MergeTree it always was.
"""

from __future__ import annotations

from typing import Any

from loom_resources.clickhouse._sql import lit
from loom_resources.model import TableRef

__all__ = ["VERSIONS_REF", "bump_version", "table_version", "versions_engine"]

#: The counter table (the ``loom`` schema is reserved for Loom's own tables).
VERSIONS_REF = TableRef("loom", "table_versions")
_T = f"`{VERSIONS_REF.schema}`.`{VERSIONS_REF.table}`"


def table_version(conn: Any, ref: TableRef) -> int | None:
    """The table's current version; ``None`` when Loom never wrote it."""
    if not conn.exists(VERSIONS_REF):
        return None
    v = conn.query_rows(f"SELECT max(version) FROM {_T} WHERE table = {lit(str(ref))}", what=f"read the version of {ref}")
    return int(v[0][0]) if v and v[0][0] else None


def versions_engine(database_engine: str | None) -> str:
    """The counter's engine in a ``loom`` database of engine ``database_engine``."""
    if database_engine == "Replicated":
        return f"ReplicatedMergeTree('/clickhouse/tables/{{uuid}}/{VERSIONS_REF.schema}', '{{replica}}')"
    return "MergeTree"


def bump_version(conn: Any, ref: TableRef) -> int:
    """Record one more write to ``ref`` and return its new version."""
    conn.create_once(f"CREATE DATABASE IF NOT EXISTS `{VERSIONS_REF.schema}`", what="create database loom")
    if not conn.done_once(f"ensure {VERSIONS_REF}"):
        db = conn.query_rows(f"SELECT engine FROM system.databases WHERE name = {lit(VERSIONS_REF.schema)}",
                             what="read the engine of database loom")
        conn.create_once(
            f"CREATE TABLE IF NOT EXISTS {_T} (table String, version UInt64, written_at DateTime64(6, 'UTC')) "
            f"ENGINE = {versions_engine(str(db[0][0]) if db else None)} ORDER BY (table, version)",
            what=f"create {VERSIONS_REF}",
        )
        conn.done_once(f"ensure {VERSIONS_REF}", mark=True)
    conn.command(
        f"INSERT INTO {_T} SELECT {lit(str(ref))}, ifNull(max(version), 0) + 1, now64(6, 'UTC') FROM {_T} "
        f"WHERE table = {lit(str(ref))}",
        what=f"count a write to {ref}",
    )
    v = conn.query_rows(f"SELECT max(version) FROM {_T} WHERE table = {lit(str(ref))}", what=f"read the version of {ref}")
    return int(v[0][0])
