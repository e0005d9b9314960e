"""Benchmark cases of Delta ``merge`` and ``history`` (SCD2) at scale (issue 27): Loom's modes
through a real ``dagster.materialize`` against raw ``DeltaTable.merge`` on the same table.

One case per process: ``python -m bench.cases_merge CASE ROWS WORKDIR OUT_JSON`` (ROWS: the
target's rows; the change set is ROWS / 20). The target tables are made once per size by the
set-up case ``merge_targets`` (in its own process, not timed) and each case copies the one it
needs into its working directory before the clock starts, so the set-up's memory never counts in
a case's peak RSS. The runner passes the set-up's directory as ``LOOM_BENCH_SHARED``.

Workload (``bench.workload``'s rows: ``id`` 0..N-1, ``day`` = 2024-01-01 + id % 30, ``amount``,
``sku``), written by Loom's Delta writer (files of ~64 MiB, ids increasing across files):

* ``clustered``: the change-data pattern. C = N/20 changes: the most recent C/2 ids updated and
  C/2 new ids (N .. N + C/2) inserted, into the unpartitioned table.
* ``random``: C/2 updates spread over the whole key range (a seeded sample) + C/2 new ids.
* ``partitioned``: the table partitioned by ``day``; C/2 updates of ids in 3 of the 30 days and
  C/2 new ids in those 3 days. Raw's predicate carries the 3 days as literals, as Loom's does.
* ``scd2``: Loom's ``history`` mode (change-log input) on a 20M-row history table, the same
  changes as ``clustered``; measured against raw ``clustered`` (delta-rs has no SCD2 of its own).

Read back: every merged table must hold ids 0 .. N + C/2 - 1 once each (count, distinct, sum);
the SCD2 table holds N + C rows (each updated id twice: its closed and its new version).

``python -m bench.cases_merge large [--target 200000000] [--changes 50000000]``: the change set
larger than memory (not part of ``make bench``), see :func:`large_main`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.cases import DELTA_LIBS, Loom, _columns, _delta_root, _delta_table, _preload
from bench.workload import BASE_DAY, child_main, run_outcome

SEED = 27
HIST_D0 = dt.date(2024, 1, 1)  # the set-up's effective date of the history table


def n_changes(n: int) -> int:
    """The change set's size for a target of ``n`` rows (1M for 20M)."""
    return max(2, n // 20)


# -- frames ----------------------------------------------------------------------------------------


def _rows(ids: Any, *, amount_bump: float = 0.0, days: int = 30) -> Any:
    """The workload's columns for an id column (``amount`` changed by ``amount_bump``; ``day`` in
    the first ``days`` days)."""
    import polars as pl

    return [
        ids.alias("id"),
        (pl.lit(BASE_DAY) + pl.duration(days=ids % days)).cast(pl.Date).alias("day"),
        (ids.cast(pl.Float64) * 0.5 + amount_bump).alias("amount"),
        (pl.lit("sku-") + (ids % 1000).cast(pl.String)).alias("sku"),
    ]


def changes(kind: str, n: int) -> Any:
    """The change set of ``kind`` for an ``n``-row target (a DataFrame in the workload's schema)."""
    import polars as pl

    c = n_changes(n)
    half = c // 2
    new = pl.int_range(n, n + (c - half), eager=True, dtype=pl.Int64)
    if kind == "clustered":
        upd = pl.int_range(n - half, n, eager=True, dtype=pl.Int64)
    elif kind == "random":
        upd = pl.int_range(0, n, eager=True, dtype=pl.Int64).sample(half, seed=SEED).sort()
    elif kind == "partitioned":
        # ids of days 0..2 (id % 30 < 3), every k-th of them, and new ids put into those days
        step = max(1, (n // 10) // half)
        day_ids = pl.int_range(0, n, eager=True, dtype=pl.Int64).filter((pl.int_range(0, n, eager=True) % 30) < 3)
        upd = day_ids.gather_every(step).head(half)
        frame = pl.DataFrame({"i": upd}).select(_rows(pl.col("i"), amount_bump=1.0))
        ins = pl.DataFrame({"i": new}).select(_rows(pl.col("i"), days=3))
        return pl.concat([frame, ins]).sample(fraction=1.0, shuffle=True, seed=SEED)
    else:
        raise ValueError(kind)
    frame = pl.concat([pl.DataFrame({"i": upd}).select(_rows(pl.col("i"), amount_bump=1.0)),
                       pl.DataFrame({"i": new}).select(_rows(pl.col("i")))])
    return frame if kind == "clustered" else frame.sample(fraction=1.0, shuffle=True, seed=SEED)


def _merged(n: int) -> int:
    """Rows of a merged table: the target's plus the inserted ones."""
    c = n_changes(n)
    return n + (c - c // 2)


# -- set-up ----------------------------------------------------------------------------------------


def _shared() -> str:
    path = os.environ.get("LOOM_BENCH_SHARED")
    if not path:
        raise SystemExit("LOOM_BENCH_SHARED is not set: run the cases through bench.run_all (set-up merge_targets)")
    return path


def _history_spec(ref: str) -> Any:
    from loom_resources import ColumnSchema as C
    from loom_resources.model import HistoryOptions, TargetSpec

    cols = (C("id", "int64", False), C("day", "date", False), C("amount", "float64"), C("sku", "string"))
    return TargetSpec(ref, "delta", cols, mode="history", merge_keys=("id",),
                      history=HistoryOptions(input="changelog", tracked_columns=("amount",)))


def merge_targets(n: int, wd: str) -> dict[str, Any]:
    """Set-up (not timed): the unpartitioned, the day-partitioned and the history target of
    ``n`` rows, written by Loom's Delta writer under ``<wd>/clickhouse/merge`` (the directory the
    runner keeps for the cases that share this set-up)."""
    import polars as pl

    from bench.workload import eager_frame
    from loom_resources import ColumnSchema as C
    from loom_resources import DeltaResource, RunParams
    from loom_resources.model import TargetSpec

    root = os.path.join(wd, "clickhouse", "merge")
    os.makedirs(root, exist_ok=True)
    res = DeltaResource(root=root)
    cols = (C("id", "int64", False), C("day", "date", False), C("amount", "float64"), C("sku", "string"))
    t0 = time.perf_counter()
    df = eager_frame(n)
    res.write(df, TargetSpec("m.flat", "delta", cols, mode="overwrite"), RunParams())
    res.write(df, TargetSpec("m.daily", "delta", cols, mode="overwrite", partition_by=("day",)), RunParams())
    res.write(df.with_columns(op=pl.lit("upsert")), _history_spec("m.hist"), RunParams(values={"effective_date": HIST_D0}))
    return {"seconds": time.perf_counter() - t0, "tables": [
        _delta_table(os.path.join(root, "m", "flat"), n), _delta_table(os.path.join(root, "m", "daily"), n)]}


def _copy(table: str, dest: str) -> str:
    """Copy the set-up's ``table`` (flat, daily or hist) to ``dest``; returns its path."""
    shutil.copytree(os.path.join(_shared(), "merge", "m", table), dest)
    return dest


# -- raw -------------------------------------------------------------------------------------------


def _raw(kind: str, n: int, wd: str, *, streamed_exec: bool = True) -> dict[str, Any]:
    """Raw ``DeltaTable.merge`` (update all matched, insert all unmatched) with default options."""
    _preload(*DELTA_LIBS)
    from deltalake import DeltaTable

    uri = _copy("daily" if kind == "partitioned" else "flat", os.path.join(wd, "raw"))
    src = changes(kind, n)
    predicate = "t.id = s.id"
    if kind == "partitioned":
        days = sorted(src["day"].unique().to_list())
        predicate += " AND t.day IN (" + ", ".join(f"'{d.isoformat()}'" for d in days) + ")"
    t0 = time.perf_counter()
    table = DeltaTable(uri)
    metrics = (table.merge(src, predicate, source_alias="s", target_alias="t", streamed_exec=streamed_exec)
               .when_matched_update_all().when_not_matched_insert_all().execute())
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "tables": [_delta_table(uri, _merged(n))], **_scan_counts(metrics)}


def _scan_counts(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: metrics.get(k) for k in ("num_target_files_scanned", "num_target_files_skipped_during_scan",
                                        "num_target_rows_updated", "num_target_rows_inserted")}


def raw_merge_clustered(n: int, wd: str) -> dict[str, Any]:
    return _raw("clustered", n, wd)


def raw_merge_clustered_nostream(n: int, wd: str) -> dict[str, Any]:
    """Raw merge with ``streamed_exec=False``: delta-rs then derives the key range itself (reference)."""
    return _raw("clustered", n, wd, streamed_exec=False)


def raw_merge_random(n: int, wd: str) -> dict[str, Any]:
    return _raw("random", n, wd)


def raw_merge_partitioned(n: int, wd: str) -> dict[str, Any]:
    return _raw("partitioned", n, wd)


# -- Loom ------------------------------------------------------------------------------------------


def _loom(kind: str, n: int, wd: str) -> dict[str, Any]:
    from loom_assets import Table

    table = {"partitioned": "daily", "scd2": "hist"}.get(kind, "flat")
    uri = _copy(table, os.path.join(_delta_root(), "m", "t"))
    src = changes("clustered" if kind == "scd2" else kind, n)
    if kind == "scd2":
        import polars as pl

        from loom_resources.model import HistoryOptions

        src = src.with_columns(op=pl.lit("upsert"))
        decl = Table("m.t", backend="delta", columns=_columns(), mode="history", merge_keys=("id",),
                     history=HistoryOptions(input="changelog", tracked_columns=("amount",)),
                     transform=lambda context: src)
    else:
        decl = Table("m.t", backend="delta", columns=_columns(), mode="merge", merge_keys=("id",),
                     partition_by=("day",) if kind == "partitioned" else (), transform=lambda context: src)
    loom = Loom([decl])
    seconds, error = loom.run()
    extra: dict[str, Any] = {}
    if not error:
        from deltalake import DeltaTable

        extra = _scan_counts(DeltaTable(uri).history(1)[0].get("operationMetrics", {}))
    if kind != "scd2":
        return run_outcome(seconds, error, [_delta_table(uri, _merged(n))], **extra)
    c = n_changes(n)
    half = c // 2
    upd_sum = sum(range(n - half, n))
    total = _merged(n)
    expect = {"count": n + c, "distinct": total, "sum": total * (total - 1) // 2 + upd_sum}
    return run_outcome(seconds, error, [{**_delta_table(uri, n + c), "expect": expect}], **extra)


def loom_merge_clustered(n: int, wd: str) -> dict[str, Any]:
    return _loom("clustered", n, wd)


def loom_merge_random(n: int, wd: str) -> dict[str, Any]:
    return _loom("random", n, wd)


def loom_merge_partitioned(n: int, wd: str) -> dict[str, Any]:
    return _loom("partitioned", n, wd)


def loom_history_scd2(n: int, wd: str) -> dict[str, Any]:
    return _loom("scd2", n, wd)


CASES = {f.__name__: f for f in (
    merge_targets, raw_merge_clustered, raw_merge_clustered_nostream, raw_merge_random, raw_merge_partitioned,
    loom_merge_clustered, loom_merge_random, loom_merge_partitioned, loom_history_scd2,
)}


# -- the change set larger than memory (standalone) ---------------------------------------------


def large_main(argv: list[str]) -> int:
    """Placeholder: filled in below."""
    raise NotImplementedError


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "large":
        sys.exit(large_main(sys.argv[2:]))
    child_main(CASES)
