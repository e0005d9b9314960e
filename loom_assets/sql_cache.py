"""The tables each SQL body reads, remembered across code-location loads.

Every load checks every SQL body against its declared sources, which needs sqlglot's parser:
~0.09 s to import and a parse per body, at every UI reload, CLI call and run worker. The answer
only depends on the statement's text and the parser, so it is kept in one small JSON file keyed
by a hash of both; a load whose statements are all known neither imports nor runs the parser.

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

__all__ = ["TABLES_CACHE", "TablesCache", "cache_dir"]

_FORMAT = 1
#: Entries kept in the file; past this, only the statements of the latest load are kept.
MAX_ENTRIES = 20_000


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


class TablesCache:
    """Statement text -> the table names it reads, for one parser (see the module docstring)."""

    def __init__(self) -> None:
        self._entries: dict[str, list[str]] | None = None
        self._used: dict[str, list[str]] = {}
        self._dirty = False
        self._salt = ""

    def _file(self) -> Path | None:
        d = cache_dir()
        return None if d is None else d / "sql_tables.json"

    def _key(self, sql: str) -> str:
        return hashlib.sha256(f"{self._salt}\0{sql}".encode()).hexdigest()

    def _load(self) -> dict[str, list[str]]:
        if self._entries is None:
            self._salt = _parser_fingerprint()
            self._entries = {}
            path = self._file()
            try:
                data = json.loads(path.read_text()) if path is not None else {}
                if isinstance(data, dict) and data.get("format") == _FORMAT and isinstance(data.get("tables"), dict):
                    self._entries = {k: v for k, v in data["tables"].items()
                                     if isinstance(v, list) and all(isinstance(x, str) for x in v)}
            except (OSError, ValueError):
                pass  # no cache yet, or an unreadable one: parse, and rewrite it
        return self._entries

    def get(self, sql: str) -> set[str] | None:
        """The remembered tables of ``sql``, or ``None`` when it must be parsed."""
        entries = self._load()
        key = self._key(sql)
        found = entries.get(key)
        if found is None:
            return None
        self._used[key] = found
        return set(found)

    def put(self, sql: str, tables: set[str]) -> None:
        """Remember the tables a successful parse of ``sql`` found (saved by :meth:`save`)."""
        entries = self._load()
        key = self._key(sql)
        entries[key] = self._used[key] = sorted(tables)
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
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".sql_tables.", suffix=".tmp")
            with os.fdopen(fd, "w") as fh:
                json.dump({"format": _FORMAT, "tables": entries}, fh)
            os.replace(tmp, path)  # concurrent loads: the last writer wins, the other's entries are parsed again
        except OSError:
            pass


#: The process-wide cache the SQL checks use.
TABLES_CACHE = TablesCache()
