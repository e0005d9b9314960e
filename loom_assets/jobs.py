"""Jobs and schedules: the daily job of the partitioned tables and the maintenance job."""


from collections.abc import Sequence
from typing import Any

import dagster as dg
from dagster import OpExecutionContext

from loom_assets.declare import Table
from loom_resources import Backend, TableRef, WriteMode


def _maintenance_job(tables: Sequence[Table]) -> dg.JobDefinition:
    delta_refs = [str(t.ref) for t in tables if Backend(t.backend) is Backend.DELTA]
    merge_refs = [str(t.ref) for t in tables if Backend(t.backend) is Backend.CLICKHOUSE and WriteMode(t.mode) is WriteMode.MERGE]

    @dg.op(required_resource_keys={"delta", "clickhouse"})
    def loom_maintenance(context: OpExecutionContext) -> None:
        """Compact and vacuum every Delta table; OPTIMIZE ... FINAL the ClickHouse merge tables."""
        delta = context.resources.delta
        for name in delta_refs:
            ref = TableRef.parse(name)
            if not delta.exists(ref):
                context.log.info(f"skip {name}: not materialized yet")
                continue
            context.log.info(f"optimize {name}: {delta.optimize(ref)}")
            context.log.info(f"vacuum {name}: {delta.vacuum(ref)}")
        for name in merge_refs:
            ref = TableRef.parse(name)
            if context.resources.clickhouse.exists(ref):
                context.resources.clickhouse.optimize_final(ref)
                context.log.info(f"OPTIMIZE TABLE {name} FINAL done")

    @dg.job(description="Delta optimize/vacuum and ClickHouse OPTIMIZE FINAL for merge tables.")
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
