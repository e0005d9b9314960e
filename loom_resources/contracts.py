"""The Loom runtime contracts: the seam between the asset layer and the storage backends.

The asset layer (``loom_assets``) talks to storage only through these protocols, so a new
backend is one new resource and unit tests can use the in-memory implementations in
:mod:`loom_resources.testing`.

Dependency direction: this module knows the table model (refs, specs, schemas, run
parameters) and nothing else; it never imports Dagster, a backend, or the asset layer.

Capabilities that not every backend has (streaming reads, SQL execution) are separate
protocols. Callers check them with ``isinstance`` and must fail loudly, never degrade, when
a capability they need is missing: a streaming request against a reader that cannot stream
is a ``TypeError``, because silently collecting could exhaust memory.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from loom_resources.dtypes import Schema
from loom_resources.model import RunParams, SourceSpec, TableRef, TargetSpec, WriteContext, WriteResult

__all__ = ["SQLExecutor", "SourceReader", "StreamingSourceReader", "TableDiscovery", "TargetWriter"]


@runtime_checkable
class TableDiscovery(Protocol):
    """Answers what tables exist in a store and what their columns are.

    Used before a run to validate sources and targets, and after a write to check the
    stored schema against the declaration.
    """

    def exists(self, ref: TableRef) -> bool:
        """Whether the store holds the table ``ref``."""
        ...

    def columns(self, ref: TableRef) -> tuple[str, ...]:
        """The table's column names in stored order; ``()`` when the table is unknown."""
        ...

    def schema(self, ref: TableRef) -> Schema | None:
        """The table's stored schema in the table model's types; ``None`` when it is missing."""
        ...

    def update_schema(self, ref: TableRef, schema: Schema) -> None:
        """Record ``schema`` as the table's authoritative schema after a successful write.

        Stores whose schema is the table itself (Delta, ClickHouse) apply schema changes
        during the write, so for them this adds any missing nullable column and fails on a
        change it cannot apply safely.
        """
        ...


@runtime_checkable
class SourceReader(Protocol):
    """Reads one source spec into a frame."""

    def read(self, spec: SourceSpec, params: RunParams, /) -> Any:
        """Return the source as a frame (``polars.LazyFrame`` for every Loom backend), with the
        spec's projection and predicate applied; run parameters bind the predicate."""
        ...


@runtime_checkable
class StreamingSourceReader(Protocol):
    """Opt-in capability: reads that stay within bounded memory.

    The returned frame, collected or sunk with Polars' streaming engine, pulls the source
    incrementally instead of holding all of it. A reader offers this only when it can keep
    that promise; callers that need it check ``isinstance(reader, StreamingSourceReader)``
    and raise ``TypeError`` otherwise.
    """

    def read_streaming(self, spec: SourceSpec, params: RunParams, /) -> Any:
        """Return a lazy frame of the source that can be consumed batch by batch.

        Raises:
            TypeError: when this spec cannot be served in bounded memory.
        """
        ...


@runtime_checkable
class SQLExecutor(Protocol):
    """Opt-in capability: runs a SQL statement over named source frames."""

    def execute_sql(self, frames: Mapping[str, Any], query: str, /) -> Any:
        """Run ``query`` where each name in ``frames`` is a table alias; return the result frame."""
        ...


@runtime_checkable
class TargetWriter(Protocol):
    """Writes one frame into one target spec."""

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
        """Write ``frame`` to the target according to ``spec.mode`` and ``spec.schema_mode``.

        Args:
            frame: A ``polars.LazyFrame`` or ``polars.DataFrame``.
            spec: The target declaration.
            params: The run's parameters (partition keys, window, bindings).
            streaming: Write in bounded memory instead of collecting the frame first.
            write_ctx: Who is writing; used for audit columns and idempotent retries.
                With ``None`` the audit columns of a table that declares them are written as
                nulls (the stored schema stays the declared one) and retries are not deduplicated.

        Returns:
            What was written, for materialization metadata.

        Raises:
            SchemaMismatchError / DataValidationError: bad input; the table is unchanged.
        """
        ...
