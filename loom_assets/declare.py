"""Table declarations: what a data engineer writes to get an asset.

A :class:`Table` names its target (``schema.table`` and backend), its columns, write and
schema modes, partitioning, its sources and exactly one body: a SQL statement or a Python
transform. :func:`loom_assets.factory.build_assets` turns declarations into Dagster assets.

Example::

    orders = Table(
        "staging.orders", backend="delta",
        columns=[ColumnSchema("order_id", "int64", False), ColumnSchema("order_date", "date", False)],
        mode="replace_partitions", partition_by=["order_date"],
        partitions=daily, partition_column="order_date",
        sources=["raw.orders"],
        sql="SELECT order_id, order_date FROM orders WHERE order_date >= {partition_start_date}",
    )
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from loom_assets.lineage import ColumnRef, resolve_declared
from loom_resources import (
    Backend,
    ClickHouseTableOptions,
    ColumnSchema,
    HistoryOptions,
    Predicate,
    SchemaMode,
    SpecError,
    TableRef,
    TargetSpec,
    WriteMode,
)

Transform = Callable[..., Any]


@dataclass(frozen=True)
class Source:
    """One input of a table.

    Attributes:
        table: The upstream declared table (``schema.table``).
        columns: Optional projection.
        predicate: Optional filter; may use run parameters (``param("partition_start")``).
        alias: Name of the input in SQL and of the transform's keyword argument
            (default: the table name without schema).
        partition_mapping: Dagster partition mapping to the upstream (default: Dagster's).
        streaming: Read through the streaming reader (bounded memory).
        asset: The source is a plain Dagster asset (e.g. stored by a dagster-polars IO manager),
            loaded by its own IO manager rather than by Loom.
    """

    table: str
    columns: tuple[str, ...] | None = None
    predicate: Predicate | None = None
    alias: str | None = None
    partition_mapping: dg.PartitionMapping | None = None
    streaming: bool = False
    asset: bool = False

    @property
    def ref(self) -> TableRef:
        """The upstream table reference."""
        return TableRef.parse(self.table)

    @property
    def name(self) -> str:
        """Alias used in SQL and as transform argument."""
        return self.alias or self.ref.table


@dataclass(frozen=True)
class DataCheck:
    """A declared data check, run as a real query against the stored table.

    Build with :func:`not_null`, :func:`unique`, :func:`accepted_values`, :func:`row_count`.
    """

    kind: str
    columns: tuple[str, ...] = ()
    values: tuple[Any, ...] = ()
    min_rows: int | None = None
    max_rows: int | None = None
    blocking: bool = False

    @property
    def name(self) -> str:
        """Dagster check name."""
        suffix = "_".join(self.columns)
        return f"{self.kind}_{suffix}" if suffix else self.kind

    @property
    def description(self) -> str:
        """What the check verifies, in words (shown in the Dagster UI)."""
        cols = ", ".join(self.columns)
        scope = " (in the checked partitions, when partitioned)"
        if self.kind == "not_null":
            return f"No null values in {cols}{scope}."
        if self.kind == "unique":
            return f"Each value of ({cols}) occurs at most once{scope}."
        if self.kind == "accepted_values":
            return f"{cols} holds only {', '.join(map(repr, self.values))} or null{scope}."
        if self.kind == "row_count":
            low = "any" if self.min_rows is None else str(self.min_rows)
            high = "any" if self.max_rows is None else str(self.max_rows)
            return f"The table holds between {low} and {high} rows{scope}."
        return f"{self.kind} check on {cols}."


def not_null(*columns: str, blocking: bool = False) -> DataCheck:
    """Check that ``columns`` hold no nulls."""
    return DataCheck("not_null", tuple(columns), blocking=blocking)


def unique(*columns: str, blocking: bool = False) -> DataCheck:
    """Check that the combination of ``columns`` is unique."""
    return DataCheck("unique", tuple(columns), blocking=blocking)


def accepted_values(column: str, values: Sequence[Any], *, blocking: bool = False) -> DataCheck:
    """Check that ``column`` only holds ``values`` (or null)."""
    return DataCheck("accepted_values", (column,), tuple(values), blocking=blocking)


def row_count(*, min_rows: int | None = None, max_rows: int | None = None, blocking: bool = False) -> DataCheck:
    """Check that the table's row count is within bounds."""
    return DataCheck("row_count", (), min_rows=min_rows, max_rows=max_rows, blocking=blocking)


@dataclass(frozen=True)
class Table:
    """A declared table: target, columns, modes, partitioning, sources and one body.

    Attributes:
        name: ``schema.table``; the asset key is ``[schema, table]`` and the group is the schema.
        backend: ``delta`` or ``clickhouse``.
        columns: Declared columns (the contract).
        sql: SQL body; source aliases are the sources' table names; ``{partition_start}`` and
            similar run parameters are bound as typed, escaped literals.
        transform: Python body ``fn(context, **sources) -> LazyFrame | DataFrame``.
        sources: Upstream declared tables (names or :class:`Source`).
        mode / schema_mode / merge_keys / partition_by / replace_predicate / delete_unmatched /
        history / audit_columns / streaming / clickhouse: see :class:`loom_resources.TargetSpec`.
        partitions: Dagster partitions definition (daily, hourly, static, multi).
        partition_column: The column the partitions map to, or for multi-partitions a mapping
            dimension name -> column.
        checks: Declared data checks.
        automation_condition: When Dagster materializes the table on its own, e.g.
            ``dg.AutomationCondition.eager()`` (when upstream changes) or
            ``dg.AutomationCondition.on_cron("0 2 * * *")`` (daily at 02:00, once upstream is
            updated); any ``AutomationCondition`` expression. Runs through the automation sensor.
        fresh_within: The table is stale when its last materialization is older than this:
            Dagster's ``FreshnessPolicy.time_window(fail_window=fresh_within)`` (the asset's
            freshness state in the UI).
        description / owners / tags: Shown in the Dagster UI.
        column_lineage: Output column -> the source columns it derives from, each
            ``"schema.table.column"`` or ``(source, column)`` (``source``: the source's alias or
            ``schema.table``); shown as the asset's column lineage. SQL bodies get it derived
            (:mod:`loom_assets.lineage`); a column declared here replaces the derived one.
    """

    name: str
    backend: Backend | str
    columns: Sequence[ColumnSchema]
    sql: str | None = None
    transform: Transform | None = None
    sources: Sequence[Source | str] = ()
    mode: WriteMode | str = WriteMode.APPEND
    schema_mode: SchemaMode | str = SchemaMode.STRICT
    merge_keys: Sequence[str] = ()
    partition_by: Sequence[str] = ()
    replace_predicate: Predicate | None = None
    delete_unmatched: bool = False
    history: HistoryOptions | None = None
    audit_columns: bool = False
    streaming: bool | None = None
    clickhouse: ClickHouseTableOptions = field(default_factory=ClickHouseTableOptions)
    partitions: dg.PartitionsDefinition | None = None
    partition_column: str | Mapping[str, str] | None = None
    checks: Sequence[DataCheck] = ()
    automation_condition: dg.AutomationCondition | None = None
    fresh_within: dt.timedelta | None = None
    description: str | None = None
    owners: Sequence[str] = ()
    tags: Mapping[str, str] = field(default_factory=dict)
    column_lineage: Mapping[str, Sequence[ColumnRef]] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "sources", tuple(s if isinstance(s, Source) else Source(s) for s in self.sources))
        if (self.sql is None) == (self.transform is None):
            raise SpecError(f"table {self.name}: declare exactly one body, sql or transform")
        spec = self.target  # validates the target part
        cols = set(spec.column_names)
        for col_ in self.partition_columns.values():
            if col_ not in cols:
                raise SpecError(f"table {self.name}: partition column {col_!r} is not in the declared columns")
        if self.partitions is not None and not self.partition_columns:
            raise SpecError(f"table {self.name}: partitioned tables need partition_column")
        aliases = [s.name for s in self.sources]  # type: ignore[union-attr]
        if len(set(aliases)) != len(aliases):
            raise SpecError(f"table {self.name}: two sources share the alias in {aliases}; set Source(alias=...)")
        if self.automation_condition is not None and not isinstance(self.automation_condition, dg.AutomationCondition):
            raise SpecError(f"table {self.name}: automation_condition must be a dagster.AutomationCondition")
        if self.fresh_within is not None and self.fresh_within <= dt.timedelta(0):
            raise SpecError(f"table {self.name}: fresh_within must be a positive timedelta, got {self.fresh_within}")
        for chk in self.checks:
            for c in chk.columns:
                if c not in cols:
                    raise SpecError(f"table {self.name}: check {chk.name!r} names unknown column {c!r}")
        self.declared_lineage  # noqa: B018 - validates column_lineage

    @functools.cached_property
    def declared_lineage(self) -> dict[str, tuple[tuple[str, str], ...]]:
        """``column_lineage`` checked and resolved to output column -> ``(source alias, column)`` pairs."""
        if not self.column_lineage:
            return {}
        return resolve_declared(self.column_lineage, table=self.name, columns=self.target.column_names,
                                sources=self.sources)  # type: ignore[arg-type]

    @functools.cached_property
    def ref(self) -> TableRef:
        """The target table reference."""
        return TableRef.parse(self.name)

    @functools.cached_property
    def target(self) -> TargetSpec:
        """The validated target spec of this table (built once: declarations are immutable)."""
        partition_by = tuple(self.partition_by) or tuple(self.partition_columns.values())
        return TargetSpec(
            ref=self.ref, backend=Backend(self.backend), columns=tuple(self.columns), mode=WriteMode(self.mode),
            schema_mode=SchemaMode(self.schema_mode), merge_keys=tuple(self.merge_keys), partition_by=partition_by,
            replace_predicate=self.replace_predicate, delete_unmatched=self.delete_unmatched, history=self.history,
            audit_columns=self.audit_columns, streaming=self.streaming, clickhouse=self.clickhouse,
        )

    @property
    def partition_columns(self) -> dict[str, str]:
        """Partition dimension -> column (``""`` is the dimension of single-dimension partitions)."""
        if self.partition_column is None:
            return {}
        if isinstance(self.partition_column, str):
            return {"": self.partition_column}
        return dict(self.partition_column)

    @property
    def asset_key(self) -> dg.AssetKey:
        """``[schema, table]``."""
        return dg.AssetKey([self.ref.schema, self.ref.table])

    @property
    def code_version(self) -> str:
        """A hash of the body (SQL text or transform source) and the target declaration."""
        if self.sql is not None:
            body = self.sql
        else:
            try:
                body = inspect.getsource(self.transform)  # type: ignore[arg-type]
            except (OSError, TypeError):
                body = repr(self.transform)
        return hashlib.sha256((body + repr(self.target)).encode()).hexdigest()[:16]
