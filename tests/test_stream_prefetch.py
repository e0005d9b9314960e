"""Streaming writes read ahead: the source runs in a thread of its own while the consumer encodes
(``loom_resources._prefetch``), so a ClickHouse -> Delta copy keeps both cores busy. What must hold:
order and data intact, memory bounded, the source ahead of the encoder, and every failure on either
side the write's own error, with nothing committed and no thread or query left running."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from deltalake import DeltaTable

import loom_resources.clickhouse._read as ch_read
import loom_resources.delta._files as files
from loom_resources import RunParams
from loom_resources._prefetch import prefetch
from loom_resources.clickhouse import ClickHouseResource
from loom_resources.delta import DeltaResource
from loom_resources.dtypes import ColumnSchema
from loom_resources.errors import LoomError
from loom_resources.model import Backend, SourceSpec, TableRef, TargetSpec, WriteMode

COLS = (ColumnSchema("id", "int64", False), ColumnSchema("day", "date", False),
        ColumnSchema("amount", "float64"), ColumnSchema("sku", "string"))
N = 300_000


def _loom_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("loom-") and t.is_alive()]


# -- prefetch on its own -----------------------------------------------------------------------------


def test_prefetch_keeps_order_and_stays_within_its_depth() -> None:
    made: list[int] = []

    def items() -> Iterator[int]:
        for i in range(50):
            made.append(i)
            yield i

    got = []
    for i in prefetch(items(), 3):
        time.sleep(0.001) if i < 5 else None
        # made: consumed + at most 3 in the queue + 1 the producer holds while the queue is full
        assert len(made) <= i + 1 + 3 + 1
        got.append(i)
    assert got == list(range(50))
    assert _loom_threads() == []


def test_prefetch_raises_the_producers_own_error_after_the_items_before_it() -> None:
    boom = ValueError("engine failed at item 7")

    def items() -> Iterator[int]:
        yield from range(7)
        raise boom

    got = []
    with pytest.raises(ValueError) as info:
        for i in prefetch(items(), 2):
            got.append(i)
    assert info.value is boom and got == list(range(7))
    assert _loom_threads() == []


def test_a_consumer_that_stops_closes_the_producer_in_its_thread() -> None:
    closed: list[str] = []

    def items() -> Iterator[int]:
        try:
            yield from range(1_000_000)
        finally:
            closed.append(threading.current_thread().name)

    gen = prefetch(items(), 2, name="loom-test-producer")
    assert [next(gen) for _ in range(3)] == [0, 1, 2]
    gen.close()
    assert closed == ["loom-test-producer"]  # closed (a query would be cancelled), and the thread is gone
    assert _loom_threads() == []


# -- ClickHouse -> Delta -----------------------------------------------------------------------------


@pytest.fixture
def ch(chdb_url: str) -> Iterator[ClickHouseResource]:
    r = ClickHouseResource(url=chdb_url)
    yield r
    r.close()


def _source(ch: ClickHouseResource, schema: str, *, fail_at: int | None = None) -> TableRef:
    ch.command(f"CREATE DATABASE IF NOT EXISTS `{schema}`")
    ch.command(f"CREATE TABLE `{schema}`.src (`id` Int64, `day` Date32, `amount` Nullable(Float64), "
               f"`sku` Nullable(String)) ENGINE = MergeTree ORDER BY id")
    ch.command(f"INSERT INTO `{schema}`.src SELECT number, toDate32('2024-01-01') + number % 3, number * 0.5, "
               f"concat('s', toString(number % 10)) FROM numbers({N})")
    if fail_at is None:
        return TableRef(schema, "src")
    # the engine itself fails part-way through the stream, after batches were written (one thread,
    # in id order: with parallel reads the failing rows can be read first)
    ch.command(f"CREATE VIEW `{schema}`.failing AS SELECT id + throwIf(id >= {fail_at}, 'loom-test: engine failed "
               f"mid-stream') AS id, day, amount, sku FROM `{schema}`.src SETTINGS max_threads = 1")
    return TableRef(schema, "failing")


def _target(name: str) -> TargetSpec:
    return TargetSpec(ref=TableRef("s", name), backend=Backend.DELTA, columns=COLS, mode=WriteMode("append"))


def _small(monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches of 20,000 rows and a file per batch: many of each for a few hundred thousand rows."""
    monkeypatch.setattr(ch_read, "_STREAM_BATCH_ROWS", 20_000)
    monkeypatch.setattr(files, "TARGET_FILE_BYTES", 100_000)


