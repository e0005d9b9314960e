"""The Loom table model: table references, source and target specs, run parameters,
write context and write results.

Imports neither Dagster nor any backend library. Specs are immutable and validated when
they are declared, so an inconsistent declaration fails at code-location load.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from loom_resources.dtypes import (
    Boolean,
    ColumnSchema,
    Datetime,
    Schema,
    String,
)
from loom_resources.errors import SpecError
from loom_resources.predicates import Predicate, check_columns

# matched with fullmatch: "$" alone would accept a trailing newline ("loom\n.run_records")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


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
            if not isinstance(part, str) or not _IDENT.fullmatch(part):
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
        cluster: A cluster name: the DDL of every write, publication, recovery and sweep of this
            table (its staging tables, the table itself, ``EXCHANGE``/``RENAME``, the
            Distributed table, and, unless the table is Replicated, its partition operations)
            runs ``ON CLUSTER`` it; the ledger records it, so another process's recovery does too.
        replicated: Create the table with the ``Replicated`` variant of ``engine``
            (``ReplicatedMergeTree``, ``ReplicatedReplacingMergeTree(...)``...) at ``keeper_path``.
        keeper_path / replica: The Replicated engine's Keeper path and replica name (ClickHouse
            macros; the default path uses ``{uuid}``, which survives the renames of a publication).
        distributed: Name of a ``Distributed`` table (same database) over the table on ``cluster``,
            created with it; read it to see every shard. ``sharding_key`` routes its inserts.
        insert_quorum: ``insert_quorum`` of every insert of a write (replicas that must confirm).

    See docs/clickhouse-server.md ("Clusters") for what was, and was not, run here.
    """

    engine: str = "MergeTree"
    order_by: tuple[str, ...] = ()
    partition_by: str | None = None
    ttl: str | None = None
    cluster: str | None = None
    replicated: bool = False
    keeper_path: str = "/clickhouse/tables/{uuid}/{shard}"
    replica: str = "{replica}"
    distributed: str | None = None
    sharding_key: str = "rand()"
    insert_quorum: int | None = None


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


# The run-time half of the model lives in ``runtime``; these names stay importable from here.
from loom_resources.runtime import (  # noqa: E402 - after the classes runtime imports from this module
    Observation,
    RunParams,
    WriteContext,
    WriteResult,
    partition_key_value,
)

__all__ = [
    "AUDIT_COLUMNS", "Backend", "ClickHouseTableOptions", "HistoryOptions", "Observation", "RunParams", "SchemaMode",
    "SourceSpec", "TableRef", "TargetSpec", "WriteContext", "WriteMode", "WriteResult", "partition_key_value",
]
