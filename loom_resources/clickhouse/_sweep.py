"""Sweeping leftovers of killed ClickHouse writes: staging tables nobody will publish."""

from __future__ import annotations

import os

from loom_resources.clickhouse._client import ClickHouseConnection
from loom_resources.clickhouse._cluster import ddl_on_cluster
from loom_resources.clickhouse._ledger import ledger_exists, open_entries
from loom_resources.clickhouse._publish import STAGE_PREFIX, marker_cluster, staging_of_dead_local_process, staging_pid
from loom_resources.clickhouse._sql import lit, qt
from loom_resources.model import TableRef

__all__ = ["sweep_staging"]


def sweep_staging(conn: ClickHouseConnection, min_age_s: float) -> list[str]:
    """Drop staging tables of dead writes that no unfinished publication needs (those are
    completed by recovery, never dropped): older than ``min_age_s``, or, on the embedded engine
    (which one process holds at a time), created by any other process, or, on a server, created by
    a process of this host that no longer runs. A younger table of a live process or of another
    host may belong to a live write and is left alone. A staging table of a cluster table (its
    comment names the cluster) is dropped ``ON CLUSTER``, on every node.
    Returns the dropped tables."""
    keep: set[str] = set()
    if ledger_exists(conn):
        for entry in open_entries(conn):
            target = TableRef.parse(entry.target)
            keep.add(f"{target.schema}.{entry.staging.partition('|')[0]}")
    like = STAGE_PREFIX.replace("_", "\\_") + "%"
    rows = conn.query_rows(
        f"SELECT database, name, metadata_modification_time <= now() - toIntervalSecond({int(min_age_s)}), comment "
        f"FROM system.tables WHERE name LIKE {lit(like)}",
        what="list staging tables",
    )
    embedded, me = conn.is_embedded(), os.getpid()
    dropped = []
    for db, name, old, comment in rows:
        ref = TableRef(str(db), str(name))
        owner = staging_pid(str(name))
        dead = bool(old) or (embedded and owner is not None and owner != me) or staging_of_dead_local_process(str(name))
        if str(ref) in keep or not dead:
            continue
        conn.command(f"DROP TABLE IF EXISTS {qt(ref)}{ddl_on_cluster(marker_cluster(str(comment)))} SYNC",
                     what=f"drop stale staging table {ref}")
        dropped.append(str(ref))
    return dropped
