"""Benchmark case 6, the code-location load time: a module declaring N Loom tables (or N bare
Dagster assets, the baseline, same graph) loaded and validated in a fresh process.

Two ways to time it:

* ``load_cli_loom`` / ``load_cli_bare`` (``make bench``'s case 6): ``dagster definitions validate
  -f location.py`` as a user runs it, the whole CLI process timed from outside (interpreter
  start, imports, building the code location, Dagster resolving its jobs and snapshotting the
  repository). ``python -m bench.cases_load CASE N WORKDIR OUT_JSON``; :mod:`bench.run_all` runs
  bare and Loom back to back in every round, so each round gives one paired ratio.
* ``load_loom`` / ``load_bare`` (through :mod:`bench.cases`, used by :mod:`bench.overhead`): the
  module imported and ``Definitions.validate_loadable`` called in-process.

The templates declare the same graph: table ``i`` (``i >= 10``) reads table ``i - 10``, five
schemas, daily partitions, single-run backfills. Loom's tables are half Delta, half ClickHouse,
``replace_partitions``, with checks; the first ten have a Python body, the rest a SQL body.
The Python body imports polars inside the function (as the bare assets' bodies import nothing):
what a user's own module imports at its top is the user's cost in both columns, not Loom's.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

LOOM_TEMPLATE = '''
import dagster as dg
from loom_assets import Table, build_definitions, not_null, unique
from loom_resources import ColumnSchema as C

daily = dg.DailyPartitionsDefinition(start_date="2026-01-01")
COLS = [C("id", "int64", False), C("day", "date", False), C("amount", "decimal(18,2)"), C("note", "string")]

def body(context):
    import polars as pl
    return pl.LazyFrame()

tables = []
for i in range({n}):
    backend = "delta" if i % 2 == 0 else "clickhouse"
    if i < 10:
        tables.append(Table(f"s{{i % 5}}.t{{i}}", backend=backend, columns=COLS, mode="replace_partitions",
                            partitions=daily, partition_column="day",
                            transform=body, checks=[not_null("id"), unique("id")]))
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


def _load(template: str, n: int, wd: str) -> dict[str, Any]:
    """Import a code-location module of N tables in this fresh process (imports included) and have
    Dagster validate it (``Definitions.validate_loadable``: builds the repository and asset graph)."""
    import runpy

    path = Path(wd) / "location.py"
    path.write_text(template.format(n=n))
    t0 = time.perf_counter()
    module = runpy.run_path(str(path))
    import dagster as dg

    dg.Definitions.validate_loadable(module["defs"])
    seconds = time.perf_counter() - t0
    keys = module["defs"].resolve_asset_graph().get_all_asset_keys()
    return {"seconds": seconds, "assets": len(keys), "tables": []}


def load_loom(n: int, wd: str) -> dict[str, Any]:
    return _load(LOOM_TEMPLATE, n, wd)


def load_bare(n: int, wd: str) -> dict[str, Any]:
    return _load(BARE_TEMPLATE, n, wd)


def _cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _validate(path: Path, env: dict[str, str]) -> tuple[float, float, subprocess.CompletedProcess[str]]:
    """(wall seconds, CPU seconds, the process) of one ``dagster definitions validate`` run. The CPU
    time (user + system, the kernel's count for the finished child) is reported next to the wall
    time because it hardly moves with other jobs on a shared machine."""
    dagster = Path(sys.executable).parent / "dagster"
    cpu0, t0 = _cpu_of_children(), time.perf_counter()
    proc = subprocess.run([str(dagster), "definitions", "validate", "-f", str(path)], cwd=path.parent, env=env,
                          capture_output=True, text=True)
    return time.perf_counter() - t0, _cpu_of_children() - cpu0, proc


def _count_assets(path: Path, env: dict[str, str]) -> int:
    """The number of assets the location defines, counted by a separate process after the timed
    run (the load case's read-back: the location validated is the one of N tables)."""
    code = ("import sys; from dagster_shared.seven import import_module_from_path; "
            "m = import_module_from_path('location', sys.argv[1]); "
            "print(len(m.defs.resolve_asset_graph().get_all_asset_keys()))")
    proc = subprocess.run([sys.executable, "-c", code, str(path)], cwd=path.parent, env=env, capture_output=True, text=True)
    lines = proc.stdout.split()
    return int(lines[-1]) if proc.returncode == 0 and lines else -1


def _load_cli(template: str, n: int, wd: str, *, loom: bool) -> dict[str, Any]:
    """``dagster definitions validate -f location.py`` as a user runs it, timed from outside the
    CLI process.

    Loom keeps what sqlglot found in each SQL body across loads (:mod:`loom_assets.sql_cache`), as
    every load after a project's first does: the cache lives next to this run's working
    directories, one per size (shared by the rounds of one benchmark run, never the user's own),
    and when it is empty one untimed load fills it first, reported as ``cold_seconds``."""
    path = Path(wd) / "location.py"
    path.write_text(template.format(n=n))
    env = dict(os.environ)
    env["LOOM_CACHE_DIR"] = str(Path(wd).parent / f"loom-cache-{n}")
    extra: dict[str, Any] = {}
    if loom and not any(Path(env["LOOM_CACHE_DIR"]).glob("*.json")):
        extra["cold_seconds"], extra["cold_cpu_seconds"], proc = _validate(path, env)
        if proc.returncode != 0:
            return {"status": "error", "error": (proc.stdout + proc.stderr)[-800:], "tables": []}
    seconds, cpu, proc = _validate(path, env)
    if proc.returncode != 0:
        return {"status": "error", "error": (proc.stdout + proc.stderr)[-800:], "tables": []}
    return {"seconds": seconds, "cpu_seconds": cpu, "assets": _count_assets(path, env), "tables": [], **extra}


def load_cli_loom(n: int, wd: str) -> dict[str, Any]:
    return _load_cli(LOOM_TEMPLATE, n, wd, loom=True)


def load_cli_bare(n: int, wd: str) -> dict[str, Any]:
    return _load_cli(BARE_TEMPLATE, n, wd, loom=False)


CASES = {f.__name__: f for f in (load_cli_loom, load_cli_bare)}

if __name__ == "__main__":
    from bench.workload import child_main

    child_main(CASES)
