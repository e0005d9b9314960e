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
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from loom_resources.clickhouse._sql import qi

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["engine_handle", "insert_in_place"]


def engine_handle(client: Any) -> tuple[Any, Any] | None:
    """``(chDB connection, its lock)`` of a clickhouse-connect ``chdb://`` client, or ``None``
    (a server client, or a clickhouse-connect that keeps them elsewhere)."""
    handle = getattr(getattr(client, "_backend", None), "_handle", None)
    conn, lock = getattr(handle, "conn", None), getattr(handle, "lock", None)
    if conn is None or lock is None or not callable(getattr(conn, "query", None)):
        return None
    return conn, lock


def insert_in_place(client: Any, target: str, table: pa.Table) -> bool:
    """Insert ``table`` into ``target`` (a quoted table name) through ``Python()``; ``False``
    when the client offers no engine connection (nothing was inserted)."""
    found = engine_handle(client)
    if found is None:
        return False
    conn, lock = found
    cols = ", ".join(qi(n) for n in table.column_names)
    _loom_batch = table  # noqa: F841 - chDB's Python() reads it by this name from this frame
    with lock:
        if getattr(client._backend._handle, "conn", None) is None:  # closed by another thread meanwhile
            return False
        # a NULL bound for a not-null column fails (an Arrow insert stores the type's default instead;
        # Loom refuses such frames before inserting, this is the last guard)
        conn.query(f"INSERT INTO {target} ({cols}) SETTINGS insert_null_as_default = 0 "
                   f"SELECT {cols} FROM Python(_loom_batch)", "Null")
    return True
