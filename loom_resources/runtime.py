"""What a run carries at execution time: its parameters, who writes, what a write did, and what
a store says about a table. Part of the table model (no Dagster, no backend)."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

from loom_resources.dtypes import DataType, Date, Datetime, Schema, String, integer_bits
from loom_resources.errors import SpecError
from loom_resources.model import TableRef, WriteMode

__all__ = ["Observation", "RunParams", "WriteContext", "WriteResult", "partition_key_value"]


def _frozen(m: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(m or {}))


@dataclass(frozen=True)
class RunParams:
    """Parameters of the current run, as the writer and readers see them.

    Attributes:
        partition_keys: Dagster partition keys of the run (all keys of a range backfill).
        partitions: Per partition, the partition column -> key string it maps to
            (multi-partitions give several columns). Empty for unpartitioned runs.
        window_start / window_end: Time window of the run's partitions (half-open), if any.
        values: Free parameters (SQL bindings, ``effective_date``...).
        timezone: Time zone of the partitions definition (its keys are wall-clock times there).
    """

    partition_keys: tuple[str, ...] = ()
    partitions: tuple[Mapping[str, str], ...] = ()
    window_start: dt.datetime | None = None
    window_end: dt.datetime | None = None
    values: Mapping[str, Any] = field(default_factory=dict)
    timezone: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "partition_keys", tuple(self.partition_keys))
        object.__setattr__(self, "partitions", tuple(_frozen(p) for p in self.partitions))
        object.__setattr__(self, "values", _frozen(self.values))

    def bindings(self) -> dict[str, Any]:
        """All values a predicate or SQL statement may bind, by name.

        Includes ``partition_key`` (first key), ``partition_keys``, ``partition_start`` and
        ``partition_end`` (window as datetimes), ``partition_start_date``/``partition_end_date``
        (window as dates), plus :attr:`values`.
        """
        out: dict[str, Any] = {}
        if self.partition_keys:
            out["partition_key"] = self.partition_keys[0]
            out["partition_keys"] = tuple(self.partition_keys)
        if self.window_start is not None and self.window_end is not None:
            out["partition_start"] = self.window_start
            out["partition_end"] = self.window_end
            out["partition_start_date"] = self.window_start.date()
            out["partition_end_date"] = self.window_end.date()
        out.update(self.values)
        return out


def partition_key_value(key: str, dtype: DataType, *, table: str, column: str, timezone: str | None = None) -> Any:
    """Convert a Dagster partition key string into a typed value of the column ``dtype``.

    Accepts daily keys (``2024-01-31``), hourly keys (``2024-01-31-05:00``), ISO datetimes,
    integers and strings, according to the column's actual type. A key without an offset is a
    wall-clock time in ``timezone`` (the partitions definition's, default UTC); a timestamp
    column without a time zone holds UTC instants.

    Raises:
        SpecError: naming the table, column and key when the key does not fit the type.
    """
    try:
        if isinstance(dtype, Date):
            return dt.date.fromisoformat(key[:10]) if len(key) == 10 else dt.datetime.strptime(key, "%Y-%m-%d-%H:%M").date()
        if isinstance(dtype, Datetime):
            if re.fullmatch(r"\d{4}-\d{2}-\d{2}-\d{2}:\d{2}", key):
                value = dt.datetime.strptime(key, "%Y-%m-%d-%H:%M")
            else:
                value = dt.datetime.fromisoformat(key)
            if value.tzinfo is not None:
                return value if dtype.tz is not None else value.astimezone(dt.UTC).replace(tzinfo=None)
            if timezone in (None, "UTC"):
                return value.replace(tzinfo=dt.UTC) if dtype.tz is not None else value
            local = value.replace(tzinfo=ZoneInfo(timezone))
            if dtype.tz is not None:
                return local.astimezone(dt.UTC if dtype.tz == "UTC" else ZoneInfo(dtype.tz))
            return local.astimezone(dt.UTC).replace(tzinfo=None)
        if integer_bits(dtype) is not None:
            return int(key)
        if isinstance(dtype, String) or str(dtype) in ("categorical",) or dtype.__class__.__name__ == "Enum":
            return key
    except ValueError as exc:
        raise SpecError(
            f"partition key {key!r} cannot be read as {dtype} for column {table}.{column}: {exc}"
        ) from exc
    raise SpecError(f"partition column {table}.{column} has type {dtype}, which cannot be a partition column")


@dataclass(frozen=True)
class WriteContext:
    """Who is writing: used for audit columns and idempotent retries.

    Attributes:
        run_id: Dagster run id.
        asset_key: Asset key as a ``/``-joined string.
        partition_keys: Partition keys of the run.
        attempt: Step attempt number (1 for the first try).
        timestamp: When the write started (UTC).
        root_run_id: The run that this one re-executes, if any (retries share it).
    """

    run_id: str
    asset_key: str
    partition_keys: tuple[str, ...] = ()
    attempt: int = 1
    timestamp: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    root_run_id: str | None = None

    def idempotency_token(self) -> str:
        """A stable token for this logical write: the same across retries and re-executions
        of one run step and partition set, different for anything else."""
        base = f"{self.root_run_id or self.run_id}|{self.asset_key}|{','.join(self.partition_keys)}"
        return hashlib.sha256(base.encode()).hexdigest()[:32]

    @property
    def partition_label(self) -> str | None:
        """The partition keys as one string for the audit column (a range as ``first...last``)."""
        if not self.partition_keys:
            return None
        if len(self.partition_keys) == 1:
            return self.partition_keys[0]
        return f"{self.partition_keys[0]}...{self.partition_keys[-1]}"


@dataclass(frozen=True)
class WriteResult:
    """What a write did, for materialization metadata.

    Attributes:
        table: Target table.
        uri: Where the table lives (Delta URI or ClickHouse ``database.table`` location,
            never with credentials).
        rows_written: Rows in the written frame.
        mode: Write mode used.
        streaming: Whether the streaming path was used.
        version: Table version after the write (Delta version; None if the backend has none).
        schema: Stored schema after the write.
        partitions: Partition values replaced, if any.
        skipped: True when an identical earlier write was found and nothing was written.
        noop: True when the write had nothing to do (no rows for a replace, say).
        table_rows: Rows in the whole table after the write, when the backend knows it cheaply.
        merge_metrics: Counts a merge reports (rows inserted, updated, deleted...).
        sql_engine: Where a pushed-down SQL body ran (``clickhouse``), if it ran inside the store.
    """

    table: TableRef
    uri: str
    rows_written: int
    mode: WriteMode
    streaming: bool
    version: int | None
    schema: Schema
    partitions: tuple[Mapping[str, Any], ...] = ()
    skipped: bool = False
    noop: bool = False
    table_rows: int | None = None
    merge_metrics: Mapping[str, int] = field(default_factory=dict)
    sql_engine: str | None = None


@dataclass(frozen=True)
class Observation:
    """What a store says about a table it holds, for observing tables written elsewhere.

    Attributes:
        version: A marker that changes whenever the table's data changes (the Delta version;
            ClickHouse's latest insert block and row count).
        rows: Rows in the table.
        schema: The stored schema.
        last_modified: When the data last changed (Unix seconds).
    """

    version: str
    rows: int
    schema: Schema
    last_modified: float
