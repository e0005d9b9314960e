"""Delta write benchmarks: DeltaResource side by side with the raw library, printed as ratios.

Run: ``.venv/bin/python -m bench.bench_delta [--rows N] [--stream-rows 5000000,20000000]
[--part-rows N] [--repeat 3]``. Each case runs in its own process (peak RSS is that process's
``ru_maxrss``, taken before the table is read back); the median of ``--repeat`` runs is shown.
Every table is read back and checked (row count, distinct ids, sum of ids). Output is also
written to ``bench/results/delta.txt``.

Workload (as in ANCHORS.md): ``id`` Int64, ``day`` Date (30 days), ``amount`` Float64, ``sku`` String.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import polars as pl

BASE_DAY = dt.date(2024, 1, 1)
BLOCK = 10_000
RESULTS = Path(__file__).parent / "results" / "delta.txt"


def _exprs(ids: pl.Expr) -> list[pl.Expr]:
    return [
        ids.alias("id"),
        (pl.lit(BASE_DAY) + pl.duration(days=ids % 30)).alias("day"),
        (ids.cast(pl.Float64) * 0.5).alias("amount"),
        (pl.lit("sku-") + (ids % 1000).cast(pl.String)).alias("sku"),
    ]


def eager_frame(n: int) -> pl.DataFrame:
    """The workload, materialized."""
    return pl.DataFrame({"i": pl.int_range(0, n, eager=True, dtype=pl.Int64)}).select(_exprs(pl.col("i")))


def lazy_frame(n: int) -> pl.LazyFrame:
    """The workload as a LazyFrame that is never materialized: a cross join of two small ranges,
    which the streaming engine produces batch by batch (a plain ``int_range`` is materialized)."""
    outer = pl.LazyFrame({"a": pl.int_range(0, -(-n // BLOCK), eager=True, dtype=pl.Int64)})
    inner = pl.LazyFrame({"b": pl.int_range(0, BLOCK, eager=True, dtype=pl.Int64)})
    ids = pl.col("a") * BLOCK + pl.col("b")
    return outer.join(inner, how="cross").filter(ids < n).select(_exprs(ids))


def _spec(ref: str, **kw: Any) -> Any:
    from loom_resources.dtypes import ColumnSchema as C
    from loom_resources.model import TargetSpec

    cols = (C("id", "int64", nullable=False), C("day", "date", nullable=False), C("amount", "float64"), C("sku", "string"))
    return TargetSpec(ref, "delta", cols, **kw)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _verify(path: str, n: int) -> None:
    got = pl.scan_delta(path).select(
        pl.len().alias("n"), pl.col("id").n_unique().alias("distinct"), pl.col("id").sum().alias("sum")
    ).collect(engine="streaming").row(0)
    want = (n, n, n * (n - 1) // 2)
    if got != want:
        raise SystemExit(f"verification failed for {path}: got {got}, want {want}")


def run_case(case: str, n: int, workdir: str) -> dict[str, Any]:
    """Run one case in this process; return seconds, peak RSS and commits."""
    from deltalake import DeltaTable

    from loom_resources.delta import DeltaResource
    from loom_resources.model import RunParams

    delta = DeltaResource(root=workdir)
    ref = "bench.t"
    path = delta.table_uri(ref)
    commits = 1
    if case in ("raw_write_delta", "loom_eager"):
        df = eager_frame(n)
        t0 = time.perf_counter()
        if case == "raw_write_delta":
            df.write_delta(path)
        else:
            delta.write(df, _spec(ref), RunParams())
        seconds = time.perf_counter() - t0
    elif case in ("raw_sink_delta", "loom_streaming"):
        lf = lazy_frame(n)
        t0 = time.perf_counter()
        if case == "raw_sink_delta":
            lf.sink_delta(path)
        else:
            delta.write(lf, _spec(ref), RunParams(), streaming=True)
        seconds = time.perf_counter() - t0
    elif case == "loom_unpartitioned":
        df = eager_frame(n)
        t0 = time.perf_counter()
        delta.write(df, _spec(ref), RunParams())
        seconds = time.perf_counter() - t0
    elif case == "raw_partitioned":
        df = eager_frame(n)
        t0 = time.perf_counter()
        df.write_delta(path, delta_write_options={"partition_by": ["day"]})
        seconds = time.perf_counter() - t0
    elif case == "loom_replace30":
        df = eager_frame(n)
        spec = _spec(ref, mode="replace_partitions", partition_by=("day",))
        delta.write(df, spec, RunParams())  # the existing table the run replaces (not timed)
        before = DeltaTable(path).version()
        keys = tuple((BASE_DAY + dt.timedelta(days=d)).isoformat() for d in range(30))
        params = RunParams(partition_keys=keys, partitions=tuple({"day": k} for k in keys))
        t0 = time.perf_counter()
        delta.write(df, spec, params)
        seconds = time.perf_counter() - t0
        commits = DeltaTable(path).version() - before
    else:
        raise SystemExit(f"unknown case {case}")
    rss = _rss_mb()
    _verify(path, n)
    return {"case": case, "rows": n, "seconds": seconds, "rss_mb": rss, "commits": commits}


def _child(case: str, n: int) -> dict[str, Any]:
    workdir = tempfile.mkdtemp(prefix="bench_delta_")
    try:
        out = subprocess.run(
            [sys.executable, "-m", "bench.bench_delta", "--case", case, "--rows", str(n), "--dir", workdir],
            check=True, capture_output=True, text=True, cwd=Path(__file__).parent.parent,
        )
        return dict(json.loads(out.stdout.strip().splitlines()[-1]))
    except subprocess.CalledProcessError as exc:
        raise SystemExit(f"case {case} failed:\n{exc.stderr}") from exc
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _summary(case: str, n: int, runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "case": case, "rows": n,
        "seconds": statistics.median(r["seconds"] for r in runs),
        "rss_mb": statistics.median(r["rss_mb"] for r in runs),
        "commits": max(r["commits"] for r in runs),
        "all_seconds": [round(r["seconds"], 2) for r in runs],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=8_000_000, help="rows of the eager cases")
    ap.add_argument("--stream-rows", default="5000000,20000000", help="small,large rows of the streaming cases")
    ap.add_argument("--part-rows", type=int, default=2_000_000, help="rows of the 30-partition cases")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--case", help=argparse.SUPPRESS)
    ap.add_argument("--dir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case, args.rows, args.dir)))
        return

    small, large = (int(x) for x in args.stream_rows.split(","))
    plan = [
        ("raw_write_delta", args.rows), ("loom_eager", args.rows),
        ("raw_sink_delta", small), ("loom_streaming", small),
        ("raw_sink_delta", large), ("loom_streaming", large),
        ("raw_partitioned", args.part_rows), ("loom_unpartitioned", args.part_rows), ("loom_replace30", args.part_rows),
    ]
    # rounds run every case once, so load from other jobs on the machine hits all cases alike
    runs: dict[tuple[str, int], list[dict[str, Any]]] = {key: [] for key in plan}
    for round_ in range(args.repeat):
        for case, n in plan:
            r = _child(case, n)
            runs[(case, n)].append(r)
            print(f"  round {round_ + 1}: {case:<20} {n:>11,} rows  {r['seconds']:7.2f}s  {r['rss_mb']:7.0f} MB",
                  file=sys.stderr, flush=True)
    results = [_summary(case, n, runs[(case, n)]) for case, n in plan]
    by = {(r["case"], r["rows"]): r for r in results}

    lines = [
        f"# bench_delta  {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC  median of {args.repeat} rounds, each case its own process",
        f"# {platform.platform()}  cpus={os.cpu_count()}  python {platform.python_version()}  polars {pl.__version__}  "
        f"deltalake {__import__('deltalake').__version__}",
        "# shared machine: 2 cores, other agents' jobs were running at the same time, so absolute times are noisy;",
        "# the ratios compare cases of the same run. Streaming input: a lazy cross join of two small ranges",
        "# (never materialized); eager input: a DataFrame built before timing. Wall time is the write only.",
        "",
        f"| {'case':<20} | {'rows':>11} | {'seconds':>8} | {'rows/s':>8} | {'peak RSS MB':>11} | {'commits':>7} | runs (s)",
        f"|{'-' * 22}|{'-' * 13}|{'-' * 10}|{'-' * 10}|{'-' * 13}|{'-' * 9}|{'-' * 10}",
    ]
    for r in results:
        rate = r["rows"] / r["seconds"] / 1e6
        lines.append(f"| {r['case']:<20} | {r['rows']:>11,} | {r['seconds']:>8.2f} | {rate:>7.2f}M | "
                     f"{r['rss_mb']:>11.0f} | {r['commits']:>7} | {r['all_seconds']}")
    eager = by[("raw_write_delta", args.rows)]["seconds"] / by[("loom_eager", args.rows)]["seconds"]
    s_small, s_large = by[("loom_streaming", small)], by[("loom_streaming", large)]
    rss_ratio = s_large["rss_mb"] / s_small["rss_mb"]
    sink_large = by[("raw_sink_delta", large)]
    part = by[("loom_replace30", args.part_rows)]
    part_ratio = part["seconds"] / by[("loom_unpartitioned", args.part_rows)]["seconds"]
    lines += [
        "",
        "ratios (target in brackets):",
        f"  eager throughput, loom / raw write_delta ({args.rows:,} rows):        {eager:5.2f}x  [>= 0.90x]  "
        f"{'PASS' if eager >= 0.9 else 'FAIL'}",
        f"  streaming peak RSS, {large:,} / {small:,} rows:              {rss_ratio:5.2f}x  [<= 1.25x]  "
        f"{'PASS' if rss_ratio <= 1.25 else 'FAIL'}",
        f"  streaming peak RSS at {large:,} rows:                         {s_large['rss_mb']:5.0f} MB [<= 1024 MB]  "
        f"{'PASS' if s_large['rss_mb'] <= 1024 else 'FAIL'}",
        f"  streaming time, loom / raw sink_delta ({large:,} rows):       {s_large['seconds'] / sink_large['seconds']:5.2f}x  "
        f"(RSS {s_large['rss_mb'] / sink_large['rss_mb']:.2f}x)",
        f"  30-partition single-run replace, time / unpartitioned write:   {part_ratio:5.2f}x  [<= 1.50x]  "
        f"{'PASS' if part_ratio <= 1.5 else 'FAIL'}",
        f"  30-partition single-run replace, commits:                      {part['commits']:5d}   [== 1]  "
        f"{'PASS' if part['commits'] == 1 else 'FAIL'}",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)


if __name__ == "__main__":
    main()
