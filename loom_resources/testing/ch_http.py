"""A ClickHouse HTTP endpoint for tests, backed by one real ClickHouse engine (chdb).

No ClickHouse server can be installed on the machines this project is tested on, and chdb has no
server mode. This module is the closest honest substitute: a small threaded HTTP server that
speaks ClickHouse's HTTP interface the way clickhouse-connect's HTTP client uses it, in front of
ONE embedded engine held by this process. Every answer is the engine's own output in the format
the client asked for (chdb writes any ClickHouse format); nothing is re-encoded or answered from
Python state. A test that passes through it has run clickhouse-connect's real HTTP code against
the real engine, and several processes can share one ClickHouse the way they share a server.

Run it::

    python -m loom_resources.testing.ch_http --path $LOOM_HOME/clickhouse-http --port 8123

(``make clickhouse-http`` does that), then use ``http://default@127.0.0.1:8123/default``.

What it speaks:

- ``GET /ping`` (``Ok.``), ``GET``/``POST /`` with the query in the ``query`` parameter and/or
  the body (concatenated with a newline, as ClickHouse does). ``INSERT ... FORMAT X`` followed by
  data (in the body, or the statement in ``query`` and the data in the body) is loaded with
  ``INSERT ... FROM INFILE`` from a temporary file, so the engine parses format ``X`` itself.
- Query-string parameters: ``database`` (default ``default``), ``default_format`` (default
  ``TabSeparated``), ``query_id`` (echoed, else generated), ``session_id``, ``param_<name>``
  (server-side parameters ``{name:Type}``), and every other parameter as a query-level setting.
  Settings the HTTP layer consumes (``wait_end_of_query``, ``send_progress_in_http_headers``,
  ``enable_http_compression``, ``compress``...) are honoured or ignored, never sent to the engine.
- Bodies compressed with ``Content-Encoding: lz4`` / ``zstd`` / ``gzip`` / ``deflate`` (chunked
  or not); responses compressed with the first of zstd, lz4, gzip, deflate the client accepts,
  when ``enable_http_compression=1``.
- Headers: ``X-ClickHouse-Summary`` (rows/bytes read and written, elapsed, from the engine),
  ``X-ClickHouse-Format``, ``X-ClickHouse-Query-Id``, ``X-ClickHouse-Timezone``,
  ``X-ClickHouse-Server-Display-Name``, and on error ``X-ClickHouse-Exception-Code`` with the
  engine's ``Code: N. DB::Exception: ...`` text as the body and ClickHouse's status mapping
  (404 unknown table/database, 400 bad query, 403 access, 500 otherwise).

Limits (stated, so nobody mistakes it for a server):

- One engine, one query at a time: engine calls are serialized by a lock (chdb runs one query
  per connection), while many clients connect, send and wait concurrently. A result is built
  completely before it is sent (memory of the server = the largest result).
- Sessions: ``SET`` statements sent with a ``session_id`` are kept for that session and applied
  to its later queries; one session runs one query at a time (a concurrent query of the same
  session gets ``SESSION_IS_LOCKED``, as on a server). Temporary tables are NOT per session:
  the engine has one global context, so they are visible to every client. ``session_timeout``
  and ``session_check`` are accepted and ignored; sessions never expire.
- No authentication: any user and password are accepted (the ``Authorization`` header is not
  checked); no quotas, roles or readonly mode. ``client_protocol_version`` is ignored, so
  clickhouse-connect falls back to protocol 0 (as behind a proxy that strips it).
- ``decompress=1`` (ClickHouse's own block compression of the request) and progress headers
  are not implemented; a client killed mid-request leaves nothing half-inserted (a truncated
  body is refused), but a query the server already received runs to its end, as on a server.
- Cluster features (``ON CLUSTER``, ``Replicated*MergeTree``, ``Distributed``) need a cluster
  and Keeper, which one embedded engine does not have.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import sys
import tempfile
import threading
import time
import uuid
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

__all__ = ["Engine", "QueryError", "ServerProcess", "make_server", "main", "serve", "start_process"]

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


def decompress_body(data: bytes, encoding: str) -> bytes:
    """A request body as sent with ``Content-Encoding`` (clickhouse-connect sends one lz4 frame
    per block, so concatenated frames are read until the end)."""
    encoding = encoding.strip().lower()
    if not encoding or encoding == "identity":
        return data
    if encoding == "gzip":
        return gzip.decompress(data)
    if encoding == "deflate":
        return zlib.decompress(data)
    if encoding == "zstd":
        from backports import zstd  # clickhouse-connect's own zstd dependency

        return zstd.decompress(data)
    if encoding == "lz4":
        import lz4.frame

        out, rest = [], data
        while rest:
            d = lz4.frame.LZ4FrameDecompressor()
            out.append(d.decompress(rest))
            rest = d.unused_data
        return b"".join(out)
    raise QueryError(36, f"Code: 36. DB::Exception: Unknown HTTP Content-Encoding {encoding!r}. (BAD_ARGUMENTS)")


def compress_body(data: bytes, accept: str) -> tuple[bytes, str | None]:
    """The response body compressed with the first of zstd, lz4, gzip, deflate the client accepts."""
    offered = {e.split(";")[0].strip().lower() for e in accept.split(",")}
    if "zstd" in offered:
        from backports import zstd

        return zstd.compress(data), "zstd"
    if "lz4" in offered:
        import lz4.frame

        return lz4.frame.compress(data), "lz4"
    if "gzip" in offered:
        return gzip.compress(data, compresslevel=3), "gzip"
    if "deflate" in offered:
        return zlib.compress(data, 3), "deflate"
    return data, None


# -- HTTP -----------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clickhouse-connect pools its connections
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        if self.server.verbose:
            super().log_message(format, *args)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._handle(with_body=False)

    def do_POST(self) -> None:  # noqa: N802
        self._handle(with_body=True)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts: list[bytes] = []
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    raise ConnectionError("the client closed the connection inside a chunked body")
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(parts)
                chunk = self.rfile.read(size)
                if len(chunk) != size:
                    raise ConnectionError("the client closed the connection inside a chunk")
                parts.append(chunk)
                self.rfile.readline(3)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if len(body) != length:
            raise ConnectionError("the client closed the connection before the whole body arrived")
        return body

    def _handle(self, *, with_body: bool) -> None:
        split = urlsplit(self.path)
        if split.path.rstrip("/") == "/ping":
            self._send(200, b"Ok.\n", {"Content-Type": "text/plain; charset=UTF-8"})
            return
        params = dict(parse_qsl(split.query, keep_blank_values=True))
        query_id = params.get("query_id") or str(uuid.uuid4())
        headers = {"X-ClickHouse-Query-Id": query_id, "X-ClickHouse-Server-Display-Name": DISPLAY_NAME,
                   "X-ClickHouse-Timezone": self.server.engine.timezone}
        try:
            body = self._read_body() if with_body else b""
        except (ConnectionError, ValueError):
            self.close_connection = True  # a truncated request is never executed
            return
        engine = self.server.engine
        session_id = params.get("session_id") or None
        lock = engine.session_lock(session_id) if session_id else None
        try:
            body = decompress_body(body, self.headers.get("Content-Encoding", ""))
            query = params.get("query", "").encode()
            text = query + b"\n" + body if query and body else (query or body)
            if not text.strip():
                raise QueryError(62, "Code: 62. DB::Exception: Empty query. (SYNTAX_ERROR)")
            if lock is not None and not lock.acquire(blocking=False):
                raise QueryError(_SESSION_IS_LOCKED, f"Code: 373. DB::Exception: Session {session_id} is locked by a "
                                 "concurrent client. (SESSION_IS_LOCKED)")
            try:
                result = engine.execute(
                    text,
                    database=params.get("database") or "default",
                    settings={k: v for k, v in params.items() if k not in _HTTP_PARAMS and not k.startswith("param_")},
                    params={k[6:]: v for k, v in params.items() if k.startswith("param_")},
                    default_format=params.get("default_format") or "TabSeparated",
                    session_id=session_id,
                )
            finally:
                if lock is not None:
                    lock.release()
        except QueryError as exc:
            text_out = exc.text.rstrip()
            if "(version " not in text_out:
                text_out += f" (version {engine.version} (loom-ch-http over chdb))"
            self._send(exc.status, (text_out + "\n").encode(),
                       {**headers, "X-ClickHouse-Exception-Code": str(exc.code),
                        "Content-Type": "text/plain; charset=UTF-8"})
            return
        out = result.body
        headers |= {"X-ClickHouse-Format": result.fmt, "X-ClickHouse-Summary": json.dumps(result.summary),
                    "Content-Type": "application/octet-stream" if result.body else "text/plain; charset=UTF-8"}
        if params.get("enable_http_compression") == "1" and out:
            out, encoding = compress_body(out, self.headers.get("Accept-Encoding", ""))
            if encoding:
                headers["Content-Encoding"] = encoding
        self._send(200, out, headers)

    def _send(self, status: int, body: bytes, headers: Mapping[str, str]) -> None:
        try:
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client went away (killed); the query already ran


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], engine: Engine, *, verbose: bool = False) -> None:
        super().__init__(address, _Handler)
        self.engine, self.verbose = engine, verbose


def make_server(path: str, host: str = "127.0.0.1", port: int = 8123, *, verbose: bool = False) -> ThreadingHTTPServer:
    """A server over the engine at ``path`` bound to ``host:port`` (``port=0``: any free port,
    see ``server.server_address``); call ``serve_forever()`` on it."""
    return _Server((host, port), Engine(path), verbose=verbose)


def serve(path: str, host: str = "127.0.0.1", port: int = 8123, *, verbose: bool = False) -> None:
    """Serve until interrupted; prints ``listening on http://host:port`` once it accepts."""
    server = make_server(path, host, port, verbose=verbose)
    h, p = server.server_address[:2]
    print(f"ClickHouse HTTP endpoint (chdb {server.engine.version}) over {path}: listening on http://{h!s}:{p}",  # type: ignore[attr-defined]
          flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        server.engine.close()  # type: ignore[attr-defined]


@dataclass
class ServerProcess:
    """An endpoint running in a child process (see :func:`start_process`)."""

    proc: Any
    host: str
    port: int
    path: str

    def url(self, database: str = "default", user: str = "default") -> str:
        """A Loom ClickHouse URL for ``database`` on this endpoint (no password: none is checked)."""
        return f"http://{user}@{self.host}:{self.port}/{database}"

    def stop(self, timeout: float = 30) -> None:
        """Terminate the child and wait for it (the engine flushes its data on SIGTERM)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except Exception:  # noqa: BLE001 - a child that does not stop in time is killed
                self.proc.kill()
                self.proc.wait(timeout=timeout)


def start_process(path: str, *, host: str = "127.0.0.1", port: int = 0, timeout: float = 60,
                  log: str | None = None) -> ServerProcess:
    """Start the endpoint over ``path`` in a child process and wait until it answers ``/ping``.
    ``port=0`` picks a free port. ``log`` (a file path) receives its output, else it is dropped."""
    import socket
    import subprocess
    import urllib.request

    if port == 0:
        with socket.socket() as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - the child keeps it open
    proc = subprocess.Popen([sys.executable, "-m", "loom_resources.testing.ch_http", "--path", path, "--host", host,
                             "--port", str(port)], stdout=out, stderr=subprocess.STDOUT)
    server = ServerProcess(proc, host, port, path)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://{host}:{port}/ping", timeout=2) as r:
                if r.status == 200:
                    return server
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"the ClickHouse HTTP endpoint over {path} did not start (exit code {proc.poll()})")
        time.sleep(0.1)


def main(argv: list[str] | None = None) -> None:
    """``python -m loom_resources.testing.ch_http --path DIR [--host H] [--port N]``."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--path", required=True, help="the engine's data directory")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8123)
    ap.add_argument("--verbose", action="store_true", help="log every request")
    args = ap.parse_args(argv)
    serve(os.path.abspath(args.path), args.host, args.port, verbose=args.verbose)


if __name__ == "__main__":
    main(sys.argv[1:])
