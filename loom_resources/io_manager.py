"""The Loom IO manager: writes asset outputs through the table's backend writer and loads
inputs through its readers, sliced to the partitions the run needs.

What it knows about a table comes from the asset definition itself (its op and its inputs'
metadata: :mod:`loom_resources.binding`), never from process-global state. Where a frame is written
streaming or eagerly is decided once, by :func:`loom_resources.plan.decide_streaming`; a
single-run backfill over a key range reaches the writer as the whole range and is written as
one replace of exactly those partitions.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import dagster as dg
from pydantic import Field

from loom_resources.binding import InputBinding, SourceBinding, asset_binding, input_binding, source_binding
from loom_resources.clickhouse import ClickHouseResource
from loom_resources.contracts import SourceReader, StreamingSourceReader, TargetWriter
from loom_resources.delta import DeltaResource
from loom_resources.errors import LoomError, SchemaMismatchError, SpecError, TableNotFoundError
from loom_resources.failures import loom_failure
from loom_resources.metadata import partition_metadata, write_metadata
from loom_resources.model import Backend, RunParams, SourceSpec, TargetSpec, WriteContext
from loom_resources.partitions import rows_by_partition, slice_predicate
from loom_resources.plan import accepts_frame
from loom_resources.run_params import run_params, run_params_by_partition
from loom_resources.run_records import RUN_RECORDS_SPEC, RunRecord, append_record

__all__ = ["LoomIOManager"]


class LoomIOManager(dg.ConfigurableIOManager):
    """Writes and reads declared tables through the backend resources (one field per backend).

    Example::

        defs = dg.Definitions(
            assets=build_assets(tables),
            resources={
                "io_manager": LoomIOManager(delta=DeltaResource(), clickhouse=ClickHouseResource()),
            },
        )
    """

    delta: DeltaResource
    clickhouse: ClickHouseResource
    record_runs: bool = Field(default=True, description="Append one row per write to loom.run_records (Delta).")

    # -- dispatch ---------------------------------------------------------------------------
    def backend(self, backend: Backend) -> Any:
        """The resource that stores tables of ``backend`` (the field named after it)."""
        return getattr(self, Backend(backend).value)

    def writer(self, spec: TargetSpec) -> TargetWriter:
        """The writer of the table's backend."""
        w = self.backend(spec.backend)
        if not isinstance(w, TargetWriter):
            raise TypeError(f"backend {spec.backend.value} resource cannot write table {spec.ref}")
        return w

    # -- outputs ----------------------------------------------------------------------------
    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        """Write ``obj`` to the asset's table and attach metadata."""
        if obj is None:
            return
        binding = asset_binding(context.op_def, context.asset_key)
        spec = binding.target
        accepts_frame(obj, spec)
        started = time.monotonic()
        started_at = dt.datetime.now(dt.UTC)
        params = run_params(context, binding.partition_columns)
        step = context.step_context
        wctx = WriteContext(
            run_id=context.run_id,
            asset_key=context.asset_key.to_user_string(),
            partition_keys=params.partition_keys,
            attempt=step.previous_attempt_count + 1,
            root_run_id=step.dagster_run.root_run_id,
        )
        try:
            result = self.writer(spec).write(obj, spec, params, streaming=True, write_ctx=wctx)
        except Exception as exc:
            self._record(wctx, spec, None, "failed", f"{type(exc).__name__}: {exc}", started_at)
            if isinstance(exc, LoomError):
                raise loom_failure(exc) from exc  # Loom's message as the run's failure, not Dagster's wrapper
            raise
        self._record(wctx, spec, result.rows_written, "skipped" if result.skipped else "success", None, started_at)
        context.add_output_metadata(
            write_metadata(result, partitioned=bool(params.partition_keys), seconds=time.monotonic() - started)
        )
        if params.partition_keys:
            # each partition's materialization gets its own counts, read back from the table
            stored = rows_by_partition(self.backend(spec.backend), spec, binding.partition_columns, params,
                                       run_params_by_partition(context, binding.partition_columns))
            for key, md in partition_metadata(result, stored).items():
                step.add_asset_metadata(md, asset_key=context.asset_key, partition_key=key)
        version = f", version {result.version}" if result.version is not None else ""
        context.log.info(f"wrote {result.rows_written} rows to {spec.ref} ({result.mode.value}{version})")

    def _record(
        self, wctx: WriteContext, spec: TargetSpec, rows: int | None, status: str, error: str | None, started: dt.datetime
    ) -> None:
        if not self.record_runs or spec.ref == RUN_RECORDS_SPEC.ref:
            return
        rec = RunRecord(
            run_id=wctx.run_id, asset=wctx.asset_key, table_name=str(spec.ref), partition_keys=wctx.partition_keys,
            mode=spec.mode.value, rows=rows, status=status, error=error, started_at=started,
            finished_at=dt.datetime.now(dt.UTC),
        )
        append_record(self.delta, rec)

    # -- inputs -----------------------------------------------------------------------------
    def load_input(self, context: dg.InputContext) -> Any:
        """Read an upstream table as a LazyFrame, sliced to the partitions this run needs. An
        external table is first checked to exist with its declared columns."""
        ib = input_binding(context.definition_metadata)
        upstream = ib.upstream if ib is not None and ib.upstream is not None else self._upstream(context)
        ib = ib or InputBinding(SourceSpec(upstream.ref))
        resource = self.backend(upstream.backend)
        if upstream.expected is not None:
            try:
                check_source(resource, upstream)
            except LoomError as exc:
                raise loom_failure(exc) from exc
        consumer = run_params(context.step_context, ib.consumer_partition_columns) if context.step_context else RunParams()
        sliced = None
        slice_spec = upstream.slice_spec()
        if slice_spec is not None:
            # an upstream asset with partitions is sliced to its own partitions in this run; an
            # external table without Dagster partitions to the consumer's partitions
            up = run_params(context, upstream.partition_columns) if context.has_asset_partitions else consumer
            sliced = slice_predicate(slice_spec, upstream.partition_columns, up)
        pred = ib.source.predicate
        if sliced is not None:
            pred = sliced if pred is None else (pred & sliced)
        spec = SourceSpec(upstream.ref, ib.source.columns, pred, ib.source.version)
        if ib.relation:
            # SQL pushed down: the body gets a reference to the sliced table, not its rows
            return resource.relation(spec, consumer)
        if ib.streaming:
            if not isinstance(resource, StreamingSourceReader):
                raise TypeError(f"input {context.name}: the backend of {spec.ref} cannot stream")
            return resource.read_streaming(spec, consumer)
        if not isinstance(resource, SourceReader):
            raise TypeError(f"input {context.name}: the backend of {spec.ref} cannot read")
        return resource.read(spec, consumer)

    def _upstream(self, context: dg.InputContext) -> SourceBinding:
        """The upstream of an input the factory did not declare (a plain asset reading a declared
        table): from the upstream's definition, whether or not it runs in this run."""
        upstream = context.upstream_output
        try:
            spec = upstream.asset_spec if upstream is not None else None
        except dg.DagsterInvariantViolationError:  # an output context built without its spec
            spec = None
        if spec is None:
            raise SpecError(f"input {context.name}: the upstream {context.asset_key.to_user_string()} has no asset "
                            "spec to read it by")
        return source_binding(spec.metadata, spec.kinds, context.asset_key)


def check_source(resource: Any, upstream: SourceBinding) -> None:
    """Fail before a run reads an external table that is missing or lacks a declared column
    (or stores it with another type), naming the table and the column."""
    stored = resource.schema(upstream.ref)
    if stored is None:
        raise TableNotFoundError(str(upstream.ref), f"the {upstream.backend.value} store (declared as an external source)")
    have = {c.name: c for c in stored}
    problems = []
    for c in upstream.expected or ():
        s = have.get(c.name)
        if s is None:
            problems.append(f"declared column {c.name!r} ({c.dtype}) is missing")
        elif s.dtype != c.dtype:
            problems.append(f"column {c.name!r} is stored as {s.dtype}, declared {c.dtype}")
    if problems:
        raise SchemaMismatchError(str(upstream.ref), problems)
