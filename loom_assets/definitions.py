"""The code location's ``Definitions``: assets, checks, jobs, schedules and resources."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg

from loom_assets.declare import Table
from loom_assets.external import ExternalTable, build_external
from loom_assets.factory import build_assets
from loom_assets.jobs import build_jobs
from loom_resources.defaults import (
    SINGLE_PROCESS_POOL,
    default_backends,
    default_executor,
    default_resources,
    single_process,
)


def _plain_resources(resources: Mapping[str, Any] | None, plain_assets: bool) -> dict[str, Any]:
    if resources is not None:
        return dict(resources)
    if not plain_assets:
        return {}  # dagster-polars (and the pandas it imports, ~0.3 s) loads only when plain assets need it
    from loom_assets.polars_io import PolarsParquetIOManager
    from loom_assets.settings import loom_home

    return {"polars_parquet_io_manager": PolarsParquetIOManager(base_dir=str(loom_home() / "parquet"))}


def build_definitions(
    tables: Sequence[Table | ExternalTable], *, backends: Mapping[str, Any] | None = None,
    assets: Sequence[Any] = (), resources: Mapping[str, Any] | None = None,
) -> dg.Definitions:
    """Build the Definitions of a set of declared and external tables.

    Args:
        tables: The declared tables and the external tables they read.
        assets: Plain Dagster assets alongside them (e.g. dagster-polars ones): they read
            declared tables through the Loom IO manager and are read with ``Source(..., asset=True)``.
        resources: More resources (IO managers of the plain assets); by default, when plain
            ``assets`` are given, a dagster-polars Parquet IO manager under ``$LOOM_HOME/parquet``
            as ``polars_parquet_io_manager``.
        backends: Backend name -> resource (default: Delta and ClickHouse configured from the
            environment). A declaration a backend cannot serve fails here, naming the table.
    """
    backends = dict(backends or default_backends())
    one_process = single_process(backends)
    built = build_assets(tables, pool=SINGLE_PROCESS_POOL if one_process else None, backends=backends)
    plain = list(assets)
    assets = [a for a in built if not isinstance(a, dg.AssetChecksDefinition)]
    declared_checks = [a for a in built if isinstance(a, dg.AssetChecksDefinition)]
    schema_change_checks = dg.build_column_schema_change_checks(assets=assets)
    declared = [t for t in tables if isinstance(t, Table)]
    jobs, schedules = build_jobs(declared, assets)
    observed, drift_checks, observe_jobs = build_external([t for t in tables if isinstance(t, ExternalTable)], backends)
    sensors = []
    if any(t.automation_condition is not None for t in declared):
        # evaluates every Table(automation_condition=...) once the daemon runs (`make ui` starts it)
        sensors.append(dg.AutomationConditionSensorDefinition(
            "loom_automation", target=dg.AssetSelection.all(), default_status=dg.DefaultSensorStatus.RUNNING,
            description="Materializes tables whose declared automation_condition is met.",
        ))
    return dg.Definitions(
        assets=[*assets, *plain, *observed],
        asset_checks=[*declared_checks, *schema_change_checks, *drift_checks],
        jobs=jobs + [j for j in observe_jobs if not isinstance(j, dg.ScheduleDefinition)],
        schedules=schedules + [j for j in observe_jobs if isinstance(j, dg.ScheduleDefinition)],
        sensors=sensors,
        resources={**default_resources(backends), **_plain_resources(resources, bool(plain))},
        executor=default_executor(backends),
    )
