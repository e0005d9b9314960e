"""The one embedded engine behind the endpoint: queries, inserts, sessions and their errors."""

from __future__ import annotations

import os
import re
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DISPLAY_NAME = "loom-ch-http"

#: Query-string parameters the HTTP layer consumes; everything else (but ``param_*``) is a setting.
_HTTP_PARAMS = frozenset({
    "query", "database", "default_format", "query_id", "session_id", "session_timeout", "session_check",
    "user", "password", "quota_key", "role", "compress", "decompress", "buffer_size", "wait_end_of_query",
    "client_protocol_version", "enable_http_compression", "http_zlib_compression_level",
    "send_progress_in_http_headers", "http_headers_progress_interval_ms", "http_wait_end_of_query",
    "cancel_http_readonly_queries_on_client_close", "http_response_buffer_size", "add_http_cors_header",
})

# ClickHouse's exceptionCodeToHTTPStatus, for the codes a client meets in practice.
_NOT_FOUND = {46, 47, 60, 81, 115, 117}  # unknown function/identifier/table/database/setting/storage
_BAD_REQUEST = {6, 26, 27, 33, 36, 38, 41, 43, 44, 53, 62, 69, 70, 72, 73, 117, 349}
_FORBIDDEN = {164, 497}
_UNAUTHORIZED = {192, 193, 194, 516}
_SESSION_IS_LOCKED = 373
_CODE_RE = re.compile(r"Code: (\d+)\.")
_INSERT_RE = re.compile(rb"^\s*INSERT\s+INTO\s", re.IGNORECASE)
_INSERT_FORMAT_RE = re.compile(rb"\bFORMAT\s+([A-Za-z0-9_]+)", re.IGNORECASE)
_NOT_DATA_INSERT_RE = re.compile(rb"\b(SELECT|VALUES|WITH)\b", re.IGNORECASE)
_INSERT_SETTINGS_RE = re.compile(r"\sSETTINGS\s.*$", re.IGNORECASE | re.DOTALL)
_TRAILING_FORMAT_RE = re.compile(r"\bFORMAT\s+([A-Za-z0-9_]+)\s*;?\s*$", re.IGNORECASE)
_SET_RE = re.compile(r"^\s*SET\s+(.*?)\s*;?\s*$", re.IGNORECASE | re.DOTALL)
_SET_PAIR_RE = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*('(?:[^'\\]|\\.)*'|[^,]+?)\s*(?:,|$)")
_NUMBER_RE = re.compile(r"^-?\d+(\.\d+)?$")


class QueryError(Exception):
    """A failed query, carrying ClickHouse's exception code and text."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code, self.text = code, text

    @property
    def status(self) -> int:
        """The HTTP status ClickHouse answers this error code with."""
        if self.code in _NOT_FOUND:
            return 404
        if self.code in _BAD_REQUEST:
            return 400
        if self.code in _FORBIDDEN:
            return 403
        if self.code in _UNAUTHORIZED:
            return 401
        return 500


@dataclass
class Result:
    """What one query returned: the engine's bytes in ``fmt`` and its statistics."""

    body: bytes
    fmt: str
    summary: dict[str, str] = field(default_factory=dict)


