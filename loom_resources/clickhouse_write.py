"""The ClickHouse write modes.

- ``append`` / ``merge``, eager: validate the whole frame, then insert it into the table in
  ``insert_batch_rows`` batches, each with a deduplication token derived from the write
  context, so a retried step does not duplicate rows. ``merge`` tables are ReplacingMergeTree
  on the merge keys and are read with FINAL, so a newer row replaces the older one.
- ``append`` / ``merge``, streaming or from a pushed-down query: load a staging table batch by
  batch (each batch validated first), then one ``INSERT INTO target SELECT`` with a token, so a
  failure mid-stream leaves the target unchanged.
- ``overwrite``: load a staging table, then ``EXCHANGE TABLES`` (atomic for readers).
- ``replace_partitions``: load a staging table with the target's structure, then ``ALTER TABLE
  ... REPLACE PARTITION ID ... FROM staging`` per partition (atomic per partition); a run
  partition without rows is dropped. No DELETE mutations.

The staging table is always dropped, on success and on failure.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import polars as pl
import pyarrow as pa

from loom_resources.clickhouse_sql import (
    ClickHouseQuery,
    ch_columns,
    create_table_sql,
    engine_clause,
    lit,
    partition_predicate_sql,
    qi,
    qt,
)
from loom_resources.clickhouse_types import from_clickhouse, storable, to_clickhouse
from loom_resources.conform import (
    check_nulls,
    check_partition_values,
    check_unique_keys,
    conform,
    require_partition_values_for,
    run_partition_values,
    with_audit_columns,
)
from loom_resources.dtypes import ColumnSchema, List, Schema, Struct
from loom_resources.errors import DataValidationError, LoomError, SpecError
from loom_resources.model import (
    Backend,
    RunParams,
    SchemaMode,
    TableRef,
    TargetSpec,
    WriteContext,
    WriteMode,
    WriteResult,
)
from loom_resources.polars_types import empty_frame

if TYPE_CHECKING:
    from loom_resources.clickhouse import ClickHouseResource

_SUPPORTED = (WriteMode.APPEND, WriteMode.OVERWRITE, WriteMode.REPLACE_PARTITIONS, WriteMode.MERGE)


def _check_spec(spec: TargetSpec) -> None:
    if spec.backend is not Backend.CLICKHOUSE:
        raise SpecError(f"table {spec.ref} is declared for backend {spec.backend.value!r}, not clickhouse")
    if spec.mode not in _SUPPORTED:
        raise SpecError(
            f"table {spec.ref}: write mode {spec.mode.value!r} is not supported by the ClickHouse backend "
            f"(use one of {[m.value for m in _SUPPORTED]})"
        )
    if spec.delete_unmatched:
        raise SpecError(f"table {spec.ref}: delete_unmatched is not supported by the ClickHouse backend")


class _Write:
    """One write: the resource, the spec, the stored table and the staging table."""

    def __init__(self, res: ClickHouseResource, spec: TargetSpec, params: RunParams, ctx: WriteContext | None):
        self.res, self.spec, self.params, self.ctx = res, spec, params, ctx
        self.ref = spec.ref
        self.table = str(spec.ref)
        self.engine = res.table_engine(spec.ref)
        self.stored_ch = res.ch_columns(spec.ref) if self.engine is not None else []
        self.stored: Schema | None = (
            tuple(ColumnSchema(n, *from_clickhouse(t)) for n, t in self.stored_ch) if self.engine is not None else None
        )
        self.staging: TableRef | None = None
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
            return ch_columns(tuple(declared) + tuple(c for c in new_cols if c.name not in names))
        have = {n for n, _ in self.stored_ch}
        return list(self.stored_ch) + [(c.name, to_clickhouse(c)) for c in new_cols if c.name not in have]

    def engine_sql(self) -> str:
        if self.engine is None or self.spec.schema_mode is SchemaMode.OVERWRITE:
            return engine_clause(self.spec)
        return f"ENGINE = {self.engine}"

    def ensure_database(self) -> None:
        self.res.command(f"CREATE DATABASE IF NOT EXISTS {qi(self.ref.schema)}", what=f"create database {self.ref.schema}")

    def create_target(self, cols: list[tuple[str, str]]) -> None:
        """Create the target if missing (an empty table is the state before any write)."""
        if self.engine is None:
            self.res.command(
                create_table_sql(self.ref, cols, engine_clause(self.spec)).replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS", 1),
                what=f"create table {self.table}",
            )
            self.engine = self.res.table_engine(self.ref) or ""
            self.stored_ch = self.res.ch_columns(self.ref)

    def add_columns(self, new_cols: Schema) -> None:
        if not new_cols:
            return
        have = {n for n, _ in self.res.ch_columns(self.ref)}
        for c in new_cols:
            if c.name not in have:
                self.res.command(
                    f"ALTER TABLE {qt(self.ref)} ADD COLUMN IF NOT EXISTS {qi(c.name)} {to_clickhouse(c)}",
                    what=f"add column {c.name!r} to {self.table}",
                )

    def create_staging(self, cols: list[tuple[str, str]]) -> TableRef:
        name = f"_loom_stage_{self.ref.table[:40]}_{uuid.uuid4().hex[:10]}"
        self.staging = TableRef(self.ref.schema, name)
        self.res.command(create_table_sql(self.staging, cols, self.engine_sql()), what=f"create staging table for {self.table}")
        return self.staging

    def drop_staging(self) -> None:
        if self.staging is not None:
            try:
                self.res.command(f"DROP TABLE IF EXISTS {qt(self.staging)} SYNC", what="drop staging table")
            finally:
                self.staging = None

    # -- validation -------------------------------------------------------------------------

    def validate(self, df: pl.DataFrame, values: tuple[Mapping[str, Any], ...], columns: Schema) -> None:
        check_nulls(df, self.spec)
        if self.spec.mode is WriteMode.MERGE:
            check_unique_keys(df, self.spec)
        check_partition_values(df, self.spec, values)
        # ClickHouse cannot wrap Array/Tuple in Nullable: refuse NULLs rather than store empties
        nested = [c.name for c in columns if isinstance(c.dtype, (List, Struct)) and c.name in df.columns]
        if nested and df.height:
            counts = df.select(pl.col(nested).null_count()).row(0)
            for name, n in zip(nested, counts, strict=True):
                if n:
                    raise DataValidationError(
                        self.table, name, f"{n} NULL list/struct value(s); ClickHouse stores Array/Tuple columns non-nullable"
                    )

    # -- inserting --------------------------------------------------------------------------

    def token(self, part: str) -> str:
        if self.ctx is None:
            # a random token disables content-hash deduplication of identical, separate appends
            return f"loom-{uuid.uuid4().hex}-{part}"
        return f"loom-{self.ctx.idempotency_token()}-{part}"

    def insert_batches(self, into: TableRef, batches: Iterator[pa.Table], *, dedup: bool) -> int:
        rows = 0
        for i, batch in enumerate(batches):
            if batch.num_rows == 0:
                continue
            settings = {"insert_deduplication_token": self.token(str(i))} if dedup else {}
            self.res.insert_arrow(into, batch, settings=settings)
            rows += batch.num_rows
        return rows

    def publish_from_staging(self, new_cols: Schema, values: tuple[Mapping[str, Any], ...]) -> tuple[Mapping[str, Any], ...]:
        """Move the staging table's rows into the target according to the mode."""
        assert self.staging is not None
        mode = self.spec.mode
        if self.res.table_engine(self.ref) is None and mode in (WriteMode.APPEND, WriteMode.MERGE):
            # an empty target first, so the INSERT below records its deduplication token for retries
            self.res.command(f"CREATE TABLE IF NOT EXISTS {qt(self.ref)} AS {qt(self.staging)}", what=f"create table {self.table}")
        if self.res.table_engine(self.ref) is None:
            # no table yet: the staging table becomes it
            parts = self.staged_partitions() if mode is WriteMode.REPLACE_PARTITIONS else ()
            self.res.command(f"RENAME TABLE {qt(self.staging)} TO {qt(self.ref)}", what=f"publish {self.table}")
            self.staging = None
            return parts
        if mode is WriteMode.OVERWRITE:
            self.res.command(f"EXCHANGE TABLES {qt(self.staging)} AND {qt(self.ref)}", what=f"swap in {self.table}")
            return ()
        self.add_columns(new_cols)
        if mode in (WriteMode.APPEND, WriteMode.MERGE):
            cols = ", ".join(qi(n) for n, _ in self.res.ch_columns(self.staging))
            self.res.command(
                f"INSERT INTO {qt(self.ref)} ({cols}) SELECT {cols} FROM {qt(self.staging)}",
                what=f"insert into {self.table}",
                settings={"insert_deduplication_token": self.token("staged")},
            )
            return ()
        return self.replace_partitions(values)

    def replace_partitions(self, values: tuple[Mapping[str, Any], ...]) -> tuple[Mapping[str, Any], ...]:
        assert self.staging is not None
        st, tg = qt(self.staging), qt(self.ref)
        staged = [str(r[0]) for r in self.res.query_rows(f"SELECT DISTINCT _partition_id FROM {st}", what="list staged partitions")]
        run_filter = partition_predicate_sql(values) if values else None
        if staged:
            # a PARTITION BY coarser than the run's partitions would replace rows the run does not own
            outside = f"NOT {run_filter}" if run_filter else "false"
            ids = ", ".join(lit(p) for p in staged)
            foreign = self.res.query_rows(
                f"SELECT count() FROM {tg} WHERE _partition_id IN ({ids}) AND {outside}", what="check partitions"
            )[0][0]
            if foreign:
                raise DataValidationError(
                    self.table, ",".join(self.spec.partition_by),
                    f"the table's PARTITION BY is coarser than the run's partitions: replacing would remove {foreign} "
                    "row(s) of other partitions",
                )
        for pid in staged:
            self.res.command(
                f"ALTER TABLE {tg} REPLACE PARTITION ID {lit(pid)} FROM {st}", what=f"replace partition {pid} of {self.table}"
            )
        if run_filter:
            emptied = self.res.query_rows(
                f"SELECT DISTINCT _partition_id FROM {tg} WHERE {run_filter}", what="list emptied partitions"
            )
            for (pid,) in emptied:
                if str(pid) not in staged:
                    self.res.command(f"ALTER TABLE {tg} DROP PARTITION ID {lit(str(pid))}", what=f"drop partition {pid}")
        return self.staged_partitions() or values

    def staged_partitions(self) -> tuple[Mapping[str, Any], ...]:
        assert self.staging is not None
        parts = self.res.query_rows(
            f"SELECT DISTINCT {', '.join(qi(c) for c in self.spec.partition_by)} FROM {qt(self.staging)}",
            what="list partitions",
        )
        return tuple(dict(zip(self.spec.partition_by, r, strict=True)) for r in parts)

    def result(self, rows: int, streaming: bool, partitions: tuple[Mapping[str, Any], ...], **extra: Any) -> WriteResult:
        schema = self.res.schema(self.ref) or ()
        return WriteResult(
            table=self.ref, uri=self.res.uri(self.ref), rows_written=rows, mode=self.spec.mode, streaming=streaming,
            version=None, schema=schema, partitions=tuple(partitions), extra=extra,
        )


