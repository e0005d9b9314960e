"""The publication ledger: ClickHouse itself records which logical writes were staged and
published, so a retried or re-executed write finishes its publication or skips it.

One row per state change in ``_loom.publications``:

- ``staged``: the staging table is complete and this attempt CLAIMED the write. The row is
  inserted with an ``insert_deduplication_token`` derived from the write, so when several
  attempts of one write (two processes, a retry overlapping its first attempt) claim at once,
  ClickHouse keeps exactly one row: the first to commit. Every attempt reads the claim back;
  only the one it names publishes (the others drop their staging tables). Deduplication is
  atomic in the engine (block ids of the part commit; Keeper on a replicated table).
- ``moved``: another process took the staging table over to complete the publication
  (``RENAME TABLE``: atomic, so exactly one taker wins); names the table's new name.
- ``published``; ``abandoned`` (a maintenance operation gave up an unpublishable write).

A write is identified by its write context's idempotency token, the same across retries and
re-executions of one run step. ``owner`` is ``host:pid`` of the attempt that wrote the row;
``cluster`` is the ClickHouse cluster the table's DDL runs ``ON CLUSTER`` (its
``ClickHouseTableOptions.cluster``, ``''`` for none), so that another process recovering an
interrupted publication sends its statements to every node, as the writer would have.

On a cluster the ledger must be one table all nodes share: create Loom's database as a
``Replicated`` database before the first write (docs/clickhouse-server.md, "Clusters"). The ledger
is then created there as a ``ReplicatedMergeTree`` (Keeper path under the table's ``{uuid}``, which
a Replicated database keeps equal on every replica), so a claim's ``insert_deduplication_token``
is deduplicated through Keeper across nodes, and its statements carry no ``ON CLUSTER`` (a
Replicated database replicates DDL itself and refuses ``ON CLUSTER``). In any other database the
ledger is a plain MergeTree, as before.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from loom_resources.clickhouse._client import ClickHouseConnection
from loom_resources.clickhouse._sql import lit, qt
from loom_resources.model import TableRef

__all__ = ["DONE", "LEDGER", "LEDGER_SCHEMA", "Entry", "claim", "ensure_ledger", "latest", "ledger_engine", "ledger_exists",
           "ledger_is_shared", "open_entries", "owner", "record"]

#: The database Loom keeps its own ClickHouse tables in (reserved for user tables).
LEDGER_SCHEMA = "_loom"
LEDGER = TableRef(LEDGER_SCHEMA, "publications")
#: States after which a write needs nothing more.
DONE = ("published", "abandoned")
#: Claims deduplicated per table part history: far more than the writes in flight at once.
_DEDUP_WINDOW = 10_000
_REPLICATED = f"{LEDGER} is replicated"


@dataclass(frozen=True)
class Entry:
    """The latest state of one logical write of one table. ``staging`` is
    ``name|mode|run_filter`` of its current staging table."""

    target: str
    token: str
    state: str
    staging: str
    rows: int
    owner: str = ""
    age_s: float = 0.0
    cluster: str = ""


def owner() -> str:
    """This process as a ledger owner: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def ledger_engine(database_engine: str | None) -> str:
    """The ledger's engine clause in Loom's database of engine ``database_engine``: replicated
    through Keeper in a ``Replicated`` database (one ledger for every node), a MergeTree otherwise."""
    if database_engine == "Replicated":
        return (f"ENGINE = ReplicatedMergeTree('/clickhouse/tables/{{uuid}}/{LEDGER_SCHEMA}', '{{replica}}') "
                f"ORDER BY (target, token) SETTINGS replicated_deduplication_window = {_DEDUP_WINDOW}")
    return f"ENGINE = MergeTree ORDER BY (target, token) SETTINGS non_replicated_deduplication_window = {_DEDUP_WINDOW}"


_LEDGER_STATE = (
    f"SELECT (SELECT engine FROM system.databases WHERE name = {lit(LEDGER_SCHEMA)}), "
    f"(SELECT engine_full FROM system.tables WHERE database = {lit(LEDGER.schema)} AND name = {lit(LEDGER.table)}), "
    f"(SELECT groupArray(name) FROM system.columns WHERE database = {lit(LEDGER.schema)} AND table = {lit(LEDGER.table)})"
)
_COLUMNS_ADDED = ("owner", "cluster")  # by later versions, to a ledger an earlier version made


def ledger_exists(conn: ClickHouseConnection) -> bool:
    """Whether the ledger exists; when it does, it is brought up to date (:func:`ensure_ledger`)
    by the same look-up. A ledger found on this connection stays (Loom never drops it)."""
    if conn.done_once(f"ensure the ledger {LEDGER}"):
        return True
    db_engine, table_engine, columns = conn.query_rows(_LEDGER_STATE, what="look up Loom's publication ledger")[0]
    if table_engine is None:
        return False
    _ensure(conn, None if db_engine is None else str(db_engine), str(table_engine), [str(c) for c in columns])
    return True


def ensure_ledger(conn: ClickHouseConnection) -> None:
    """Create the ledger when missing (and bring a ledger made by an earlier version up to date:
    columns added since, ``owner`` and ``cluster``, default to ``''``). One look-up when the ledger
    is up to date (every write after the first: the DDL below is skipped, as it would change
    nothing); the DDL runs only for a ledger that is missing or made by an earlier version."""
    if conn.done_once(f"ensure the ledger {LEDGER}"):
        return
    db_engine, table_engine, columns = conn.query_rows(_LEDGER_STATE, what="look up Loom's publication ledger")[0]
    _ensure(conn, None if db_engine is None else str(db_engine), None if table_engine is None else str(table_engine),
            [str(c) for c in columns])


