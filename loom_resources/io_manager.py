"""The Loom IO manager: writes asset outputs through the table's backend writer and loads
inputs through its readers, sliced to the partitions the run needs.

Dispatch rules:

* a ``polars.LazyFrame`` output is written on the streaming path (bounded memory), a
  ``polars.DataFrame`` eagerly; a table's ``streaming`` flag forces either;
* a SQL result that ran inside ClickHouse is written by ClickHouse itself when the target
  lives there, and streamed out of it otherwise;
* a single-run backfill over a key range reaches the writer as the whole range and is
  written as one replace of exactly those partitions.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping
from typing import Any

import dagster as dg
import polars as pl
from pydantic import Field

from loom_resources.clickhouse import ClickHouseResource
from loom_resources.contracts import SourceReader, StreamingSourceReader, TargetWriter
from loom_resources.delta import DeltaResource
from loom_resources.dtypes import Date, Datetime, Schema
from loom_resources.model import (
    Backend,
    RunParams,
    SourceSpec,
    TargetSpec,
    WriteContext,
    WriteResult,
    partition_key_value,
)
from loom_resources.predicates import Predicate, col
from loom_resources.registry import REGISTRY, AssetBinding, InputBinding
from loom_resources.run_records import RUN_RECORDS_SPEC, RunRecord, append_record

#: Metadata key an asset body sets to say where its SQL ran.
SQL_ENGINE_METADATA = "loom/sql_engine"
STARTED_AT_METADATA = "loom/started_at"


def column_schema_metadata(schema: Schema) -> dg.TableSchema:
    """Dagster's table schema for Loom columns (drives the UI and schema-change checks)."""
    return dg.TableSchema(
        columns=[
            dg.TableColumn(c.name, str(c.dtype), constraints=dg.TableColumnConstraints(nullable=c.nullable))
            for c in schema
        ]
    )


def _partition_map(key: str | dg.MultiPartitionKey, columns: Mapping[str, str]) -> dict[str, str]:
    if isinstance(key, dg.MultiPartitionKey):
        return {columns[d]: k for d, k in key.keys_by_dimension.items() if d in columns}
    return {columns[""]: key} if "" in columns else {}


def run_params_for(
    keys: list[str], window: dg.TimeWindow | None, columns: Mapping[str, str], values: Mapping[str, Any] | None = None
) -> RunParams:
    """Run parameters for partition ``keys`` (and their time window) of a table."""
    parts = tuple(_partition_map(k, columns) for k in keys)
    return RunParams(
        partition_keys=tuple(str(k) for k in keys),
        partitions=tuple(p for p in parts if p),
        window_start=window.start if window else None,
        window_end=window.end if window else None,
        values=dict(values or {}),
    )


def _time_window(ctx: dg.OutputContext | dg.InputContext) -> dg.TimeWindow | None:
    try:
        return ctx.asset_partitions_time_window
    except Exception:  # not time-partitioned: Dagster raises rather than returning None
        return None


def step_run_params(step: Any, columns: Mapping[str, str]) -> RunParams:
    """Run parameters of the whole step (used to bind predicates and SQL)."""
    if not step.has_partitions:
        return RunParams()
    try:
        window = step.partition_time_window
    except Exception:
        window = None
    if step.has_partition_key_range:
        keys = list(step.run_partitions_def.get_partition_keys_in_range(step.partition_key_range))
    else:
        keys = [step.partition_key]
    return run_params_for(keys, window, columns)


def slice_predicate(upstream: AssetBinding, keys: list[str], window: dg.TimeWindow | None) -> Predicate | None:
    """Predicate restricting an upstream table to the partitions a downstream run needs."""
    cols = upstream.partition_columns
    if not cols:
        return None
    spec = upstream.target
    if window is not None and "" in cols:
        c = cols[""]
        dtype = spec.column(c).dtype
        start: Any = window.start
        end: Any = window.end
        if isinstance(dtype, Date):
            start, end = start.date(), end.date()
        elif isinstance(dtype, Datetime) and dtype.tz is None:
            start = start.astimezone(dt.UTC).replace(tzinfo=None)
            end = end.astimezone(dt.UTC).replace(tzinfo=None)
        return col(c).window(start, end)
    preds: list[Predicate] = []
    for k in keys:
        parts = _partition_map(k, cols)
        conj = [
            col(c).eq(partition_key_value(v, spec.column(c).dtype, table=str(spec.ref), column=c))
            for c, v in parts.items()
        ]
        if conj:
            p = conj[0]
            for q in conj[1:]:
                p = p & q
            preds.append(p)
    if not preds:
        return None
    out = preds[0]
    for p in preds[1:]:
        out = out | p
    return out


