"""Jobs and schedules: the daily job of the partitioned tables and the maintenance job."""


from collections.abc import Sequence
from typing import Any

import dagster as dg
from dagster import OpExecutionContext

from loom_assets.declare import Table


def _maintenance_job(tables: Sequence[Table]) -> dg.JobDefinition:
    specs = [t.target for t in tables]
    backends = sorted({spec.backend.value for spec in specs})

    @dg.op(required_resource_keys=set(backends))
    def loom_maintenance(context: OpExecutionContext) -> None:
        """Each backend's routine maintenance of each table (Delta: compact and vacuum;
        ClickHouse: OPTIMIZE ... FINAL of merge tables)."""
        for spec in specs:
            context.log.info(getattr(context.resources, spec.backend.value).maintain(spec.ref, spec))

    @dg.job(description="Routine maintenance of every declared table by its backend (compaction, vacuum, merges).")
    def loom_maintenance_job() -> None:
        loom_maintenance()

    return loom_maintenance_job


def build_jobs(
    tables: Sequence[Table], assets: Sequence[dg.AssetsDefinition]
) -> tuple[list[Any], list[dg.ScheduleDefinition]]:
    """The daily job (one per distinct partitions definition) with its schedule, and the
    maintenance job scheduled weekly."""
    jobs: list[Any] = []
    schedules: list[dg.ScheduleDefinition] = []
    partitioned = [t for t in tables if t.partitions is not None]
    if partitioned:
        pdef = partitioned[0].partitions
        keys = [t.asset_key for t in partitioned if t.partitions == pdef]
        daily = dg.define_asset_job("loom_daily", selection=dg.AssetSelection.assets(*keys))
        jobs.append(daily)
        schedules.append(dg.build_schedule_from_partitioned_job(daily))  # type: ignore[arg-type]
    maintenance = _maintenance_job(tables)
    jobs.append(maintenance)
    schedules.append(dg.ScheduleDefinition(job=maintenance, cron_schedule="0 3 * * 0", name="loom_weekly_maintenance"))
    return jobs, schedules
