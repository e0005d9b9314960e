"""Exactly-once publication of a staged ClickHouse write.

A write first loads a staging table completely. Then, for a write with an idempotency token:

1. the ledger (:mod:`._ledger`) records ``staged`` with the mode and the run's partition filter;
2. the staged rows are published by operations that are atomic per partition and can be
   repeated: ``EXCHANGE TABLES`` (overwrite; the staging table carries a comment naming the
   write, so a repeat sees the swap already happened), ``REPLACE PARTITION`` (replace; replacing
   twice from the same staging table gives the same partition), ``MOVE PARTITION ... TO TABLE``
   (append/merge; a moved partition leaves the staging table, so a repeat moves only the rest);
3. the ledger records ``published`` and the staging table is dropped.

A retry or re-execution of the same write finds ``published`` and skips, or finds ``staged`` and
completes that publication (:func:`complete`) instead of writing again; :func:`recover` does the
same for every unfinished publication when a resource first writes or reads.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid

from loom_resources.clickhouse._client import ClickHouseConnection
from loom_resources.clickhouse._discovery import table_engine
from loom_resources.clickhouse._ledger import LEDGER, Entry, ensure_ledger, latest, open_entries, record
from loom_resources.clickhouse._sql import lit, qt
from loom_resources.model import TableRef, WriteMode

__all__ = ["STAGE_PREFIX", "complete", "marker", "previous", "publish", "recover", "staging_ref"]

STAGE_PREFIX = "_loom_stage_"
_PID = re.compile(r"_p(\d+)_[0-9a-f]{6}$")


def staging_ref(target: TableRef, token: str | None) -> TableRef:
    """The staging table of one write attempt: unique per attempt, tagged with the write and
    with the writing process (``..._<tag>_p<pid>_<random>``), so a sweep can tell a dead
    process's leftovers from a live write."""
    tag = hashlib.sha256(token.encode()).hexdigest()[:12] if token else "adhoc"
    return TableRef(target.schema, f"{STAGE_PREFIX}{target.table[:40]}_{tag}_p{os.getpid()}_{uuid.uuid4().hex[:6]}")


def staging_pid(name: str) -> int | None:
    """The process that created a staging table (``None`` for names without one)."""
    m = _PID.search(name)
    return int(m.group(1)) if m else None


def marker(token: str | None) -> str:
    """The comment an overwrite's staging table carries, naming the write that created it."""
    return f"loom:{token}" if token else ""


def _comment(conn: ClickHouseConnection, ref: TableRef) -> str | None:
    rows = conn.query_rows(
        f"SELECT comment FROM system.tables WHERE database = {lit(ref.schema)} AND name = {lit(ref.table)}",
        what=f"read the comment of {ref}",
    )
    return str(rows[0][0]) if rows else None


def _partition_ids(conn: ClickHouseConnection, ref: TableRef) -> list[str]:
    rows = conn.query_rows(f"SELECT DISTINCT _partition_id FROM {qt(ref)} ORDER BY 1", what=f"list partitions of {ref}")
    return [str(r[0]) for r in rows]


def _ops(conn: ClickHouseConnection, target: TableRef, staging: TableRef, mode: str, token: str | None,
         run_filter: str) -> None:
    """The publication itself; every step can run again after a kill with the same outcome."""
    if mode == WriteMode.OVERWRITE.value:
        if token and _comment(conn, target) == marker(token):
            return  # swapped in by an earlier attempt; the staging table now holds the old rows
        if table_engine(conn, target) is None:
            conn.command(f"RENAME TABLE {qt(staging)} TO {qt(target)}", what=f"publish {target}")
        else:
            conn.command(f"EXCHANGE TABLES {qt(staging)} AND {qt(target)}", what=f"swap in {target}")
        return
    if table_engine(conn, staging) is None:
        return  # nothing left to publish
    if mode == WriteMode.REPLACE_PARTITIONS.value:
        staged = _partition_ids(conn, staging)
        for pid in staged:
            conn.command(f"ALTER TABLE {qt(target)} REPLACE PARTITION ID {lit(pid)} FROM {qt(staging)}",
                         what=f"replace partition {pid} of {target}")
        if run_filter:
            for pid in _partition_ids_where(conn, target, run_filter):
                if pid not in staged:
                    conn.command(f"ALTER TABLE {qt(target)} DROP PARTITION ID {lit(pid)}", what=f"drop partition {pid} of {target}")
        return
    for pid in _partition_ids(conn, staging):  # append, merge
        conn.command(f"ALTER TABLE {qt(staging)} MOVE PARTITION ID {lit(pid)} TO TABLE {qt(target)}",
                     what=f"publish partition {pid} of {target}")


def _partition_ids_where(conn: ClickHouseConnection, ref: TableRef, condition: str) -> list[str]:
    rows = conn.query_rows(f"SELECT DISTINCT _partition_id FROM {qt(ref)} WHERE {condition}", what=f"list partitions of {ref}")
    return [str(r[0]) for r in rows]


def publish(conn: ClickHouseConnection, target: TableRef, staging: TableRef, mode: WriteMode, token: str | None,
            rows: int, run_filter: str) -> None:
    """Publish a complete staging table into ``target`` (created ``AS`` the staging table when
    missing, except for an overwrite, which renames the staging table into place)."""
    if mode is not WriteMode.OVERWRITE and table_engine(conn, target) is None:
        conn.command(f"CREATE TABLE IF NOT EXISTS {qt(target)} AS {qt(staging)}", what=f"create table {target}")
    if token:
        ensure_ledger(conn)
        record(conn, target, token, "staged", f"{staging.table}|{mode.value}|{run_filter}", rows)
    _ops(conn, target, staging, mode.value, token, run_filter)
    if token:
        record(conn, target, token, "published", staging.table, rows)


def _staged_detail(entry: Entry) -> tuple[str, str, str]:
    name, _, rest = entry.staging.partition("|")
    mode, _, run_filter = rest.partition("|")
    return name, mode, run_filter


def complete(conn: ClickHouseConnection, entry: Entry) -> None:
    """Finish a publication whose staging completed (a killed attempt), then drop its staging table."""
    name, mode, run_filter = _staged_detail(entry)
    target = TableRef.parse(entry.target)
    staging = TableRef(target.schema, name)
    if mode == WriteMode.OVERWRITE.value and table_engine(conn, staging) is None and _comment(conn, target) != marker(entry.token):
        raise RuntimeError(f"cannot complete the overwrite of {target}: its staging table {staging} is gone")
    _ops(conn, target, staging, mode, entry.token, run_filter)
    record(conn, target, entry.token, "published", name, entry.rows)
    conn.command(f"DROP TABLE IF EXISTS {qt(staging)} SYNC", what=f"drop the staging table of {target}")


def previous(conn: ClickHouseConnection, target: TableRef, token: str) -> Entry | None:
    """The ledger entry of an earlier attempt of this write, if the ledger exists."""
    if table_engine(conn, LEDGER) is None:
        return None
    return latest(conn, target, token)


def recover(conn: ClickHouseConnection) -> list[str]:
    """Complete every unfinished publication (killed between ``staged`` and ``published``);
    returns one line per completed write."""
    if table_engine(conn, LEDGER) is None:
        return []
    done = []
    for entry in open_entries(conn):
        complete(conn, entry)
        done.append(f"completed the interrupted {_staged_detail(entry)[1]} write {entry.token} of {entry.target}")
    return done
