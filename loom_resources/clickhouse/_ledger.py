"""The publication ledger: ClickHouse itself records which logical writes were staged and
published, so a retried or re-executed write finishes its publication or skips it.

One row per state change in ``_loom.publications``: ``staged`` (the staging table is complete;
publishing may have started) and ``published``. A write is identified by its write context's
idempotency token, the same across retries and re-executions of one run step.
"""

from __future__ import annotations

from dataclasses import dataclass

from loom_resources.clickhouse._client import ClickHouseConnection
from loom_resources.clickhouse._sql import lit, qt
from loom_resources.model import TableRef

__all__ = ["LEDGER", "LEDGER_SCHEMA", "Entry", "ensure_ledger", "latest", "open_entries", "record"]

#: The database Loom keeps its own ClickHouse tables in (reserved for user tables).
LEDGER_SCHEMA = "_loom"
LEDGER = TableRef(LEDGER_SCHEMA, "publications")


@dataclass(frozen=True)
class Entry:
    """The latest state of one logical write of one table."""

    target: str
    token: str
    state: str
    staging: str
    rows: int


def ensure_ledger(conn: ClickHouseConnection) -> None:
    """Create the ledger when missing."""
    conn.create_once(f"CREATE DATABASE IF NOT EXISTS `{LEDGER_SCHEMA}`", what="create Loom's ledger database")
    conn.create_once(
        f"CREATE TABLE IF NOT EXISTS {qt(LEDGER)} (target String, token String, state LowCardinality(String), "
        "staging String, rows UInt64, at DateTime64(6, 'UTC') DEFAULT now64(6, 'UTC')) "
        "ENGINE = MergeTree ORDER BY (target, token)",
        what="create Loom's publication ledger",
    )


def record(conn: ClickHouseConnection, target: TableRef, token: str, state: str, staging: str, rows: int) -> None:
    """Append one state change (synchronously: it is durable when this returns)."""
    conn.command(
        f"INSERT INTO {qt(LEDGER)} (target, token, state, staging, rows) VALUES "
        f"({lit(str(target))}, {lit(token)}, {lit(state)}, {lit(staging)}, {int(rows)})",
        what=f"record the {state} write of {target}",
    )


def latest(conn: ClickHouseConnection, target: TableRef, token: str) -> Entry | None:
    """The latest state of the write ``token`` of ``target`` (``published`` wins), if any."""
    rows = conn.query_rows(
        f"SELECT state, staging, rows FROM {qt(LEDGER)} WHERE target = {lit(str(target))} AND token = {lit(token)} "
        "ORDER BY state = 'published' DESC, at DESC LIMIT 1",
        what=f"look up an earlier attempt of this write of {target}",
    )
    if not rows:
        return None
    state, staging, n = rows[0]
    return Entry(str(target), token, str(state), str(staging), int(n))


def open_entries(conn: ClickHouseConnection) -> list[Entry]:
    """Writes whose staging completed but whose publication was never recorded (a kill)."""
    rows = conn.query_rows(
        f"SELECT target, token, argMax(state, state = 'published'), anyIf(staging, state = 'staged'), max(rows) "
        f"FROM {qt(LEDGER)} GROUP BY target, token HAVING countIf(state = 'published') = 0",
        what="list unfinished publications",
    )
    return [Entry(str(t), str(k), str(s), str(st), int(n)) for t, k, s, st, n in rows]
