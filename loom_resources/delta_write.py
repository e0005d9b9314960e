"""How :class:`~loom_resources.delta.DeltaResource` writes: validation, type casts, write modes,
idempotent commits and bounded retries on commit conflicts.

Every mode ends in exactly one Delta commit (``write_deltalake`` with an overwrite predicate for
partition and predicate replaces, one ``MERGE`` for merges), so a failed write leaves the table
at its previous version. Streaming writes hand delta-rs a ``pyarrow.RecordBatchReader`` fed by
Polars' streaming engine; every batch is validated inside the reader, and an invalid batch
raises before delta-rs commits.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import polars as pl
import pyarrow as pa
from dagster import get_dagster_logger
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError

from loom_resources import dtypes as t
from loom_resources.conform import (
    check_nulls,
    check_partition_values,
    check_unique_keys,
    conform,
    frame_partitions,
    run_partition_values,
    with_audit_columns,
)
from loom_resources.delta_types import schema_from_delta, storable, storable_columns
from loom_resources.dtypes import DataType, Schema
from loom_resources.errors import (
    BackendUnavailableError,
    DataValidationError,
    LoomError,
    PredicateError,
    SchemaMismatchError,
)
from loom_resources.model import RunParams, SchemaMode, TargetSpec, WriteContext, WriteMode, WriteResult
from loom_resources.polars_types import to_expr, to_polars
from loom_resources.predicates import (
    And,
    Compare,
    In,
    Or,
    Param,
    Predicate,
    check_columns,
    quote_identifier,
    sql_literal,
    to_sql,
)

Frame = pl.LazyFrame | pl.DataFrame
_LOG_EVERY_BATCHES = 50


@dataclass(frozen=True)
class DeltaLocation:
    """Where one table lives and how to reach it."""

    uri: str
    display_uri: str
    storage_options: dict[str, str]
    max_commit_retries: int

    def open(self) -> DeltaTable | None:
        """The table at its latest version, or ``None`` when there is none.

        Raises:
            BackendUnavailableError: when the store cannot be reached (missing bucket, bad
                credentials, unreachable endpoint).
        """
        if "://" not in self.uri and not os.path.isdir(os.path.join(self.uri, "_delta_log")):
            return None
        try:
            if not DeltaTable.is_deltatable(self.uri, storage_options=self.storage_options or None):
                return None
            return DeltaTable(self.uri, storage_options=self.storage_options or None)
        except OSError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise BackendUnavailableError(f"cannot reach the Delta table at {self.display_uri}: {first}") from exc


@dataclass
class WritePlan:
    """Everything decided before the first byte is written."""

    spec: TargetSpec
    loc: DeltaLocation
    table: DeltaTable | None
    stored: Schema | None
    frame: Frame
    columns: Schema  # what each written batch holds, in order, in declared types
    new_columns: Schema
    schema: pa.Schema  # the storable Arrow schema of the written batches
    partition_types: dict[str, DataType]
    app_id: str | None
    checks: list[Callable[[pl.DataFrame], None]] = dataclasses.field(default_factory=list)

    @property
    def creating(self) -> bool:
        return self.table is None


def storable_exprs(columns: Schema) -> list[pl.Expr]:
    """Expressions casting declared columns to the types Delta stores (see ``delta_types.storable``)."""
    exprs = []
    for c in columns:
        target = storable(c.dtype, column=c.name)
        e = pl.col(c.name)
        if isinstance(c.dtype, t.Datetime) and c.dtype.tz and c.dtype.tz != "UTC":
            e = e.dt.convert_time_zone("UTC")
        if target != c.dtype:
            e = e.cast(to_polars(target))
        exprs.append(e)
    return exprs


def _nullability(pa_type: pa.DataType, dtype: DataType) -> pa.DataType:
    if isinstance(dtype, t.Struct) and pa.types.is_struct(pa_type):
        fields = [pa_type.field(i) for i in range(pa_type.num_fields)]
        return pa.struct([
            f.with_type(_nullability(f.type, d.dtype)).with_nullable(d.nullable)
            for f, d in zip(fields, dtype.fields, strict=True)
        ])
    if isinstance(dtype, t.List) and (pa.types.is_large_list(pa_type) or pa.types.is_list(pa_type)):
        return pa.large_list(pa_type.value_field.with_type(_nullability(pa_type.value_type, dtype.inner)))
    return pa_type


def batch_schema(columns: Schema) -> pa.Schema:
    """The Arrow schema of written batches: the types Polars exports (views, so the export is
    zero-copy) with the declared nullability, which Delta keeps when it creates the table."""
    exported = pa.RecordBatchReader.from_stream(pl.DataFrame(schema={c.name: to_polars(c.dtype) for c in columns})).schema
    return pa.schema(
        [f.with_type(_nullability(f.type, c.dtype)).with_nullable(c.nullable).remove_metadata()
         for f, c in zip(exported, columns, strict=True)]
    )


def as_arrow(df: pl.DataFrame, schema: pa.Schema) -> pa.RecordBatchReader:
    """``df`` (already in storable types) as an Arrow stream in ``schema``. A stream, not a table:
    delta-rs then overlaps Polars' export with writing, as ``DataFrame.write_delta`` does."""
    return pa.RecordBatchReader.from_stream(df).cast(schema)


