"""Inserts into the embedded engine read the Arrow batch in place (loom_resources.clickhouse._inplace)."""

from __future__ import annotations

import types
from collections.abc import Iterator

import clickhouse_connect
import polars as pl
import pyarrow as pa
import pytest
from test_platform import ch  # its rows read by a client of its own, not the resource that wrote them

import loom_resources.clickhouse._client as client_module
import loom_resources.clickhouse._inplace as inplace_module
from loom_resources.clickhouse import ClickHouseResource
from loom_resources.clickhouse._inplace import engine_handle, insert_in_place
from loom_resources.dtypes import ColumnSchema
from loom_resources.errors import LoomError
from loom_resources.model import RunParams, TableRef, TargetSpec, WriteMode


@pytest.fixture
def client(chdb_url: str) -> Iterator[object]:
    c = clickhouse_connect.get_client(dsn=chdb_url)
    try:
        yield c
    finally:
        c.close()


def test_the_embedded_client_exposes_its_engine_connection(client: object) -> None:
    """If a clickhouse-connect upgrade moves the connection, this fails instead of the fast path
    silently turning off."""
    found = engine_handle(client)
    assert found is not None
    conn, lock = found
    with lock:
        assert conn.query("SELECT 41 + 1", "CSV").bytes().strip() == b"42"


def test_a_client_without_an_engine_connection_inserts_nothing() -> None:
    server_like = types.SimpleNamespace(_backend=types.SimpleNamespace())
    assert engine_handle(server_like) is None
    assert insert_in_place(server_like, "t", pa.table({"a": [1]})) is False


@pytest.mark.parametrize("path", ["python-table-function", "arrow-stream"])
def test_in_place_insert_stores_the_batch_and_refuses_nulls_for_not_null_columns(
        client: object, unique_schema: str, path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inplace_module, "streams", lambda conn, rows: path == "arrow-stream")
    t = f"{unique_schema}.t"
    client.command(f"CREATE DATABASE {unique_schema}")  # type: ignore[attr-defined]
    client.command(f"CREATE TABLE {t} (a Int64, `odd name` Nullable(String)) ENGINE = MergeTree ORDER BY tuple()")  # type: ignore[attr-defined]  # noqa: E501
    assert insert_in_place(client, t, pa.table({"a": [1, 2], "odd name": ["x", None]}))
    with pytest.raises(Exception, match="NULL"):
        insert_in_place(client, t, pa.table({"a": pa.array([3, None], pa.int64()), "odd name": ["y", "z"]}))
    rows = client.query(f"SELECT a, `odd name` FROM {t} ORDER BY a").result_rows  # type: ignore[attr-defined]
    assert rows == [(1, "x"), (2, None)]  # the refused batch left nothing behind


