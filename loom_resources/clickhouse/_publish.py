"""Exactly-once publication of a staged ClickHouse write.

A write first loads a staging table completely. Then, for a write with an idempotency token:

1. the write is claimed in the ledger (:mod:`._ledger`): ``staged`` with the mode and the run's
   partition filter, deduplicated by the engine so that of several attempts of one write
   running at once exactly one claim stands; the others drop their staging tables and wait for
   (or complete) the winner's publication;
2. the staged rows are published by operations that are atomic per partition and can be
   repeated: ``EXCHANGE TABLES`` (overwrite; the staging table carries a comment naming the
   write, so a repeat sees the swap already happened), ``REPLACE PARTITION`` (replace; replacing
   twice from the same staging table gives the same partition), ``MOVE PARTITION ... TO TABLE``
   (append/merge; a moved partition leaves the staging table, so a repeat moves only the rest);
3. the ledger records ``published`` and the staging table is dropped.

A retry or re-execution of the same write finds ``published`` and skips, or finds ``staged`` and
completes that publication (:func:`complete`) instead of writing again; :func:`recover` does the
same for every unfinished publication of a dead writer when a resource first writes or reads.
Completing takes the staging table over with ``RENAME TABLE`` first (atomic: of two processes
completing one write, one gets the table, the other waits for its ``published``), so a
publication step never runs twice at once. An entry that cannot be completed (its target was
dropped outside Loom...) never blocks other writes: recovery logs it and goes on, and
:func:`abandon` (``ClickHouseResource.abandon_publication``) clears it.

On a cluster (the table's ``ClickHouseTableOptions.cluster``, recorded in the ledger entry and in
the staging table's comment so that recovery and the sweep by another process know it), every
statement that must reach all nodes carries ``ON CLUSTER``; the rule per statement is in
:mod:`._cluster` (:func:`~._cluster.ddl_on_cluster`: ``RENAME TABLE``, ``EXCHANGE TABLES``,
``CREATE TABLE``, ``DROP TABLE`` always; :func:`~._cluster.partition_on_cluster`: ``REPLACE``/
``DROP``/``MOVE PARTITION`` only on a table that is not Replicated). Without a cluster the
statements are exactly those of a single server.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import time
import uuid
from dataclasses import dataclass

from dagster import get_dagster_logger

from loom_resources.clickhouse._client import ClickHouseConnection
from loom_resources.clickhouse._cluster import ddl_on_cluster, partition_on_cluster
from loom_resources.clickhouse._discovery import table_engine
from loom_resources.clickhouse._ledger import (
    DONE,
    LEDGER_SCHEMA,
    Entry,
    claim,
    ensure_ledger,
    latest,
    ledger_exists,
    ledger_is_shared,
    open_entries,
    record,
)
from loom_resources.clickhouse._moved import drop_moved_keys
from loom_resources.clickhouse._sql import lit, qt
from loom_resources.errors import LoomError
from loom_resources.model import TableRef, WriteMode

__all__ = [
    "STAGE_PREFIX", "PublicationBlockedError", "Published", "abandon", "await_published", "complete", "marker",
    "marker_cluster",
    "may_be_live", "owner_is_dead", "previous", "publish", "recover", "staging_ref",
]

#: How long an attempt that lost the claim waits for the winner's ``published`` before it
#: completes the publication itself (the winner may have died between claim and publication).
CLAIM_WAIT_S = 120.0
_POLL_S = 0.1


class PublicationBlockedError(LoomError):
    """A staged write can no longer be published (e.g. its target table was dropped outside Loom)."""


@dataclass(frozen=True)
class Published:
    """How a publication ended for the caller: ``by_me`` when this attempt's rows (or the
    interrupted attempt it completed) went in; otherwise another attempt published the write."""

    by_me: bool
    rows: int

STAGE_PREFIX = "_loom_stage_"
_PID = re.compile(r"_p(\d+)(?:h([0-9a-f]{4}))?_[0-9a-f]{6}$")
#: This host in staging names, so a sweep on a server can tell this host's dead processes apart.
HOST_TAG = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:4]


def staging_ref(target: TableRef, token: str | None) -> TableRef:
    """The staging table of one write attempt: unique per attempt, tagged with the write and
    with the writing process (``..._<tag>_p<pid>_<random>``), so a sweep can tell a dead
    process's leftovers from a live write."""
    tag = hashlib.sha256(token.encode()).hexdigest()[:12] if token else "adhoc"
    return TableRef(target.schema,
                    f"{STAGE_PREFIX}{target.table[:40]}_{tag}_p{os.getpid()}h{HOST_TAG}_{uuid.uuid4().hex[:6]}")