def _check_whole_microseconds(columns: Schema, table: str) -> Callable[[pl.DataFrame], None] | None:
    ns = [c.name for c in columns if isinstance(c.dtype, t.Datetime) and c.dtype.unit == "ns"]
    if not ns:
        return None

    def check(df: pl.DataFrame) -> None:
        for name in ns:
            lossy = df.select((pl.col(name).dt.nanosecond() % 1000 != 0).sum()).item()
            if lossy:
                raise DataValidationError(
                    table, name, f"{lossy} value(s) have sub-microsecond digits; Delta stores microseconds"
                )

    return check


def build_plan(
    frame: Frame,
    spec: TargetSpec,
    loc: DeltaLocation,
    write_ctx: WriteContext | None,
) -> WritePlan:
    """Resolve the stored schema from the log, conform the frame and prepare the batch schema.

    Raises:
        SchemaMismatchError / UnsupportedTypeError: before anything is written.
    """
    table = loc.open()
    stored = schema_from_delta(table.schema()) if table is not None else None
    storable_columns(spec.stored_columns())  # raises UnsupportedTypeError naming the column
    if table is not None and spec.partition_by and spec.schema_mode is not SchemaMode.OVERWRITE:
        actual = tuple(table.metadata().partition_columns)
        if set(actual) != set(spec.partition_by):
            raise SchemaMismatchError(
                str(spec.ref), [f"the stored table is partitioned by {list(actual)}, declared {list(spec.partition_by)}"]
            )
    c = conform(frame, spec, stored, storable=storable)
    out = with_audit_columns(c.frame, spec, write_ctx)
    maintained = spec.stored_columns()[len(spec.columns):]
    columns = c.columns + tuple(m for m in maintained if m.name not in {x.name for x in c.columns})
    if spec.mode is not WriteMode.HISTORY:
        columns = tuple(x for x in columns if x.name not in {h.name for h in spec.history_columns()})
    if stored is not None and spec.schema_mode is not SchemaMode.OVERWRITE:
        # stored columns the frame does not carry (audit columns of a write without context,
        # columns an earlier evolve added) are written as nulls, or rejected when not nullable
        have = {x.name for x in columns}
        absent = [x for x in stored if x.name not in have]
        required = [x.name for x in absent if not x.nullable]
        if required:
            raise SchemaMismatchError(str(spec.ref), [f"stored column {n!r} is not null but missing from the frame"
                                                      for n in required])
        if absent:
            columns += tuple(absent)
            out = out.with_columns([pl.lit(None, to_polars(x.dtype)).alias(x.name) for x in absent])
        # batches follow the stored column order; new columns go last
        order = {x.name: i for i, x in enumerate(stored)}
        columns = tuple(sorted(columns, key=lambda x: order.get(x.name, len(order))))
        stored_null = {x.name: x.nullable for x in stored}
        columns = tuple(dataclasses.replace(x, nullable=stored_null.get(x.name, True)) for x in columns)
    if spec.mode is not WriteMode.HISTORY:
        out = out.select([x.name for x in columns])
    types = {x.name: x.dtype for x in (stored or storable_columns(columns))}
    app_id = f"loom-{write_ctx.idempotency_token()}" if write_ctx is not None else None
    plan = WritePlan(
        spec=spec, loc=loc, table=table, stored=stored, frame=out, columns=columns, new_columns=c.new_columns,
        schema=batch_schema(storable_columns(columns)), partition_types=types, app_id=app_id,
    )
    plan.checks.append(lambda df: check_nulls(df, spec))
    ns_check = _check_whole_microseconds(columns, str(spec.ref))
    if ns_check is not None:
        plan.checks.append(ns_check)
    return plan


