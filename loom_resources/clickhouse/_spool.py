"""The process's streaming-read spool directories, removed at interpreter exit as a backstop
for connections that were never closed (e.g. used outside Dagster)."""

from __future__ import annotations

import atexit
import shutil
import tempfile
import threading

__all__ = ["forget_spool", "new_spool"]

_SPOOLS: set[str] = set()
_LOCK = threading.Lock()


def new_spool(parent: str | None) -> str:
    """A new spool directory under ``parent`` (default: the system temp directory)."""
    directory = tempfile.mkdtemp(prefix="loom-ch-spool-", dir=parent)
    with _LOCK:
        _SPOOLS.add(directory)
    return directory


def forget_spool(directory: str) -> None:
    """Stop tracking ``directory`` (its owner removed it)."""
    with _LOCK:
        _SPOOLS.discard(directory)


@atexit.register
def _remove_leftover_spools() -> None:
    for d in list(_SPOOLS):
        shutil.rmtree(d, ignore_errors=True)
