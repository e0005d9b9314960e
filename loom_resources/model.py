"""The Loom table model: table references, source and target specs, run parameters,
write context and write results.

Imports neither Dagster nor any backend library. Specs are immutable and validated when
they are declared, so an inconsistent declaration fails at code-location load.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal
from zoneinfo import ZoneInfo

from loom_resources.dtypes import (
    Boolean,
    ColumnSchema,
    DataType,
    Date,
    Datetime,
    Schema,
    String,
    integer_bits,
)
from loom_resources.errors import SpecError
from loom_resources.predicates import Predicate, check_columns

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _frozen(m: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(m or {}))


class Backend(enum.StrEnum):
    """Where a table is stored."""

    DELTA = "delta"
    CLICKHOUSE = "clickhouse"


class WriteMode(enum.StrEnum):
    """How a write changes the target table."""

    APPEND = "append"
    OVERWRITE = "overwrite"
    REPLACE_PARTITIONS = "replace_partitions"
    REPLACE_WHERE = "replace_where"
    MERGE = "merge"
    HISTORY = "history"


class SchemaMode(enum.StrEnum):
    """What a write may do to the table's schema."""

    STRICT = "strict"
    EVOLVE = "evolve"
    OVERWRITE = "overwrite"


@dataclass(frozen=True, order=True)
class TableRef:
    """A validated ``schema.table`` name.

    Both parts must be identifiers (letters, digits, underscore; not starting with a digit).
    """

    schema: str
    table: str

    def __post_init__(self) -> None:
        for part, label in ((self.schema, "schema"), (self.table, "table")):
            if not isinstance(part, str) or not _IDENT.match(part):
                raise ValueError(
                    f"invalid {label} name {part!r} in table reference "
                    f"{self.schema!r}.{self.table!r}: use letters, digits and underscores, not starting with a digit"
                )

    @classmethod
    def parse(cls, name: str | TableRef) -> TableRef:
        """Parse ``"schema.table"``; an invalid name raises ``ValueError`` naming it."""
        if isinstance(name, TableRef):
            return name
        parts = name.split(".") if isinstance(name, str) else []
        if len(parts) != 2:
            raise ValueError(f"invalid table reference {name!r}: expected 'schema.table'")
        return cls(parts[0], parts[1])

    @property
    def name(self) -> str:
        """``schema.table``."""
        return f"{self.schema}.{self.table}"

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class SourceSpec:
    """What to read from one table: optional column projection and predicate."""

    ref: TableRef
    columns: tuple[str, ...] | None = None
    predicate: Predicate | None = None
    version: int | None = None  # time travel (Delta only)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ref", TableRef.parse(self.ref))
        if self.columns is not None:
            object.__setattr__(self, "columns", tuple(self.columns))


HistoryInput = Literal["snapshot", "changelog"]
DeletePolicy = Literal["close", "ignore", "soft_delete"]


@dataclass(frozen=True)
class HistoryOptions:
    """Options of the ``history`` (SCD2) write mode.

    Attributes:
        tracked_columns: Columns whose change opens a new version (default: all non-key columns).
        valid_from / valid_to: Names of the validity columns the writer maintains.
        current_column: Name of the boolean column marking the open version.
        deleted_column: Name of the soft-delete flag (``soft_delete`` policy only).
        input: ``snapshot`` (the frame is the full current state) or ``changelog``
            (the frame holds only changed keys, with an ``op_column`` of ``upsert``/``delete``).
        delete_policy: What happens to keys missing from a snapshot (or deleted in a change
            log): ``close`` the open version, ``ignore`` them, or ``soft_delete``.
        effective_param: Run parameter holding the effective date of the change.
    """

    tracked_columns: tuple[str, ...] = ()
    valid_from: str = "valid_from"
    valid_to: str = "valid_to"
    current_column: str = "is_current"
    deleted_column: str = "is_deleted"
    input: HistoryInput = "snapshot"
    op_column: str = "op"
    delete_policy: DeletePolicy = "close"
    effective_param: str = "effective_date"


@dataclass(frozen=True)
class ClickHouseTableOptions:
    """How a ClickHouse table is created (ignored by other backends).

    Attributes:
        engine: Table engine, e.g. ``MergeTree`` or ``ReplacingMergeTree(version)``.
        order_by: ``ORDER BY`` columns; default the merge keys, else ``tuple()``.
        partition_by: ``PARTITION BY`` expression; default the declared partition columns.
        ttl: Optional ``TTL`` expression.
    """

    engine: str = "MergeTree"
    order_by: tuple[str, ...] = ()
    partition_by: str | None = None
    ttl: str | None = None


AUDIT_COLUMNS: Schema = (
    ColumnSchema("_loom_run_id", String(), nullable=True),
    ColumnSchema("_loom_asset_key", String(), nullable=True),
    ColumnSchema("_loom_partition_key", String(), nullable=True),
    ColumnSchema("_loom_written_at", Datetime("us", "UTC"), nullable=True),
)


