"""Jobs and schedules: the daily schedule of the time-partitioned tables, the check job (every
declared check, without materializing) and the maintenance job."""


from collections.abc import Sequence
from typing import Any

import dagster as dg
from dagster import OpExecutionContext
from dagster._core.definitions.assets.job.asset_job import IMPLICIT_ASSET_JOB_NAME  # no public name; tested

from loom_assets.declare import Table
from loom_resources.run_params import time_dimensions


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
                    "without materializing them. On a partitioned table they look at the run's partition or range "
                    "(the whole table when the run has none).",
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


DAILY_SCHEDULE = "loom_daily_schedule"


def _daily_description(keys: Sequence[dg.AssetKey], shown: int = 10) -> str:
    """What the daily schedule runs, in words (the UI shows no target for a schedule of the
    implicit asset job, so the description names the tables)."""
    names = [k.to_user_string() for k in keys]
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return (f"Materializes the last complete partition of {len(names)} partitioned table(s), with their checks, "
            f"in one run: {', '.join(names[:shown])}{more}.")


def _daily_schedule(tables: Sequence[Table]) -> list[dg.ScheduleDefinition]:
    """At the cadence of the first time partitioning declared, materialize every table partitioned
    that way for its last complete partition (every value of the other dimension of a
    multi-partitioning), in one run.

    The schedule targets Dagster's implicit asset job with an asset selection rather than a job
    of its own: every job of a code location is resolved and snapshotted at each load (a job of
    200 tables and their checks: 0.16 s in-process, ~0.27 s of ``dagster definitions validate``),
    and the implicit job already holds these assets and their checks."""
    # one time dimension (static partitions have no cadence; Dagster schedules no two time dimensions)
    timed = [(t, dims[0]) for t in tables if len(dims := time_dimensions(t.partitions)) == 1]
    if not timed:
        return []
    pdef = timed[0][0].partitions
    window, dimension = timed[0][1]
    keys = [t.asset_key for t, _ in timed if t.partitions == pdef]

    @dg.schedule(job_name=IMPLICIT_ASSET_JOB_NAME, cron_schedule=window.get_cron_schedule(),
                 execution_timezone=window.timezone, name=DAILY_SCHEDULE,
                 description=_daily_description(keys))
    def loom_daily_schedule(context: dg.ScheduleEvaluationContext) -> dg.SkipReason | list[dg.RunRequest]:
        with dg.partition_loading_context(effective_dt=context.scheduled_execution_time):
            last = window.get_last_partition_key()
        if last is None:
            return dg.SkipReason(f"{keys[0].to_user_string()}'s partitions have no complete partition yet")
        partition_keys: Sequence[str] = [last]
        if isinstance(pdef, dg.MultiPartitionsDefinition):
            partition_keys = pdef.get_multipartition_keys_with_dimension_value(dimension, last)
        return [dg.RunRequest(run_key=k, partition_key=k, asset_selection=keys) for k in partition_keys]

    return [loom_daily_schedule]


def build_jobs(
    tables: Sequence[Table], assets: Sequence[dg.AssetsDefinition]
) -> tuple[list[Any], list[dg.ScheduleDefinition]]:
    """The daily schedule of the time-partitioned tables, the check job scheduled daily, and the
    maintenance job scheduled weekly."""
    jobs: list[Any] = []
    schedules: list[dg.ScheduleDefinition] = _daily_schedule(tables)
    jobs_, schedules_ = _check_job(tables)
    jobs += jobs_
    schedules += schedules_
    maintenance = _maintenance_job(tables)
    jobs.append(maintenance)
    schedules.append(dg.ScheduleDefinition(
        job=maintenance, cron_schedule="0 3 * * 0", name="loom_weekly_maintenance",
        description="Routine maintenance of every declared table on Sundays at 03:00 UTC (Delta: compact and "
                    "vacuum; ClickHouse: OPTIMIZE ... FINAL of merge tables)."))
    return jobs, schedules
