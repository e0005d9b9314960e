"""Asset-level overhead: a Loom asset materialized with ``dagster.materialize`` against the raw
library write of the same rows, with Dagster's own fixed cost measured in the same run.

Cases (each its own process, median of ``--repeat``):
  raw_write_delta    polars ``DataFrame.write_delta`` of N rows (frame built before timing)
  dagster_noop       ``dagster.materialize`` of an asset that returns nothing (Dagster's fixed cost)
(every Dagster case first runs one warm-up materialize, untimed)
  loom_asset         ``dagster.materialize`` of a declared Loom Delta table returning the same frame
  loom_range30       one single-run 30-day range replace of N/4 rows on an existing table
  raw_partitioned    raw ``write_delta(partition_by="day")`` of the same N/4 rows

Run: ``.venv/bin/python -m bench.bench_assets [--rows 8000000] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results" / "assets.txt"


def _case(name: str, n: int, tmp: str) -> dict[str, Any]:
    import dagster as dg
    import polars as pl
    from deltalake import DeltaTable

    from bench.bench_delta import eager_frame

    df = eager_frame(n)
    uri = f"{tmp}/t"

    @dg.asset
    def noop() -> None:
        return None

    if name not in ("raw_write_delta", "raw_partitioned"):
        # warm up: Dagster imports much of itself lazily on the first materialize
        dg.materialize([noop], instance=dg.DagsterInstance.ephemeral())
    if name == "raw_write_delta":
        t0 = time.perf_counter()
        df.write_delta(uri)
        sec = time.perf_counter() - t0
    elif name == "raw_partitioned":
        t0 = time.perf_counter()
        df.write_delta(uri, delta_write_options={"partition_by": ["day"]})
        sec = time.perf_counter() - t0
    elif name == "dagster_noop":
        t0 = time.perf_counter()
        dg.materialize([noop], instance=dg.DagsterInstance.ephemeral())
        sec = time.perf_counter() - t0
        return {"seconds": sec, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "rows": 0}
    else:
        from loom_assets.declare import Table
        from loom_assets.factory import build_assets
        from loom_resources import ColumnSchema as C
        from loom_resources.clickhouse import ClickHouseResource
        from loom_resources.delta import DeltaResource
        from loom_resources.io_manager import LoomIOManager

        delta = DeltaResource(root=tmp)
        ch = ClickHouseResource(url=f"chdb://{tmp}/ch")
        res = {"delta": delta, "clickhouse": ch, "io_manager": LoomIOManager(delta=delta, clickhouse=ch, record_runs=False)}
        cols = [C("id", "int64", False), C("day", "date", False), C("amount", "float64"), C("sku", "string")]
        if name == "loom_asset":
            t = Table("b.t", backend="delta", columns=cols, mode="overwrite", transform=lambda context: df)
            tags: dict[str, str] = {}
        else:
            daily = dg.DailyPartitionsDefinition(start_date="2024-01-01", end_date="2024-01-31")
            t = Table("b.t", backend="delta", columns=cols, mode="replace_partitions", partitions=daily,
                      partition_column="day", transform=lambda context: df)
            tags = {"dagster/asset_partition_range_start": "2024-01-01", "dagster/asset_partition_range_end": "2024-01-30"}
            # the table exists already: this is the case the official IO manager fails on
            dg.materialize(build_assets([t]), resources=res, instance=dg.DagsterInstance.ephemeral(), tags=tags)
        assets = build_assets([t])
        inst = dg.DagsterInstance.ephemeral()
        t0 = time.perf_counter()
        result = dg.materialize(assets, resources=res, instance=inst, tags=tags)
        sec = time.perf_counter() - t0
        assert result.success
        uri = delta.table_uri("b.t")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    back = pl.from_arrow(DeltaTable(uri).to_pyarrow_table())
    assert isinstance(back, pl.DataFrame)
    assert back.height == n and back["id"].n_unique() == n and back["id"].sum() == df["id"].sum(), name
    return {"seconds": sec, "rss_mb": rss, "rows": n}


def run(name: str, n: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run([sys.executable, "-m", "bench.bench_assets", "--child", name, "--rows", str(n), "--tmp", tmp],
                             capture_output=True, text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=8_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--child")
    ap.add_argument("--tmp")
    a = ap.parse_args()
    if a.child:
        print(json.dumps(_case(a.child, a.rows, a.tmp)))
        return
    quarter = a.rows // 4
    plan = [("raw_write_delta", a.rows), ("dagster_noop", 0), ("loom_asset", a.rows),
            ("raw_partitioned", quarter), ("loom_range30", quarter)]
    med: dict[str, dict[str, float]] = {}
    lines = [f"# bench_assets  {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}  median of {a.repeat}, each case its own process, 2 cores",
             "| case | rows | seconds | peak RSS MB |", "|---|---:|---:|---:|"]
    for name, n in plan:
        runs = [run(name, n) for _ in range(a.repeat)]
        med[name] = {"seconds": statistics.median(r["seconds"] for r in runs), "rss_mb": statistics.median(r["rss_mb"] for r in runs)}
        lines.append(f"| {name} | {n:,} | {med[name]['seconds']:.2f} | {med[name]['rss_mb']:,.0f} |")
    fixed = med["dagster_noop"]["seconds"]
    over = med["loom_asset"]["seconds"] - med["raw_write_delta"]["seconds"]
    lines += [
        "",
        f"Dagster fixed cost (no-op materialize): {fixed:.2f} s",
        f"Loom asset overhead over the raw write: {over:.2f} s = {over / fixed:.2f}x Dagster's fixed cost [target <= 1x]",
        f"30-day single-run range replace on an existing table vs raw partitioned write: "
        f"{med['loom_range30']['seconds'] / med['raw_partitioned']['seconds']:.2f}x time (includes Dagster's fixed cost)",
        f"peak RSS, Loom asset / raw write: {med['loom_asset']['rss_mb'] / med['raw_write_delta']['rss_mb']:.2f}x",
    ]
    text = "\n".join(lines)
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text + "\n")


if __name__ == "__main__":
    main()