def staging_pid(name: str) -> int | None:
    """The process that created a staging table (``None`` for names without one)."""
    m = _PID.search(name)
    return int(m.group(1)) if m else None


def staging_of_dead_local_process(name: str) -> bool:
    """Whether a staging table was created by a process of this host that no longer runs."""
    m = _PID.search(name)
    if not m or m.group(2) != HOST_TAG:
        return False
    try:
        os.kill(int(m.group(1)), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


_ON_CLUSTER = " on cluster "


def marker(token: str | None, cluster: str = "") -> str:
    """The comment a staging table carries, naming the write that created it (an overwrite's
    swapped-in table keeps it: a repeat sees the swap happened) and the cluster its DDL runs on
    (so a sweep by any process drops it on every node). ``""`` for neither."""
    if not token and not cluster:
        return ""
    return f"loom:{token or ''}" + (f"{_ON_CLUSTER}{cluster}" if cluster else "")


def marker_cluster(comment: str) -> str:
    """The cluster named by a staging table's comment (:func:`marker`), or ``""``."""
    return comment.partition(_ON_CLUSTER)[2] if comment.startswith("loom:") else ""


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
         run_filter: str, cluster: str = "") -> None:
    """The publication itself; every step can run again after a kill with the same outcome.
    ``cluster``: see the module docstring (``""``: one server)."""
    ddl = ddl_on_cluster(cluster)
    if mode == WriteMode.OVERWRITE.value:
        if token and _comment(conn, target) == marker(token, cluster):
            return  # swapped in by an earlier attempt; the staging table now holds the old rows
        if table_engine(conn, target) is None:
            conn.command(f"RENAME TABLE {qt(staging)} TO {qt(target)}{ddl}", what=f"publish {target}")
        else:
            conn.command(f"EXCHANGE TABLES {qt(staging)} AND {qt(target)}{ddl}", what=f"swap in {target}")
        return
    if table_engine(conn, staging) is None:
        return  # nothing left to publish
    # partition operations: ON CLUSTER only for a table that is not Replicated (see _cluster)
    on = partition_on_cluster(cluster, table_engine(conn, target)) if cluster else ""
    if mode == WriteMode.REPLACE_PARTITIONS.value:
        staged = _partition_ids(conn, staging)
        for pid in staged:
            conn.command(f"ALTER TABLE {qt(target)}{on} REPLACE PARTITION ID {lit(pid)} FROM {qt(staging)}",
                         what=f"replace partition {pid} of {target}")
        if run_filter:
            for pid in _partition_ids_where(conn, target, run_filter):
                if pid not in staged:
                    conn.command(f"ALTER TABLE {qt(target)}{on} DROP PARTITION ID {lit(pid)}",
                                 what=f"drop partition {pid} of {target}")
        return
    if mode == WriteMode.MERGE.value:  # keys whose partition changes leave their old partition first
        drop_moved_keys(conn, target, staging, staging_ref(target, token), cluster=cluster, on=on)
    for pid in _partition_ids(conn, staging):  # append, merge
        conn.command(f"ALTER TABLE {qt(staging)}{on} MOVE PARTITION ID {lit(pid)} TO TABLE {qt(target)}",
                     what=f"publish partition {pid} of {target}")


def _partition_ids_where(conn: ClickHouseConnection, ref: TableRef, condition: str) -> list[str]:
    rows = conn.query_rows(f"SELECT DISTINCT _partition_id FROM {qt(ref)} WHERE {condition}", what=f"list partitions of {ref}")
    return [str(r[0]) for r in rows]


