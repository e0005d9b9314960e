"""Benchmark case 6, the code-location load time: a module declaring N Loom tables (or N bare
Dagster assets, the baseline) imported and validated in a fresh process. Run through
:mod:`bench.cases` (``python -m bench.cases load_loom N WORKDIR OUT_JSON``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

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
