"""How :class:`~loom_resources.delta.DeltaResource` executes a write plan: conform the frame to
the stored table, then append, overwrite or replace (partitions or a predicate) in one commit.

Every mode ends in exactly one Delta commit, so a failed write leaves the table at its previous
version: files written by Polars and committed as add actions (``_files``: appends, overwrites,
one-column partition replaces), else ``write_deltalake`` with an overwrite predicate for
partition and predicate replaces.
The replace condition comes rendered from the plan's :class:`~loom_resources.predicates.Predicate`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import polars as pl
from deltalake import DeltaTable

from loom_resources.conform import check_partition_markers, conform, frame_partitions, with_audit_columns
from loom_resources.delta._batches import BatchSource, batch_schema, whole_microseconds_check
from loom_resources.delta._commit import commit, render, with_retries
from loom_resources.delta._files import ParquetFiles, replace_filter, supported
from loom_resources.delta._location import DeltaLocation
from loom_resources.delta._stats import stats_columns
from loom_resources.delta._types import schema_from_delta, storable, storable_columns
from loom_resources.dtypes import Schema
from loom_resources.errors import LoomError, SchemaMismatchError
from loom_resources.model import RunParams, SchemaMode, TargetSpec, WriteContext, WriteMode, WriteResult
from loom_resources.partitions import PartitionValues, partition_predicate
from loom_resources.plan import WritePlan, plan_write
from loom_resources.polars_types import to_polars

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["DeltaWrite", "Outcome", "prepare_write", "result", "write_table"]

Frame = pl.LazyFrame | pl.DataFrame


@dataclass
class Outcome:
    """What a Delta write did (becomes the typed :class:`WriteResult`)."""

    rows: int = 0
    partitions: PartitionValues = ()
    skipped: bool = False
    noop: bool = False
    merge_metrics: dict[str, int] = field(default_factory=dict)
    #: The table object the commit went through: delta-rs moves it to the committed version, so
    #: the result is read from it instead of reopening the log.
    table: DeltaTable | None = None
    #: The version this write committed, when known apart from ``table`` (never the latest version
    #: read afterwards: a concurrent writer may have committed since).
    version: int | None = None


@dataclass
class DeltaWrite:
    """A write plan bound to one Delta table: the stored state and the conformed frame."""

    plan: WritePlan
    loc: DeltaLocation
    table: DeltaTable | None
    stored: Schema | None
    frame: Frame
    columns: Schema  # what each written batch holds, in order, in declared types
    new_columns: Schema
    schema: pa.Schema  # the storable Arrow schema of the written batches

    @property
    def spec(self) -> TargetSpec:
        """The target (audit columns resolved)."""
        return self.plan.spec

    @property
    def creating(self) -> bool:
        """Whether this write creates the table."""
        return self.table is None

    def source(self, frame: Frame | None = None, *, streaming: bool | None = None) -> BatchSource:
        """Validated Arrow data of ``frame`` (default: the conformed frame)."""
        return BatchSource(
            self.frame if frame is None else frame, self.columns, self.schema, self.plan.validate,
            streaming=self.plan.streaming if streaming is None else streaming, table=str(self.spec.ref),
        )

    def commit(self, data: pa.Table | pa.RecordBatchReader, *, mode: Literal["append", "overwrite"],
               predicate: str | None = None, schema_mode: Literal["merge", "overwrite"] | None = None,
               snapshot: DeltaTable | None = None, create: bool = False) -> int:
        """One commit of ``data`` recording this write's app transaction (see ``_commit.commit``);
        returns the version it committed."""
        known = self.table.version() if self.table is not None else -1
        types = {c.name: c.dtype for c in storable_columns(self.columns) if c.name not in self.spec.partition_by}
        return commit(self.loc, data, app_id=self.plan.app_id, partition_by=self.spec.partition_by, mode=mode,
                      predicate=predicate, schema_mode=schema_mode, snapshot=snapshot, create=create,
                      known_version=known, stats_columns=stats_columns(types))

    def snapshots(self) -> Callable[[], DeltaTable | None]:
        """The table each commit attempt reads: the one this write was planned against first,
        then the latest version (a retry re-checks everything against the new state)."""
        first = [True]

        def current() -> DeltaTable | None:
            if first[0]:
                first[0] = False
                return self.table
            return self.loc.open()

        return current


def prepare_write(
    frame: Frame,
    spec: TargetSpec,
    params: RunParams,
    ctx: WriteContext | None,
    loc: DeltaLocation,
    *,
    requested_streaming: bool,
    resource_audit: bool,
    opened: DeltaTable | None = None,
) -> DeltaWrite:
    """Plan the write against the stored table, conform the frame and prepare the batch schema.

    ``opened``: the table loaded just before (by the orphan sweep); ``None``: loaded here.

    Raises:
        SchemaMismatchError / UnsupportedTypeError / PredicateError: before anything is written.
    """
    table = opened if opened is not None else loc.open()
    stored = schema_from_delta(table.schema()) if table is not None else None
    declared = storable_columns(spec.stored_columns())  # raises UnsupportedTypeError naming the column
    types = {x.name: x.dtype for x in (stored or declared)}
    plan = plan_write(frame, spec, params, ctx, requested_streaming=requested_streaming,
                      resource_audit=resource_audit, column_types=types)
    spec = plan.spec
    if table is not None and spec.partition_by and spec.schema_mode is not SchemaMode.OVERWRITE:
        actual = tuple(table.metadata().partition_columns)
        if set(actual) != set(spec.partition_by):
            raise SchemaMismatchError(
                str(spec.ref), [f"the stored table is partitioned by {list(actual)}, declared {list(spec.partition_by)}"]
            )
    c = conform(frame, spec, stored, storable=storable)
    out = with_audit_columns(c.frame, spec, ctx)
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
    plan = plan.with_checks(whole_microseconds_check(columns, str(spec.ref)),
                            lambda df: check_partition_markers(df, spec))
    return DeltaWrite(plan=plan, loc=loc, table=table, stored=stored, frame=out, columns=columns,
                      new_columns=c.new_columns, schema=batch_schema(storable_columns(columns)))


def _frame_partitions(w: DeltaWrite) -> PartitionValues:
    """The partitions an unpartitioned run's frame holds (its replace must be known before
    delta-rs consumes the first batch, so a lazy frame is scanned once for them)."""
    if isinstance(w.frame, pl.DataFrame):
        return frame_partitions(w.frame, w.spec)
    engine: Literal["streaming", "auto"] = "streaming" if w.plan.streaming else "auto"
    return tuple(w.frame.select(list(w.spec.partition_by)).unique(maintain_order=True).collect(engine=engine).to_dicts())


def write_table(w: DeltaWrite) -> Outcome:
    """Execute an append, overwrite, replace_partitions or replace_where plan in one commit.

    An append with a write context commits at most once per logical write: each attempt checks
    the app transaction on the snapshot it then commits against (see ``_commit``), so a
    concurrent or repeated attempt of the same write is skipped, never committed twice.
    """
    spec, plan = w.spec, w.plan
    out = Outcome()
    if spec.mode is WriteMode.REPLACE_PARTITIONS:
        out.partitions = plan.run_partitions or _frame_partitions(w)
        if not out.partitions and not w.creating:
            out.noop = True
            return out
    schema_mode: Literal["merge", "overwrite"] | None = None
    if spec.schema_mode is SchemaMode.OVERWRITE:
        schema_mode = "overwrite"
    elif w.new_columns:
        schema_mode = "merge"
    source = w.source()
    guard = plan.app_id if spec.mode is WriteMode.APPEND else None
    snapshot = w.snapshots()
    stored_types = storable_columns(w.columns)
    files = ParquetFiles(w.loc, source, stored_types, spec.partition_by, w.schema)

    def attempt() -> bool:
        table = snapshot()
        if guard and table is not None and table.transaction_version(guard) is not None:
            return False  # this logical write already committed
        mode, predicate = _commit_mode(w, out.partitions, creating=table is None)
        if supported(w.loc, table, stored_types, spec.partition_by, mode=mode, predicate=predicate,
                     partitions=out.partitions, schema_mode=schema_mode):
            replace = replace_filter(spec.partition_by, out.partitions) if predicate is not None else None
            out.version = files.commit(table, mode=mode, replace=replace, app_id=plan.app_id, predicate=predicate)
            out.table = None  # delta-rs does not move the object to the new version here
            return True
        files.discard()  # a retry may find a table the files cannot go to
        out.version = w.commit(source.data(), mode=mode, predicate=predicate, schema_mode=schema_mode,
                               snapshot=table, create=table is None)
        out.table = table
        return True

    try:
        committed = with_retries(spec.ref, w.loc, attempt, source)
    finally:
        if not files.committed:
            files.discard()
    if not committed:
        out.skipped = True
        return out
    out.rows = source.rows
    return out


def _commit_mode(w: DeltaWrite, partitions: PartitionValues, *, creating: bool
                 ) -> tuple[Literal["append", "overwrite"], str | None]:
    """The ``write_deltalake`` mode and overwrite predicate of the plan against a table that
    exists or is being created (a creation writes the frame as the whole table)."""
    spec, plan = w.spec, w.plan
    if spec.mode is WriteMode.OVERWRITE:
        return "overwrite", None
    if creating:
        return "append", None
    if spec.mode is WriteMode.REPLACE_PARTITIONS and partitions:
        return "overwrite", render(plan.replace_condition or partition_predicate(partitions), spec.ref)
    if spec.mode is WriteMode.REPLACE_WHERE:
        assert plan.replace_condition is not None
        return "overwrite", render(plan.replace_condition, spec.ref)
    return "append", None


def result(w: DeltaWrite, out: Outcome) -> WriteResult:
    """The WriteResult of a finished write, read back from the table's log."""
    table = out.table if out.table is not None else w.loc.open()
    if table is None:
        raise LoomError(f"table {w.spec.ref} was not created at {w.loc.display_uri}")
    return WriteResult(
        table=w.spec.ref,
        uri=w.loc.display_uri,
        rows_written=0 if out.skipped else out.rows,
        mode=w.spec.mode,
        streaming=w.plan.streaming and w.spec.mode not in (WriteMode.MERGE, WriteMode.HISTORY),
        version=out.version if out.version is not None else table.version(),
        schema=schema_from_delta(table.schema()),
        partitions=tuple(out.partitions),
        skipped=out.skipped,
        noop=out.noop,
        merge_metrics=dict(out.merge_metrics),
    )


def merge_metric_counts(metrics: dict[str, Any]) -> dict[str, int]:
    """The integer counts of delta-rs merge metrics (rows inserted, updated, deleted...)."""
    return {k: int(v) for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)}
