"""What sqlglot found in each SQL body, remembered across code-location loads.

Every load checks every SQL body against its declared sources and derives its column lineage,
which needs sqlglot's parser: ~0.09 s to import (~0.2 s with the optimizer lineage uses) and a
parse per body, at every UI reload, CLI call and run worker. The answers only depend on the
statement's text (and, for lineage, the sources' columns) and the parser, so they are kept in
small JSON files keyed by a hash of those (``sql_tables.json``: the tables a statement reads;
``sql_lineage.json``: its column lineage); a load whose statements are all known neither
imports nor runs the parser.

Hand-written because no library we use keeps a cross-process memo: ``functools`` caches live in
one process. The file is an optimization only: a missing, corrupt, foreign or unwritable cache is
ignored (the statement is parsed), and statements that fail to parse are never stored.

Location: ``$LOOM_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/loom`` or ``~/.cache/loom``;
``LOOM_CACHE_DIR=off`` disables it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Generic, TypeVar

__all__ = ["LINEAGE_CACHE", "TABLES_CACHE", "LineageCache", "TablesCache", "cache_dir"]

_FORMAT = 1
#: Entries kept in the file; past this, only the statements of the latest load are kept.
MAX_ENTRIES = 20_000

V = TypeVar("V")


def cache_dir() -> Path | None:
    """Where Loom keeps its caches (``None``: disabled with ``LOOM_CACHE_DIR=off``)."""
    configured = os.environ.get("LOOM_CACHE_DIR")
    if configured:
        return None if configured.strip().lower() == "off" else Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "loom"


def _parser_fingerprint() -> str:
    """Which sqlglot would parse (its location and install time), found without importing it."""
    spec = importlib.util.find_spec("sqlglot")
    origin = spec.origin if spec is not None else None
    if not origin:
        return "none"
    try:
        return f"{origin}:{os.stat(origin).st_mtime_ns}"
    except OSError:
        return origin


class _JsonMemo(Generic[V]):
    """Statement text -> one JSON value derived from it by one parser, kept in one file of the
    cache directory (see the module docstring). Subclasses name the file and check the values."""

    _filename = ""
    _field = ""

    def __init__(self) -> None:
        self._entries: dict[str, V] | None = None
        self._used: dict[str, V] = {}
        self._dirty = False
        self._salt = ""

    def _valid(self, value: Any) -> bool:
        raise NotImplementedError

    def _file(self) -> Path | None:
        d = cache_dir()
        return None if d is None else d / self._filename

    def _key(self, sql: str) -> str:
        return hashlib.sha256(f"{self._salt}\0{sql}".encode()).hexdigest()

    def _load(self) -> dict[str, V]:
        if self._entries is None:
            self._salt = _parser_fingerprint()
            self._entries = {}
            path = self._file()
            try:
                data = json.loads(path.read_text()) if path is not None else {}
                if isinstance(data, dict) and data.get("format") == _FORMAT and isinstance(data.get(self._field), dict):
                    self._entries = {k: v for k, v in data[self._field].items() if self._valid(v)}
            except (OSError, ValueError):
                pass  # no cache yet, or an unreadable one: parse, and rewrite it
        return self._entries

    def _get(self, sql: str) -> V | None:
        entries = self._load()
        key = self._key(sql)
        found = entries.get(key)
        if found is None:
            return None
        self._used[key] = found
        return found

    def _put(self, sql: str, value: V) -> None:
        entries = self._load()
        key = self._key(sql)
        entries[key] = self._used[key] = value
        self._dirty = True

    def save(self) -> None:
        """Write new entries, atomically; a failure (read-only disk, no home) is ignored."""
        path = self._file()
        if not self._dirty or path is None or self._entries is None:
            return
        self._dirty = False
        entries = self._entries if len(self._entries) <= MAX_ENTRIES else dict(self._used)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
            with os.fdopen(fd, "w") as fh:
                json.dump({"format": _FORMAT, self._field: entries}, fh)
            os.replace(tmp, path)  # concurrent loads: the last writer wins, the other's entries are parsed again
        except OSError:
            pass


class TablesCache(_JsonMemo[list[str]]):
    """Statement text -> the table names it reads, for one parser (see the module docstring)."""

    _filename = "sql_tables.json"
    _field = "tables"

    def _valid(self, value: Any) -> bool:
        return isinstance(value, list) and all(isinstance(x, str) for x in value)

    def get(self, sql: str) -> set[str] | None:
        """The remembered tables of ``sql``, or ``None`` when it must be parsed."""
        found = self._get(sql)
        return None if found is None else set(found)

    def put(self, sql: str, tables: set[str]) -> None:
        """Remember the tables a successful parse of ``sql`` found (saved by :meth:`save`)."""
        self._put(sql, sorted(tables))


#: Output column -> its source columns as ``[source alias, column]`` pairs.
ColumnSources = dict[str, list[list[str]]]


class LineageCache(_JsonMemo[ColumnSources]):
    """Statement text and source columns -> each output column's source columns
    (:mod:`loom_assets.lineage`), for one parser."""

    _filename = "sql_lineage.json"
    _field = "lineage"

    def _valid(self, value: Any) -> bool:
        return isinstance(value, dict) and all(
            isinstance(deps, list) and all(isinstance(d, list) and len(d) == 2 and all(isinstance(x, str) for x in d)
                                           for d in deps)
            for deps in value.values())

    def get(self, key: str) -> ColumnSources | None:
        """The remembered lineage of ``key`` (statement and source columns), or ``None``."""
        return self._get(key)

    def put(self, key: str, lineage: ColumnSources) -> None:
        """Remember the lineage computed for ``key`` (saved by :meth:`save`)."""
        self._put(key, lineage)


#: The process-wide cache the SQL checks use.
TABLES_CACHE = TablesCache()
#: The process-wide cache of column lineage.
LINEAGE_CACHE = LineageCache()
