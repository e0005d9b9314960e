"""The code location's ``Definitions``: assets, checks, jobs, schedules and resources."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import dagster as dg

from loom_assets.claims import claim_tables
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


_frozen = False


@contextlib.contextmanager
def gc_frozen_first_build(enabled: bool = True) -> Iterator[bool]:
    """Around the first build of the process, move what is alive into the permanent generation of
    Python's cyclic garbage collector (:func:`gc.freeze`): the imported libraries before the
    build, the definitions after it; and pause the collector during that build. Yields whether
    this build freezes.

    Why by hand: the libraries and the definitions live as long as the process (a code server, a
    run worker, the CLI), yet every full collection would scan all of them again, and building
    the definitions and Dagster's own load of them (resolving jobs, snapshots) allocate enough to
    trigger many. Frozen, they are skipped (``dagster definitions validate`` of 200 tables:
    ``bench/overhead.py``). The build itself allocates mostly objects that live as long as the
    definitions, so the collections it would trigger find little and cost much (1,000 tables:
    ~0.4 s of CPU of the location's ~2.4 s, docs/performance.md "Load time"); paused, one
    collection at its end frees its cyclic garbage before the freeze, so nothing but the
    definitions is kept. Only the first build freezes, so a process that builds definitions
    again and again (a test session) keeps at most the cyclic garbage alive at its first build.
    """
    global _frozen
    first = enabled and not _frozen
    was_enabled = gc.isenabled()
    if first:
        _frozen = True
        gc.freeze()
        gc.disable()
    try:
        yield first
    finally:
        if first:
            gc.collect()  # the build's own cyclic garbage, before what is left is frozen
            gc.freeze()
            if was_enabled:
                gc.enable()


def build_definitions(
    tables: Sequence[Table | ExternalTable], *, backends: Mapping[str, Any] | None = None,
    assets: Sequence[Any] = (), resources: Mapping[str, Any] | None = None, freeze_gc: bool = True,
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
        freeze_gc: Around the first build in the process, take what is alive out of the cyclic
            garbage collector's scans (:func:`gc_frozen_first_build`; a faster code-location load).
    """
    with gc_frozen_first_build(freeze_gc):
        built = _build(tables, dict(backends or default_backends()), list(assets), resources)
    # in a code server: refuse a table another live code location serves (loom_assets.claims)
    claim_tables([t.name for t in tables if isinstance(t, Table)])
    return built


#: Assets per op of Dagster's column-schema-change checks (:func:`schema_change_checks_of`).
SCHEMA_CHANGE_CHUNK = 50


def schema_change_checks_of(assets: Sequence[dg.AssetsDefinition]) -> list[dg.AssetChecksDefinition]:
    """Dagster's ``column_schema_change`` check for every asset, in ops of at most
    :data:`SCHEMA_CHANGE_CHUNK` assets each.

    Why not one call for all: ``build_column_schema_change_checks`` makes one op checking every
    asset it is given, and Dagster's job building walks, for each input of an op, the set of all
    the op's check keys (``asset_job.build_node_deps``): quadratic in the number of tables (1,000
    tables: ~1 s of every load, twice, once per asset job). The checks, their names, assets and
    severity are the same; only how many ops carry them differs."""
    out: list[dg.AssetChecksDefinition] = []
    for i in range(0, len(assets), SCHEMA_CHANGE_CHUNK):
        out.extend(dg.build_column_schema_change_checks(assets=assets[i:i + SCHEMA_CHANGE_CHUNK]))
    return out


def _build(tables: Sequence[Table | ExternalTable], backends: dict[str, Any], plain: list[Any],
           resources: Mapping[str, Any] | None) -> dg.Definitions:
    one_process = single_process(backends)
    built = build_assets(tables, pool=SINGLE_PROCESS_POOL if one_process else None, backends=backends)
    assets = [a for a in built if not isinstance(a, dg.AssetChecksDefinition)]
    declared_checks = [a for a in built if isinstance(a, dg.AssetChecksDefinition)]
    schema_change_checks = schema_change_checks_of(assets)
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
