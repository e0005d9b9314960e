"""The backend-neutral write plan: every decision a write makes before it touches a store.

:func:`plan_write` turns (target spec, run parameters, write context, the frame's kind) into a
:class:`WritePlan`: streaming or eager, whether audit columns are written, the run's partition
values typed from the stored schema, the one replace condition as a
:class:`~loom_resources.predicates.Predicate`, and the batch validator. The Delta and ClickHouse
writers and :class:`~loom_resources.testing.InMemoryTables` all consume it; backends only
render the condition and execute the plan.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

from loom_resources._lazy import lazy_import
from loom_resources.conform import check_nulls, check_partition_values, check_unique_keys
from loom_resources.dtypes import DataType
from loom_resources.errors import DataValidationError
from loom_resources.model import RunParams, TargetSpec, WriteContext, WriteMode
from loom_resources.partitions import PartitionValues, partition_predicate, run_partition_values
from loom_resources.polars_types import to_expr
from loom_resources.predicates import Predicate, check_columns, to_sql

if TYPE_CHECKING:
    import polars as pl
else:
    pl = lazy_import("polars")  # imported when data moves, not when the code location loads

__all__ = ["BatchCheck", "WritePlan", "accepts_frame", "decide_streaming", "plan_write", "to_frame"]

Frame: TypeAlias = "pl.LazyFrame | pl.DataFrame"  # a string: polars loads when data moves
BatchCheck: TypeAlias = "Callable[[pl.DataFrame], None]"


def accepts_frame(obj: Any, spec: TargetSpec) -> None:
    """Refuse an asset result no writer can take, naming the table."""
    if isinstance(obj, (pl.LazyFrame, pl.DataFrame)) or hasattr(obj, "to_lazyframe"):
        return
    raise TypeError(
        f"table {spec.ref}: the asset body returned {type(obj).__name__}; return a polars LazyFrame or DataFrame"
    )


def to_frame(obj: Any) -> Frame:
    """A Polars frame of a writer's input: a query result that ran inside another store (a
    ``ClickHouseQuery``) is streamed out of it."""
    if isinstance(obj, (pl.LazyFrame, pl.DataFrame)):
        return obj
    to_lazy = getattr(obj, "to_lazyframe", None)
    if to_lazy is None:
        raise TypeError(f"cannot write a {type(obj).__name__}; pass a polars LazyFrame or DataFrame")
    frame = to_lazy(streaming=True)
    assert isinstance(frame, pl.LazyFrame)
    return frame


def decide_streaming(frame: Any, spec: TargetSpec, requested: bool) -> bool:
    """Streaming or eager: the table's ``streaming`` flag wins over the caller's request, and a
    frame already in memory is never streamed (there is nothing to bound)."""
    wanted = spec.streaming if spec.streaming is not None else requested
    return bool(wanted) and not isinstance(frame, pl.DataFrame)


@dataclass(frozen=True)
class WritePlan:
    """Everything decided about one write before the first byte is written.

    Attributes:
        spec: The target, with ``audit_columns`` resolved (on only when a write context fills them).
        params: The run's parameters.
        ctx: Who is writing (``None``: no audit values, no retry deduplication).
        streaming: Write batch by batch in bounded memory.
        run_partitions: The run's partition values typed by the stored (or storable) column
            types; empty when the run is unpartitioned or the mode does not replace partitions.
        replace_condition: The rows the write replaces (bound), for ``replace_partitions`` of a
            partitioned run and ``replace_where``; ``None`` otherwise.
        checks: Batch validators, run on every batch (or on the whole frame) before it is written.
    """

    spec: TargetSpec
    params: RunParams
    ctx: WriteContext | None
    streaming: bool
    run_partitions: PartitionValues
    replace_condition: Predicate | None
    checks: tuple[BatchCheck, ...]

    def validate(self, df: pl.DataFrame) -> None:
        """Run every batch validator on ``df``; the first violation raises."""
        for check in self.checks:
            check(df)

    def with_checks(self, *checks: BatchCheck | None) -> WritePlan:
        """The plan with backend-specific validators added (``None`` entries are ignored)."""
        return dataclasses.replace(self, checks=self.checks + tuple(c for c in checks if c is not None))

    @property
    def app_id(self) -> str | None:
        """The idempotency identifier of this logical write (same across retries), if any."""
        return f"loom-{self.ctx.idempotency_token()}" if self.ctx is not None else None


def _inside(spec: TargetSpec, pred: Predicate) -> BatchCheck:
    expr = to_expr(pred)

    def check(df: pl.DataFrame) -> None:
        outside = df.filter(~expr.fill_null(False)).height
        if outside:
            raise DataValidationError(
                str(spec.ref), None, f"{outside} row(s) fall outside the replace predicate {to_sql(pred, 'datafusion')}"
            )

    return check


def plan_write(
    frame: Any,
    spec: TargetSpec,
    params: RunParams,
    ctx: WriteContext | None,
    *,
    requested_streaming: bool,
    resource_audit: bool,
    column_types: Mapping[str, DataType],
) -> WritePlan:
    """Plan one write.

    Args:
        frame: What is written (its kind decides streaming; it is not read).
        spec: The target declaration.
        params: The run's parameters.
        ctx: The write context.
        requested_streaming: The caller's wish (the IO manager asks for streaming).
        resource_audit: The resource's own ``audit_columns`` setting (OR-ed with the table's).
        column_types: Column name -> type as stored (or as the backend will store it), used to
            type the run's partition keys.

    Raises:
        PredicateError: the replace predicate names a column the table lacks.
        SchemaMismatchError / SpecError: a run partition does not fit its column.
    """
    audit = (spec.audit_columns or resource_audit) and ctx is not None
    if audit != spec.audit_columns:
        spec = dataclasses.replace(spec, audit_columns=audit)
    checks: list[BatchCheck] = [lambda df: check_nulls(df, spec)]
    values: PartitionValues = ()
    condition: Predicate | None = None
    if spec.mode is WriteMode.REPLACE_PARTITIONS:
        values = run_partition_values(spec, params, column_types)
        if values:
            condition = partition_predicate(values)
            checks.append(lambda df: check_partition_values(df, spec, values))
    elif spec.mode is WriteMode.REPLACE_WHERE:
        assert spec.replace_predicate is not None
        condition = spec.replace_predicate.bind(params.bindings())
        check_columns(condition, list(column_types) or spec.column_names, table=str(spec.ref))
        checks.append(_inside(spec, condition))
    elif spec.mode is WriteMode.MERGE:
        checks.append(lambda df: check_unique_keys(df, spec))
    return WritePlan(
        spec=spec, params=params, ctx=ctx, streaming=decide_streaming(frame, spec, requested_streaming),
        run_partitions=values, replace_condition=condition, checks=tuple(checks),
    )
