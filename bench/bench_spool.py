"""Peak RSS and peak temporary disk of a ClickHouse -> Delta streaming copy
(``ClickHouseResource.read_streaming`` into ``DeltaResource.write(..., streaming=True)``).

Two ways of delivering the ClickHouse result are compared in the same run, each case in its own
process on its own embedded-engine path and LOOM_HOME:

* ``spool`` ("before"): ``streaming_reads="spool"``, which spools the whole query result to
  lz4-compressed Arrow IPC segments and scans them, as every streaming read did before this change;
* ``direct`` ("after", the default): the result is streamed through a Polars IO source into the
  Delta writer while ClickHouse produces it; no spool.

Temporary disk is sampled every 20 ms in the spool directory (``spool_dir``) and, as a check that
nothing is written elsewhere, in the system temp directory's ``loom-ch-spool-*`` directories.
Every copy is read back (row count, sum of ids). Ratios compare the larger sizes with the
smallest one and "after" with "before".

Run: .venv/bin/python -m bench.bench_spool [--rows 5000000,20000000[,100000000]]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def du_bytes(path: str | Path) -> int:
    """Bytes allocated under ``path`` (files removed while walking are skipped)."""
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.stat(os.path.join(dirpath, f)).st_blocks * 512
            except OSError:
                continue
    return total


class DiskSampler(threading.Thread):
    """Peak bytes under the given directories, sampled every 20 ms."""

    def __init__(self, spool_dir: Path) -> None:
        super().__init__(daemon=True)
        self.spool_dir, self.peak, self.stop = spool_dir, 0, threading.Event()
        self.tmp = Path(tempfile.gettempdir())

    def run(self) -> None:
        while not self.stop.is_set():
            used = du_bytes(self.spool_dir) + sum(du_bytes(d) for d in self.tmp.glob("loom-ch-spool-*"))
            self.peak = max(self.peak, used)
            time.sleep(0.02)


def setup(home: str, n: int) -> dict[str, Any]:
    from loom_resources.clickhouse import ClickHouseResource

    ch = ClickHouseResource(url=f"chdb://{home}/clickhouse")
    ch.command("CREATE DATABASE IF NOT EXISTS bench")
    ch.command("CREATE TABLE bench.src (`id` Int64, `day` Date32, `amount` Nullable(Float64), `sku` Nullable(String)) "
               "ENGINE = MergeTree ORDER BY id")
    ch.command(f"INSERT INTO bench.src SELECT number, toDate32('2024-01-01') + number % 30, number * 0.5, "
               f"concat('sku', toString(number % 1000)) FROM numbers({n})")
    ch.close()
    return {}


def copy(home: str, n: int, mode: str) -> dict[str, Any]:
    import polars as pl

    from loom_resources.clickhouse import ClickHouseResource
    from loom_resources.delta import DeltaResource
    from loom_resources.dtypes import ColumnSchema
    from loom_resources.model import RunParams, SourceSpec, TableRef, TargetSpec

    spool_dir = Path(home) / "spool"
    spool_dir.mkdir()
    ch = ClickHouseResource(url=f"chdb://{home}/clickhouse", streaming_reads=mode, spool_dir=str(spool_dir),
                            spool_max_bytes=1 << 50)
    Path(home, "delta").mkdir()
    delta = DeltaResource(root=f"{home}/delta")
    ch.command("SELECT 1")
    cols = (ColumnSchema("id", "int64", False), ColumnSchema("day", "date", False),
            ColumnSchema("amount", "float64"), ColumnSchema("sku", "string"))
    target = TargetSpec(TableRef("bench", "copy"), "delta", cols, mode="overwrite")  # type: ignore[arg-type]
    sampler = DiskSampler(spool_dir)
    sampler.start()
    start = time.perf_counter()
    lf = ch.read_streaming(SourceSpec(TableRef("bench", "src")), RunParams())
    delta.write(lf, target, RunParams(), streaming=True)
    seconds = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ch.close()
    sampler.stop.set()
    sampler.join()
    got = pl.scan_delta(f"{home}/delta/bench/copy").select(pl.len(), pl.col("id").sum()).collect().row(0)
    return {"seconds": round(seconds, 2), "rss_mb": round(rss), "temp_disk_mb": round(sampler.peak / 2**20, 1),
            "ok": got == (n, n * (n - 1) // 2)}


def _child(args: list[str]) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "bench.bench_spool", *args], capture_output=True, text=True, cwd=ROOT)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise SystemExit(f"{args} failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr[-3000:]}")
    return dict(json.loads(lines[-1]))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rows", default="5000000,20000000")
    p.add_argument("--child", nargs=3, metavar=("WHAT", "HOME", "N"))
    p.add_argument("--mode", default="direct")
    a = p.parse_args()
    if a.child:
        what, home, n = a.child
        os.environ["LOOM_HOME"] = home
        out = setup(home, int(n)) if what == "setup" else copy(home, int(n), a.mode)
        print(json.dumps(out), flush=True)
        os._exit(0)  # skip interpreter teardown (polars + deltalake may abort at exit)
    sizes = [int(x) for x in a.rows.split(",")]
    results: dict[tuple[int, str], dict[str, Any]] = {}
    print(f"{'rows':>12} {'mode':>14} {'seconds':>8} {'peak RSS MB':>12} {'peak temp disk MB':>18} {'bytes/row':>10} ok")
    for n in sizes:
        home = tempfile.mkdtemp(prefix="bench-spool-home-")
        try:
            _child(["--child", "setup", home, str(n)])
            for mode, label in (("spool", "before (spool)"), ("direct", "after (direct)")):
                shutil.rmtree(Path(home) / "delta", ignore_errors=True)
                shutil.rmtree(Path(home) / "spool", ignore_errors=True)
                r = results[(n, mode)] = _child(["--child", "copy", home, str(n), "--mode", mode])
                print(f"{n:>12,} {label:>14} {r['seconds']:>8} {r['rss_mb']:>12} {r['temp_disk_mb']:>18} "
                      f"{r['temp_disk_mb'] * 2**20 / n:>10.2f} {r['ok']}", flush=True)
        finally:
            shutil.rmtree(home, ignore_errors=True)
    base = sizes[0]
    print("\nratios")
    for mode in ("spool", "direct"):
        for n in sizes[1:]:
            r, b = results[(n, mode)], results[(base, mode)]
            disk = f"{r['temp_disk_mb'] / b['temp_disk_mb']:.2f}x" if b["temp_disk_mb"] else "0 -> 0" if not r["temp_disk_mb"] else "inf"
            print(f"  {mode:>6} {n:,} vs {base:,} rows: peak RSS {r['rss_mb'] / b['rss_mb']:.2f}x, peak temp disk {disk}")
    for n in sizes:
        d, s = results[(n, "direct")], results[(n, "spool")]
        print(f"  {n:,} rows, after vs before: peak RSS {d['rss_mb'] / s['rss_mb']:.2f}x, "
              f"time {d['seconds'] / s['seconds']:.2f}x, temp disk {d['temp_disk_mb']} MB vs {s['temp_disk_mb']} MB")


if __name__ == "__main__":
    main()
