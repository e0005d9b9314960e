"""A ClickHouse write's table work: DDL of the target and the staging table, batched inserts
into the staging table, and publishing the staged rows by the write mode."""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

import polars as pl

from loom_resources.clickhouse._client import ClickHouseConnection
from loom_resources.clickhouse._cluster import distributed_sql, insert_settings, on_cluster, partition_on_cluster
from loom_resources.clickhouse._discovery import ch_columns, stored_schema, table_engine
from loom_resources.clickhouse._publish import marker, publish, staging_ref
from loom_resources.clickhouse._sql import ch_columns as ddl_columns
from loom_resources.clickhouse._sql import create_table_sql, engine_clause, lit, qi, qt, render
from loom_resources.clickhouse._types import from_clickhouse, to_clickhouse
from loom_resources.dtypes import ColumnSchema, List, Schema, Struct
from loom_resources.errors import DataValidationError, SpecError
from loom_resources.model import SchemaMode, TableRef, TargetSpec, WriteMode, WriteResult
from loom_resources.partitions import PartitionValues, partition_predicate
from loom_resources.plan import WritePlan

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["Stage"]

_INSERTS_IN_FLIGHT = 2
_DEDUP_WINDOW = re.compile(r"non_replicated_deduplication_window\s*=\s*\d+")


