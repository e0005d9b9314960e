"""One Delta commit per write: ``write_deltalake`` with the write's app transaction, and
bounded retries when a concurrent writer committed first."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Literal

import pyarrow as pa
from dagster import get_dagster_logger
from deltalake import CommitProperties, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError

from loom_resources.delta._batches import BatchSource
from loom_resources.delta._location import DeltaLocation
from loom_resources.errors import PredicateError
from loom_resources.model import TableRef
from loom_resources.predicates import Predicate, to_sql

__all__ = ["commit", "commit_properties", "render", "with_retries"]


def commit_properties(loc: DeltaLocation, app_id: str | None) -> CommitProperties:
    """Commit properties recording the write's app transaction (for idempotent retries)."""
    txns = [Transaction(app_id, 1)] if app_id else None
    return CommitProperties(app_transactions=txns, max_commit_retries=loc.max_commit_retries)


def commit(
    loc: DeltaLocation,
    data: pa.Table | pa.RecordBatchReader,
    *,
    app_id: str | None,
    partition_by: tuple[str, ...],
    mode: Literal["append", "overwrite"],
    predicate: str | None = None,
    schema_mode: Literal["merge", "overwrite"] | None = None,
) -> None:
    """One ``write_deltalake`` call: one commit, recording the write's app transaction."""
    common: dict[str, Any] = dict(
        partition_by=list(partition_by) or None,
        schema_mode=schema_mode,
        storage_options=loc.storage_options or None,
        commit_properties=commit_properties(loc, app_id),
    )
    if mode == "overwrite":
        write_deltalake(loc.uri, data, mode="overwrite", predicate=predicate, **common)
    else:
        write_deltalake(loc.uri, data, mode="append", **common)


def _is_conflict(exc: BaseException) -> bool:
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
            if not _is_conflict(exc) or n == loc.max_commit_retries:
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
