"""The orphan sweep: data files under a Delta table that no version in its log references.

A write that dies (SIGKILL, lost node, full disk) after writing parquet files but before its
commit leaves them behind, and so does every attempt that lost a commit race. No log version
adds them, so ``vacuum`` never removes them (it deletes files that *were* referenced), and
object_store's local file system does not even list the in-progress multipart files
(``part-….parquet#1``), so a full vacuum misses those too.

The sweep lists the table's files first, then reads every retained log entry (JSON commits,
compacted logs, checkpoints and their sidecars) and collects each ``add``/``remove``/``cdc`` path.
A parquet file (or multipart ``.parquet#N`` part, or a ``_delta_log/_commit_*.tmp`` commit
attempt) that no entry names and that is older than the safe age is removed. A live write
finishes its files and commits them within the safe age; a file younger than it is never touched.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from loom_resources.delta._location import DeltaLocation

__all__ = ["StoreFiles", "orphan_files", "store_files"]

_DATA = re.compile(r"\.parquet(#\d+)?$")
_COMMIT_TMP = re.compile(r"^_delta_log/_commit_[^/]*\.tmp$")
_LOG_JSON = re.compile(r"^_delta_log/\d+(\.\d+)?(\.compacted)?\.json$")
_LOG_PARQUET = re.compile(r"^_delta_log/(_sidecars/)?[^/]*\.parquet$")


@dataclass(frozen=True)
class StoreFile:
    path: str  # relative to the table root, "/"-separated
    modified: dt.datetime  # UTC


class StoreFiles:
    """The files of one table: a local directory, or an object store through delta-rs (the
    object store its commits go through, configured by the same storage options)."""

    def __init__(self, loc: DeltaLocation) -> None:
        self.loc = loc
        self.local = "://" not in loc.uri or loc.uri.startswith("file://")
        self.root = Path(urlsplit(loc.uri).path if loc.uri.startswith("file://") else loc.uri)
        self._handler: Any = None
        if not self.local:
            from deltalake.fs import DeltaStorageHandler
            from pyarrow.fs import PyFileSystem

            self.fs = PyFileSystem(DeltaStorageHandler(loc.uri, loc.storage_options or None))

    def list(self) -> Iterator[StoreFile]:
        """Every file under the table (multipart staging files included on local disks)."""
        if self.local:
            for dirpath, _, names in os.walk(self.root):
                for name in names:
                    full = os.path.join(dirpath, name)
                    try:
                        mtime = os.stat(full).st_mtime
                    except FileNotFoundError:
                        continue
                    yield StoreFile(os.path.relpath(full, self.root).replace(os.sep, "/"),
                                    dt.datetime.fromtimestamp(mtime, dt.UTC))
            return
        from pyarrow.fs import FileSelector, FileType

        for info in self.fs.get_file_info(FileSelector("", recursive=True, allow_not_found=True)):
            if info.type == FileType.File and info.mtime is not None:
                mtime = info.mtime if info.mtime.tzinfo else info.mtime.replace(tzinfo=dt.UTC)
                yield StoreFile(info.path.lstrip("/"), mtime)

    def read(self, path: str) -> bytes:
        if self.local:
            return (self.root / path).read_bytes()
        with self.fs.open_input_file(path) as f:
            return bytes(f.read())

    def write(self, path: str, data: bytes) -> None:
        """Store ``data`` as the file ``path`` (replacing it)."""
        if self.local:
            (self.root / path).parent.mkdir(parents=True, exist_ok=True)
            (self.root / path).write_bytes(data)
            return
        if self._handler is None:
            # delta-rs' own handler, opened by the first remote write (sweeps and listings never
            # write); writes skip pyarrow's wrapper, whose stream hands it an Arrow buffer, which
            # it refuses (it takes bytes)
            from deltalake._internal import DeltaFileSystemHandler

            self._handler = DeltaFileSystemHandler(self.loc.uri, self.loc.storage_options or None)
        out = self._handler.open_output_stream(path)
        try:
            out.write(data)
        finally:
            out.close()

    def delete(self, path: str) -> None:
        if self.local:
            (self.root / path).unlink(missing_ok=True)
        else:
            self.fs.delete_file(path)


def store_files(loc: DeltaLocation) -> StoreFiles:
    """The file access of ``loc``'s table."""
    return StoreFiles(loc)


def _relative(path: str, files: StoreFiles) -> str:
    """A log path relative to the table root (log paths are URL-encoded, absolute when the
    file lives elsewhere)."""
    if "://" in path:
        parts = urlsplit(path)
        base = urlsplit(files.loc.uri if "://" in files.loc.uri else Path(files.loc.uri).absolute().as_uri())
        return unquote(parts.path)[len(unquote(base.path).rstrip("/")) + 1:]
    return unquote(path)


def referenced(files: StoreFiles, listing: list[StoreFile]) -> set[str]:
    """Every file path any retained log entry (commit, compaction, checkpoint, sidecar) names."""
    import pyarrow as pa  # here, not at load: pyarrow+NumPy cost ~0.1 s
    import pyarrow.parquet as pq

    refs: set[str] = set()
    for f in listing:
        if _LOG_JSON.match(f.path):
            for line in files.read(f.path).decode().splitlines():
                if not line.strip():
                    continue
                action = json.loads(line)
                for kind in ("add", "remove", "cdc"):
                    if kind in action and action[kind].get("path"):
                        refs.add(_relative(action[kind]["path"], files))
        elif _LOG_PARQUET.match(f.path):
            # ParquetFile, not pq.read_table: read_table goes through pyarrow.dataset, which imports
            # pandas (0.3-1.5 s measured, on the first write of every process to a table with a
            # checkpoint, e.g. the run records after 10 runs); only the file-action columns are read
            log = pq.ParquetFile(pa.BufferReader(files.read(f.path)))
            table = log.read(columns=[k for k in ("add", "remove", "cdc") if k in log.schema_arrow.names])
            for kind in ("add", "remove", "cdc"):
                if kind in table.column_names:
                    for p in table.column(kind).combine_chunks().field("path").to_pylist():
                        if p:
                            refs.add(_relative(p, files))
    return refs


def orphan_files(files: StoreFiles, *, min_age: dt.timedelta, now: dt.datetime | None = None) -> list[str]:
    """Files no retained log entry references and older than ``min_age`` (sorted)."""
    listing = list(files.list())  # list before reading the log: a file committed meanwhile is referenced
    refs = referenced(files, listing)
    cutoff = (now or dt.datetime.now(dt.UTC)) - min_age
    out = []
    for f in listing:
        if f.modified > cutoff or f.path in refs:
            continue
        hidden = any(part.startswith(("_", ".")) for part in f.path.split("/")[:-1])
        if (_DATA.search(f.path) and not hidden and not f.path.split("/")[-1].startswith(("_", "."))) or \
                _COMMIT_TMP.match(f.path):
            out.append(f.path)
    return sorted(out)