def prepare(df: pl.DataFrame, plan: WritePlan) -> pl.DataFrame:
    """Validate one batch (in declared types) and return it in the storable types."""
    for check in plan.checks:
        check(df)
    return df.select(storable_exprs(plan.columns))


class _BatchSource:
    """A re-startable source of validated Arrow data for one write attempt."""

    def __init__(self, plan: WritePlan, frame: Frame, streaming: bool) -> None:
        self.plan = plan
        self.frame = frame
        self.streaming = streaming
        self.rows = 0
        self.error: BaseException | None = None
        self._eager: pl.DataFrame | None = None

    def data(self) -> pa.Table | pa.RecordBatchReader:
        self.error = None
        if not self.streaming:
            if self._eager is None:
                df = self.frame.collect() if isinstance(self.frame, pl.LazyFrame) else self.frame
                self._eager = prepare(df, self.plan)
                self.rows = df.height
            return as_arrow(self._eager, self.plan.schema)
        self.rows = 0
        return pa.RecordBatchReader.from_batches(self.plan.schema, self._batches())

    def _batches(self) -> Iterator[pa.RecordBatch]:
        log = get_dagster_logger()
        assert isinstance(self.frame, pl.LazyFrame)
        try:
            for i, df in enumerate(self.frame.collect_batches(engine="streaming")):
                batch = as_arrow(prepare(df, self.plan), self.plan.schema)
                self.rows += df.height
                if i and i % _LOG_EVERY_BATCHES == 0:
                    log.info(f"{self.plan.spec.ref}: {self.rows} rows in {i} batches so far")
                yield from batch
        except BaseException as exc:
            # delta-rs wraps the reader's exception; keep the original to re-raise it
            self.error = exc
            raise


def _commit_properties(plan: WritePlan) -> CommitProperties:
    txns = [Transaction(plan.app_id, 1)] if plan.app_id else None
    return CommitProperties(app_transactions=txns, max_commit_retries=plan.loc.max_commit_retries)


def commit(
    plan: WritePlan,
    data: pa.Table | pa.RecordBatchReader,
    *,
    mode: Literal["append", "overwrite"],
    predicate: str | None = None,
    schema_mode: Literal["merge", "overwrite"] | None = None,
) -> None:
    """One ``write_deltalake`` call: one commit, recording the write's app transaction."""
    common: dict[str, Any] = dict(
        partition_by=list(plan.spec.partition_by) or None,
        schema_mode=schema_mode,
        storage_options=plan.loc.storage_options or None,
        commit_properties=_commit_properties(plan),
    )
    if mode == "overwrite":
        write_deltalake(plan.loc.uri, data, mode="overwrite", predicate=predicate, **common)
    else:
        write_deltalake(plan.loc.uri, data, mode="append", **common)


def _is_conflict(exc: BaseException) -> bool:
    if isinstance(exc, CommitFailedError):
        return True
    text = str(exc).lower()
    return isinstance(exc, DeltaError) and ("conflict" in text or "already exists" in text)


def with_retries(plan: WritePlan, attempt: Callable[[], Any], source: _BatchSource | None = None) -> Any:
    """Run one commit attempt, retrying (bounded, with backoff) when another writer won the commit."""
    log = get_dagster_logger()
    for n in range(plan.loc.max_commit_retries + 1):
        try:
            return attempt()
        except Exception as exc:
            if source is not None and source.error is not None:
                raise source.error from None
            if not _is_conflict(exc) or n == plan.loc.max_commit_retries:
                raise
            log.warning(f"{plan.spec.ref}: commit conflict ({exc}); retrying ({n + 1}/{plan.loc.max_commit_retries})")
            time.sleep(min(0.05 * 2**n, 2.0))
    raise AssertionError("unreachable")


