"""In-memory implementations of the Loom contracts, for unit tests of transforms.

:class:`InMemoryTables` keeps each table as a Polars DataFrame and honours the write modes
with the same schema checks as the real backends (via :mod:`loom_resources.conform`), so a
transform tested against it behaves the same against Delta or ClickHouse.

Example::

    tables = InMemoryTables()
    tables.put(TableRef.parse("raw.orders"), pl.DataFrame({"id": [1, 2]}))
    lf = tables.read(SourceSpec(TableRef.parse("raw.orders")), RunParams())
"""

from __future__ import annotations

import polars as pl

from loom_resources.conform import (
    check_nulls,
    check_partition_values,
    check_unique_keys,
    conform,
    frame_partitions,
    partition_filter,
    run_partition_values,
    with_audit_columns,
)
from loom_resources.dtypes import ColumnSchema, Schema
from loom_resources.model import RunParams, SourceSpec, TableRef, TargetSpec, WriteContext, WriteMode, WriteResult
from loom_resources.polars_types import polars_schema, schema_from_polars, to_expr
from loom_resources.predicates import check_columns
from loom_resources.sql import PolarsSQLExecutor

__all__ = ["InMemoryTables", "PolarsSQLExecutor"]


class InMemoryTables:
    """A dictionary of tables implementing TableDiscovery, SourceReader,
    StreamingSourceReader, SQLExecutor and TargetWriter."""

    def __init__(self) -> None:
        self._tables: dict[TableRef, pl.DataFrame] = {}
        self._schemas: dict[TableRef, Schema] = {}
        self._versions: dict[TableRef, int] = {}
        self._sql = PolarsSQLExecutor()

    # -- helpers for tests -------------------------------------------------------------
    def put(self, ref: TableRef, df: pl.DataFrame, schema: Schema | None = None) -> None:
        """Store ``df`` as table ``ref`` (replacing it)."""
        self._tables[ref] = df
        self._schemas[ref] = schema or schema_from_polars(df.schema)
        self._versions[ref] = self._versions.get(ref, -1) + 1

    def get(self, ref: TableRef) -> pl.DataFrame:
        """Return the stored table (KeyError naming it when missing)."""
        if ref not in self._tables:
            raise KeyError(f"table {ref} does not exist")
        return self._tables[ref]

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
        """Record the authoritative schema."""
        self._schemas[ref] = tuple(schema)

    # -- readers -------------------------------------------------------------------------
    def read(self, spec: SourceSpec, params: RunParams, /) -> pl.LazyFrame:
        """Return the table as a LazyFrame with projection and bound predicate applied."""
        lf = self.get(spec.ref).lazy()
        if spec.predicate is not None:
            check_columns(spec.predicate, self.columns(spec.ref), table=str(spec.ref))
            lf = lf.filter(to_expr(spec.predicate.bind(params.bindings())))
        if spec.columns is not None:
            lf = lf.select(list(spec.columns))
        return lf

    def read_streaming(self, spec: SourceSpec, params: RunParams, /) -> pl.LazyFrame:
        """Same as :meth:`read`; in-memory tables are already in memory."""
        return self.read(spec, params)

    def execute_sql(self, frames: dict[str, pl.LazyFrame], query: str, /) -> pl.LazyFrame:
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
        """Apply ``spec.mode`` to the stored DataFrame (history is not simulated)."""
        stored = self.schema(spec.ref)
        c = conform(frame, spec, stored)
        df = c.frame.collect() if isinstance(c.frame, pl.LazyFrame) else c.frame
        check_nulls(df, spec)
        df = with_audit_columns(df, spec, write_ctx)  # type: ignore[assignment]
        cols: Schema = c.columns + (spec.stored_columns()[len(spec.columns):] if spec.audit_columns else ())
        old = self._tables.get(spec.ref, pl.DataFrame(schema=polars_schema(cols)))
        types = {col.name: col.dtype for col in cols}
        if spec.mode is WriteMode.APPEND:
            new = pl.concat([old, df], how="diagonal_relaxed")
        elif spec.mode is WriteMode.OVERWRITE:
            new = df
        elif spec.mode is WriteMode.REPLACE_PARTITIONS:
            values = run_partition_values(spec, params, types) or frame_partitions(df, spec)
            check_partition_values(df, spec, values)
            new = pl.concat([old.filter(~partition_filter(values)), df], how="diagonal_relaxed")
        elif spec.mode is WriteMode.REPLACE_WHERE:
            assert spec.replace_predicate is not None
            expr = to_expr(spec.replace_predicate.bind(params.bindings()))
            if df.filter(~expr).height:
                raise ValueError(f"table {spec.ref}: rows outside the replace predicate")
            new = pl.concat([old.filter(~expr), df], how="diagonal_relaxed")
        elif spec.mode is WriteMode.MERGE:
            check_unique_keys(df, spec)
            keys = list(spec.merge_keys)
            new = pl.concat([old.join(df.select(keys), on=keys, how="anti"), df], how="diagonal_relaxed")
        else:
            raise NotImplementedError(f"InMemoryTables does not simulate write mode {spec.mode.value!r}")
        self.put(spec.ref, new, tuple(cols) if stored is None else tuple(stored) + tuple(
            col for col in c.new_columns if col.name not in {s.name for s in stored}
        ))
        return WriteResult(
            table=spec.ref, uri=f"memory://{spec.ref}", rows_written=df.height, mode=spec.mode,
            streaming=streaming, version=self._versions[spec.ref], schema=self._schemas[spec.ref],
        )


def schema_of(df: pl.DataFrame) -> tuple[ColumnSchema, ...]:
    """Loom columns of a DataFrame (all nullable)."""
    return schema_from_polars(df.schema)
