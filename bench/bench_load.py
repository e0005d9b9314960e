"""Code-location load time with 200 declared tables (target: under 3 s).

Compares, each in a fresh process, `dagster definitions validate` of
  * a code location of 200 declared Loom tables (mixed backends, SQL and Python bodies,
    daily partitions, data checks, schema-change checks), and
  * a bare Dagster code location of 200 plain `@asset`s with the same dependency graph.

Run: .venv/bin/python -m bench.bench_load
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

N = 200
ROOT = Path(__file__).resolve().parents[1]

LOOM_TEMPLATE = '''
import dagster as dg
import polars as pl
from loom_assets import Table, build_definitions, not_null, unique
from loom_resources import ColumnSchema as C

daily = dg.DailyPartitionsDefinition(start_date="2026-01-01")
COLS = [C("id", "int64", False), C("day", "date", False), C("amount", "decimal(18,2)"), C("note", "string")]
tables = []
for i in range({n}):
    backend = "delta" if i % 2 == 0 else "clickhouse"
    if i < 10:
        tables.append(Table(f"s{{i % 5}}.t{{i}}", backend=backend, columns=COLS, mode="replace_partitions",
                            partitions=daily, partition_column="day",
                            transform=lambda context: pl.LazyFrame(), checks=[not_null("id"), unique("id")]))
    else:
        src = f"s{{(i - 10) % 5}}.t{{i - 10}}"
        tables.append(Table(f"s{{i % 5}}.t{{i}}", backend=backend, columns=COLS, mode="replace_partitions",
                            partitions=daily, partition_column="day", sources=[src],
                            sql=f"SELECT id, day, amount, note FROM t{{i - 10}} WHERE day >= {{{{partition_start_date}}}}"))
defs = build_definitions(tables)
'''

BARE_TEMPLATE = '''
import dagster as dg

daily = dg.DailyPartitionsDefinition(start_date="2026-01-01")

def make(i):
    deps = [dg.AssetKey([f"s{{(i - 10) % 5}}", f"t{{i - 10}}"])] if i >= 10 else []
    @dg.asset(key=dg.AssetKey([f"s{{i % 5}}", f"t{{i}}"]), deps=deps, partitions_def=daily,
              backfill_policy=dg.BackfillPolicy.single_run(), group_name=f"s{{i % 5}}")
    def _a(context):
        return None
    return _a

defs = dg.Definitions(assets=[make(i) for i in range({n})])
'''


def validate(path: Path, home: Path) -> float:
    env = {**os.environ, "LOOM_HOME": str(home), "DAGSTER_HOME": str(home)}
    t0 = time.perf_counter()
    out = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-f", str(path)],
        env=env, capture_output=True, text=True, cwd=ROOT,
    )
    elapsed = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"validate failed for {path}:\n{out.stdout}\n{out.stderr}")
    return elapsed


def import_time(path: Path, home: Path) -> float:
    code = f"import time,runpy; t=time.perf_counter(); runpy.run_path({str(path)!r}); print(time.perf_counter()-t)"
    env = {**os.environ, "LOOM_HOME": str(home)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=ROOT, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        loom, bare = d / "loom_200.py", d / "bare_200.py"
        loom.write_text(LOOM_TEMPLATE.format(n=N))
        bare.write_text(BARE_TEMPLATE.format(n=N))
        rows = []
        for label, path in (("loom: 200 declared tables", loom), ("bare dagster: 200 @asset", bare)):
            v = sorted(validate(path, d) for _ in range(3))[1]
            i = sorted(import_time(path, d) for _ in range(3))[1]
            rows.append((label, v, i))
        lines = [
            f"code-location load, {N} tables, median of 3, each a fresh process (2-core machine)",
            f"{'case':32s} {'validate s':>11s} {'load+build s':>13s}",
        ]
        lines += [f"{label:32s} {v:11.2f} {i:13.2f}" for label, v, i in rows]
        (_, lv, li), (_, bv, bi) = rows
        lines.append(f"ratio loom/bare: validate {lv / bv:.2f}x, load+build {li / bi:.2f}x")
        lines.append(f"target: loom load+build under 3 s -> {'MET' if li < 3 else 'NOT MET'} ({li:.2f} s)")
        text = "\n".join(lines)
        print(text)
        out = ROOT / "bench" / "results" / "load.txt"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")


if __name__ == "__main__":
    main()