def partition_predicate(values: tuple[Mapping[str, Any], ...]) -> Predicate:
    """The predicate selecting exactly the given partitions (one ``IN`` for one column)."""
    cols = list(values[0])
    if len(cols) == 1:
        return In(cols[0], tuple(v[cols[0]] for v in values))
    return Or(tuple(And(tuple(Compare(k, "=", v[k]) for k in cols)) for v in values))


def render(pred: Predicate, spec: TargetSpec) -> str:
    """Render a delta-rs predicate; any failure is an error, never a full-table overwrite."""
    try:
        return to_sql(pred, "datafusion")
    except Exception as exc:
        raise PredicateError(f"cannot build the replace predicate for table {spec.ref}: {exc}") from exc


def _partition_values(plan: WritePlan, params: RunParams, streaming: bool) -> tuple[dict[str, Any], ...]:
    spec = plan.spec
    run_values = run_partition_values(spec, params, plan.partition_types)
    if run_values:
        plan.checks.append(lambda df: check_partition_values(df, spec, run_values))
        return run_values
    cols = list(spec.partition_by)
    if isinstance(plan.frame, pl.DataFrame):
        return frame_partitions(plan.frame, spec)
    # A lazy frame is scanned once for its distinct partition values: the overwrite predicate
    # must be known before delta-rs starts consuming batches.
    engine: Literal["streaming", "auto"] = "streaming" if streaming else "auto"
    return tuple(plan.frame.select(cols).unique(maintain_order=True).collect(engine=engine).to_dicts())


def write_table(plan: WritePlan, params: RunParams, *, streaming: bool) -> dict[str, Any]:
    """Write according to the plan's mode (not history or merge); return extra metadata."""
    spec = plan.spec
    mode: Literal["append", "overwrite"] = "append"
    predicate: str | None = None
    extra: dict[str, Any] = {}
    if spec.mode is WriteMode.OVERWRITE:
        mode = "overwrite"
    elif spec.mode is WriteMode.REPLACE_PARTITIONS:
        values = _partition_values(plan, params, streaming)
        extra["partitions"] = values
        if values and not plan.creating:
            mode, predicate = "overwrite", render(partition_predicate(values), spec)
        elif not values and not plan.creating:
            extra["noop"] = True
            return extra
    elif spec.mode is WriteMode.REPLACE_WHERE:
        assert spec.replace_predicate is not None
        pred = spec.replace_predicate.bind(params.bindings())
        check_columns(pred, [c.name for c in plan.stored or plan.columns], table=str(spec.ref))
        expr = to_expr(pred)

        def inside(df: pl.DataFrame) -> None:
            outside = df.filter(~expr.fill_null(False)).height
            if outside:
                raise DataValidationError(
                    str(spec.ref), None, f"{outside} row(s) fall outside the replace predicate {to_sql(pred, 'datafusion')}"
                )

        plan.checks.append(inside)
        if not plan.creating:
            mode, predicate = "overwrite", render(pred, spec)
    schema_mode: Literal["merge", "overwrite"] | None = None
    if spec.schema_mode is SchemaMode.OVERWRITE:
        schema_mode = "overwrite"
    elif plan.new_columns:
        schema_mode = "merge"
    source = _BatchSource(plan, plan.frame, streaming)
    if spec.mode is WriteMode.APPEND and plan.table is not None and plan.app_id:
        if plan.table.transaction_version(plan.app_id) is not None:
            extra["skipped"] = True
            return extra

    def attempt() -> None:
        commit(plan, source.data(), mode=mode, predicate=predicate, schema_mode=schema_mode)

    with_retries(plan, attempt, source)
    extra["rows"] = source.rows
    return extra


