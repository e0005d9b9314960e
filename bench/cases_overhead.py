"""Benchmark cases of the asset-level overhead page (:mod:`bench.overhead`) that
:mod:`bench.cases` does not have: Loom without run records, the raw predicate replace of 30
partitions, the CLI's code-location validation, and the ClickHouse -> Delta copy with its
temporary disk sampled.

One case per process: ``python -m bench.cases_overhead CASE ROWS WORKDIR OUT_JSON``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.bench_spool import du_bytes
from bench.cases import (
    CH_LIBS,
    DELTA_LIBS,
    Loom,
    _columns,
    _copy_tables,
    _delta_root,
    _delta_table,
    _preload,
)
from bench.cases_load import BARE_TEMPLATE, LOOM_TEMPLATE
from bench.workload import BASE_DAY, DAYS, child_main, eager_frame, run_outcome


def loom_delta_eager_norecords(n: int, wd: str) -> dict[str, Any]:
    """The eager Delta asset with ``LoomIOManager(record_runs=False)``: what the run-records
    commit costs."""
    from loom_assets import Table, build_definitions
    from loom_resources import LoomIOManager

    df = eager_frame(n)
    tables = [Table("b.t", backend="delta", columns=_columns(), mode="overwrite", transform=lambda context: df)]
    loom = Loom(tables)
    io = loom.defs.resources["io_manager"]  # type: ignore[index]
    loom.defs = build_definitions(tables, resources={
        "io_manager": LoomIOManager(delta=io.delta, clickhouse=io.clickhouse, record_runs=False)})
    seconds, error = loom.run()
    return run_outcome(seconds, error, [_delta_table(os.path.join(_delta_root(), "b", "t"), n)])


def raw_replace30(n: int, wd: str) -> dict[str, Any]:
    """Bare deltalake: an existing table of N rows partitioned by day (made before the clock),
    then one ``write_deltalake(mode="overwrite", predicate=...)`` replacing its 30 days."""
    _preload(*DELTA_LIBS)
    from deltalake import DeltaTable, write_deltalake

    df = eager_frame(n)
    uri = os.path.join(wd, "raw")
    df.write_delta(uri, delta_write_options={"partition_by": ["day"]})
    last = BASE_DAY.toordinal() + DAYS - 1
    end = BASE_DAY.fromordinal(last).isoformat()
    t0 = time.perf_counter()
    write_deltalake(uri, df, mode="overwrite", partition_by=["day"],
                    predicate=f"day >= '{BASE_DAY.isoformat()}' AND day <= '{end}'")
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "tables": [_delta_table(uri, n)], "commits": int(DeltaTable(uri).version())}


def dagster_noop_range30(n: int, wd: str) -> dict[str, Any]:
    """An empty daily-partitioned asset over the same 30-day range in one run: Dagster's own cost
    of a 30-partition run (planned and materialization events for each partition)."""
    import dagster as dg

    from bench.cases import RANGE_TAGS, _daily

    @dg.asset(partitions_def=_daily(), backfill_policy=dg.BackfillPolicy.single_run())
    def noop(context) -> None:  # type: ignore[no-untyped-def]  # (string annotations do not resolve in a local scope)
        return None

    inst = dg.DagsterInstance.ephemeral()
    t0 = time.perf_counter()
    result = dg.materialize([noop], instance=inst, tags=RANGE_TAGS)
    assert result.success
    return {"seconds": time.perf_counter() - t0, "tables": []}


def _validate_cli(template: str, n: int, wd: str) -> dict[str, Any]:
    """``dagster definitions validate -f location.py`` as a user runs it: the whole CLI process
    (interpreter start, imports, building and validating the code location)."""
    path = Path(wd) / "location.py"
    path.write_text(template.format(n=n))
    dagster = Path(sys.executable).parent / "dagster"
    t0 = time.perf_counter()
    proc = subprocess.run([str(dagster), "definitions", "validate", "-f", str(path)], cwd=wd,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        return {"status": "error", "error": (proc.stdout + proc.stderr)[-800:], "tables": []}
    return {"seconds": seconds, "tables": []}


def validate_cli_loom(n: int, wd: str) -> dict[str, Any]:
    return _validate_cli(LOOM_TEMPLATE, n, wd)


def validate_cli_bare(n: int, wd: str) -> dict[str, Any]:
    return _validate_cli(BARE_TEMPLATE, n, wd)


class _DiskSampler(threading.Thread):
    """Peak bytes under the temporary directory (where any spool would go), every 50 ms."""

    def __init__(self, path: str) -> None:
        super().__init__(daemon=True)
        self.path, self.peak, self.done = path, 0, threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.05):
            self.peak = max(self.peak, du_bytes(self.path))


def loom_copy_disk(n: int, wd: str) -> dict[str, Any]:
    """The ClickHouse -> Delta copy of two declared tables (as ``bench.cases.loom_copy``) with
    the peak temporary disk sampled under ``$TMPDIR`` while it runs."""
    import dagster as dg

    loom = Loom(_copy_tables(n), preload=(*CH_LIBS, "deltalake"))
    sampler = _DiskSampler(tempfile.gettempdir())
    sampler.start()
    seconds, error = loom.run(selection=[dg.AssetKey(["copy", "events"])])
    sampler.done.set()
    sampler.join()
    return run_outcome(seconds, error, [_delta_table(os.path.join(_delta_root(), "copy", "events"), n)],
                       temp_disk_mb=sampler.peak / 2**20)


CASES = {f.__name__: f for f in (
    loom_delta_eager_norecords, raw_replace30, dagster_noop_range30, validate_cli_loom, validate_cli_bare, loom_copy_disk,
)}

if __name__ == "__main__":
    child_main(CASES)
