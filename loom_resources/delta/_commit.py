"""One Delta commit per write: ``write_deltalake`` with the write's app transaction, and
bounded retries when a concurrent writer committed first.

The same-write guard: a write hands ``write_deltalake`` the :class:`DeltaTable` it checked
("has this app transaction committed?"), so that snapshot is the commit's read version. delta-rs
checks every commit made after the read version against ours before it may commit
(``conflict_checker.rs``: a winning commit carrying one of our app ids fails ours with
``ConcurrentTransaction``, also across its internal retries), and a table creation commits
version 0 only if absent. A concurrent attempt of the same logical write therefore fails to
commit; :func:`with_retries` then reloads the table, finds the app transaction and skips.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from dagster import get_dagster_logger
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError

from loom_resources.delta._batches import BatchSource
from loom_resources.delta._location import DeltaLocation
from loom_resources.errors import PredicateError
from loom_resources.model import TableRef
from loom_resources.predicates import Predicate, to_sql

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["COMMIT_ID_KEY", "commit", "commit_properties", "committed_version", "is_conflict", "render", "with_retries"]


#: commitInfo key carrying a commit attempt's own id: how a write finds the version it committed
#: when delta-rs does not say (``create_write_transaction`` returns nothing, and the table object
#: stays at its read version; the latest version may already be another writer's).
COMMIT_ID_KEY = "loomCommitId"


def committed_version(loc: DeltaLocation, read_version: int, commit_id: str) -> int:
    """The version whose commitInfo carries ``commit_id``: a commit made after ``read_version``
    (delta-rs' own retries may have moved it past other writers' commits).

    Read from the commit files themselves, by hand: deltalake's ``history()`` labels its entries by
    counting back from the version it loaded, so a commit that lands while it lists shifts every
    label (seen with four concurrent writers: a writer's entry labelled with the version another
    writer committed)."""
    from loom_resources.delta._sweep import StoreFiles

    files = StoreFiles(loc)
    version = max(read_version + 1, 0)
    while True:
        try:
            data = files.read(f"_delta_log/{version:020d}.json")
        except OSError:  # no such version (yet): ours is not after read_version
            break
        for line in data.splitlines():
            if b'"commitInfo"' in line and json.loads(line)["commitInfo"].get(COMMIT_ID_KEY) == commit_id:
                return version
        version += 1
    raise AssertionError(f"commit {commit_id} not found after version {read_version} of {loc.display_uri}")


def commit_properties(loc: DeltaLocation, app_id: str | None, *, internal_retries: bool = True,
                      predicate: str | None = None, commit_id: str | None = None,
                      extra: dict[str, Any] | None = None) -> CommitProperties:
    """Commit properties recording the write's app transaction (for idempotent retries).

    ``internal_retries=False``: delta-rs does not move the commit to a later version itself (a
    table creation must: delta-rs would otherwise commit a losing creation as version 1, without
    a conflict check, measured with deltalake 1.6). ``predicate``: the rows an overwrite replaced,
    recorded in the history's ``operationParameters`` as ``write_deltalake`` records its own.
    ``commit_id``: recorded under :data:`COMMIT_ID_KEY` (see :func:`committed_version`).
    ``extra``: more commitInfo entries (delta-rs refuses the keys it generates, e.g. ``operation``).
    """
    txns = [Transaction(app_id, 1)] if app_id else None
    retries = loc.max_commit_retries if internal_retries else 0
    meta: dict[str, Any] = {"operationParameters": {"predicate": predicate}} if predicate else {}
    if commit_id:
        meta[COMMIT_ID_KEY] = commit_id
    meta.update(extra or {})
    return CommitProperties(app_transactions=txns, max_commit_retries=retries, custom_metadata=meta or None)


def commit(
    loc: DeltaLocation,
    data: pa.Table | pa.RecordBatchReader,
    *,
    app_id: str | None,
    partition_by: tuple[str, ...],
    mode: Literal["append", "overwrite"],
    predicate: str | None = None,
    schema_mode: Literal["merge", "overwrite"] | None = None,
    snapshot: DeltaTable | None = None,
    create: bool = False,
    known_version: int = -1,
    stats_columns: str | None = None,
) -> int:
    """One ``write_deltalake`` call: one commit, recording the write's app transaction.
    Returns the version it committed.

    Args:
        snapshot: The table as the write checked it: the commit's read version (delta-rs fails
            the commit when a later commit conflicts, a commit of the same app id included).
            ``None``: the latest version when the call starts.
        create: The write creates the table; it fails (and is retried as a conflict) when a
            concurrent writer created it first, instead of silently appending to it: the
            version-0 commit is put-if-absent and delta-rs' own retries are off.
        known_version: Without ``snapshot``: a version the table had before the call (-1: none),
            where the search for the committed version starts.
        stats_columns: The created table's ``delta.dataSkippingStatsColumns``.
    """
    target: str | DeltaTable = snapshot if snapshot is not None else loc.uri
    commit_id = uuid.uuid4().hex
    common: dict[str, Any] = dict(
        partition_by=list(partition_by) or None,
        schema_mode=schema_mode,
        storage_options=loc.storage_options or None,
        commit_properties=commit_properties(loc, app_id, internal_retries=not create, commit_id=commit_id),
    )
    if create:
        write_deltalake(target, data, mode="error", configuration=loc.creation_config(stats_columns), **common)
        return 0
    if mode == "overwrite":
        write_deltalake(target, data, mode="overwrite", predicate=predicate, **common)
    else:
        write_deltalake(target, data, mode="append", **common)
    if snapshot is not None:
        return snapshot.version()  # write_deltalake moved the object to the version it committed
    return committed_version(loc, known_version, commit_id)


def is_conflict(exc: BaseException) -> bool:
    """Whether ``exc`` says another writer committed first (nothing of this attempt was committed)."""
    if isinstance(exc, CommitFailedError):
        return True
    text = str(exc).lower()
    return isinstance(exc, DeltaError) and ("conflict" in text or "already exists" in text)


def with_retries(ref: TableRef, loc: DeltaLocation, attempt: Callable[[], Any], source: BatchSource | None = None) -> Any:
    """Run one commit attempt, retrying (bounded, with backoff) when another writer won the commit."""
    log = get_dagster_logger()
    for n in range(loc.max_commit_retries + 1):
        try:
            return attempt()
        except Exception as exc:
            if source is not None and source.error is not None:
                raise source.error from None
            if not is_conflict(exc) or n == loc.max_commit_retries:
                raise
            log.warning(f"{ref}: commit conflict ({exc}); retrying ({n + 1}/{loc.max_commit_retries})")
            time.sleep(min(0.05 * 2**n, 2.0))
    raise AssertionError("unreachable")


def render(pred: Predicate, ref: TableRef, *, qualifier: str | None = None) -> str:
    """Render a delta-rs predicate; any failure is an error, never a full-table overwrite."""
    try:
        return to_sql(pred, "datafusion", qualifier=qualifier)
    except Exception as exc:
        raise PredicateError(f"cannot build the replace predicate for table {ref}: {exc}") from exc
