"""External tables: sources the platform reads but does not write (a landing zone written by
Spark, a ClickHouse table fed by Kafka, another team's Delta export).

Each :class:`ExternalTable` becomes an observable source asset: observing it (from the UI, or
on its schedule) records a data version (the Delta version, or ClickHouse's latest insert
block), the row count, the stored schema and the last-modified time. A non-blocking check
compares the stored schema with the declaration. Before a run reads it, the IO manager checks
that it exists with the declared columns, so a missing table or column fails the run before
any asset body runs.
"""


from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
from dagster import AssetCheckExecutionContext, AssetExecutionContext

from loom_assets.observed_schemas import remember_schema, remembered_schema
from loom_resources import Backend, ColumnSchema, SpecError, TableRef
from loom_resources.binding import SourceBinding
from loom_resources.dtypes import Schema, schema_diff
from loom_resources.metadata import column_schema_metadata

__all__ = ["SCHEMA_DRIFT_CHECK", "ExternalTable", "build_external"]

SCHEMA_DRIFT_CHECK = "schema_matches_declaration"


@dataclass(frozen=True)
class ExternalTable:
    """A table another system writes, usable as a ``Source`` of any declared table.

    Attributes:
        name: ``schema.table`` in its store.
        backend: ``delta`` or ``clickhouse``.
        columns: The columns the platform relies on, in stored types; ``None`` discovers them
            (shown in the UI when observed; nothing is checked before runs).
        partition_column: A column whose values follow the consumers' time partitions: a
            partitioned consumer reads only its window of it.
        description: Shown in the UI.
        observe_cron: Observe on this cron schedule (the observation job always exists).
    """

    name: str
    backend: Backend | str
    columns: Sequence[ColumnSchema] | None = None
    partition_column: str | None = None
    description: str | None = None
    observe_cron: str | None = None
    sources: tuple[()] = field(default=(), init=False)
    sql: None = field(default=None, init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "backend", Backend(self.backend))
        self.ref  # noqa: B018 - validates the name
        if self.columns is not None:
            object.__setattr__(self, "columns", tuple(self.columns))
            if not self.columns:
                raise SpecError(f"external table {self.name}: columns=[] declares nothing; use None to discover them")
        if self.partition_column is not None and self.column(self.partition_column) is None:
            raise SpecError(f"external table {self.name}: declare the type of partition column {self.partition_column!r}")

    @property
    def ref(self) -> TableRef:
        """The table reference."""
        return TableRef.parse(self.name)

    @property
    def asset_key(self) -> dg.AssetKey:
        """``[schema, table]``, as for declared tables."""
        return dg.AssetKey([self.ref.schema, self.ref.table])

    @property
    def partition_columns(self) -> dict[str, str]:
        """Partition dimension -> column (consumers slice by their own partitions)."""
        return {"": self.partition_column} if self.partition_column else {}

    def column(self, name: str) -> ColumnSchema | None:
        """The declared column ``name``, if declared."""
        return next((c for c in self.columns or () if c.name == name), None)

    def source(self) -> SourceBinding:
        """How consumers read it: checked against the declared columns first."""
        types = {}
        if self.partition_column:
            col = self.column(self.partition_column)
            assert col is not None
            types[self.partition_column] = col.dtype
        return SourceBinding(self.ref, Backend(self.backend), self.partition_columns, types,
                             expected=tuple(self.columns) if self.columns is not None else None)


def _observe(ext: ExternalTable) -> Any:
    backend = Backend(ext.backend).value
    # declared columns, else the ones its last observation found (the UI's Columns section)
    columns = tuple(ext.columns) if ext.columns is not None else remembered_schema(ext.ref)

    @dg.observable_source_asset(
        key=ext.asset_key, group_name=ext.ref.schema, required_resource_keys={backend},
        description=ext.description or f"external {backend} table {ext.ref}, written outside this platform",
        metadata={"dagster/table_name": str(ext.ref),
                  **({"dagster/column_schema": column_schema_metadata(columns)} if columns else {})},
        tags={f"dagster/kind/{backend}": ""},  # the kind badge, as declared tables have
    )
    def _observed(context: AssetExecutionContext) -> dg.ObserveResult:
        obs = getattr(context.resources, backend).observe(ext.ref)
        context.log.info(f"observed {ext.ref}: version {obs.version}, {obs.rows} rows")
        if ext.columns is None:
            remember_schema(ext.ref, obs.schema)
        return dg.ObserveResult(
            data_version=dg.DataVersion(obs.version),
            metadata={
                "dagster/row_count": obs.rows,
                "dagster/column_schema": column_schema_metadata(obs.schema),
                "dagster/table_name": str(ext.ref),
                "loom/last_modified": dg.MetadataValue.timestamp(obs.last_modified),
                "loom/version": obs.version,
            },
        )

    return _observed


def _drift_check(ext: ExternalTable) -> dg.AssetChecksDefinition:
    backend = Backend(ext.backend).value
    declared: Schema = tuple(ext.columns or ())

    @dg.asset_check(asset=ext.asset_key, name=SCHEMA_DRIFT_CHECK, blocking=False, required_resource_keys={backend},
                    description="the stored columns still include the declared ones with their types (warns on drift)")
    def _check(context: AssetCheckExecutionContext) -> dg.AssetCheckResult:
        stored = getattr(context.resources, backend).schema(ext.ref)
        if stored is None:
            return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.WARN,
                                       metadata={"problems": f"table {ext.ref} does not exist"})
        names = {c.name for c in declared}
        problems = schema_diff(declared, tuple(c for c in stored if c.name in names)) if declared else []
        extra = sorted({c.name for c in stored} - names) if declared else []
        return dg.AssetCheckResult(
            passed=not problems, severity=dg.AssetCheckSeverity.WARN,
            metadata={"problems": "\n".join(problems) or "none", "undeclared_columns": ", ".join(extra) or "none",
                      "stored": "\n".join(str(c) for c in stored)},
        )

    return _check


def build_external(externals: Sequence[ExternalTable], backends: Mapping[str, Any]) -> tuple[list[Any], list[Any], list[Any]]:
    """The observable source assets, their drift checks, and the observation job(s) with
    schedules of a set of external tables."""
    for ext in externals:
        if Backend(ext.backend).value not in backends:
            raise SpecError(f"external table {ext.ref}: no resource for backend {Backend(ext.backend).value!r}")
    assets = [_observe(e) for e in externals]
    checks = [_drift_check(e) for e in externals if e.columns is not None]
    jobs: list[Any] = []
    if externals:
        names = ", ".join(str(e.ref) for e in externals)
        job = dg.define_asset_job(
            "loom_observe_external", selection=dg.AssetSelection.assets(*[e.asset_key for e in externals]),
            description=f"Observe the external tables ({names}): data version, row count, stored schema and "
                        "last-modified time of each, without reading their rows.")
        jobs.append(job)
        crons = sorted({e.observe_cron for e in externals if e.observe_cron})
        jobs += [dg.ScheduleDefinition(
            name=f"loom_observe_external_{i}", job=job, cron_schedule=c,
            description=f"Observe the external tables on cron {c!r} (declared observe_cron of "
                        f"{', '.join(str(e.ref) for e in externals if e.observe_cron == c)}).")
            for i, c in enumerate(crons)]
    return assets, checks, jobs
