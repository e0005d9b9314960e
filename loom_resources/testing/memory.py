"""In-memory implementations of the Loom contracts, for unit tests of transforms.

:class:`InMemoryTables` keeps each table as a Polars DataFrame and honours the write modes
with the same schema checks as the real backends (via :mod:`loom_resources.conform`), so a
transform tested against it behaves the same against Delta or ClickHouse. It passes the
contract kit (:mod:`loom_resources.testing.kit`) like every real backend: the same error
classes for the same faults, and a failed write leaves the table exactly as it was.

Example::

    tables = InMemoryTables()
    tables.put(TableRef.parse("raw.orders"), pl.DataFrame({"id": [1, 2]}))
    lf = tables.read(SourceSpec(TableRef.parse("raw.orders")), RunParams())
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import polars as pl

from loom_resources.capabilities import Capabilities
from loom_resources.conform import (
    Conformed,
    check_partition_markers,
    conform,
    frame_partitions,
    partition_filter,
    with_audit_columns,
)
from loom_resources.dtypes import Schema
from loom_resources.errors import SchemaMismatchError, TableNotFoundError
from loom_resources.model import (
    RunParams,
    SchemaMode,
    SourceSpec,
    TableRef,
    TargetSpec,
    WriteContext,
    WriteMode,
    WriteResult,
)
from loom_resources.plan import WritePlan, plan_write
from loom_resources.polars_types import polars_schema, schema_from_polars, to_expr
from loom_resources.reading import apply_source
from loom_resources.sql import PolarsSQLExecutor

__all__ = ["InMemoryTables", "PolarsSQLExecutor"]


class InMemoryTables:
    """A dictionary of tables implementing TableDiscovery, SourceReader,
    StreamingSourceReader, SQLExecutor and TargetWriter.

    Attributes:
        capabilities: Every write mode but ``history`` (SCD2 is not simulated).
    """

    capabilities = Capabilities(write_modes=frozenset(WriteMode) - {WriteMode.HISTORY}, delete_unmatched=False)

    def __init__(self) -> None:
        self._tables: dict[TableRef, pl.DataFrame] = {}
        self._schemas: dict[TableRef, Schema] = {}
        self._versions: dict[TableRef, int] = {}
        self._sql = PolarsSQLExecutor()

    # -- helpers for tests -------------------------------------------------------------
    def put(self, ref: TableRef, df: pl.DataFrame, schema: Schema | None = None) -> None:
        """Store ``df`` as table ``ref`` (replacing it)."""
        self._tables[ref] = df
        self._schemas[ref] = tuple(schema) if schema is not None else schema_from_polars(df.schema)
        self._versions[ref] = self._versions.get(ref, -1) + 1

    def get(self, ref: TableRef) -> pl.DataFrame:
        """Return the stored table.

        Raises:
            TableNotFoundError: naming the table when it is missing.
        """
        if ref not in self._tables:
            raise TableNotFoundError(str(ref), "memory://")
        return self._tables[ref]

    def expected_schema(self, spec: TargetSpec) -> Schema:
        """The schema a table written from ``spec`` has here: its declared types."""
        return spec.stored_columns()

    # -- TableDiscovery ----------------------------------------------------------------
    def exists(self, ref: TableRef) -> bool:
        """Whether the table is stored."""
        return ref in self._tables

    def columns(self, ref: TableRef) -> tuple[str, ...]:
        """Column names, or ``()`` when missing."""
        return tuple(c.name for c in self._schemas.get(ref, ()))

    def schema(self, ref: TableRef) -> Schema | None:
        """Stored schema, or ``None`` when missing."""
        return self._schemas.get(ref)

    def update_schema(self, ref: TableRef, schema: Schema) -> None:
        """Add the columns of ``schema`` the table lacks (as nulls in the stored rows), like the
        real backends.

        Raises:
            TableNotFoundError: the table does not exist.
            SchemaMismatchError: a column would change type, or a new column is not nullable.
        """
        df = self.get(ref)
        stored = {c.name: c for c in self._schemas[ref]}
        problems = [f"column {c.name!r} is stored as {stored[c.name].dtype}, cannot change it to {c.dtype}"
                    for c in schema if c.name in stored and stored[c.name].dtype != c.dtype]
        problems += [f"cannot add column {c.name!r} declared not null to an existing table"
                     for c in schema if c.name not in stored and not c.nullable]
        if problems:
            raise SchemaMismatchError(str(ref), problems)
        new = tuple(c for c in schema if c.name not in stored)
        if new:
            df = df.with_columns(pl.lit(None, dtype).alias(name) for name, dtype in polars_schema(new).items())
            self.put(ref, df, self._schemas[ref] + new)

    # -- readers -------------------------------------------------------------------------
    def read(self, spec: SourceSpec, params: RunParams, /) -> pl.LazyFrame:
        """Return the table as a LazyFrame with projection and bound predicate applied.

        Raises:
            TableNotFoundError: the table does not exist.
            PredicateError: the predicate names an unknown column or an unbound parameter.
            SchemaMismatchError: the projection names an unknown column.
        """
        return apply_source(self.get(spec.ref).lazy(), spec, params, self.columns(spec.ref))

    def read_streaming(self, spec: SourceSpec, params: RunParams, /) -> pl.LazyFrame:
        """Same as :meth:`read`; in-memory tables are already in memory."""
        return self.read(spec, params)

    def execute_sql(self, frames: Mapping[str, Any], query: str, /) -> pl.LazyFrame:
        """Run SQL with Polars."""
        return self._sql.execute_sql(frames, query)

    # -- writer --------------------------------------------------------------------------
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
        """Apply ``spec.mode`` to the stored DataFrame. Every check runs before the table
        changes, so a failed write leaves it exactly as it was.

        Raises:
            SpecError: the mode is not simulated (``history``).
            SchemaMismatchError / DataValidationError / PredicateError: bad input.
        """
        self.capabilities.check(spec, "in-memory")
        stored = self.schema(spec.ref)
        types = {col.name: col.dtype for col in (stored or spec.stored_columns())}
        plan = plan_write(frame, spec, params, write_ctx, requested_streaming=streaming, resource_audit=False,
                          column_types=types)
        spec = plan.spec
        # as the Delta writer: '' and the null partition's marker would read back as null there
        plan = plan.with_checks(lambda df: check_partition_markers(df, spec))
        c = conform(frame, spec, stored)
        df = c.frame.collect() if isinstance(c.frame, pl.LazyFrame) else c.frame
        plan.validate(df)
        df = with_audit_columns(df, spec, write_ctx)  # type: ignore[assignment]
        cols = _written_columns(spec, c)
        old = self._tables.get(spec.ref, pl.DataFrame(schema=polars_schema(cols)))
        new = _apply_plan(old, df, plan)
        self.put(spec.ref, new, _schema_after(spec, stored, cols, c))
        return WriteResult(
            table=spec.ref, uri=f"memory://{spec.ref}", rows_written=df.height, mode=spec.mode,
            streaming=plan.streaming, version=self._versions[spec.ref], schema=self._schemas[spec.ref],
        )


def _written_columns(spec: TargetSpec, c: Conformed) -> Schema:
    """The columns of the written frame: conformed columns, then audit columns if any."""
    return c.columns + (spec.stored_columns()[len(spec.columns):] if spec.audit_columns else ())


def _schema_after(spec: TargetSpec, stored: Schema | None, cols: Schema, c: Conformed) -> Schema:
    """The stored schema after the write: the written columns for a new table or a schema
    overwrite, else the stored schema plus the columns the write adds."""
    if stored is None or spec.schema_mode is SchemaMode.OVERWRITE:
        return tuple(cols)
    have = {s.name for s in stored}
    return tuple(stored) + tuple(col for col in c.new_columns if col.name not in have)


def _apply_plan(old: pl.DataFrame, df: pl.DataFrame, plan: WritePlan) -> pl.DataFrame:
    """The table after writing the validated ``df`` by the plan."""
    spec = plan.spec
    if spec.mode is WriteMode.OVERWRITE:
        return df
    if spec.mode is WriteMode.REPLACE_PARTITIONS:
        values = plan.run_partitions or frame_partitions(df, spec)
        return _concat(old.filter(~partition_filter(values)) if values else old, df)
    if spec.mode is WriteMode.REPLACE_WHERE:
        assert plan.replace_condition is not None
        # a null comparison is not a match: such rows are kept, as in SQL
        return _concat(old.filter(~to_expr(plan.replace_condition).fill_null(False)), df)
    if spec.mode is WriteMode.MERGE:
        keys = list(spec.merge_keys)
        return _concat(old.join(df.select(keys), on=keys, how="anti"), df)
    return _concat(old, df)  # append


def _concat(old: pl.DataFrame, df: pl.DataFrame) -> pl.DataFrame:
    """Stack kept rows and written rows; columns missing on either side become nulls."""
    return pl.concat([old, df], how="diagonal_relaxed")