def _setting_literal(value: str) -> str:
    """A settings value as SQL: numbers bare, everything else a quoted string."""
    if _NUMBER_RE.match(value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class Engine:
    """One chdb connection shared by every request, one query at a time.

    Per query it switches the current database and the settings to what the request (and its
    session) asks for, applying only the difference to what the previous query left, then
    restores nothing: the next query applies its own difference. So settings never leak from
    one request into another's results.
    """

    def __init__(self, path: str) -> None:
        import chdb

        os.makedirs(path, exist_ok=True)
        self.path = path
        self._conn = chdb.connect(path)
        self._lock = threading.Lock()
        self._database = "default"
        self._applied: dict[str, str] = {}
        self._sessions: dict[str, dict[str, str]] = {}
        self._session_locks: dict[str, threading.Lock] = {}
        self._meta = threading.Lock()
        self._tmp = tempfile.mkdtemp(prefix="inserts-", dir=path)
        first = self._conn.query("SELECT version(), timezone()", "TabSeparated").bytes().decode().split("\t")
        self.version, self.timezone = first[0], first[1].strip()

    # -- sessions -----------------------------------------------------------------------

    def session_lock(self, session_id: str) -> threading.Lock:
        with self._meta:
            return self._session_locks.setdefault(session_id, threading.Lock())

    def session_settings(self, session_id: str | None) -> dict[str, str]:
        with self._meta:
            return dict(self._sessions.get(session_id, {})) if session_id else {}

    # -- execution ----------------------------------------------------------------------

    def _raw(self, sql: str, fmt: str = "TabSeparated", params: Mapping[str, str] | None = None) -> Any:
        try:
            if params:
                return self._conn.query(sql, fmt, params=dict(params))
            return self._conn.query(sql, fmt)
        except Exception as exc:  # chdb raises ChdbError/RuntimeError with ClickHouse's text
            text = str(exc)
            m = _CODE_RE.search(text)
            raise QueryError(int(m.group(1)) if m else 1001, text) from None

    def _use(self, database: str, settings: Mapping[str, str]) -> None:
        if database != self._database:
            self._raw(f"USE `{database.replace('`', '``')}`")
            self._database = database
        for name in [n for n in self._applied if n not in settings]:
            self._raw(f"SET {name} = DEFAULT")
            del self._applied[name]
        for name, value in settings.items():
            if self._applied.get(name) != value:
                try:
                    self._raw(f"SET {name} = {_setting_literal(value)}")
                except QueryError:
                    self._applied.pop(name, None)
                    raise
                self._applied[name] = value

    def execute(self, text: bytes, *, database: str, settings: Mapping[str, str], params: Mapping[str, str],
                default_format: str, session_id: str | None) -> Result:
        """Run one request's statement (an insert carries its data after ``FORMAT X``)."""
        settings = {**self.session_settings(session_id), **settings}
        insert = self._split_insert(text)
        if insert is not None:
            head, fmt, data = insert
            return self._insert(head, fmt, data, database=database, settings=settings)
        sql = text.decode("utf-8")
        set_stmt = _SET_RE.match(sql)
        if set_stmt:
            pairs = {k: v.strip("'") for k, v in _SET_PAIR_RE.findall(set_stmt.group(1))}
            with self._lock:
                self._use(database, {**settings, **pairs})  # validates the names and values
            if session_id:
                with self._meta:
                    self._sessions.setdefault(session_id, {}).update(pairs)
            return Result(b"", default_format)
        m = _TRAILING_FORMAT_RE.search(sql)
        fmt = m.group(1) if m else default_format
        start = time.monotonic_ns()
        with self._lock:
            self._use(database, settings)
            res = self._raw(sql, default_format, params)
            body = res.bytes() or b""
        return Result(body, fmt, self._summary(res, time.monotonic_ns() - start, len(body)))

    @staticmethod
    def _split_insert(text: bytes) -> tuple[str, str, bytes] | None:
        """``(statement before FORMAT, format, data)`` of an ``INSERT ... FORMAT X <data>``."""
        if not _INSERT_RE.match(text[:64]):
            return None
        m = _INSERT_FORMAT_RE.search(text, 0, 64 * 1024)
        if m is None or _NOT_DATA_INSERT_RE.search(text, 0, m.start()):
            return None  # INSERT ... SELECT / VALUES: plain SQL
        pos = m.end()
        # the data starts after the whitespace that ends the line of the FORMAT clause
        while pos < len(text) and text[pos:pos + 1] in (b" ", b"\t", b"\r"):
            pos += 1
        if text[pos:pos + 1] == b"\n":
            pos += 1
        return text[: m.start()].decode("utf-8"), m.group(1).decode(), text[pos:]

    def _insert(self, head: str, fmt: str, data: bytes, *, database: str, settings: Mapping[str, str]) -> Result:
        tail = ""
        s = _INSERT_SETTINGS_RE.search(head)
        if s:  # FROM INFILE comes before the statement's SETTINGS clause
            head, tail = head[: s.start()], s.group(0)
        fd, path = tempfile.mkstemp(dir=self._tmp, suffix=f".{fmt.lower()}")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            sql = f"{head.rstrip()} FROM INFILE '{path}'{tail} FORMAT {fmt}"
            start = time.monotonic_ns()
            with self._lock:
                self._use(database, settings)
                res = self._raw(sql)
        finally:
            os.unlink(path)
        return Result(b"", fmt, self._summary(res, time.monotonic_ns() - start, 0))

    @staticmethod
    def _summary(res: Any, elapsed_ns: int, result_bytes: int) -> dict[str, str]:
        def stat(name: str) -> int:
            try:
                return int(getattr(res, name)())
            except Exception:  # noqa: BLE001 - an older chdb without this statistic
                return 0

        return {
            "read_rows": str(stat("rows_read")), "read_bytes": str(stat("bytes_read")),
            "written_rows": str(stat("rows_written")), "written_bytes": str(stat("bytes_written")),
            "total_rows_to_read": str(stat("rows_read")), "result_rows": "0", "result_bytes": str(result_bytes),
            "elapsed_ns": str(elapsed_ns),
        }

    def close(self) -> None:
        with self._lock:
            self._conn.close()


# -- compression ------------------------------------------------------------------------