@dataclass(frozen=True)
class TargetSpec:
    """Where and how one table is written. Validated when declared.

    Attributes:
        ref: Target table.
        backend: ``delta`` or ``clickhouse``.
        columns: Declared columns in order (the contract of the table).
        mode: Write mode.
        schema_mode: ``strict`` (frame must match), ``evolve`` (add new nullable columns),
            ``overwrite`` (replace the stored schema; with the overwrite mode).
        merge_keys: Key columns of ``merge`` and ``history``.
        partition_by: Partition columns.
        replace_predicate: Predicate of ``replace_where`` (may use run parameters).
        delete_unmatched: ``merge`` only: delete target rows of the written partitions that
            the frame does not hold.
        history: Options of ``history``.
        audit_columns: Add ``_loom_*`` audit columns (run id, asset key, partition, written-at).
        streaming: Force the streaming (True) or eager (False) write path; None = by frame type.
        clickhouse: ClickHouse table options.
    """

    ref: TableRef
    backend: Backend
    columns: Schema
    mode: WriteMode = WriteMode.APPEND
    schema_mode: SchemaMode = SchemaMode.STRICT
    merge_keys: tuple[str, ...] = ()
    partition_by: tuple[str, ...] = ()
    replace_predicate: Predicate | None = None
    delete_unmatched: bool = False
    history: HistoryOptions | None = None
    audit_columns: bool = False
    streaming: bool | None = None
    clickhouse: ClickHouseTableOptions = field(default_factory=ClickHouseTableOptions)

    def __post_init__(self) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731
        set_("ref", TableRef.parse(self.ref))
        set_("backend", Backend(self.backend))
        set_("mode", WriteMode(self.mode))
        set_("schema_mode", SchemaMode(self.schema_mode))
        set_("columns", tuple(self.columns))
        set_("merge_keys", tuple(self.merge_keys))
        set_("partition_by", tuple(self.partition_by))
        if self.mode is WriteMode.HISTORY and self.history is None:
            set_("history", HistoryOptions())
        self._validate()

    def _fail(self, msg: str) -> None:
        raise SpecError(f"table {self.ref}: {msg}")

    def _validate(self) -> None:
        if not self.columns:
            self._fail("declares no columns")
        names = [c.name for c in self.columns]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            self._fail(f"declares column(s) {dupes} more than once")
        for c in self.columns:
            if not isinstance(c, ColumnSchema):
                self._fail(f"column {c!r} is not a ColumnSchema")
        known = set(names)
        for p in self.partition_by:
            if p not in known:
                self._fail(f"partition column {p!r} is not in the declared columns {names}")
        for k in self.merge_keys:
            if k not in known:
                self._fail(f"merge key {k!r} is not in the declared columns {names}")
        if self.mode in (WriteMode.MERGE, WriteMode.HISTORY) and not self.merge_keys:
            self._fail(f"write mode {self.mode.value!r} needs merge_keys")
        if self.mode is WriteMode.REPLACE_PARTITIONS and not self.partition_by:
            self._fail("write mode 'replace_partitions' needs partition_by")
        if self.mode is WriteMode.REPLACE_WHERE:
            if self.replace_predicate is None:
                self._fail("write mode 'replace_where' needs replace_predicate")
        if self.replace_predicate is not None:
            check_columns(self.replace_predicate, known, table=str(self.ref))
        if self.delete_unmatched and self.mode is not WriteMode.MERGE:
            self._fail("delete_unmatched only applies to write mode 'merge'")
        if self.schema_mode is SchemaMode.OVERWRITE and self.mode is not WriteMode.OVERWRITE:
            self._fail("schema_mode 'overwrite' only applies to write mode 'overwrite'")
        if self.history is not None:
            h = self.history
            if self.mode is not WriteMode.HISTORY:
                self._fail("history options only apply to write mode 'history'")
            for t in h.tracked_columns:
                if t not in known:
                    self._fail(f"tracked column {t!r} is not in the declared columns {names}")
            for n in (h.valid_from, h.valid_to, h.current_column, h.deleted_column):
                if n in known:
                    self._fail(f"history column {n!r} is maintained by the writer; do not declare it")
        for k in self.merge_keys + self.partition_by:
            col_ = next(c for c in self.columns if c.name == k)
            if col_.nullable and k in self.merge_keys:
                # keys must identify rows; declaring them nullable is an error, not a guess
                self._fail(f"merge key {k!r} must be declared nullable=False")

    @property
    def column_names(self) -> tuple[str, ...]:
        """Declared column names in order."""
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> ColumnSchema:
        """Return the declared or writer-maintained column ``name``."""
        for c in self.stored_columns():
            if c.name == name:
                return c
        raise KeyError(f"table {self.ref} has no column {name!r}")

    def history_columns(self) -> Schema:
        """Columns the ``history`` writer maintains (empty for other modes)."""
        if self.history is None:
            return ()
        h = self.history
        cols = [
            ColumnSchema(h.valid_from, Datetime("us"), nullable=False),
            ColumnSchema(h.valid_to, Datetime("us"), nullable=True),
            ColumnSchema(h.current_column, Boolean(), nullable=False),
        ]
        if h.delete_policy == "soft_delete":
            cols.append(ColumnSchema(h.deleted_column, Boolean(), nullable=False))
        return tuple(cols)

    def stored_columns(self) -> Schema:
        """The full stored schema: declared columns, then history and audit columns."""
        return self.columns + self.history_columns() + (AUDIT_COLUMNS if self.audit_columns else ())

    @property
    def tracked_columns(self) -> tuple[str, ...]:
        """History: columns whose change opens a new version."""
        if self.history and self.history.tracked_columns:
            return self.history.tracked_columns
        return tuple(n for n in self.column_names if n not in self.merge_keys)


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