def publish(conn: ClickHouseConnection, target: TableRef, staging: TableRef, mode: WriteMode, token: str | None,
            rows: int, run_filter: str, cluster: str = "") -> Published:
    """Publish a complete staging table into ``target`` (created ``AS`` the staging table when
    missing, except for an overwrite, which renames the staging table into place). With a token,
    only the attempt whose claim stands publishes; the others get ``by_me=False`` once the write
    is published (their staging table is theirs to drop). ``cluster``: the table's cluster, or
    ``""`` (recorded in the ledger with the claim)."""
    if mode is not WriteMode.OVERWRITE and table_engine(conn, target) is None:
        conn.command(f"CREATE TABLE IF NOT EXISTS {qt(target)}{ddl_on_cluster(cluster)} AS {qt(staging)}",
                     what=f"create table {target}")
    if not token:
        _ops(conn, target, staging, mode.value, token, run_filter, cluster)
        return Published(True, rows)
    ensure_ledger(conn)
    if cluster and not ledger_is_shared(conn) and not conn.done_once(f"warned {cluster}"):
        conn.done_once(f"warned {cluster}", mark=True)  # once per connection
        get_dagster_logger().warning(
            f"{target} is on cluster {cluster}, but Loom's ledger is not in a Replicated database: writes through "
            f"other nodes do not see its claims. Create the {LEDGER_SCHEMA} database as a Replicated database "
            "(docs/clickhouse-server.md, 'Loom's own tables on a cluster').")
    detail = f"{staging.table}|{mode.value}|{run_filter}"
    winner = claim(conn, target, token, detail, rows, cluster)
    if winner.staging != detail:
        return Published(False, await_published(conn, winner))
    try:
        _ops(conn, target, staging, mode.value, token, run_filter, cluster)
    except LoomError:
        # another process may have taken the staging table over to complete it (see complete())
        entry = latest(conn, target, token)
        if entry is None or entry.state not in DONE:
            raise
        return Published(True, rows)
    record(conn, target, token, "published", staging.table, rows, cluster=cluster)
    return Published(True, rows)


def await_published(conn: ClickHouseConnection, entry: Entry, wait_s: float = CLAIM_WAIT_S) -> int:
    """Wait until the claimed write ``entry`` is published (by its owner, alive elsewhere), or
    complete it when its owner is gone or ``wait_s`` passes; returns the rows it published."""
    target = TableRef.parse(entry.target)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        now = latest(conn, target, entry.token)
        if now is not None and now.state in DONE:
            return now.rows
        if now is not None and owner_is_dead(now.owner):
            break
        time.sleep(_POLL_S)
    complete(conn, latest(conn, target, entry.token) or entry)
    return entry.rows


def owner_is_dead(who: str) -> bool:
    """Whether the ledger owner ``host:pid`` is a process of this host that no longer runs."""
    host, _, pid = who.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _staged_detail(entry: Entry) -> tuple[str, str, str]:
    name, _, rest = entry.staging.partition("|")
    mode, _, run_filter = rest.partition("|")
    return name, mode, run_filter


def _blocked(entry: Entry, why: str) -> PublicationBlockedError:
    return PublicationBlockedError(
        f"the {_staged_detail(entry)[1]} write {entry.token!r} of table {entry.target} was staged but cannot be "
        f"published: {why}. It blocks nothing else; to give it up (its staged rows are dropped), run "
        f"ClickHouseResource(...).abandon_publication({entry.target!r}, {entry.token!r}) "
        "(see docs/clickhouse-server.md, 'Unfinished publications')."
    )