@pytest.mark.parametrize("path", ["python-table-function", "arrow-stream"])
def test_in_place_insert_applies_its_settings(client: object, unique_schema: str, path: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The settings of an insert reach the engine on both in-place paths: a ReplacingMergeTree keeps
    both rows of a key with ``optimize_on_insert = 0`` (what a merge's staging insert sends) and
    collapses them without it; a setting's name is checked before it goes into the statement."""
    monkeypatch.setattr(inplace_module, "streams", lambda conn, rows: path == "arrow-stream")
    client.command(f"CREATE DATABASE {unique_schema}")  # type: ignore[attr-defined]
    batch = pa.table({"k": [1, 1], "v": [1, 2]})
    for t, settings, stored in (("kept", {"optimize_on_insert": 0}, 2), ("collapsed", None, 1)):
        client.command(f"CREATE TABLE {unique_schema}.{t} (k Int64, v Int64) ENGINE = ReplacingMergeTree ORDER BY k")  # type: ignore[attr-defined]  # noqa: E501
        assert insert_in_place(client, f"{unique_schema}.{t}", batch, settings)
        assert client.query(f"SELECT count() FROM {unique_schema}.{t}").result_rows == [(stored,)]  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="invalid ClickHouse setting name"):
        insert_in_place(client, f"{unique_schema}.kept", batch, {"x = 1; DROP": 0})


@pytest.mark.parametrize("streaming", [False, True], ids=["eager", "streaming"])
def test_resource_writes_to_the_embedded_engine_go_in_place(chdb_url: str, unique_schema: str, streaming: bool,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """An eager frame goes in as one insert (the engine reads it in its own blocks); a streamed
    one batch by batch."""
    calls: list[int] = []
    real = client_module.insert_in_place

    def counting(c: object, target: str, table: pa.Table, settings: dict[str, int | str] | None = None) -> bool:
        calls.append(table.num_rows)
        return real(c, target, table, settings)

    monkeypatch.setattr(client_module, "insert_in_place", counting)
    n = 10_000
    df = pl.DataFrame({"id": pl.arange(0, n, eager=True), "label with space": [f"v{i}" if i % 3 else None for i in range(n)],
                       "day": pl.date_range(pl.date(2024, 1, 1), pl.date(2024, 1, 10), eager=True).sample(n, with_replacement=True, seed=1)})
    spec = TargetSpec(ref=TableRef(unique_schema, "t"), backend="clickhouse", mode=WriteMode.OVERWRITE,
                      columns=(ColumnSchema("id", "int64", False), ColumnSchema("label with space", "string"),
                               ColumnSchema("day", "date", False)))
    res = ClickHouseResource(url=chdb_url, insert_batch_rows=3_000)
    try:
        res.write(df.lazy() if streaming else df, spec, RunParams(), streaming=streaming)
    finally:
        res.close()
    assert calls == ([3_000, 3_000, 3_000, 1_000] if streaming else [n])
    back = ch(chdb_url, f"SELECT * FROM {unique_schema}.t ORDER BY id")
    assert back.with_columns(pl.col("label with space").cast(pl.String)).equals(df)


def test_an_in_place_failure_names_the_table_and_leaves_the_target_as_it_was(
        chdb_url: str, unique_schema: str, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = TargetSpec(ref=TableRef(unique_schema, "kept"), backend="clickhouse", mode=WriteMode.OVERWRITE,
                      columns=(ColumnSchema("id", "int64", False),))
    res = ClickHouseResource(url=chdb_url)
    try:
        res.write(pl.DataFrame({"id": [1, 2, 3]}), spec, RunParams(), streaming=False)

        def broken(c: object, target: str, table: pa.Table) -> bool:
            raise RuntimeError("Code: 243. DB::Exception: Cannot reserve 1.00 MiB, not enough space")

        monkeypatch.setattr(client_module, "insert_in_place", broken)
        with pytest.raises(LoomError, match=f"{unique_schema}.kept"):
            res.write(pl.DataFrame({"id": [7, 8]}), spec, RunParams(), streaming=False)
    finally:
        res.close()
    c = clickhouse_connect.get_client(dsn=chdb_url)
    try:
        assert c.query(f"SELECT id FROM {unique_schema}.kept ORDER BY id").result_rows == [(1,), (2,), (3,)]
    finally:
        c.close()


def test_a_frame_of_many_chunks_goes_in_whole(chdb_url: str, unique_schema: str) -> None:
    """An eager frame that was concatenated (one Arrow chunk per part, strings as views) is one
    in-place insert and reads back row for row."""
    parts = [pl.DataFrame({"id": pl.arange(k * 1_000, (k + 1) * 1_000, eager=True),
                           "s": [None if i % 5 == 0 else f"{k}-{i}" for i in range(1_000)]}) for k in range(6)]
    df = pl.concat(parts, rechunk=False)
    assert df.n_chunks() == 6
    spec = TargetSpec(ref=TableRef(unique_schema, "chunks"), backend="clickhouse", mode=WriteMode.APPEND,
                      columns=(ColumnSchema("id", "int64", False), ColumnSchema("s", "string")))
    res = ClickHouseResource(url=chdb_url)
    try:
        res.write(df, spec, RunParams(), streaming=False)
    finally:
        res.close()
    back = ch(chdb_url, f"SELECT id, s FROM {unique_schema}.chunks ORDER BY id")
    assert back.with_columns(pl.col("s").cast(pl.String)).equals(df)


def test_a_small_write_in_a_fresh_process_does_not_import_pandas(tmp_path: object) -> None:
    """Issue 27: chDB's ``Python()`` imports pandas on its first use in a process (0.3-0.6 s, more
    than a 1M-row merge's insert); a small batch goes in as an Arrow IPC stream instead. In a
    process of its own (pytest has pandas loaded): a merge write of 20,000 rows with a NULL in a
    nullable column, read back whole, and pandas still not imported."""
    import subprocess
    import sys

    script = f"""
import os, sys, datetime as dt, polars as pl
from loom_resources import ColumnSchema, RunParams, TableRef, TargetSpec, WriteContext
from loom_resources.clickhouse import ClickHouseResource
res = ClickHouseResource(url="chdb://{tmp_path}/ch")
spec = TargetSpec(TableRef("s", "t"), "clickhouse", [ColumnSchema("id", "int64", False), ColumnSchema("day", "date", False),
                  ColumnSchema("v", "string")], mode="merge", merge_keys=("id",), partition_by=("day",))
n = 20_000
df = pl.DataFrame({{"id": range(n), "day": [dt.date(2024, 1, 1 + i % 3) for i in range(n)],
                    "v": [None if i % 7 == 0 else f"v{{i}}" for i in range(n)]}})
res.write(df, spec, RunParams(), write_ctx=WriteContext(run_id="r", asset_key="s/t"))
back = res.query_rows("SELECT count(), sum(id), countIf(v IS NULL), uniqExact(day) FROM s.t FINAL")[0]
print("RESULT", "pandas" in sys.modules, tuple(int(x) for x in back), flush=True)
res.close()
os._exit(0)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    line = [x for x in out.stdout.splitlines() if x.startswith("RESULT")]
    assert line, out.stderr[-3000:]
    n = 20_000
    assert line[0] == f"RESULT False {(n, n * (n - 1) // 2, len(range(0, n, 7)), 3)}"
