"""Jobs and schedules: the daily job of the partitioned tables, the check job (every declared
check, without materializing) and the maintenance job."""


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


CHECK_JOB = "loom_checks"


def _check_job(tables: Sequence[Table]) -> tuple[list[Any], list[Any]]:
    """Every declared check of every table, against the stored tables, without materializing;
    scheduled daily at 06:00 for the previous day's partition (unpartitioned tables: whole table)."""
    job = dg.define_asset_job(
        CHECK_JOB, selection=dg.AssetSelection.checks_for_assets(*[t.asset_key for t in tables]),
        description="Run every declared check (schema contract and data checks) on the stored tables, "
                    "without materializing them. Partitioned checks look at the run's partition or range.",
    )
    pdefs = [t.partitions for t in tables if t.partitions is not None]
    pdef = pdefs[0] if pdefs else None

    @dg.schedule(job=job, cron_schedule="0 6 * * *", name="loom_daily_checks",
                 description="Every check daily at 06:00 UTC, on the last complete day's partition.")
    def loom_daily_checks(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        if not isinstance(pdef, dg.TimeWindowPartitionsDefinition):
            return dg.RunRequest()
        with dg.partition_loading_context(effective_dt=context.scheduled_execution_time):
            key = pdef.get_last_partition_key()
        return dg.RunRequest(run_key=key, tags={"dagster/partition": key} if key else {})

    return [job], [loom_daily_checks]


def build_jobs(
    tables: Sequence[Table], assets: Sequence[dg.AssetsDefinition]
) -> tuple[list[Any], list[dg.ScheduleDefinition]]:
    """The daily job (one per distinct partitions definition) with its schedule, the check job
    scheduled daily, and the maintenance job scheduled weekly."""
    jobs: list[Any] = []
    schedules: list[dg.ScheduleDefinition] = []
    partitioned = [t for t in tables if t.partitions is not None]
    if partitioned:
        pdef = partitioned[0].partitions
        keys = [t.asset_key for t in partitioned if t.partitions == pdef]
        # partitions_def given: the schedule then needs no resolved job (without it, every load of
        # the code location, each run's worker included, resolved this job of every partitioned
        # table and its checks to find the partitions: ~0.1 s at 200 tables)
        daily = dg.define_asset_job("loom_daily", selection=dg.AssetSelection.assets(*keys), partitions_def=pdef)
        jobs.append(daily)
        schedules.append(dg.build_schedule_from_partitioned_job(daily))  # type: ignore[arg-type]
    jobs_, schedules_ = _check_job(tables)
    jobs += jobs_
    schedules += schedules_
    maintenance = _maintenance_job(tables)
    jobs.append(maintenance)
    schedules.append(dg.ScheduleDefinition(job=maintenance, cron_schedule="0 3 * * 0", name="loom_weekly_maintenance"))
    return jobs, schedules