def _arrow_batches(df: pl.DataFrame, batch_rows: int) -> Iterator[pa.Table]:
    """Arrow slices of ``df``; the next slice converts on a worker thread while one is inserted."""
    if df.height <= batch_rows:
        yield df.to_arrow()
        return
    convert = lambda off: df.slice(off, batch_rows).to_arrow()  # noqa: E731
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = None
        for off in range(0, df.height, batch_rows):
            following = pool.submit(convert, off)
            if pending is not None:
                yield pending.result()
            pending = following
        if pending is not None:
            yield pending.result()


def write_frame(
    res: ClickHouseResource,
    frame: Any,
    spec: TargetSpec,
    params: RunParams,
    *,
    streaming: bool,
    write_ctx: WriteContext | None,
) -> WriteResult:
    """Write ``frame`` to ``spec`` (see the module docstring for each mode)."""
    _check_spec(spec)
    # as in the Delta backend: audit columns need a write context to fill them
    audit = (spec.audit_columns or res.audit_columns) and write_ctx is not None
    if audit != spec.audit_columns:
        spec = replace(spec, audit_columns=audit)
    if spec.streaming is not None:
        streaming = spec.streaming
    w = _Write(res, spec, params, write_ctx)
    if isinstance(frame, ClickHouseQuery):
        if frame.resource.store() == res.store():
            return _write_query(w, frame)
        frame, streaming = frame.to_lazyframe(streaming=True), True  # another store: pull it through Polars
    if not isinstance(frame, (pl.LazyFrame, pl.DataFrame)):
        raise TypeError(f"table {spec.ref}: cannot write a {type(frame).__name__}; pass a polars frame or a ClickHouseQuery")
    frame = with_audit_columns(frame, spec, write_ctx)
    conformed = conform(frame, spec, w.stored, storable=storable)
    target_cols = w.target_columns(conformed.new_columns)  # raises UnsupportedTypeError naming the column
    types = {c.name: c.dtype for c in (w.stored or ()) + conformed.columns}
    values = run_partition_values(spec, params, types) if require_partition_values_for(spec) else ()
    stored_schema = conformed.columns
    batch_rows = max(1, res.insert_batch_rows)

    if isinstance(conformed.frame, pl.DataFrame):
        streaming = False  # already in memory: nothing to bound
    if not streaming:
        # eager path: the whole frame is validated before the table is touched
        df = conformed.frame.collect() if isinstance(conformed.frame, pl.LazyFrame) else conformed.frame
        w.validate(df, values, stored_schema)
        w.ensure_database()
        if spec.mode in (WriteMode.APPEND, WriteMode.MERGE):
            w.create_target(target_cols)
            w.add_columns(conformed.new_columns)
            rows = w.insert_batches(spec.ref, _arrow_batches(df, batch_rows), dedup=True)
            return w.result(rows, False, ())
        batches: Iterator[pl.DataFrame] = iter([df])
    else:
        w.ensure_database()
        batches = iter(conformed.frame.lazy().collect_batches(chunk_size=batch_rows, engine="streaming"))

    try:
        w.create_staging(target_cols)
        assert w.staging is not None
        rows = 0
        for df in batches:
            if streaming:
                w.validate(df, values, stored_schema)
            rows += w.insert_batches(w.staging, _arrow_batches(df, batch_rows), dedup=False)
        if streaming and spec.mode is WriteMode.MERGE:
            _check_staged_keys(w)
        partitions = w.publish_from_staging(conformed.new_columns, values)
    finally:
        w.drop_staging()
    return w.result(rows, streaming, partitions)