class LoomIOManager(dg.ConfigurableIOManager):
    """Writes and reads declared tables through the Delta and ClickHouse resources.

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
        """The resource that stores tables of ``backend``."""
        return self.delta if backend is Backend.DELTA else self.clickhouse

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
        binding = REGISTRY.get(tuple(context.asset_key.path))
        spec = binding.target
        started = time.monotonic()
        started_at = dt.datetime.now(dt.UTC)
        if context.has_asset_partitions:
            keys = list(context.asset_partition_keys)
            params = run_params_for(keys, _time_window(context), binding.partition_columns)
        else:
            params = RunParams()
        step = context.step_context
        wctx = WriteContext(
            run_id=context.run_id,
            asset_key=context.asset_key.to_user_string(),
            partition_keys=params.partition_keys,
            attempt=step.previous_attempt_count + 1,
            root_run_id=step.dagster_run.root_run_id,
        )
        frame, streaming = self._prepare(obj, spec)
        context.log.info(
            f"writing {spec.ref} ({spec.backend.value}, mode={spec.mode.value}, "
            f"{'streaming' if streaming else 'eager'}, partitions={len(params.partition_keys)})"
        )
        try:
            result = self.writer(spec).write(frame, spec, params, streaming=streaming, write_ctx=wctx)
        except Exception as exc:
            self._record(wctx, spec, None, "failed", f"{type(exc).__name__}: {exc}", started_at)
            raise
        self._record(wctx, spec, result.rows_written, "skipped" if result.skipped else "success", None, started_at)
        context.add_output_metadata(self._metadata(result, params, streaming, time.monotonic() - started))
        context.log.info(f"wrote {result.rows_written} rows to {spec.ref} (version {result.version})")

    def _prepare(self, obj: Any, spec: TargetSpec) -> tuple[Any, bool]:
        """Decide streaming vs eager and convert results the target cannot take natively."""
        if isinstance(obj, pl.DataFrame):
            return obj, bool(spec.streaming)
        if isinstance(obj, pl.LazyFrame):
            return obj, spec.streaming is not False
        to_lazy = getattr(obj, "to_lazyframe", None)
        if to_lazy is not None and spec.backend is not Backend.CLICKHOUSE:
            # a ClickHouse query result headed elsewhere is streamed out of ClickHouse
            return to_lazy(streaming=True), spec.streaming is not False
        if to_lazy is not None:
            return obj, spec.streaming is not False
        raise TypeError(
            f"table {spec.ref}: the asset body returned {type(obj).__name__}; return a polars LazyFrame or DataFrame"
        )

    def _metadata(self, r: WriteResult, params: RunParams, streaming: bool, seconds: float) -> dict[str, Any]:
        md: dict[str, Any] = {
            "dagster/column_schema": column_schema_metadata(r.schema),
            "dagster/table_name": str(r.table),
            "dagster/uri": dg.MetadataValue.path(r.uri),
            "loom/rows_written": r.rows_written,
            "loom/table_version": r.version if r.version is not None else -1,
            "loom/write_mode": r.mode.value,
            "loom/write_path": "streaming" if streaming else "eager",
            "loom/skipped_duplicate_retry": r.skipped,
            "loom/duration_s": dg.MetadataValue.float(round(seconds, 3)),
        }
        if params.partition_keys:
            md["dagster/partition_row_count"] = r.rows_written
        total = r.extra.get("table_rows") if r.extra else None
        if total is not None:
            md["dagster/row_count"] = int(total)
        elif not params.partition_keys:
            md["dagster/row_count"] = r.rows_written
        for k, v in (r.extra or {}).items():
            if isinstance(v, (int, float, str, bool)) and k != "table_rows":
                md[f"loom/{k}"] = v
        return md

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
        """Read an upstream table as a LazyFrame, sliced to the partitions this run needs."""
        upstream_key = tuple(context.asset_key.path)
        upstream = REGISTRY.get(upstream_key)
        md = context.definition_metadata or {}
        consumer = md.get("loom/consumer")
        alias = md.get("loom/alias")
        ib: InputBinding | None = None
        consumer_binding: AssetBinding | None = None
        if consumer is not None:
            consumer_binding = REGISTRY.get(tuple(consumer))
            ib = consumer_binding.inputs.get(str(alias))
        ib = ib or InputBinding(SourceSpec(upstream.target.ref))
        resource = self.backend(upstream.target.backend)
        keys: list[str] = []
        window = None
        if context.has_asset_partitions:
            keys = list(context.asset_partition_keys)
            window = _time_window(context)
        sliced = slice_predicate(upstream, keys, window)
        pred = ib.source.predicate
        if sliced is not None:
            pred = sliced if pred is None else (pred & sliced)
        spec = SourceSpec(upstream.target.ref, ib.source.columns, pred, ib.source.version)
        params = step_run_params(context.step_context, consumer_binding.partition_columns if consumer_binding else {})
        if ib.relation:
            # SQL pushed down: the body gets a reference to the sliced table, not its rows
            return resource.relation(spec, params)
        if ib.streaming:
            if not isinstance(resource, StreamingSourceReader):
                raise TypeError(f"input {alias} of {consumer}: backend of {spec.ref} cannot stream")
            return resource.read_streaming(spec, params)
        if not isinstance(resource, SourceReader):
            raise TypeError(f"backend of {spec.ref} cannot read")
        return resource.read(spec, params)
