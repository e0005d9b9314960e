"""The Delta Lake resource: discovery, reads and writes of Loom tables stored as Delta tables.

Implements :class:`~loom_resources.contracts.TableDiscovery`, ``SourceReader``,
``StreamingSourceReader`` and ``TargetWriter`` over ``deltalake`` (delta-rs) and ``polars``.
The resource holds the configuration and the contract methods; the package's modules do the
work: ``_location`` (where a table lives), ``_types`` (type mapping), ``_read`` (scans),
``_write`` (executing a :class:`~loom_resources.plan.WritePlan`), ``_batches`` and ``_commit``
(validated Arrow data, one commit with bounded retries), ``_files`` (Parquet encoded by Polars,
committed as add actions), ``_merge`` and ``_history`` (SCD2),
``_maintenance`` (compaction, vacuum guard, orphan sweep).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal
from urllib.parse import urlsplit

from dagster import ConfigurableResource, get_dagster_logger
from pydantic import Field

from loom_resources._lazy import lazy_import
from loom_resources.capabilities import Capabilities
from loom_resources.delta._faults import store_faults
from loom_resources.delta._types import schema_from_delta, storable, to_delta
from loom_resources.dtypes import ColumnSchema, Schema
from loom_resources.errors import SchemaMismatchError, TableNotFoundError
from loom_resources.model import (
    Observation,
    RunParams,
    SourceSpec,
    TableRef,
    TargetSpec,
    WriteContext,
    WriteMode,
    WriteResult,
)
from loom_resources.plan import to_frame
from loom_resources.run_records import RUN_RECORDS_REF

if TYPE_CHECKING:
    import polars as pl
    from deltalake import DeltaTable

    from loom_resources.delta._location import DeltaLocation
    from loom_resources.delta._write import DeltaWrite, Outcome
else:
    pl = lazy_import("polars")  # imported when data moves, not when the code location loads

# delta-rs modules are imported inside the methods: a code location builds this resource for expected
# schemas only; deltalake (~20-40 ms) loads with the first read or write, not at every location load.

__all__ = ["DeltaResource"]

_OBJECT_STORE_SCHEMES = ("s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "azure", "r2", "file", "memory")


class DeltaResource(ConfigurableResource):
    """Loom tables as Delta Lake tables under one root: ``schema.table`` lives at
    ``<root>/<schema>/<table>``. The root is a local directory or an object-store URI
    (``s3://``, ``gs://``, ``az://``) reached with ``storage_options``.

    Example::

        import dagster as dg
        from loom_resources.delta import DeltaResource

        defs = dg.Definitions(
            assets=[...],
            resources={
                "delta": DeltaResource(
                    root="s3://lake/loom",
                    storage_options={
                        "AWS_ACCESS_KEY_ID": dg.EnvVar("AWS_ACCESS_KEY_ID"),
                        "AWS_SECRET_ACCESS_KEY": dg.EnvVar("AWS_SECRET_ACCESS_KEY"),
                        "AWS_REGION": "eu-central-1",
                        "conditional_put": "etag",
                    },
                )
            },
        )
    """

    #: Every write mode, with delete_unmatched merges; SQL runs in Polars.
    capabilities: ClassVar[Capabilities] = Capabilities(write_modes=frozenset(WriteMode), delete_unmatched=True)

    root: str = Field(
        default="",
        description=(
            "Root of the Delta tables: a local directory (must exist) or an object-store URI. "
            "Empty: $LOOM_DELTA_ROOT, else $LOOM_HOME/delta (LOOM_HOME defaults to .loom), created on demand."
        ),
    )
    storage_options: dict[str, str] = Field(
        default_factory=dict,
        description="delta-rs storage options (credentials, endpoint, conditional_put...); use dagster.EnvVar for secrets.",
    )
    max_commit_retries: int = Field(
        default=8, description="How often a write is retried when a concurrent writer committed first."
    )
    checkpoint_interval: int = Field(
        default=10, ge=0,
        description=(
            "Commits between checkpoints of the tables Loom creates (table property delta.checkpointInterval; "
            "Delta on Spark uses 10, delta-rs alone 100). Opening a table reads every commit since its last "
            "checkpoint: ~29 ms at 98 small commits, ~4 ms after a checkpoint. 0: delta-rs' default."
        ),
    )
    parquet_writer: Literal["polars", "delta-rs"] = Field(
        default="polars",
        description=(
            "Who encodes the Parquet files of appends, overwrites and one-column partition replaces (local "
            "or S3 tables): 'polars' (on every core; the files are committed as add actions through "
            "deltalake's transaction API) or 'delta-rs' (its writer, one core). Other writes always use "
            "delta-rs' writer."
        ),
    )
    merge_max_change_set_mb: int = Field(
        default=512, ge=0,
        description=(
            "A merge or history write refuses (before writing anything) a change set larger than this many MiB in "
            "memory: the change set is held whole and the merge needs several times it at the peak (10M changes, "
            "~260 MiB, into 20M rows: 3.5 GB). 0: no limit."
        ),
    )
    audit_columns: bool = Field(
        default=False, description="Add the _loom_* audit columns to every table (OR-ed with each table's own setting)."
    )
    sweep_on_first_write: bool = Field(
        default=True, description="Sweep a table's orphaned files (older than orphan_min_age_hours) before this "
        "process first writes it.",
    )
    min_vacuum_retention_hours: int = Field(
        default=168, description="Vacuum refuses a shorter retention than this, so readers of old versions keep their files."
    )
    orphan_min_age_hours: float = Field(
        default=6.0,
        description=(
            "The orphan sweep removes an unreferenced file only when it is older than this, so it never touches "
            "a file a live write is still creating; keep it above your longest write."
        ),
    )

    # -- locations ---------------------------------------------------------------------------
    def resolved_root(self) -> str:
        """The root in effect, resolved from the environment at call time."""
        if self.root:
            return self.root.rstrip("/")
        env = os.environ.get("LOOM_DELTA_ROOT")
        if env:
            return env.rstrip("/")
        return str(Path(os.environ.get("LOOM_HOME", ".loom")) / "delta")

    def _is_remote(self) -> bool:
        root = self.resolved_root()
        return "://" in root and urlsplit(root).scheme.lower() in _OBJECT_STORE_SCHEMES and not root.startswith("file://")

    def table_uri(self, ref: TableRef | str) -> str:
        """Where table ``ref`` lives. An invalid name raises ``ValueError`` naming it."""
        ref = TableRef.parse(ref)
        root = self.resolved_root()
        if self._is_remote():
            return f"{root}/{ref.schema}/{ref.table}"
        return str(Path(root).absolute() / ref.schema / ref.table)

    def _location(self, ref: TableRef | str) -> DeltaLocation:
        from loom_resources.delta._location import DeltaLocation, display_uri

        uri = self.table_uri(ref)
        return DeltaLocation(uri, display_uri(uri), dict(self.storage_options), self.max_commit_retries,
                             self.checkpoint_interval, polars_files=self.parquet_writer == "polars",
                             merge_max_change_set_bytes=self.merge_max_change_set_mb * 2**20)

    def _open(self, ref: TableRef | str, version: int | None = None) -> DeltaTable | None:
        loc = self._location(ref)
        with store_faults(str(ref), loc.display_uri, "reading the Delta log"):
            table = loc.open()
            if table is not None and version is not None:
                table.load_as_version(version)
        return table

    def expected_schema(self, spec: TargetSpec) -> Schema:
        """The schema this backend reports for a table written from ``spec`` (its storable types).

        Raises:
            UnsupportedTypeError: naming the column when Delta cannot store its type.
        """
        return tuple(
            ColumnSchema(c.name, storable(c.dtype, column=f"{spec.ref}.{c.name}"), c.nullable)
            for c in spec.stored_columns()
        )

    # -- TableDiscovery ------------------------------------------------------------------------
    def exists(self, ref: TableRef) -> bool:
        """Whether a Delta table exists at the table's location."""
        return self._open(ref) is not None

    def columns(self, ref: TableRef) -> tuple[str, ...]:
        """Column names in stored order from the Delta log; ``()`` when the table is missing."""
        table = self._open(ref)
        return tuple(f.name for f in table.schema().fields) if table is not None else ()

    def schema(self, ref: TableRef) -> Schema | None:  # type: ignore[override]
        """The stored schema from the Delta log in Loom types; ``None`` when the table is missing."""
        table = self._open(ref)
        return schema_from_delta(table.schema()) if table is not None else None

    def update_schema(self, ref: TableRef, schema: Schema) -> None:
        """Add the columns of ``schema`` the table lacks (they must be nullable); fail on any
        change of an existing column's type, since Delta cannot apply it in place."""
        table = self._require(ref)
        stored = {c.name: c for c in schema_from_delta(table.schema())}
        problems, new = [], []
        for c in schema:
            s = stored.get(c.name)
            if s is None:
                if not c.nullable:
                    problems.append(f"cannot add column {c.name!r} declared not null to an existing table")
                from deltalake.schema import Field as DeltaField

                new.append(DeltaField(c.name, to_delta(c.dtype, column=c.name), nullable=True))
            elif storable(c.dtype, column=c.name) != s.dtype:
                problems.append(f"column {c.name!r} is stored as {s.dtype}, cannot change it to {c.dtype}")
        if problems:
            raise SchemaMismatchError(str(ref), problems)
        if new:
            table.alter.add_columns(new)

    def observe(self, ref: TableRef) -> Observation:
        """The table's version, row count, schema and last commit time (from the log and the
        files' statistics; no data is read)."""
        table = self._require(ref)
        history = table.history(1)
        modified = float(history[0].get("timestamp", 0)) / 1000 if history else 0.0
        rows = table.to_pyarrow_dataset().count_rows()
        return Observation(str(table.version()), int(rows), schema_from_delta(table.schema()), modified)

    def partition_counts(self, ref: TableRef, columns: Sequence[str]) -> pl.DataFrame | None:
        """Partition values and row count of each data file, from the log (see ``_stats``);
        ``None`` when ``columns`` are not all partition columns or statistics are missing."""
        from loom_resources.delta._stats import partition_counts

        table = self._open(ref)
        return partition_counts(table, columns) if table is not None else None

    def version(self, ref: TableRef) -> int | None:
        """The table's latest version; ``None`` when it is missing."""
        table = self._open(ref)
        return table.version() if table is not None else None

    # -- readers ---------------------------------------------------------------------------------
    def read(self, spec: SourceSpec, params: RunParams, /) -> pl.LazyFrame:
        """The table as a LazyFrame (``scan_delta``) at ``spec.version`` if given, with the
        projection and the bound predicate pushed down (partition predicates prune files).

        Raises:
            TableNotFoundError: the table does not exist.
        """
        from loom_resources.delta._read import scan

        table = self._open(spec.ref, spec.version)
        if table is None:
            raise TableNotFoundError(str(spec.ref), self._location(spec.ref).display_uri)
        with store_faults(str(spec.ref), self._location(spec.ref).display_uri, "reading"):
            return scan(table, spec, params)

    def read_streaming(self, spec: SourceSpec, params: RunParams, /) -> pl.LazyFrame:
        """Same as :meth:`read`: ``scan_delta`` is lazy, so collecting or sinking the result with
        the streaming engine reads the table file by file, never all of it at once."""
        return self.read(spec, params)

    # -- writer ----------------------------------------------------------------------------------
    def write(
        self,
        frame: pl.LazyFrame | pl.DataFrame,
        spec: TargetSpec,
        params: RunParams,
        /,
        *,
        streaming: bool = False,
        write_ctx: WriteContext | None = None,
    ) -> WriteResult:
        """Write ``frame`` to the table by ``spec.mode`` in one Delta commit.

        A LazyFrame with ``streaming=True`` (or ``spec.streaming=True``) is written in bounded
        memory; otherwise the frame is written eagerly. Merge and history collect the frame (refused
        with ``ChangeSetTooLargeError`` beyond ``merge_max_change_set_mb``, before anything is written).

        Raises:
            SchemaMismatchError / DataValidationError / PredicateError / UnsupportedTypeError:
                bad input; the table is left at its previous version.
            BackendUnavailableError: the root does not exist or is not writable; its subclasses
                DeltaStoreFullError / DeltaPermissionError / DeltaStoreUnreachableError (from
                ``loom_resources.delta._faults``) name the table, its location and what to do.
        """
        from loom_resources.delta._location import check_writable_root, refuse_case_variant_of_loom
        from loom_resources.delta._maintenance import sweep_once
        from loom_resources.delta._write import result

        if spec.backend.value != "delta":
            raise ValueError(f"table {spec.ref} is declared for backend {spec.backend.value!r}, not delta")
        self.capabilities.check(spec, "delta")
        refuse_case_variant_of_loom(spec.ref)
        frame = to_frame(frame)
        if not self._is_remote():
            check_writable_root(Path(self.resolved_root()), configured=bool(self.root))
        opened = sweep_once(self, spec.ref) if self.sweep_on_first_write else None  # the write's snapshot too
        loc = self._location(spec.ref)
        with store_faults(str(spec.ref), loc.display_uri, f"writing ({spec.mode.value})"):
            w, out = self._execute(frame, spec, params, write_ctx, loc, streaming, opened)
            res = result(w, out)
        _write_log(spec)(f"{spec.ref}: wrote {res.rows_written} rows, now at version {res.version}"
                         + (" (skipped: already committed)" if res.skipped else ""))
        return res

    def _execute(self, frame: pl.LazyFrame | pl.DataFrame, spec: TargetSpec, params: RunParams,
                 write_ctx: WriteContext | None, loc: DeltaLocation, streaming: bool,
                 opened: DeltaTable | None = None) -> tuple[DeltaWrite, Outcome]:
        from loom_resources.delta._history import write_history
        from loom_resources.delta._merge import merge_table
        from loom_resources.delta._write import prepare_write, write_table

        if spec.mode is WriteMode.HISTORY:
            w, out = write_history(frame, spec, loc, params, write_ctx, resource_audit=self.audit_columns)
        else:
            w = prepare_write(frame, spec, params, write_ctx, loc, requested_streaming=streaming,
                              resource_audit=self.audit_columns, opened=opened)
            parts = f", {len(params.partition_keys)} partitions" if params.partition_keys else ""
            _write_log(spec)(f"{spec.ref}: {spec.mode.value} write to {loc.display_uri} "
                             f"({'streaming' if w.plan.streaming else 'eager'}{parts})")
            out = merge_table(w) if spec.mode is WriteMode.MERGE else write_table(w)
        return w, out

    # -- maintenance -----------------------------------------------------------------------------
    def optimize(self, ref: TableRef | str, *, z_order: tuple[str, ...] | list[str] = (),
                 target_size: int | None = None) -> dict[str, Any]:
        """Compact small files (or Z-order by ``z_order`` columns) in one commit; returns delta-rs metrics."""
        from loom_resources.delta import _maintenance

        return _maintenance.optimize(self._require(ref), str(ref), z_order=z_order, target_size=target_size)

    def vacuum(self, ref: TableRef | str, *, retention_hours: int | None = None, dry_run: bool = False) -> list[str]:
        """Delete files no version within ``retention_hours`` (default the guard) still needs.

        Raises:
            ValueError: when ``retention_hours`` is below ``min_vacuum_retention_hours``.
        """
        from loom_resources.delta import _maintenance

        hours = _maintenance.retention_hours(str(ref), retention_hours, self.min_vacuum_retention_hours)
        return _maintenance.vacuum(self._require(ref), hours=hours, dry_run=dry_run)

    def sweep_orphan_files(self, ref: TableRef | str, *, min_age_hours: float | None = None,
                           dry_run: bool = False) -> list[str]:
        """Remove the table's data files that no retained log version references (left by killed
        or failed writes and lost commit races, multipart ``….parquet#N`` parts included) and that
        are older than ``min_age_hours`` (default ``orphan_min_age_hours``). Returns the removed
        paths (relative to the table), or with ``dry_run`` the ones it would remove.

        Runs in :meth:`maintain` (the maintenance job), and once per process for each table this
        resource writes, before its first write there (``sweep_on_first_write``): a resource's
        own leftovers are the files of the tables it writes. It never sweeps every table under the
        root at start-up: on an object-store lake that means listing every file of every table.

        Raises:
            ValueError: ``min_age_hours`` is negative.
        """
        hours = self.orphan_min_age_hours if min_age_hours is None else min_age_hours
        if hours < 0:
            raise ValueError(f"sweep of {ref}: min_age_hours must be >= 0, got {hours}")
        from loom_resources.delta import _maintenance

        if self._open(ref) is None:
            return []
        return _maintenance.sweep(self._location(ref), str(ref), hours=hours, dry_run=dry_run)

    def _require(self, ref: TableRef | str) -> DeltaTable:
        table = self._open(ref)
        if table is None:
            raise TableNotFoundError(str(ref), self._location(ref).display_uri)
        return table

    def maintain(self, ref: TableRef, spec: TargetSpec | None = None) -> str:
        """Routine maintenance of one table (compaction, vacuum within the retention guard, then
        the orphan sweep); returns a one-line summary for the maintenance job's log."""
        if not self.exists(ref):
            return f"skip {ref}: not materialized yet"
        compacted = self.optimize(ref)
        removed = self.vacuum(ref)
        orphans = self.sweep_orphan_files(ref)
        return (f"{ref}: optimize {compacted.get('numFilesRemoved', 0)} files compacted, vacuum removed "
                f"{len(removed)} files, sweep removed {len(orphans)} orphaned files")


def _write_log(spec: TargetSpec) -> Callable[[str], None]:
    """Where a write's start and end lines go: the run's log, except for the audit row appended
    to ``loom.run_records`` after every write (not news in the run's log)."""
    return get_dagster_logger().info if spec.ref != RUN_RECORDS_REF else (lambda _msg: None)
