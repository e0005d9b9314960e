"""Arrow batches inserted into the embedded engine where they are, without a file in between.

clickhouse-connect's ``insert_arrow`` on a ``chdb://`` client writes each batch to a temporary
Arrow IPC file, which the engine then reads back and parses (``INSERT ... FROM INFILE``). chDB
reads Arrow tables in the process's memory through its ``Python()`` table function, so the
embedded engine takes a batch with ``INSERT INTO t (cols) SELECT cols FROM Python(batch)``
instead. 8M rows in fresh processes: 0.88–1.04 s in 500k batches this way against 1.13–1.57 s
through ``insert_arrow`` (an eager frame goes in as one insert: 0.65–0.80 s; ``docs/write-path.md``,
"How rows reach ClickHouse", and the profile table of ``docs/performance.md``).

Why by hand: neither clickhouse-connect nor chDB offers an insert from an in-memory Arrow table.
chDB's ``Python()`` finds the table by its variable name in the frame that runs the query, and
the query must run on the client's own engine connection, under the client's lock (the engine
serves one query at a time per connection). clickhouse-connect keeps both on its chDB backend's
handle; when a version does not, :func:`insert_in_place` says so and the caller keeps
``insert_arrow``.

Small batches in a process that has not imported pandas go in as an Arrow IPC stream instead
(chDB's ``send_insert(..., "ArrowStream")``, the same engine connection and lock): ``Python()``
imports pandas on its first use in a process (0.3-0.6 s measured on this machine, more than a
1M-row insert itself), and the stream does not. Above ``STREAM_MAX_ROWS``, or once pandas is
loaded anyway, ``Python()`` is faster: the engine reads the batch where it is, in parallel, where
the stream is serialized, copied and parsed in one thread (measured in a fresh process: 1M rows
0.34-0.52 s streamed against 0.59-0.63 s through ``Python()`` with its import; 3M rows 1.12-1.42 s
against 0.86-0.96 s; ``docs/performance.md``, "ClickHouse merge at scale").
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from loom_resources.clickhouse._sql import lit, qi

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["STREAM_MAX_ROWS", "engine_handle", "insert_in_place", "streams"]

_SETTING = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

#: Batches up to this many rows go in as an Arrow IPC stream while pandas is not loaded (above).
STREAM_MAX_ROWS = 1_500_000


def engine_handle(client: Any) -> tuple[Any, Any] | None:
    """``(chDB connection, its lock)`` of a clickhouse-connect ``chdb://`` client, or ``None``
    (a server client, or a clickhouse-connect that keeps them elsewhere)."""
    handle = getattr(getattr(client, "_backend", None), "_handle", None)
    conn, lock = getattr(handle, "conn", None), getattr(handle, "lock", None)
    if conn is None or lock is None or not callable(getattr(conn, "query", None)):
        return None
    return conn, lock


def insert_in_place(client: Any, target: str, table: pa.Table, settings: Mapping[str, int | str] | None = None) -> bool:
    """Insert ``table`` into ``target`` (a quoted table name) through ``Python()``, with the
    query ``settings`` given; ``False`` when the client offers no engine connection (nothing was
    inserted)."""
    found = engine_handle(client)
    if found is None:
        return False
    conn, lock = found
    cols = ", ".join(qi(n) for n in table.column_names)
    extra = "".join(f", {_setting(k)} = {lit(v) if isinstance(v, str) else int(v)}" for k, v in (settings or {}).items())
    if streams(conn, table.num_rows):
        payload = _ipc_stream(table)
        with lock:
            if getattr(client._backend._handle, "conn", None) is None:
                return False
            # input_format_null_as_default = 0: a NULL for a not-null column fails, as below
            with conn.send_insert(f"INSERT INTO {target} ({cols}) SETTINGS input_format_null_as_default = 0{extra}",
                                  "ArrowStream") as inserter:
                inserter.append(payload)
                inserter.finish()
        return True
    _loom_batch = table  # noqa: F841 - chDB's Python() reads it by this name from this frame
    with lock:
        if getattr(client._backend._handle, "conn", None) is None:  # closed by another thread meanwhile
            return False
        # a NULL bound for a not-null column fails (an Arrow insert stores the type's default instead;
        # Loom refuses such frames before inserting, this is the last guard)
        conn.query(f"INSERT INTO {target} ({cols}) SETTINGS insert_null_as_default = 0{extra} "
                   f"SELECT {cols} FROM Python(_loom_batch)", "Null")
    return True


def _setting(name: str) -> str:
    """A setting's name, checked: it goes into the statement's text."""
    if not _SETTING.fullmatch(name):
        raise ValueError(f"invalid ClickHouse setting name {name!r}")
    return name


def streams(conn: Any, rows: int) -> bool:
    """Whether a batch of ``rows`` goes in as an Arrow IPC stream (see the module docstring):
    small, pandas not yet imported by this process, and a chDB that offers streamed inserts."""
    return rows <= STREAM_MAX_ROWS and "pandas" not in sys.modules and callable(getattr(conn, "send_insert", None))


def _ipc_stream(table: pa.Table) -> bytes:
    """``table`` as Arrow IPC stream bytes (chDB's inserter takes ``bytes``; a buffer it would copy)."""
    import pyarrow as pa
    import pyarrow.ipc as ipc

    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()