class Stage:
    """One write plan bound to a ClickHouse table: the stored table and the staging table."""

    def __init__(self, conn: ClickHouseConnection, spec: TargetSpec) -> None:
        self.res, self.spec = conn, spec
        self.ref = spec.ref
        self.table = str(spec.ref)
        self.engine = table_engine(conn, spec.ref)
        self.stored_ch = ch_columns(conn, spec.ref) if self.engine is not None else []
        self.plan: WritePlan | None = None
        self.stored: Schema | None = (
            tuple(ColumnSchema(n, *from_clickhouse(t)) for n, t in self.stored_ch) if self.engine is not None else None
        )
        self.staging: TableRef | None = None
        self.publishing = False
        #: False when another attempt of the same write published it (this one lost the claim)
        self.published_by_me = True
        if self.engine is not None and spec.mode is WriteMode.MERGE and "Replacing" not in self.engine:
            raise SpecError(
                f"table {self.table} exists with engine {self.engine.split(' ')[0]}; merge needs a ReplacingMergeTree "
                "table (declare the engine, or recreate the table with an overwrite)"
            )

    # -- DDL ------------------------------------------------------------------------------

    def target_columns(self, new_cols: Schema) -> list[tuple[str, str]]:
        """Column DDL of the table after this write."""
        if self.engine is None or self.spec.schema_mode is SchemaMode.OVERWRITE:
            declared = list(self.spec.stored_columns())
            names = {c.name for c in declared}
            return ddl_columns(tuple(declared) + tuple(c for c in new_cols if c.name not in names))
        have = {n for n, _ in self.stored_ch}
        return list(self.stored_ch) + [(c.name, to_clickhouse(c)) for c in new_cols if c.name not in have]

    def engine_sql(self) -> str:
        """The engine clause of the staging table: the stored table's (so its parts can move to
        it), without the insert deduplication window tables made by earlier versions carry
        (a fresh staging table never sees a repeated block; the hashing slows inserts)."""
        if self.engine is None or self.spec.schema_mode is SchemaMode.OVERWRITE:
            return engine_clause(self.spec)
        return "ENGINE = " + _DEDUP_WINDOW.sub("non_replicated_deduplication_window = 0", self.engine)

    def ensure_database(self) -> None:
        """Create the table's database when missing (on every node of its cluster)."""
        self.res.command(f"CREATE DATABASE IF NOT EXISTS {qi(self.ref.schema)}{on_cluster(self.spec)}",
                         what=f"create database {self.ref.schema}")

    def add_columns(self, new_cols: Schema) -> None:
        if not new_cols:
            return
        have = {n for n, _ in ch_columns(self.res, self.ref)}
        on = partition_on_cluster(self.spec.clickhouse.cluster or "", self.engine)  # a Replicated table replicates it
        for c in new_cols:
            if c.name not in have:
                self.res.command(
                    f"ALTER TABLE {qt(self.ref)}{on} ADD COLUMN IF NOT EXISTS {qi(c.name)} {to_clickhouse(c)}",
                    what=f"add column {c.name!r} to {self.table}",
                )

    def create_staging(self, cols: list[tuple[str, str]]) -> TableRef:
        """Create this attempt's staging table (tagged with the write, so the sweep and a
        retry can tell whose it is)."""
        token = self.plan.app_id if self.plan is not None else None
        self.staging = staging_ref(self.ref, token)
        cluster = self.spec.clickhouse.cluster or ""
        comment = f" COMMENT {lit(marker(token, cluster))}" if token or cluster else ""
        self.res.command(create_table_sql(self.staging, cols, self.engine_sql(), on_cluster(self.spec)) + comment,
                         what=f"create staging table for {self.table}")
        return self.staging

    def drop_staging(self) -> None:
        """Drop the staging table, unless its publication started: then the ledger needs it to
        complete the publication on a retry (or when a resource next starts)."""
        if self.staging is not None and not self.publishing:
            try:
                self.res.command(f"DROP TABLE IF EXISTS {qt(self.staging)}{on_cluster(self.spec)} SYNC",
                                 what="drop staging table")
            finally:
                self.staging = None

    # -- validation -------------------------------------------------------------------------

    def nested_null_check(self, columns: Schema) -> Callable[[pl.DataFrame], None] | None:
        """A validator refusing NULL lists/structs: ClickHouse cannot wrap Array/Tuple in Nullable,
        so it would store empties instead (``None``: no such column)."""
        nested = [c.name for c in columns if isinstance(c.dtype, (List, Struct))]
        if not nested:
            return None

        def check(df: pl.DataFrame) -> None:
            present = [n for n in nested if n in df.columns]
            if not present or not df.height:
                return
            counts = df.select(pl.col(present).null_count()).row(0)
            for name, n in zip(present, counts, strict=True):
                if n:
                    raise DataValidationError(
                        self.table, name, f"{n} NULL list/struct value(s); ClickHouse stores Array/Tuple columns non-nullable"
                    )

        return check

    # -- inserting --------------------------------------------------------------------------

    def insert_batches(self, into: TableRef, batches: Iterator[pa.Table]) -> int:
        """Insert Arrow batches, two at a time (one serializes in the client while the engine
        stores the other: ~10% faster on two cores; the staging table has no row order to
        keep); returns the rows inserted. The first failure raises once both have finished."""
        rows = 0
        what = f"stage rows for table {self.table} (in {into})"
        with ThreadPoolExecutor(max_workers=_INSERTS_IN_FLIGHT) as pool:
            pending: deque[Future[None]] = deque()
            for i, batch in enumerate(batches):
                if batch.num_rows == 0:
                    continue
                settings = insert_settings(self.spec, into, i)  # none for a plain table
                pending.append(pool.submit(self.res.insert_arrow, into, batch, what=what, settings=settings))
                rows += batch.num_rows
                if len(pending) >= _INSERTS_IN_FLIGHT:
                    pending.popleft().result()
            while pending:
                pending.popleft().result()
        return rows

    def check_replace_scope(self, values: PartitionValues) -> None:
        """Refuse a replace whose staged partitions would remove rows of partitions the run does
        not own (a ``PARTITION BY`` coarser than the run's partitions)."""
        assert self.staging is not None
        if self.engine is None:
            return
        staged = [str(r[0]) for r in self.res.query_rows(
            f"SELECT DISTINCT _partition_id FROM {qt(self.staging)}", what="list staged partitions")]
        if not staged:
            return
        outside = f"NOT {render(partition_predicate(values))}" if values else "false"
        ids = ", ".join(lit(p) for p in staged)
        foreign = self.res.query_rows(
            f"SELECT count() FROM {qt(self.ref)} WHERE _partition_id IN ({ids}) AND {outside}", what="check partitions"
        )[0][0]
        if foreign:
            raise DataValidationError(
                self.table, ",".join(self.spec.partition_by),
                f"the table's PARTITION BY is coarser than the run's partitions: replacing would remove {foreign} "
                "row(s) of other partitions",
            )

    def publish(self, new_cols: Schema, values: PartitionValues, rows: int) -> PartitionValues:
        """Publish the complete staging table exactly once (see :mod:`._publish`); returns the
        partitions written."""
        assert self.staging is not None
        mode = self.spec.mode
        parts = self.staged_partitions() if mode is WriteMode.REPLACE_PARTITIONS else ()
        if mode is WriteMode.REPLACE_PARTITIONS:
            self.check_replace_scope(values)
        if mode is not WriteMode.OVERWRITE and self.engine is not None:
            self.add_columns(new_cols)
        run_filter = render(partition_predicate(values)) if values and mode is WriteMode.REPLACE_PARTITIONS else ""
        token = self.plan.app_id if self.plan is not None else None
        # a new table is created on every node of its cluster by the publication itself: RENAME TABLE
        # ... ON CLUSTER (overwrite) or CREATE TABLE ... ON CLUSTER AS the staging table (the other
        # modes). Not before it: created AS the staging table, it would carry the staging table's
        # comment, which an overwrite reads as "already swapped in" (and would publish nothing).
        self.publishing = token is not None
        outcome = publish(self.res, self.ref, self.staging, mode, token, rows, run_filter,
                          self.spec.clickhouse.cluster or "")
        self.publishing = False  # a lost claim leaves this attempt's staging table to drop
        self.published_by_me = outcome.by_me
        dist = distributed_sql(self.spec)
        if dist is not None:
            self.res.command(dist, what=f"create the Distributed table of {self.table}")
        return parts or (values if mode is WriteMode.REPLACE_PARTITIONS else ())

    def staged_partitions(self) -> PartitionValues:
        assert self.staging is not None
        parts = self.res.query_rows(
            f"SELECT DISTINCT {', '.join(qi(c) for c in self.spec.partition_by)} FROM {qt(self.staging)}",
            what="list partitions",
        )
        return tuple(dict(zip(self.spec.partition_by, r, strict=True)) for r in parts)

    def result(self, rows: int, streaming: bool, partitions: PartitionValues, *, sql_engine: str | None = None,
               skipped: bool = False) -> WriteResult:
        """The typed result, with the stored schema read back."""
        schema = stored_schema(self.res, self.ref) or ()
        return WriteResult(
            table=self.ref, uri=self.res.uri(self.ref), rows_written=rows, mode=self.spec.mode, streaming=streaming,
            version=None, schema=schema, partitions=tuple(partitions), sql_engine=sql_engine, skipped=skipped,
        )