def _qualified(pred: Predicate, alias: str, spec: TargetSpec) -> str:
    """Render a partition predicate with its columns qualified by a merge alias."""
    q = lambda n: f"{alias}.{quote_identifier(n, 'datafusion')}"  # noqa: E731
    try:
        if isinstance(pred, In) and not isinstance(pred.values, Param):
            return f"{q(pred.column)} IN ({', '.join(sql_literal(v, 'datafusion') for v in pred.values)})"
        if isinstance(pred, Compare):
            return f"{q(pred.column)} {pred.op} {sql_literal(pred.value, 'datafusion')}"
        if isinstance(pred, (And, Or)):
            sep = " AND " if isinstance(pred, And) else " OR "
            return "(" + sep.join(_qualified(p, alias, spec) for p in pred.parts) + ")"
    except Exception as exc:
        raise PredicateError(f"cannot build the merge predicate for table {spec.ref}: {exc}") from exc
    raise PredicateError(f"cannot build the merge predicate for table {spec.ref} from {pred!r}")


def merge_table(plan: WritePlan) -> dict[str, Any]:
    """Merge on the spec's keys in one commit. The frame is collected: duplicate keys must be
    found across the whole frame before anything is written."""
    spec = plan.spec
    df = plan.frame.collect() if isinstance(plan.frame, pl.LazyFrame) else plan.frame
    check_unique_keys(df, spec)
    data = prepare(df, plan)
    if plan.table is None:
        source = _BatchSource(plan, df, streaming=False)
        with_retries(plan, lambda: commit(plan, as_arrow(data, plan.schema), mode="append"), source)
        return {"rows": df.height}
    if df.height == 0 and not spec.delete_unmatched:
        return {"rows": 0, "noop": True}
    q = lambda n: quote_identifier(n, "datafusion")  # noqa: E731
    conds = [f"t.{q(k)} = s.{q(k)}" for k in spec.merge_keys]
    target_parts: str | None = None
    values = frame_partitions(df, spec)
    if spec.partition_by:
        # literal partition values let delta-rs prune target files instead of scanning the table
        target_parts = _qualified(partition_predicate(values), "t", spec) if values else "false"
        conds.append(target_parts)
    predicate = " AND ".join(conds)

    def attempt() -> dict[str, Any]:
        table = DeltaTable(plan.loc.uri, storage_options=plan.loc.storage_options or None)
        merger = (
            table.merge(
                as_arrow(data, plan.schema), predicate, source_alias="s", target_alias="t", merge_schema=bool(plan.new_columns),
                commit_properties=_commit_properties(plan),
            )
            .when_matched_update_all()
            .when_not_matched_insert_all()
        )
        if spec.delete_unmatched:
            merger = merger.when_not_matched_by_source_delete(target_parts)
        return dict(merger.execute())

    metrics = with_retries(plan, attempt)
    return {"rows": df.height, "partitions": values, "merge_metrics": metrics}


def result(plan: WritePlan, extra: Mapping[str, Any], *, streaming: bool) -> WriteResult:
    """The WriteResult of a finished write, read back from the table's log."""
    table = plan.loc.open()
    if table is None:
        raise LoomError(f"table {plan.spec.ref} was not created at {plan.loc.display_uri}")
    meta = {k: v for k, v in extra.items() if k not in ("rows", "partitions", "skipped")}
    return WriteResult(
        table=plan.spec.ref,
        uri=plan.loc.display_uri,
        rows_written=0 if extra.get("skipped") else int(extra.get("rows", 0)),
        mode=plan.spec.mode,
        streaming=streaming,
        version=table.version(),
        schema=schema_from_delta(table.schema()),
        partitions=tuple(extra.get("partitions", ())),
        skipped=bool(extra.get("skipped", False)),
        extra=meta,
    )


def effective_timestamp(spec: TargetSpec, params: RunParams, write_ctx: WriteContext | None) -> dt.datetime:
    """History: the effective time of the change as a naive UTC timestamp (microseconds)."""
    assert spec.history is not None
    value = params.bindings().get(spec.history.effective_param)
    if value is None:
        value = write_ctx.timestamp if write_ctx is not None else dt.datetime.now(dt.UTC)
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day)
    if not isinstance(value, dt.datetime):
        raise LoomError(f"table {spec.ref}: effective time {value!r} is not a date or datetime")
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value

