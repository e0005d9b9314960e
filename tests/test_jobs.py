"""The daily schedule of the time-partitioned tables (loom_assets/jobs.py), its runs executed for real."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import polars as pl
from deltalake import DeltaTable

from loom_assets.declare import Table
from loom_assets.definitions import build_definitions
from loom_assets.jobs import DAILY_SCHEDULE
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


def _scheduled_runs(defs: dg.Definitions, at: dt.datetime) -> list[tuple[dg.RunRequest, dg.JobDefinition]]:
    """Evaluate the daily schedule's tick at ``at`` and resolve each request's job as the schedule
    daemon does: the schedule's target job, subset to the request's asset selection."""
    schedule = defs.get_schedule_def(DAILY_SCHEDULE)
    repo = defs.get_repository_def()
    with dg.build_schedule_context(scheduled_execution_time=at, repository_def=repo) as ctx:
        requests = schedule.evaluate_tick(ctx).run_requests or []
    job = repo.get_job(schedule.job_name)
    return [(r, job.get_subset(asset_selection=set(r.asset_selection or []),
                               asset_check_selection=r.asset_check_keys)) for r in requests]


def test_daily_schedule_runs_the_last_complete_day_of_the_partitioned_tables(tmp_path: Path, chdb_url: str) -> None:
    delta, ch = DeltaResource(root=str(tmp_path)), ClickHouseResource(url=chdb_url)
    defs = build_definitions(_tables("s"), backends={"delta": delta, "clickhouse": ch})
    schedule = defs.get_schedule_def(DAILY_SCHEDULE)
    # no job of its own: it targets the implicit asset job (one job fewer to resolve at each load)
    assert schedule.cron_schedule == "0 0 * * *" and schedule.execution_timezone == "UTC"
    assert schedule.job_name == defs.resolve_implicit_global_asset_job_def().name
    assert "loom_daily" not in defs.get_repository_def().job_names

    [(request, job)] = _scheduled_runs(defs, dt.datetime(2026, 11, 3, tzinfo=dt.UTC))
    assert request.partition_key == "2026-11-02" and request.run_key == "2026-11-02"
    assert {k.to_user_string() for k in request.asset_selection or []} == {"s/events", "s/copy"}
    result = job.execute_in_process(partition_key=request.partition_key, instance=dg.DagsterInstance.ephemeral())
    assert result.success
    for name in ("events", "copy"):
        got = pl.from_arrow(DeltaTable(str(tmp_path / "s" / name)).to_pyarrow_table())
        assert got.to_dicts() == [{"id": 2, "day": dt.date(2026, 11, 2)}]  # type: ignore[union-attr]
    assert not (tmp_path / "s" / "dim").exists()  # the unpartitioned table is not in the daily run
    checks = {e.check_name for e in result.get_asset_check_evaluations()}
    assert "schema_matches_declaration" in checks  # the tables' checks run with them, as in any run


def test_daily_schedule_of_multi_partitions_requests_every_key_of_the_last_day(tmp_path: Path, chdb_url: str) -> None:
    regions = dg.StaticPartitionsDefinition(["eu", "us"])
    multi = dg.MultiPartitionsDefinition({"date": DAILY, "region": regions})
    cols = [*COLS, ColumnSchema("region", "string", False)]

    def rows(context: dg.AssetExecutionContext) -> pl.DataFrame:
        key = context.partition_key.keys_by_dimension  # type: ignore[attr-defined]
        day = dt.date.fromisoformat(key["date"])
        return pl.DataFrame({"id": [day.day], "day": [day], "region": [key["region"]]})

    table = Table("m.events", backend="delta", columns=cols, mode="replace_partitions", partitions=multi,
                  partition_column={"date": "day", "region": "region"}, transform=rows)
    defs = build_definitions([table], backends={"delta": DeltaResource(root=str(tmp_path)),
                                                "clickhouse": ClickHouseResource(url=chdb_url)})
    runs = _scheduled_runs(defs, dt.datetime(2026, 11, 3, tzinfo=dt.UTC))
    assert sorted(str(r.partition_key) for r, _ in runs) == ["2026-11-02|eu", "2026-11-02|us"]
    instance = dg.DagsterInstance.ephemeral()
    for request, job in runs:
        assert job.execute_in_process(partition_key=request.partition_key, instance=instance).success
    got = pl.from_arrow(DeltaTable(str(tmp_path / "m" / "events")).to_pyarrow_table())
    assert sorted(got.get_column("region").to_list()) == ["eu", "us"]  # type: ignore[union-attr]
    assert set(got.get_column("day").to_list()) == {dt.date(2026, 11, 2)}  # type: ignore[union-attr]


def test_statically_partitioned_tables_load_without_a_daily_schedule(tmp_path: Path, chdb_url: str) -> None:
    # a static partitioning has no cadence; such a table once made the whole code location fail to
    # load (Dagster's partitioned schedule asks a cron of a static partitioning)
    regions = dg.StaticPartitionsDefinition(["eu", "us"])
    table = Table("st.events", backend="delta", columns=[ColumnSchema("id", "int64"), ColumnSchema("region", "string")],
                  mode="replace_partitions", partitions=regions, partition_column="region",
                  transform=lambda context: pl.DataFrame({"id": [1], "region": [context.partition_key]}))
    defs = build_definitions([table], backends={"delta": DeltaResource(root=str(tmp_path)),
                                                "clickhouse": ClickHouseResource(url=chdb_url)})
    dg.Definitions.validate_loadable(defs)
    assert {s.name for s in defs.schedules or []} == {"loom_daily_checks", "loom_weekly_maintenance"}
