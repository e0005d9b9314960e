"""The ClickHouse resource: discovery, reads, streaming reads, SQL pushdown and writes over
clickhouse-connect, against the embedded engine (``chdb://``) or a server (``http(s)://``).

The resource holds the contract methods; the package's modules do the work: ``_client``
(connection, credentials, the embedded engine's lock), ``_types`` (type mapping), ``_sql``
(rendering), ``_discovery``, ``_read`` (eager and spooled reads), ``_pushdown`` (SQL that runs
inside ClickHouse), ``_stage`` and ``_write`` (executing a :class:`~loom_resources.plan.WritePlan`),
``_version`` (the table version: a write counter).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from dagster import get_dagster_logger

from loom_resources._lazy import lazy_import
from loom_resources.capabilities import Capabilities
from loom_resources.clickhouse._client import ClickHouseConnection
from loom_resources.clickhouse._discovery import ch_columns, stored_schema, table_engine
from loom_resources.clickhouse._ledger import LEDGER_SCHEMA, Entry, ledger_exists, open_entries
from loom_resources.clickhouse._publish import abandon, recover
from loom_resources.clickhouse._pushdown import ClickHouseQuery, ClickHouseRelation, execute_sql, runs_inside
from loom_resources.clickhouse._read import read_sql, source_sql
from loom_resources.clickhouse._sql import lit, qi, qt
from loom_resources.clickhouse._sweep import sweep_staging
from loom_resources.clickhouse._types import storable, to_clickhouse
from loom_resources.clickhouse._version import bump_version, table_version
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

if TYPE_CHECKING:
    import polars as pl
else:
    pl = lazy_import("polars")  # imported when data moves, not when the code location loads

__all__ = ["ClickHouseQuery", "ClickHouseRelation", "ClickHouseResource"]


class ClickHouseResource(ClickHouseConnection):
    """Loom tables in ClickHouse: implements TableDiscovery, SourceReader,
    StreamingSourceReader, SQLExecutor and TargetWriter.

    Example::

        from dagster import Definitions, EnvVar
        defs = Definitions(
            assets=[...],
            resources={"clickhouse": ClickHouseResource(url="http://loom@ch.internal:8123/default",
                                                        password_env="CLICKHOUSE_PASSWORD")},
        )
    """

    #: Append, overwrite, replace_partitions and merge (ReplacingMergeTree); SQL runs inside ClickHouse.
    capabilities: ClassVar[Capabilities] = Capabilities(
        write_modes=frozenset({WriteMode.APPEND, WriteMode.OVERWRITE, WriteMode.REPLACE_PARTITIONS, WriteMode.MERGE}),
        sql_dialect="clickhouse",
        reserved_schemas=frozenset({"system", "INFORMATION_SCHEMA", "information_schema", LEDGER_SCHEMA}),
    )

    # -- recovery ---------------------------------------------------------------------------

    def recover(self) -> list[str]:
        """Complete the publications that killed writes left half done, once per connection;
        returns what was completed. Runs before this resource first reads or writes.

        A publication that cannot be completed (e.g. its table was dropped outside Loom) is
        logged as a warning naming the write, its table and :meth:`abandon_publication`, and
        blocks nothing else."""
        if self._recovered:
            return []
        done, blocked = recover(self, self.stale_after_s)
        for e in done:
            self._completed[(e.target, e.token)] = e.rows
        swept = sweep_staging(self, self.stale_after_s)
        self._recovered = True
        log = get_dagster_logger()
        lines = [f"completed the interrupted write {e.token} of {e.target} ({e.rows} rows)" for e in done]
        for line in lines + [f"dropped stale staging table {t}" for t in swept]:
            log.info(f"ClickHouse at {self.store()}: {line}")
        for warning in blocked:
            log.warning(f"ClickHouse at {self.store()}: {warning}")
        return lines + swept

    def sweep(self, min_age_s: float | None = None) -> list[str]:
        """Drop staging tables of dead writes older than ``min_age_s`` (default
        ``stale_after_s``); returns the dropped tables."""
        recover(self, self.stale_after_s)
        return sweep_staging(self, self.stale_after_s if min_age_s is None else min_age_s)

    def pending_publications(self) -> list[Entry]:
        """Writes that were staged but whose publication is not recorded (interrupted, failing,
        or in progress elsewhere): table, write token, staging table, rows, owner ``host:pid``."""
        if not ledger_exists(self):  # a ledger of an earlier version gains its newer columns first
            return []
        return open_entries(self)

    def abandon_publication(self, table: TableRef | str, token: str) -> str:
        """Maintenance: give up the unfinished write ``token`` of ``table`` (as named by
        :meth:`pending_publications` or by the error of a write that cannot be published): its
        staged rows are dropped and the ledger records it ``abandoned``, so no retry or recovery
        tries it again. The table itself is not touched. Returns a one-line summary."""
        return abandon(self, TableRef.parse(str(table)), token)

    # -- discovery -------------------------------------------------------------------------

    def ch_columns(self, ref: TableRef) -> list[tuple[str, str]]:
        """``(name, clickhouse type)`` of the table's columns in order; empty when it is missing."""
        return ch_columns(self, ref)

    def table_engine(self, ref: TableRef) -> str | None:
        """The table's ``engine_full`` text, or ``None`` when the table is missing."""
        return table_engine(self, ref)

    def expected_schema(self, spec: TargetSpec) -> Schema:
        """The schema this backend reports for a table written from ``spec`` (its storable types).

        Raises:
            UnsupportedTypeError: naming the column when ClickHouse cannot store its type.
        """
        return tuple(ColumnSchema(c.name, storable(c.dtype), c.nullable) for c in spec.stored_columns())

    def observe(self, ref: TableRef) -> Observation:
        """The table's change marker (latest insert block and row count of its active parts),
        row count, schema and last part modification; engines without parts report their count."""
        schema = self.schema(ref)
        if schema is None:
            raise TableNotFoundError(str(ref), f"ClickHouse at {self.store()}")
        rows, block, modified = self.query_rows(
            f"SELECT sum(rows), max(max_block_number), toUnixTimestamp(max(modification_time)) FROM system.parts "
            f"WHERE database = {lit(ref.schema)} AND table = {lit(ref.table)} AND active",
            what=f"observe {ref}",
        )[0]
        if not block and not rows:
            rows = self.query_rows(f"SELECT count() FROM {qt(ref)}", what=f"count {ref}")[0][0]
        return Observation(f"{int(block or 0)}.{int(rows or 0)}", int(rows or 0), schema, float(modified or 0))

    def exists(self, ref: TableRef) -> bool:
        """Whether the table exists."""
        return self.table_engine(ref) is not None

    def columns(self, ref: TableRef) -> tuple[str, ...]:
        """The table's column names in stored order; ``()`` when the table is unknown."""
        return tuple(n for n, _ in self.ch_columns(ref))

    def schema(self, ref: TableRef) -> Schema | None:  # type: ignore[override]
        """The table's stored schema in the Loom table model; ``None`` when it is missing."""
        return stored_schema(self, ref)

    def update_schema(self, ref: TableRef, schema: Schema) -> None:
        """Add missing nullable columns of ``schema``; fail on a type change or a missing
        not-null column (ClickHouse would rewrite the table to apply either)."""
        stored = self.schema(ref)
        if stored is None:
            raise TableNotFoundError(str(ref), f"ClickHouse at {self.store()}")
        have = {c.name: c for c in stored}
        problems, adds = [], []
        for c in schema:
            s = have.get(c.name)
            if s is None:
                if c.nullable:
                    adds.append(c)
                else:
                    problems.append(f"column {c.name!r} is missing and not nullable; it cannot be added")
            elif storable(c.dtype) != s.dtype:
                problems.append(f"column {c.name!r} is stored as {s.dtype}, cannot change it to {c.dtype}")
        if problems:
            raise SchemaMismatchError(str(ref), problems)
        for c in adds:
            self.command(
                f"ALTER TABLE {qt(ref)} ADD COLUMN IF NOT EXISTS {qi(c.name)} {to_clickhouse(c)}",
                what=f"add column {c.name!r} to {ref}",
            )

    # -- reading ---------------------------------------------------------------------------

    def relation(self, spec: SourceSpec | TableRef | str, params: RunParams | None = None) -> ClickHouseRelation:
        """A marker for a source in this store, to pass to :meth:`execute_sql` for pushdown."""
        if not isinstance(spec, SourceSpec):
            spec = SourceSpec(TableRef.parse(spec))
        sql, _ = source_sql(self, spec, params or RunParams())
        return ClickHouseRelation(spec.ref, self.store(), sql)

    def read(self, spec: SourceSpec, params: RunParams, /) -> pl.LazyFrame:
        """The source's projection and predicate, queried in ClickHouse (collapsing engines read
        with FINAL). The rows are fetched now, as Arrow; use :meth:`read_streaming` for large sources."""
        self.recover()
        sql, schema = source_sql(self, spec, params)
        return read_sql(self, sql, schema, streaming=False)

    def read_streaming(self, spec: SourceSpec, params: RunParams, /) -> pl.LazyFrame:
        """The source spooled batch by batch to compressed Arrow IPC files and scanned lazily.

        Peak memory is about one batch. The spool files are deleted when the step ends
        (:meth:`close`), on success and on failure. An empty result gives an empty frame with
        the table's schema.
        """
        self.recover()
        sql, schema = source_sql(self, spec, params)
        return read_sql(self, sql, schema, streaming=True)

    # -- SQL -------------------------------------------------------------------------------

    def sql_engine(self, frames: Mapping[str, Any]) -> str:
        """Where :meth:`execute_sql` runs a query over these frames: ``clickhouse`` when every
        source is a :class:`ClickHouseRelation` of this store, otherwise ``polars``."""
        return "clickhouse" if runs_inside(frames, self.store()) else "polars"

    def execute_sql(self, frames: Mapping[str, Any], query: str, /) -> ClickHouseQuery | pl.LazyFrame:
        """Run ``query`` over named sources.

        When every source is a :class:`ClickHouseRelation` of this store, returns a lazy
        :class:`ClickHouseQuery` (nothing is pulled into Python). Otherwise relations are read
        through the spool and the query runs in the Polars SQL executor.
        """
        return execute_sql(self, frames, query)

    # -- writing ---------------------------------------------------------------------------

    def write(
        self,
        frame: Any,
        spec: TargetSpec,
        params: RunParams,
        /,
        *,
        streaming: bool = False,
        write_ctx: WriteContext | None = None,
    ) -> WriteResult:
        """Write ``frame`` (LazyFrame, DataFrame or :class:`ClickHouseQuery`) to the target.

        Modes: ``append`` (staged, then moved in exactly once), ``overwrite`` (staging
        table, then EXCHANGE TABLES), ``replace_partitions`` (staging table, then REPLACE
        PARTITION per partition), ``merge`` (ReplacingMergeTree on the merge keys, read with
        FINAL). Bad input raises before the target changes.
        """
        from loom_resources.clickhouse._write import write_frame

        if spec.backend.value != "clickhouse":
            raise ValueError(f"table {spec.ref} is declared for backend {spec.backend.value!r}, not clickhouse")
        self.capabilities.check(spec, "clickhouse")
        self.recover()
        result = write_frame(self, frame, spec, params, streaming=streaming, write_ctx=write_ctx,
                             resource_audit=self.audit_columns, batch_rows=self.insert_batch_rows)
        # the table version is a write counter kept by the resource (see ``_version``)
        unchanged = result.noop or result.skipped
        return dataclasses.replace(result, version=table_version(self, spec.ref) if unchanged else bump_version(self, spec.ref))

    def table_version(self, ref: TableRef) -> int | None:
        """How many writes Loom published to ``ref`` (its ``loom/table_version``); ``None`` when
        Loom never wrote it. Changes made outside Loom do not count."""
        return table_version(self, ref)

    # -- maintenance -----------------------------------------------------------------------

    def optimize_final(self, ref: TableRef) -> None:
        """Merge all parts of ``ref`` (collapses replaced rows of merge tables); for maintenance jobs."""
        self.command(f"OPTIMIZE TABLE {qt(ref)} FINAL", what=f"optimize {ref}")

    def maintain(self, ref: TableRef, spec: TargetSpec | None = None) -> str:
        """Routine maintenance of one table: ``OPTIMIZE ... FINAL`` for merge tables (collapses
        replaced rows); returns a one-line summary for the maintenance job's log."""
        swept = self.sweep()
        if spec is None or spec.mode is not WriteMode.MERGE:
            return f"{ref}: nothing to optimize; swept {len(swept)} stale staging table(s)"
        if not self.exists(ref):
            return f"skip {ref}: not materialized yet"
        self.optimize_final(ref)
        return f"OPTIMIZE TABLE {ref} FINAL done; swept {len(swept)} stale staging table(s)"
