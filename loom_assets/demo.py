"""Materialize a whole platform from a script, the way ``make demo`` does with the sample
platform (``examples/sample_platform``, ``python -m sample_platform.demo``).

Runs in three waves because a Dagster run holds one partitions definition: unpartitioned
tables the daily ones read, then the 14-day range as one single-run backfill, then the
unpartitioned tables downstream of it. Rerunning replaces, never duplicates.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dagster as dg

from loom_assets.progress import write_progress
from loom_assets.run_summary import summarize_run, write_run_log


def ensure_instance() -> dg.DagsterInstance:
    """The persistent Dagster instance under ``$DAGSTER_HOME`` (default ``$LOOM_HOME/dagster``),
    its ``dagster.yaml`` written when missing (:func:`loom_assets.settings.ensure_dagster_home`)."""
    from loom_assets.settings import ensure_dagster_home

    ensure_dagster_home()
    return dg.DagsterInstance.get()


def waves(defs: dg.Definitions) -> list[tuple[str, list[dg.AssetKey], bool]]:
    """Split the assets into (label, keys, partitioned) waves in dependency order."""
    graph = defs.resolve_asset_graph()
    keys = [k for k in graph.get_all_asset_keys() if graph.get(k).is_materializable]
    partitioned = {k for k in keys if graph.get(k).partitions_def is not None}

    def has_partitioned_ancestor(k: dg.AssetKey) -> bool:
        return any(a in partitioned for a in graph.upstream_key_iterator(k)) if hasattr(graph, "upstream_key_iterator") else any(
            a in partitioned or has_partitioned_ancestor(a) for a in graph.get(k).parent_keys
        )

    first = [k for k in keys if k not in partitioned and not has_partitioned_ancestor(k)]
    last = [k for k in keys if k not in partitioned and k not in first]
    return [("reference tables", first, False), ("daily tables", sorted(partitioned), True), ("downstream tables", last, False)]


def materialize_platform(
    defs: dg.Definitions, instance: dg.DagsterInstance, start: str, end: str, *, tables: Sequence[Any] = (),
    log_level: str = "CRITICAL", log_file: Path | None = None,
) -> list[dg.ExecuteInProcessResult]:
    """Materialize every asset of ``defs``: the daily ones over the partition keys ``start`` to
    ``end`` (both included) as one single-run backfill, the others before or after them.

    Prints one line per table (rows, seconds, where its SQL ran, its checks; ``tables`` are the
    declarations, for the details of each line); the console shows Dagster's own log only at
    ``log_level`` and above, and ``log_file`` gets all of it.
    """
    from loom_assets.declare import Table

    declared = {t.asset_key: t for t in tables if isinstance(t, Table)}
    assets = list(defs.assets or []) + list(defs.asset_checks or [])  # type: ignore[arg-type]
    resources = dict(defs.resources or {})
    results = []
    for label, keys, is_partitioned in waves(defs):
        if not keys:
            continue
        tags = {}
        if is_partitioned:
            tags = {"dagster/asset_partition_range_start": start, "dagster/asset_partition_range_end": end}
        days = f" {start} to {end} (inclusive)" if is_partitioned else ""
        print(f"== {label}{days}", flush=True)
        t0 = time.monotonic()
        with write_progress():  # an updating progress line while long writes stream
            result = dg.materialize(
                assets, selection=keys, resources=resources, instance=instance, tags=tags,  # type: ignore[arg-type]
                run_config={"loggers": {"console": {"config": {"log_level": log_level}}}}, raise_on_error=False,
            )
        if log_file is not None:
            write_run_log(instance, result.run_id, log_file)
        for line in summarize_run(instance, result.run_id, declared):
            print(line, flush=True)
        print(f"   {'ok' if result.success else 'FAILED'} in {time.monotonic() - t0:.1f}s", flush=True)
        results.append(result)
        if not result.success:
            break
    return results


def observe_external(defs: dg.Definitions, instance: dg.DagsterInstance) -> None:
    """Observe the external tables (their version, rows and schema become Dagster observations)."""
    job = defs.resolve_job_def("loom_observe_external")
    result = job.execute_in_process(instance=instance, run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}})
    for event in result.all_events:
        if event.event_type_value == "ASSET_OBSERVATION":
            obs = event.asset_observation_data.asset_observation  # type: ignore[union-attr]
            rows = obs.metadata["dagster/row_count"].value
            print(f"   observed {obs.asset_key.to_user_string():28s} version {obs.tags.get('dagster/data_version')}, {rows:,} rows",
                  flush=True)