def _check_staged_keys(w: _Write) -> None:
    assert w.staging is not None
    keys = ", ".join(qi(k) for k in w.spec.merge_keys)
    dupes = w.res.query_rows(
        f"SELECT {keys}, count() AS n FROM {qt(w.staging)} GROUP BY {keys} HAVING n > 1 LIMIT 3", what="check merge keys"
    )
    if dupes:
        raise DataValidationError(w.table, ",".join(w.spec.merge_keys), f"duplicate merge key(s) in the frame, e.g. {dupes}")


def _write_query(w: _Write, query: ClickHouseQuery) -> WriteResult:
    """Write a pushed-down query with INSERT ... SELECT inside ClickHouse, through staging."""
    spec = w.spec
    probe = empty_frame(query.loom_schema())
    if spec.audit_columns:
        probe = with_audit_columns(probe, spec, w.ctx)  # type: ignore[assignment]
    conformed = conform(probe, spec, w.stored, storable=storable)
    types = {c.name: c.dtype for c in (w.stored or ()) + conformed.columns}
    values = run_partition_values(spec, w.params, types) if require_partition_values_for(spec) else ()
    w.ensure_database()
    target_cols = w.target_columns(conformed.new_columns)
    select_cols = [c.name for c in conformed.columns]
    select_exprs = [qi(n) for n in select_cols]
    if spec.audit_columns:
        extra = {
            "_loom_run_id": lit(w.ctx.run_id) if w.ctx else "NULL",
            "_loom_asset_key": lit(w.ctx.asset_key) if w.ctx else "NULL",
            "_loom_partition_key": lit(w.ctx.partition_label) if w.ctx and w.ctx.partition_label else "NULL",
            "_loom_written_at": lit(w.ctx.timestamp) if w.ctx else "now64(6, 'UTC')",
        }
        for n, e in extra.items():
            select_cols.append(n)
            select_exprs.append(f"{e} AS {qi(n)}")
    try:
        w.create_staging(target_cols)
        assert w.staging is not None
        try:
            w.res.command(
                f"INSERT INTO {qt(w.staging)} ({', '.join(qi(n) for n in select_cols)}) "
                f"SELECT {', '.join(select_exprs)} FROM ({query.sql})",
                what=f"run the SQL of {w.table} inside ClickHouse",
                settings={"insert_null_as_default": 0},
            )
        except LoomError as exc:
            if "NULL" in str(exc) and ("Nullable" in str(exc) or "null" in str(exc).lower()):
                raise DataValidationError(w.table, None, f"NULL value(s) in a column declared not null ({exc})") from None
            raise
        rows = int(w.res.query_rows(f"SELECT count() FROM {qt(w.staging)}", what="count staged rows")[0][0])
        if values:
            bad = w.res.query_rows(
                f"SELECT count() FROM {qt(w.staging)} WHERE NOT {partition_predicate_sql(values)}", what="check partitions"
            )[0][0]
            if bad:
                raise DataValidationError(
                    w.table, ",".join(spec.partition_by), f"{bad} row(s) have partition values outside the run's partitions"
                )
        if spec.mode is WriteMode.MERGE:
            _check_staged_keys(w)
        partitions = w.publish_from_staging(conformed.new_columns, values)
    finally:
        w.drop_staging()
    return w.result(rows, True, partitions, sql_engine="clickhouse")


__all__: Sequence[str] = ["write_frame"]
