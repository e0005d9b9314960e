"""Benchmark cases of the Delta file layout (issue 27): the files Loom writes against delta-rs'
own writer (``deltalake.write_deltalake``) for the same rows, and filtered reads of both tables.

* ``files_raw`` / ``files_loom``: the N-row workload (``bench.workload.eager_frame``) written by
  ``write_deltalake`` into a new table, and by a Loom Delta asset (DataFrame body, overwrite). The
  seconds are the write; the extras are what is on disk: bytes, files, row groups per file.
* ``files_reads``: both tables written in one process (untimed: the same two writes), then the
  same filtered read (``day`` = one day and a 1% ``id`` range) by polars
  (``scan_delta(...).filter(...).collect()``) and by deltalake (``to_pyarrow_table(filters=...)``)
  of each table, alternating, ``READ_ROUNDS`` rounds, medians and their ratios (Loom / delta-rs).
  A whole-table aggregate by polars is timed the same way (no target). Every read's rows are
  checked against the rows the filter selects from the frame that was written.
* ``files_copy_raw`` / ``files_copy_loom``: the ClickHouse -> Delta copy of a source table (made by
  the ``ch_source`` set-up case): Arrow batches from the embedded engine into ``write_deltalake``,
  and the declared Loom copy (``bench.cases.loom_copy``); the extras are bytes per row on disk.

One case per process: ``python -m bench.cases_files CASE ROWS WORKDIR OUT_JSON``.
"""

from __future__ import annotations

import datetime as dt
import glob
import os
import statistics
import time
from typing import Any

from bench.cases import CH_LIBS, DELTA_LIBS, Loom, _ch_url, _columns, _copy_tables, _delta_root, _delta_table, _preload
from bench.workload import BASE_DAY, child_main, eager_frame, run_outcome

READ_ROUNDS = 7
#: The filtered read: one day of the 30 and 1% of the ids (from 40% of the range on).
READ_DAY = BASE_DAY + dt.timedelta(days=7)
READ_FROM, READ_SPAN = 0.40, 0.01
_STREAM_BATCH_ROWS = 131_072  # what Loom's streaming ClickHouse read pulls per batch


def layout(uri: str) -> dict[str, Any]:
    """What a Delta table holds on disk: data bytes, files, row groups per file, rows per row group,
    and each file's codec (read from the Parquet footers)."""
    import pyarrow.parquet as pq
    from deltalake import DeltaTable

    paths = [p.removeprefix("file://") for p in DeltaTable(uri).file_uris()]
    groups, rows, codecs = [], 0, set()
    for p in paths:
        md = pq.ParquetFile(p).metadata
        groups.append(md.num_row_groups)
        rows += md.num_rows
        if md.num_row_groups:
            rg = md.row_group(0)
            codecs |= {rg.column(i).compression for i in range(rg.num_columns)}
    size = sum(os.path.getsize(p) for p in paths)
    return {"bytes": size, "files": len(paths), "row_groups_per_file": round(statistics.mean(groups), 1) if groups else 0,
            "rows_per_row_group": round(rows / max(1, sum(groups))), "bytes_per_row": round(size / max(1, rows), 2),
            "codec": ",".join(sorted(codecs)), "orphans": len(glob.glob(os.path.join(uri, "**", "*.parquet"), recursive=True))
            - len(paths)}


def files_raw(n: int, wd: str) -> dict[str, Any]:
    """delta-rs' writer, defaults (what ``DataFrame.write_delta`` and ``write_deltalake`` do)."""
    _preload(*DELTA_LIBS)
    from deltalake import write_deltalake

    df = eager_frame(n)
    uri = os.path.join(wd, "raw")
    t0 = time.perf_counter()
    write_deltalake(uri, df)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "tables": [_delta_table(uri, n)], **layout(uri)}


def files_loom(n: int, wd: str) -> dict[str, Any]:
    """A Loom Delta asset (DataFrame body, overwrite): the files Polars encodes (``_files``)."""
    from loom_assets import Table

    df = eager_frame(n)
    loom = Loom([Table("b.t", backend="delta", columns=_columns(), mode="overwrite", transform=lambda context: df)])
    seconds, error = loom.run()
    uri = os.path.join(_delta_root(), "b", "t")
    return run_outcome(seconds, error, [_delta_table(uri, n)], **(layout(uri) if not error else {}))


