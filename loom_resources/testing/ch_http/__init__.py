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
import os

from loom_resources.testing.ch_http._engine import Engine, QueryError
from loom_resources.testing.ch_http._process import ServerProcess, start_process
from loom_resources.testing.ch_http._server import make_server, serve

__all__ = ["Engine", "QueryError", "ServerProcess", "make_server", "main", "serve", "start_process"]


def main(argv: list[str] | None = None) -> None:
    """``python -m loom_resources.testing.ch_http --path DIR [--host H] [--port N]``."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--path", required=True, help="the engine's data directory")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8123)
    ap.add_argument("--verbose", action="store_true", help="log every request")
    args = ap.parse_args(argv)
    serve(os.path.abspath(args.path), args.host, args.port, verbose=args.verbose)