def complete(conn: ClickHouseConnection, entry: Entry) -> bool:
    """Finish a publication whose staging completed (a killed or failed attempt), then drop its
    staging table. The staging table is first taken over with ``RENAME TABLE`` (atomic), so of
    several processes completing one write at once exactly one runs the publication; the others
    wait for its ``published``. Returns True when this call published it.

    Raises:
        PublicationBlockedError: naming the entry, its table and how to clear it, when the
            publication cannot be completed.
    """
    target = TableRef.parse(entry.target)
    for _ in range(50):
        now = latest(conn, target, entry.token)
        if now is not None and now.state in DONE:
            return False
        entry = now or entry
        name, mode, run_filter = _staged_detail(entry)
        cluster, ddl = entry.cluster, ddl_on_cluster(entry.cluster)
        current = TableRef(target.schema, name)
        mine = staging_ref(target, entry.token)
        try:
            conn.command(f"RENAME TABLE {qt(current)} TO {qt(mine)}{ddl}", what=f"take over the publication of {target}")
        except LoomError as exc:
            if table_engine(conn, current) is not None:
                raise _blocked(entry, str(exc)) from None
            if mode == WriteMode.OVERWRITE.value and _comment(conn, target) == marker(entry.token, cluster):
                # swapped in before the kill
                record(conn, target, entry.token, "published", name, entry.rows, cluster=cluster)
                return True
            time.sleep(_POLL_S)  # another process took it over (its 'moved' row follows) or is publishing
            continue
        record(conn, target, entry.token, "moved", f"{mine.table}|{mode}|{run_filter}", entry.rows, cluster=cluster)
        try:
            _ops(conn, target, mine, mode, entry.token, run_filter, cluster)
        except LoomError as exc:
            raise _blocked(entry, str(exc)) from None
        record(conn, target, entry.token, "published", mine.table, entry.rows, cluster=cluster)
        conn.command(f"DROP TABLE IF EXISTS {qt(mine)}{ddl} SYNC", what=f"drop the staging table of {target}")
        return True
    raise _blocked(entry, f"its staging table {target.schema}.{_staged_detail(entry)[0]} is gone")


def previous(conn: ClickHouseConnection, target: TableRef, token: str) -> Entry | None:
    """The ledger entry of an earlier attempt of this write, if the ledger exists."""
    if not ledger_exists(conn):
        return None
    return latest(conn, target, token)


def may_be_live(conn: ClickHouseConnection, entry: Entry, stale_after_s: float) -> bool:
    """Whether the entry's writer may still be publishing it: a live process of this host, or a
    young entry of another host (on a server; the embedded engine has one process at a time)."""
    host, _, pid = entry.owner.rpartition(":")
    if not entry.owner or conn.is_embedded() or (pid.isdigit() and int(pid) == os.getpid() and host == socket.gethostname()):
        return False
    if host == socket.gethostname():
        return not owner_is_dead(entry.owner)
    return entry.age_s < stale_after_s


def recover(conn: ClickHouseConnection, stale_after_s: float = 3600.0) -> tuple[list[Entry], list[str]]:
    """Complete every unfinished publication of a dead writer (killed between ``staged`` and
    ``published``). Returns the entries this call completed and one warning per entry that
    could not be completed (it is left in the ledger; nothing else is blocked by it)."""
    if not ledger_exists(conn):
        return [], []
    done: list[Entry] = []
    blocked: list[str] = []
    for entry in open_entries(conn):
        if may_be_live(conn, entry, stale_after_s):
            continue
        try:
            if complete(conn, entry):
                done.append(entry)
        except PublicationBlockedError as exc:
            blocked.append(str(exc))
    return done, blocked


def abandon(conn: ClickHouseConnection, target: TableRef, token: str) -> str:
    """Give up the unfinished write ``token`` of ``target``: record ``abandoned`` and drop its
    staging tables. Returns a one-line summary. A published write is left alone."""
    if not ledger_exists(conn):
        return f"{target}: no publication ledger, nothing to abandon"
    entry = latest(conn, target, token)
    if entry is None:
        return f"{target}: no write {token!r} in the ledger"
    if entry.state in DONE:
        return f"{target}: write {token!r} is already {entry.state}"
    record(conn, target, token, "abandoned", _staged_detail(entry)[0], entry.rows, cluster=entry.cluster)
    tag = hashlib.sha256(token.encode()).hexdigest()[:12]
    like = f"{STAGE_PREFIX}{target.table[:40]}_{tag}_".replace("_", "\\_") + "%"
    dropped = [str(r[0]) for r in conn.query_rows(
        f"SELECT name FROM system.tables WHERE database = {lit(target.schema)} AND name LIKE {lit(like)}",
        what=f"list the staging tables of write {token} of {target}")]
    for name in dropped:
        conn.command(f"DROP TABLE IF EXISTS {qt(TableRef(target.schema, name))}{ddl_on_cluster(entry.cluster)} SYNC",
                     what=f"drop staging table {name}")
    return f"{target}: abandoned write {token!r} ({entry.rows} staged rows, {len(dropped)} staging table(s) dropped)"
