"""Store faults of Delta reads and writes, turned into errors that name the table, where it
lives and what to do (delta-rs reports a full disk as "Failed to parse parquet: … No space left
on device", naming no table).

The classes subclass :class:`~loom_resources.errors.BackendUnavailableError` (the store cannot
take the operation) so existing handlers keep working.
"""

from __future__ import annotations

import errno
import re
from collections.abc import Iterator
from contextlib import contextmanager

from loom_resources.errors import BackendUnavailableError, LoomError, StoreFullError

__all__ = ["DeltaPermissionError", "DeltaStoreFullError", "DeltaStoreUnreachableError", "store_faults"]


class DeltaStoreFullError(BackendUnavailableError, StoreFullError):
    """The Delta store ran out of space (or quota) during a write; nothing was committed."""


class DeltaPermissionError(BackendUnavailableError):
    """The process may not read or write the table's files."""


class DeltaStoreUnreachableError(BackendUnavailableError):
    """The table's store cannot be reached (endpoint down, bucket missing, path not a directory)."""


_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_DENIED = (errno.EACCES, errno.EPERM, errno.EROFS)
_UNREACHABLE = (errno.ENOTDIR, errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ETIMEDOUT)
_PATTERNS: list[tuple[type[BackendUnavailableError], re.Pattern[str]]] = [
    (DeltaStoreFullError, re.compile(r"no space left on device|disk quota exceeded|file too large|\(os error 28\)", re.I)),
    (DeltaPermissionError, re.compile(
        r"permission denied|operation not permitted|read-only file system|access ?denied|forbidden|\b403\b|"
        r"\(os error (1|13|30)\)", re.I)),
    (DeltaStoreUnreachableError, re.compile(
        r"not a directory|connection refused|error sending request|dns error|timed out|no such bucket|"
        r"network is unreachable|\(os error (20|111|113)\)", re.I)),
]


def _kind(exc: BaseException) -> type[BackendUnavailableError] | None:
    if isinstance(exc, OSError) and exc.errno is not None:
        by_code: list[tuple[type[BackendUnavailableError], tuple[int, ...]]] = [
            (DeltaStoreFullError, _FULL), (DeltaPermissionError, _DENIED), (DeltaStoreUnreachableError, _UNREACHABLE)]
        for kind, codes in by_code:
            if exc.errno in codes:
                return kind
    text = str(exc)
    for kind, pattern in _PATTERNS:
        if pattern.search(text):
            return kind
    return None


def _advice(kind: type[BackendUnavailableError], where: str, action: str) -> str:
    if kind is DeltaStoreFullError:
        return (f"the store is full while {action}; free space on the file system or bucket holding {where} "
                "(or move the Delta root), then rerun: nothing was committed, and the table's sweep removes "
                "the partial files")
    if kind is DeltaPermissionError:
        return (f"permission denied while {action}; check permissions of {where} (directory write/execute "
                "bits, immutable flags, bucket policy or credentials in storage_options) for the user running Dagster")
    return (f"the store is unreachable while {action}; check that {where} exists and its endpoint, bucket "
            "and network are reachable from this process")


@contextmanager
def store_faults(table: str, where: str, action: str) -> Iterator[None]:
    """Re-raise a full-disk, permission or reachability failure inside the block as a
    :class:`DeltaStoreFullError` / :class:`DeltaPermissionError` / :class:`DeltaStoreUnreachableError`
    naming ``table``, ``where`` it lives and what to do; Loom's own errors pass through."""
    try:
        yield
    except LoomError as exc:
        kind = _kind(exc) if type(exc) is BackendUnavailableError else None  # only the bare "cannot reach"
        if kind is None:
            raise
        raise kind(f"Delta table {table} at {where}: {_advice(kind, where, action)} ({_first_line(exc)})") from exc
    except Exception as exc:
        kind = _kind(exc)
        if kind is None:
            raise
        raise kind(f"Delta table {table} at {where}: {_advice(kind, where, action)} ({_first_line(exc)})") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
