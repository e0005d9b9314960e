"""The layout of the Parquet files Loom encodes for Delta tables (``loom_resources.delta._layout``):
as compact as delta-rs' own writer for the same rows, row groups sized for readers rather than
by the batches a stream delivers, and read by delta-rs and polars under filters.

Issue 27 measured 8M streamed rows at 4 files of 25 row groups each (one per 100k-row batch,
snappy), 1.2x the bytes of delta-rs' writer for the same rows."""

from __future__ import annotations

import datetime as dt
import math
import os
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable, write_deltalake

from loom_resources import RunParams
from loom_resources.delta import DeltaResource
from loom_resources.delta._layout import LAYOUT
from loom_resources.dtypes import ColumnSchema
from loom_resources.model import Backend, TableRef, TargetSpec, WriteMode

COLUMNS = (ColumnSchema("id", "int64", False), ColumnSchema("day", "date", False), ColumnSchema("amount", "float64"),
           ColumnSchema("sku", "string"))
ROWS = 3 * LAYOUT.row_group_rows  # a few row groups a file, well under a second to write
BLOCK = 10_000


def _streamed(n: int) -> pl.LazyFrame:
    """The benchmark's workload as the streaming engine produces it (a cross join of two ranges):
    batches far smaller than a row group, in the order the engine's threads deliver them."""
    outer = pl.LazyFrame({"a": pl.int_range(0, -(-n // BLOCK), eager=True, dtype=pl.Int64)})
    inner = pl.LazyFrame({"b": pl.int_range(0, BLOCK, eager=True, dtype=pl.Int64)})
    ids = pl.col("a") * BLOCK + pl.col("b")
    return outer.join(inner, how="cross").filter(ids < n).select(
        ids.alias("id"), (pl.date(2024, 1, 1) + pl.duration(days=ids % 30)).alias("day"),
        (ids.cast(pl.Float64) * 0.5).alias("amount"), (pl.lit("sku-") + (ids % 1000).cast(pl.String)).alias("sku"))


def _files(uri: str) -> list[str]:
    return [p.removeprefix("file://") for p in DeltaTable(uri).file_uris()]


def _bytes(uri: str) -> int:
    return sum(os.path.getsize(p) for p in _files(uri))


@pytest.fixture
def streamed_table(tmp_path: Path) -> str:
    delta = DeltaResource(root=str(tmp_path), parquet_writer="polars")
    spec = TargetSpec(ref=TableRef("s", "t"), backend=Backend.DELTA, columns=COLUMNS, mode=WriteMode.OVERWRITE)
    delta.write(_streamed(ROWS), spec, RunParams(), streaming=True)
    return delta.table_uri(spec.ref)


def test_streamed_files_have_row_groups_sized_for_readers_not_by_batches(streamed_table: str) -> None:
    for path in _files(streamed_table):
        meta = pq.ParquetFile(path).metadata
        # as few row groups as the row-group size allows (polars splits a file's rows evenly)
        assert meta.num_row_groups == math.ceil(meta.num_rows / LAYOUT.row_group_rows), (path, meta.num_row_groups)
        for i in range(meta.num_row_groups):
            group = meta.row_group(i)
            for c in range(group.num_columns):
                column = group.column(c)
                assert column.compression == "ZSTD"
                assert column.statistics is not None and column.statistics.has_min_max  # readers prune row groups
    assert pl.read_delta(streamed_table).sort("id").equals(_streamed(ROWS).collect().sort("id"))


def test_files_take_no_more_bytes_than_delta_rs_writer_for_the_same_rows(streamed_table: str, tmp_path: Path) -> None:
    # A guard of the layout, not the proof of issue 27's 1.2x: at this size the old layout (snappy,
    # a row group per batch) passes too (0.93x); its 1.2x showed at 8M streamed rows, whose order
    # the streaming engine's threads shuffle more (bench/cases_files.py measures that size).
    rows = pl.concat([pl.read_parquet(p) for p in _files(streamed_table)])  # in the order Loom stored them
    same_order, sorted_ = str(tmp_path / "same_order"), str(tmp_path / "sorted")
    write_deltalake(same_order, rows)
    write_deltalake(sorted_, rows.sort("id"))  # delta-rs' best case: the ids in sequence
    ours = _bytes(streamed_table)
    assert ours <= 1.05 * _bytes(same_order), (ours, _bytes(same_order))
    assert ours <= 1.05 * _bytes(sorted_), (ours, _bytes(sorted_))


def test_readers_filter_the_files_by_row_group_and_file_statistics(streamed_table: str) -> None:
    lo, hi, day = ROWS // 2, ROWS // 2 + 5_000, dt.date(2024, 1, 8)
    want = _streamed(ROWS).filter((pl.col("day") == day) & pl.col("id").is_between(lo, hi, closed="left")).collect().sort("id")
    got = pl.scan_delta(streamed_table).filter((pl.col("day") == day) & pl.col("id").is_between(lo, hi, closed="left"))
    assert got.collect().sort("id").equals(want)
    table = DeltaTable(streamed_table).to_pyarrow_table(filters=[("day", "=", day), ("id", ">=", lo), ("id", "<", hi)])
    assert pl.from_arrow(table).sort("id").equals(want)  # type: ignore[union-attr]
