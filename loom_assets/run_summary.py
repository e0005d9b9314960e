"""What a run did, one line per table: rows, seconds, where its SQL ran and its checks' outcome,
read from the run's Dagster event log; and the full event log written to a file."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg

from loom_assets.declare import Table

__all__ = ["summarize_run", "write_run_log"]


def _engine(table: Table | None, md: Mapping[str, Any]) -> str:
    if "loom/sql_engine" in md:
        return f"sql in {md['loom/sql_engine'].value}"
    if table is not None and table.sql is not None:
        return "sql in polars"
    return "python"


def summarize_run(instance: dg.DagsterInstance, run_id: str, tables: Mapping[dg.AssetKey, Table]) -> list[str]:
    """One line per materialized table of run ``run_id``, in the order the steps finished."""
    started: dict[str, float] = {}
    seconds: dict[dg.AssetKey, float] = {}
    md: dict[dg.AssetKey, Mapping[str, Any]] = {}
    partitions: dict[dg.AssetKey, int] = defaultdict(int)
    checks: dict[dg.AssetKey, list[tuple[str, bool]]] = defaultdict(list)
    step_asset: dict[str, dg.AssetKey] = {}
    failed: list[str] = []
    for entry in instance.all_logs(run_id):
        ev = entry.dagster_event
        if ev is None:
            continue
        if ev.event_type_value == "STEP_START" and entry.step_key:
            started[entry.step_key] = entry.timestamp
        elif ev.event_type_value == "ASSET_MATERIALIZATION":
            mat = ev.event_specific_data.materialization  # type: ignore[union-attr]
            md[mat.asset_key] = mat.metadata
            partitions[mat.asset_key] += mat.partition is not None
            if entry.step_key:
                step_asset[entry.step_key] = mat.asset_key
        elif ev.event_type_value == "ASSET_CHECK_EVALUATION":
            e = ev.event_specific_data
            checks[e.asset_key].append((e.check_name, e.passed))  # type: ignore[union-attr]
        elif ev.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE") and entry.step_key in step_asset:
            seconds[step_asset[entry.step_key]] = entry.timestamp - started.get(entry.step_key, entry.timestamp)
        if ev.event_type_value == "STEP_FAILURE" and entry.step_key:
            failed.append(entry.step_key)
    lines = []
    for key, m in md.items():
        table = tables.get(key)
        rows = m.get("loom/run_rows_written") or m.get("loom/rows_written") or m.get("dagster/row_count")
        n = f"{rows.value:>12,d} rows" if rows is not None else " " * 17
        parts = f"{partitions[key]:>3d} partitions" if partitions[key] else " " * 14
        results = checks.get(key, [])
        bad = [name for name, ok in results if not ok]
        verdict = f"checks {len(results) - len(bad)}/{len(results)} passed" + (f" (failed: {', '.join(bad)})" if bad else "")
        verdict = verdict if results or table is not None else "(its own IO manager)"
        backend = table.target.backend.value if table is not None else "plain"  # a plain Dagster asset
        lines.append(f"  {key.to_user_string():34s} {backend:10s} {n} {parts} {seconds.get(key, 0.0):6.1f}s  "
                     f"{_engine(table, m):17s} {verdict}")
    lines += [f"  step {s} FAILED (see the log file)" for s in failed]
    return lines


def write_run_log(instance: dg.DagsterInstance, run_id: str, path: Path) -> None:
    """Append the run's whole Dagster event log (every level) to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        for entry in instance.all_logs(run_id):
            when = dt.datetime.fromtimestamp(entry.timestamp, dt.UTC).isoformat(timespec="milliseconds")
            kind = entry.dagster_event.event_type_value if entry.dagster_event else "LOG"
            f.write(f"{when} {run_id[:8]} {entry.step_key or '-'} {kind} {entry.message}\n")
            if entry.error_info is not None:
                f.write(entry.error_info.to_string() + "\n")
