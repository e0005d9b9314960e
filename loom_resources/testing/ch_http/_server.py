"""The HTTP side: one threaded server whose handler maps ClickHouse's HTTP interface onto the engine."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from loom_resources.testing.ch_http._bodies import compress_body, decompress_body
from loom_resources.testing.ch_http._engine import (
    _HTTP_PARAMS,  # one package: shared private names
    _SESSION_IS_LOCKED,
    DISPLAY_NAME,
    Engine,
    QueryError,
)


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