def _ensure(conn: ClickHouseConnection, db_engine: str | None, table_engine: str | None, columns: list[str]) -> None:
    """Bring the ledger to this version's form, given its database's engine, its ``engine_full``
    and its columns as found (``None``: missing)."""
    engine = ledger_engine(db_engine)
    replicated = "ReplicatedMergeTree" in engine
    window = f"non_replicated_deduplication_window = {_DEDUP_WINDOW}"
    if (table_engine is not None and all(c in columns for c in _COLUMNS_ADDED)
            and (replicated or window in table_engine)):
        if replicated:
            conn.done_once(_REPLICATED, mark=True)
        conn.done_once(f"ensure the ledger {LEDGER}", mark=True)
        return
    if db_engine is None:
        conn.create_once(f"CREATE DATABASE IF NOT EXISTS `{LEDGER_SCHEMA}`", what="create Loom's ledger database")
        # the engine a concurrent creator may have given it (Replicated, made by hand first)
        rows = conn.query_rows(f"SELECT engine FROM system.databases WHERE name = {lit(LEDGER_SCHEMA)}",
                               what="read the engine of Loom's ledger database")
        engine = ledger_engine(str(rows[0][0]) if rows else None)
    if "ReplicatedMergeTree" in engine:
        conn.done_once(_REPLICATED, mark=True)
    conn.create_once(
        f"CREATE TABLE IF NOT EXISTS {qt(LEDGER)} (target String, token String, state LowCardinality(String), "
        "staging String, rows UInt64, at DateTime64(6, 'UTC') DEFAULT now64(6, 'UTC'), owner String DEFAULT '', "
        f"cluster String DEFAULT '') {engine}",
        what="create Loom's publication ledger",
    )
    for column in ("owner", "cluster"):
        conn.create_once(f"ALTER TABLE {qt(LEDGER)} ADD COLUMN IF NOT EXISTS {column} String DEFAULT ''",
                         what=f"add the {column} column to Loom's publication ledger")
    if "ReplicatedMergeTree" not in engine:
        conn.create_once(
            f"ALTER TABLE {qt(LEDGER)} MODIFY SETTING non_replicated_deduplication_window = {_DEDUP_WINDOW}",
            what="let Loom's publication ledger deduplicate claims")
    conn.done_once(f"ensure the ledger {LEDGER}", mark=True)


def ledger_is_shared(conn: ClickHouseConnection) -> bool:
    """Whether the ledger (ensured on this connection) lives in a Replicated database, shared by
    every node of a cluster."""
    return conn.done_once(_REPLICATED)


def record(conn: ClickHouseConnection, target: TableRef, token: str, state: str, staging: str, rows: int,
           *, dedup: str | None = None, cluster: str = "") -> None:
    """Append one state change (synchronously: it is durable when this returns). With ``dedup``,
    a second insert of the same token is dropped by the engine."""
    conn.command(
        f"INSERT INTO {qt(LEDGER)} (target, token, state, staging, rows, owner{', cluster' if cluster else ''}) VALUES "
        f"({lit(str(target))}, {lit(token)}, {lit(state)}, {lit(staging)}, {int(rows)}, {lit(owner())}"
        f"{', ' + lit(cluster) if cluster else ''})",
        what=f"record the {state} write of {target}",
        settings={"insert_deduplication_token": dedup, "insert_deduplicate": 1} if dedup else None,
    )


def claim(conn: ClickHouseConnection, target: TableRef, token: str, staging: str, rows: int,
          cluster: str = "") -> Entry:
    """Claim the write ``token`` of ``target`` for the staging table ``staging`` (``name|mode|filter``)
    of a table on ``cluster`` (``""``: none); returns the claim that won, which is this one if its
    staging name is ours."""
    record(conn, target, token, "staged", staging, rows, dedup=f"loom-claim|{target}|{token}", cluster=cluster)
    rows_ = conn.query_rows(
        f"SELECT staging, rows, owner, cluster FROM {qt(LEDGER)} WHERE target = {lit(str(target))} AND token = {lit(token)} "
        "AND state = 'staged' ORDER BY at, staging LIMIT 1",
        what=f"read the claim of this write of {target}",
    )
    st, n, who, on = rows_[0]
    return Entry(str(target), token, "staged", str(st), int(n), str(who), cluster=str(on))


def latest(conn: ClickHouseConnection, target: TableRef, token: str) -> Entry | None:
    """The latest state of the write ``token`` of ``target`` (``published``/``abandoned`` win), if any."""
    rows = conn.query_rows(
        f"SELECT state, staging, rows, owner, dateDiff('millisecond', at, now64(6, 'UTC')) / 1000, cluster "
        f"FROM {qt(LEDGER)} "
        f"WHERE target = {lit(str(target))} AND token = {lit(token)} "
        f"ORDER BY state IN {DONE} DESC, at DESC LIMIT 1",
        what=f"look up an earlier attempt of this write of {target}",
    )
    if not rows:
        return None
    state, staging, n, who, age, on = rows[0]
    return Entry(str(target), token, str(state), str(staging), int(n), str(who), float(age), str(on))


def open_entries(conn: ClickHouseConnection) -> list[Entry]:
    """Writes whose staging completed but whose publication was never recorded (a kill, a failure,
    or a live write of another process): their current staging table and owner."""
    rows = conn.query_rows(
        "SELECT target, token, argMax(staging, at), max(rows), argMax(owner, at), "
        f"dateDiff('millisecond', max(at), now64(6, 'UTC')) / 1000, max(cluster) FROM {qt(LEDGER)} "
        f"GROUP BY target, token HAVING countIf(state IN {DONE}) = 0",
        what="list unfinished publications",
    )
    return [Entry(str(t), str(k), "staged", str(st), int(n), str(o), float(a), str(c))
            for t, k, st, n, o, a, c in rows]