def _reads(n: int) -> tuple[Any, Any, Any]:
    import polars as pl
    from deltalake import DeltaTable

    lo = int(n * READ_FROM)
    hi = lo + max(1, int(n * READ_SPAN))

    def polars_filtered(uri: str) -> Any:
        return pl.scan_delta(uri).filter((pl.col("day") == READ_DAY) & pl.col("id").is_between(lo, hi, closed="left")).collect()

    def deltalake_filtered(uri: str) -> Any:
        table = DeltaTable(uri).to_pyarrow_table(filters=[("day", "=", READ_DAY), ("id", ">=", lo), ("id", "<", hi)])
        return pl.from_arrow(table)

    def polars_whole(uri: str) -> Any:
        return pl.scan_delta(uri).select(pl.len(), pl.col("amount").sum(), pl.col("sku").n_unique()).collect()

    return polars_filtered, deltalake_filtered, polars_whole


def files_reads(n: int, wd: str) -> dict[str, Any]:
    """The filtered reads of the delta-rs-written table and Loom's, alternating (see the module)."""
    import polars as pl
    from deltalake import write_deltalake

    from loom_resources import DeltaResource, RunParams
    from loom_resources.model import Backend, TableRef, TargetSpec, WriteMode

    _preload(*DELTA_LIBS)
    df = eager_frame(n)
    raw = os.path.join(wd, "raw")
    write_deltalake(raw, df)
    delta = DeltaResource(root=os.path.join(wd, "loom"))
    spec = TargetSpec(ref=TableRef("b", "t"), backend=Backend.DELTA, columns=tuple(_columns()), mode=WriteMode.OVERWRITE)
    delta.write(df, spec, RunParams())
    ours = delta.table_uri(spec.ref)
    readers = _reads(n)
    lo = int(n * READ_FROM)
    hi = lo + max(1, int(n * READ_SPAN))
    want = df.filter((pl.col("day") == READ_DAY) & pl.col("id").is_between(lo, hi, closed="left")).sort("id")
    whole = readers[2](raw)
    times: dict[str, list[float]] = {}
    for _ in range(READ_ROUNDS):
        for read in readers:
            for name, uri in (("raw", raw), ("loom", ours)):
                t0 = time.perf_counter()
                got = read(uri)
                times.setdefault(f"{read.__name__}_{name}", []).append(time.perf_counter() - t0)
                if read.__name__ == "polars_whole":
                    assert got.equals(whole), (name, got, whole)
                else:
                    assert got.sort("id").equals(want), f"{read.__name__} of the {name} table: wrong rows"
    med = {k: statistics.median(v) for k, v in times.items()}
    extra: dict[str, Any] = {f"{k}_s": round(v, 4) for k, v in med.items()}
    for read in readers:
        k = read.__name__
        extra[f"{k}_ratio"] = round(med[f"{k}_loom"] / med[f"{k}_raw"], 3)
    extra["rows_selected"] = want.height
    extra["raw_layout"], extra["loom_layout"] = layout(raw), layout(ours)
    # the reads are what is timed; "seconds" is the polars filtered read of Loom's table
    return {"seconds": med["polars_filtered_loom"], "tables": [_delta_table(raw, n), _delta_table(ours, n)], **extra}


def files_copy_raw(n: int, wd: str) -> dict[str, Any]:
    """delta-rs' writer on the same Arrow batches Loom's streaming read pulls from the embedded
    engine (``src.events``, made by the ``ch_source`` set-up case)."""
    import chdb
    import pyarrow as pa
    from deltalake import write_deltalake

    _preload(*CH_LIBS, "deltalake")
    uri = os.path.join(wd, "copy")
    t0 = time.perf_counter()
    handle = chdb.connect(_ch_url().removeprefix("chdb://"))
    result = handle.send_query("SELECT * FROM src.events", "Arrow")
    batches = result.record_batch(rows_per_batch=_STREAM_BATCH_ROWS)
    first = next(iter(batches))
    reader = pa.RecordBatchReader.from_batches(first.schema, _chain(first, batches))
    write_deltalake(uri, reader, mode="overwrite")
    seconds = time.perf_counter() - t0
    result.close()
    handle.close()
    return {"seconds": seconds, "tables": [_delta_table(uri, n)], **layout(uri)}


def _chain(first: Any, rest: Any) -> Any:
    yield first
    yield from rest


def files_copy_loom(n: int, wd: str) -> dict[str, Any]:
    """The declared ClickHouse -> Delta copy (``bench.cases.loom_copy``), with its layout on disk."""
    import dagster as dg

    loom = Loom(_copy_tables(n), preload=(*CH_LIBS, "deltalake"))
    seconds, error = loom.run(selection=[dg.AssetKey(["copy", "events"])])
    uri = os.path.join(_delta_root(), "copy", "events")
    return run_outcome(seconds, error, [_delta_table(uri, n)], **(layout(uri) if not error else {}))


CASES = {f.__name__: f for f in (files_raw, files_loom, files_reads, files_copy_raw, files_copy_loom)}

if __name__ == "__main__":
    child_main(CASES)
