"""The code location's ``Definitions``: assets, checks, jobs, schedules and resources."""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

from loom_assets.declare import Table
from loom_assets.factory import build_assets
from loom_assets.jobs import build_jobs
from loom_assets.settings import EMBEDDED_POOL, default_executor, default_resources, embedded_clickhouse


def build_definitions(tables: Sequence[Table]) -> dg.Definitions:
    """Build the Definitions of a set of declared tables with the default resources."""
    assets = build_assets(tables, pool=EMBEDDED_POOL if embedded_clickhouse() else None)
    schema_change_checks = dg.build_column_schema_change_checks(assets=assets)
    jobs, schedules = build_jobs(tables, assets)
    return dg.Definitions(
        assets=assets,
        asset_checks=list(schema_change_checks),
        jobs=jobs,
        schedules=schedules,
        resources=default_resources(),
        executor=default_executor(),
    )
