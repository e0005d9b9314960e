"""Spool directories of streaming reads in ``streaming_reads="spool"`` mode: naming, a cap on
their size, clear disk-full errors, and the sweep of directories that killed processes left.

The default streaming read (``streaming_reads="direct"``) streams the query result straight into
its consumer and never creates a spool. The spool mode writes the whole result once to
lz4-compressed Arrow IPC segments (a snapshot that can be scanned any number of times while the
step runs) and is capped by ``spool_max_bytes``.

A spool directory is named ``loom-ch-spool-<host>-<pid>-<random>``. Its owner removes it when the
connection closes (the step ends), when the read fails, and at interpreter exit as a backstop. A
process killed with SIGKILL removes nothing, so every connection sweeps, when it opens, the
directories of its spool parent whose owner process on this host is dead and which are older
than :data:`SWEEP_MIN_AGE_S`. A live process's spool is never touched.
"""

from __future__ import annotations

import atexit
import errno
import os
import re
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loom_resources.errors import LoomError

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "SWEEP_MIN_AGE_S",
    "SpoolDiskFullError",
    "SpoolError",
    "SpoolLimitError",
    "forget_spool",
    "new_spool",
    "sweep_spools",
    "write_spool",
]

PREFIX = "loom-ch-spool-"
SWEEP_MIN_AGE_S = 600.0
"""A dead owner's spool is swept only when nothing in it changed for this long (guards against a
recycled pid and clock skew; the owner being dead is the real test)."""

SEGMENT_ROWS = 1_000_000
"""Rows per spool segment: Polars memory-maps each file it scans, so one big file would keep the
whole spool resident in the page cache of this process."""

_SPOOLS: set[str] = set()
_LOCK = threading.Lock()
_NAME = re.compile(r"^loom-ch-spool-(?P<host>[A-Za-z0-9_.]+)-(?P<pid>\d+)-[A-Za-z0-9_]+$")


class SpoolError(LoomError):
    """A streaming read's spool could not be written (cap reached or disk full); nothing is left behind."""


class SpoolLimitError(SpoolError):
    """The spool of one streaming read would exceed the resource's ``spool_max_bytes``."""


class SpoolDiskFullError(SpoolError):
    """The disk holding the spool directory is full."""


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname() or "host")


def new_spool(parent: str | None) -> str:
    """A new spool directory under ``parent`` (default: the system temp directory), named with
    this host and process id so that a later sweep can tell whether its owner is alive."""
    directory = tempfile.mkdtemp(prefix=f"{PREFIX}{_host()}-{os.getpid()}-", dir=parent)
    with _LOCK:
        _SPOOLS.add(directory)
    return directory


def forget_spool(directory: str) -> None:
    """Stop tracking ``directory`` (its owner removed it)."""
    with _LOCK:
        _SPOOLS.discard(directory)


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return True  # not a pid we can judge: keep it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    except OSError:
        return True
    return True


def _newest_mtime(path: Path) -> float:
    newest = path.stat().st_mtime
    for p in path.rglob("*"):
        try:
            newest = max(newest, p.stat().st_mtime)
        except OSError:
            continue
    return newest


def sweep_spools(parent: str | None, *, min_age_s: float = SWEEP_MIN_AGE_S, now: float | None = None) -> list[str]:
    """Remove spool directories under ``parent`` left by dead processes of this host.

    A directory is removed only when its name carries this host and a process id that no longer
    exists, and nothing in it changed for ``min_age_s`` seconds. Anything else (a live owner,
    another host, a name without an owner) is left alone. Never raises; returns what it removed.
    """
    root = Path(parent or tempfile.gettempdir())
    now = time.time() if now is None else now
    removed: list[str] = []
    try:
        candidates: Iterable[Path] = list(root.glob(f"{PREFIX}*"))
    except OSError:
        return removed
    host = _host()
    for d in candidates:
        m = _NAME.match(d.name)
        if m is None or m["host"] != host or int(m["pid"]) == os.getpid() or _pid_alive(int(m["pid"])):
            continue
        try:
            if not d.is_dir() or now - _newest_mtime(d) < min_age_s:
                continue
            shutil.rmtree(d)
        except OSError:
            continue
        removed.append(str(d))
    return removed


def _is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and (
        exc.errno in (errno.ENOSPC, errno.EDQUOT) or "No space left on device" in str(exc) or "Disk quota exceeded" in str(exc)
    )


def write_spool(batches: Iterable[pa.RecordBatch], directory: str, *, max_bytes: int, what: str) -> list[str]:
    """Write ``batches`` to lz4-compressed Arrow IPC segments in ``directory`` and return their
    paths (none for an empty result).

    Raises:
        SpoolLimitError: the segments would exceed ``max_bytes`` (the write stops at the cap).
        SpoolDiskFullError: the disk is full.
    The caller removes ``directory`` on any failure.
    """
    import pyarrow as pa  # here, not at load: pyarrow+NumPy cost ~0.1 s
    import pyarrow.ipc as ipc

    files: list[str] = []
    sink: Any = None
    writer: Any = None
    rows_in_file = 0
    done_bytes = 0  # bytes of closed segments
    try:
        for batch in batches:
            if writer is None or rows_in_file >= SEGMENT_ROWS:
                if writer is not None:
                    writer.close()
                    done_bytes += sink.tell()
                    sink.close()
                files.append(os.path.join(directory, f"part-{len(files):05d}.arrow"))
                sink = pa.OSFile(files[-1], "wb")
                writer = ipc.new_file(sink, batch.schema, options=ipc.IpcWriteOptions(compression="lz4"))
                rows_in_file = 0
            writer.write(batch)
            rows_in_file += batch.num_rows
            if done_bytes + sink.tell() > max_bytes:
                raise SpoolLimitError(
                    f"the spool of {what} exceeds spool_max_bytes={max_bytes} bytes in {directory}; nothing was "
                    f"kept. Use streaming_reads='direct' (streams the result without a spool), raise spool_max_bytes, "
                    f"or filter the source."
                )
        if writer is not None:
            writer.close()
            sink.close()
            writer = sink = None
    except OSError as exc:
        if not _is_disk_full(exc):
            raise
        raise SpoolDiskFullError(
            f"no space left on the disk of spool directory {directory} while spooling {what} "
            f"({done_bytes + (sink.tell() if sink is not None and not sink.closed else 0)} bytes written); nothing was "
            f"kept. Free space there, set spool_dir to a larger disk, or use streaming_reads='direct' (no spool)."
        ) from None
    finally:
        for closable in (writer, sink):
            if closable is not None:
                try:
                    closable.close()
                except Exception:  # noqa: S110 - the original error matters, not the close
                    pass
    return files


@atexit.register
def _remove_leftover_spools() -> None:
    for d in list(_SPOOLS):
        shutil.rmtree(d, ignore_errors=True)
