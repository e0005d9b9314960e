"""The daily job of the partitioned tables and its schedule (loom_assets/jobs.py), run for real."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import polars as pl
from deltalake import DeltaTable

from loom_assets.declare import Table
from loom_assets.definitions import build_definitions
from loom_resources import ClickHouseResource, ColumnSchema, DeltaResource

DAILY = dg.DailyPartitionsDefinition(start_date="2026-11-01")
COLS = [ColumnSchema("id", "int64", False), ColumnSchema("day", "date", False)]


def _tables(schema: str) -> list[Table]:
    def rows(context: dg.AssetExecutionContext) -> pl.DataFrame:
        day = dt.date.fromisoformat(context.partition_key)
        return pl.DataFrame({"id": [day.day], "day": [day]})

    return [
        Table(f"{schema}.events", backend="delta", columns=COLS, mode="replace_partitions", partitions=DAILY,
              partition_column="day", transform=rows),
        Table(f"{schema}.copy", backend="delta", columns=COLS, mode="replace_partitions", partitions=DAILY,
              partition_column="day", sources=[f"{schema}.events"], sql="SELECT id, day FROM events"),
        Table(f"{schema}.dim", backend="delta", columns=[ColumnSchema("id", "int64")], mode="overwrite",
              transform=lambda context: pl.DataFrame({"id": [1]})),
    ]


def test_daily_schedule_runs_the_last_complete_day_of_the_partitioned_tables(tmp_path: Path, chdb_url: str) -> None:
    delta, ch = DeltaResource(root=str(tmp_path)), ClickHouseResource(url=chdb_url)
    defs = build_definitions(_tables("s"), backends={"delta": delta, "clickhouse": ch})
    schedule = defs.get_schedule_def("loom_daily_schedule")
    assert schedule.cron_schedule == "0 0 * * *" and schedule.job_name == "loom_daily"
    with dg.build_schedule_context(scheduled_execution_time=dt.datetime(2026, 11, 3, tzinfo=dt.UTC)) as ctx:
        requests = schedule.evaluate_tick(ctx).run_requests
    assert requests is not None and [r.partition_key for r in requests] == ["2026-11-02"]

    job = defs.resolve_job_def("loom_daily")
    assert {k.to_user_string() for k in job.asset_layer.executable_asset_keys} == {"s/events", "s/copy"}
    result = job.execute_in_process(partition_key="2026-11-02", instance=dg.DagsterInstance.ephemeral())
    assert result.success
    for name in ("events", "copy"):
        got = pl.from_arrow(DeltaTable(str(tmp_path / "s" / name)).to_pyarrow_table())
        assert got.to_dicts() == [{"id": 2, "day": dt.date(2026, 11, 2)}]  # type: ignore[union-attr]
    assert not (tmp_path / "s" / "dim").exists()  # the unpartitioned table is not in the daily job
    checks = {e.check_name for e in result.get_asset_check_evaluations()}
    assert "schema_matches_declaration" in checks