def test_the_source_reads_ahead_while_a_file_is_encoded(ch: ClickHouseResource, unique_schema: str, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    _small(monkeypatch)
    ref = _source(ch, unique_schema)
    read = 0
    ahead = threading.Event()
    real_batches = ch_read.arrow_batches

    def counting(conn: Any, sql: str) -> Iterator[Any]:
        nonlocal read
        for b in real_batches(conn, sql):
            read += 1
            if read >= 4:
                ahead.set()
            yield b

    real_put, waited = files.ParquetFiles._put, []

    def slow_first_file(self: files.ParquetFiles, rel: str, df: pl.DataFrame) -> int:
        if not waited:
            # the first file's encoder holds on until the engine has read 3 batches past it: done in
            # turn, the engine never gets there (the event is only a bound on how long to wait)
            waited.append(ahead.wait(timeout=20))
        return real_put(self, rel, df)

    monkeypatch.setattr(ch_read, "arrow_batches", counting)
    monkeypatch.setattr(files.ParquetFiles, "_put", slow_first_file)
    delta = DeltaResource(root=str(tmp_path), parquet_writer="polars")
    lf = ch.read_streaming(SourceSpec(ref), RunParams())
    assert delta.write(lf, _target("ahead"), RunParams(), streaming=True).rows_written == N
    assert waited == [True], "the source did not read ahead while the first file was encoded"
    back = pl.read_delta(delta.table_uri(TableRef("s", "ahead")))
    assert back.height == N and back["id"].sort().to_list() == list(range(N))
    assert back.filter(pl.col("id") == 12_346).row(0) == (12_346, dt.date(2024, 1, 2), 6_173.0, "s6")
    assert _loom_threads() == []


def test_the_engine_failing_mid_stream_fails_the_write_with_its_error_and_commits_nothing(
        ch: ClickHouseResource, unique_schema: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _small(monkeypatch)
    ref = _source(ch, unique_schema, fail_at=250_000)
    delta = DeltaResource(root=str(tmp_path), parquet_writer="polars")
    spec = _target("failing")
    delta.write(pl.DataFrame({"id": [-1], "day": [dt.date(2024, 1, 1)], "amount": [1.0], "sku": ["x"]}), spec, RunParams())
    uri = delta.table_uri(spec.ref)
    before = (DeltaTable(uri).version(), sorted(p.name for p in Path(uri).glob("*.parquet")))
    written: list[str] = []
    real_put = files.ParquetFiles._put

    def recording(self: files.ParquetFiles, rel: str, df: pl.DataFrame) -> int:
        written.append(rel)
        return real_put(self, rel, df)

    monkeypatch.setattr(files.ParquetFiles, "_put", recording)
    lf = ch.read_streaming(SourceSpec(ref), RunParams())
    with pytest.raises(LoomError, match="loom-test: engine failed mid-stream"):
        delta.write(lf, spec, RunParams(), streaming=True)
    assert written  # files were encoded before the engine failed: the failure is mid-stream
    assert (DeltaTable(uri).version(), sorted(p.name for p in Path(uri).glob("*.parquet"))) == before
    assert pl.read_delta(uri)["id"].to_list() == [-1]
    assert _loom_threads() == []
    # the engine path is free again: the same source, without the failure, streams whole
    lf = ch.read_streaming(SourceSpec(TableRef(unique_schema, "src")), RunParams())
    assert delta.write(lf, spec, RunParams(), streaming=True).rows_written == N
    assert pl.read_delta(uri).height == N + 1


def test_the_encoder_failing_stops_the_source_and_its_threads(ch: ClickHouseResource, unique_schema: str,
                                                               tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _small(monkeypatch)
    ref = _source(ch, unique_schema)
    real_put, calls = files.ParquetFiles._put, []

    def disk_full(self: files.ParquetFiles, rel: str, df: pl.DataFrame) -> int:
        calls.append(rel)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real_put(self, rel, df)

    real_batches, query_open = ch_read.arrow_batches, []

    def tracked(conn: Any, sql: str) -> Iterator[Any]:
        query_open.append(True)
        try:
            yield from real_batches(conn, sql)
        finally:
            query_open[-1] = False  # closed: the engine's query is cancelled

    monkeypatch.setattr(ch_read, "arrow_batches", tracked)
    monkeypatch.setattr(files.ParquetFiles, "_put", disk_full)
    delta = DeltaResource(root=str(tmp_path), parquet_writer="polars")
    lf = ch.read_streaming(SourceSpec(ref), RunParams())
    with pytest.raises(LoomError, match="No space left") as info:
        delta.write(lf, _target("full"), RunParams(), streaming=True)
    # the source query and the read-ahead threads ended with the write, while the error (and its
    # traceback, which holds the write's frames) is still alive: not at garbage collection
    assert query_open == [False], "the source query still runs after the write failed"
    assert _loom_threads() == []
    del info
    assert not Path(delta.table_uri(TableRef("s", "full"))).exists() or not list(
        Path(delta.table_uri(TableRef("s", "full"))).glob("*.parquet"))
