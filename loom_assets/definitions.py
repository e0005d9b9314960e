"""The code location's ``Definitions``: assets, checks, jobs, schedules and resources."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg

from loom_assets.declare import Table
from loom_assets.factory import build_assets
from loom_assets.jobs import build_jobs
from loom_resources.defaults import (
    SINGLE_PROCESS_POOL,
    default_backends,
    default_executor,
    default_resources,
    single_process,
)


def build_definitions(tables: Sequence[Table], *, backends: Mapping[str, Any] | None = None) -> dg.Definitions:
    """Build the Definitions of a set of declared tables.

    Args:
        tables: The declared tables.
        backends: Backend name -> resource (default: Delta and ClickHouse configured from the
            environment). A declaration a backend cannot serve fails here, naming the table.
    """
    backends = dict(backends or default_backends())
    one_process = single_process(backends)
    assets = build_assets(tables, pool=SINGLE_PROCESS_POOL if one_process else None, backends=backends)
    schema_change_checks = dg.build_column_schema_change_checks(assets=assets)
    jobs, schedules = build_jobs(tables, assets)
    return dg.Definitions(
        assets=assets,
        asset_checks=list(schema_change_checks),
        jobs=jobs,
        schedules=schedules,
        resources=default_resources(backends),
        executor=default_executor(backends),
    )
