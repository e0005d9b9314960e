"""The run-records table: one row per materialized table, Loom's audit trail."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from loom_resources._lazy import lazy_import
from loom_resources.dtypes import ColumnSchema
from loom_resources.model import Backend, TableRef, TargetSpec, WriteMode

if TYPE_CHECKING:
    import polars as pl
else:
    pl = lazy_import("polars")  # imported when data moves, not when the code location loads

RUN_RECORDS_REF = TableRef("loom", "run_records")

RUN_RECORDS_SPEC = TargetSpec(
    ref=RUN_RECORDS_REF,
    backend=Backend.DELTA,
    columns=(
        ColumnSchema("run_id", "string", False),
        ColumnSchema("asset", "string", False),
        ColumnSchema("table_name", "string", False),
        ColumnSchema("partition_keys", "list<string>", True),
        ColumnSchema("mode", "string", False),
        ColumnSchema("rows", "int64", True),
        ColumnSchema("status", "string", False),
        ColumnSchema("error", "string", True),
        ColumnSchema("started_at", "datetime(us, UTC)", False),
        ColumnSchema("finished_at", "datetime(us, UTC)", False),
    ),
    mode=WriteMode.APPEND,
)


@dataclass(frozen=True)
class RunRecord:
    """One materialization of one table."""

    run_id: str
    asset: str
    table_name: str
    partition_keys: tuple[str, ...]
    mode: str
    rows: int | None
    status: str
    error: str | None
    started_at: dt.datetime
    finished_at: dt.datetime

    def to_frame(self) -> pl.DataFrame:
        """The record as a one-row DataFrame in the run-records schema."""
        from loom_resources.polars_types import polars_schema

        row = {**self.__dict__, "partition_keys": list(self.partition_keys)}
        return pl.DataFrame([row], schema=polars_schema(RUN_RECORDS_SPEC.columns))


def append_record(writer: Any, record: RunRecord) -> None:
    """Append ``record`` to the run-records table through a Delta ``TargetWriter``.

    A failure to record is logged, never raised: the audit trail must not mask the real
    outcome of the materialization.
    """
    from loom_resources.model import RunParams

    try:
        writer.write(record.to_frame(), RUN_RECORDS_SPEC, RunParams())
    except Exception as exc:
        import dagster as dg

        dg.get_dagster_logger().warning(f"could not append to {RUN_RECORDS_SPEC.ref}: {exc}")


def record_failure(
    resources: Any, run_id: str, asset: str, spec: TargetSpec, params: Any, exc: BaseException, started: dt.datetime
) -> None:
    """Record a failed asset body (before any write) through the run-records table's own backend
    among a Dagster step's ``resources``."""
    append_record(getattr(resources, RUN_RECORDS_SPEC.backend.value), RunRecord(
        run_id=run_id, asset=asset, table_name=str(spec.ref), partition_keys=tuple(params.partition_keys),
        mode=spec.mode.value, rows=None, status="failed", error=f"{type(exc).__name__}: {exc}",
        started_at=started, finished_at=dt.datetime.now(dt.UTC),
    ))
