"""ClickHouse reads: source SELECTs, eager Arrow fetches and spooled streaming reads."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import polars as pl
import pyarrow as pa
import pyarrow.ipc as ipc

from loom_resources.clickhouse._client import ClickHouseConnection
from loom_resources.clickhouse._discovery import ch_columns, table_engine
from loom_resources.clickhouse._spool import new_spool
from loom_resources.clickhouse._sql import select_sql
from loom_resources.clickhouse._types import from_clickhouse
from loom_resources.dtypes import ColumnSchema, Schema
from loom_resources.errors import SchemaMismatchError, TableNotFoundError
from loom_resources.model import RunParams, SourceSpec
from loom_resources.polars_types import empty_frame, to_polars
from loom_resources.predicates import check_columns

__all__ = ["arrow_batches", "read_sql", "source_sql"]

_STREAM_BATCH_ROWS = 131_072
_SPOOL_FILE_ROWS = 2_000_000


def source_sql(conn: ClickHouseConnection, spec: SourceSpec, params: RunParams) -> tuple[str, Schema]:
    """The SELECT of a source spec (projection, bound predicate, FINAL for collapsing engines)
    and the Loom schema of its result.

    Raises:
        TableNotFoundError: the table does not exist.
        SchemaMismatchError / PredicateError: a projected or filtered column does not exist.
    """
    engine = table_engine(conn, spec.ref)
    if engine is None:
        raise TableNotFoundError(str(spec.ref), f"ClickHouse at {conn.store()}")
    all_cols = ch_columns(conn, spec.ref)
    known = [n for n, _ in all_cols]
    if spec.columns is not None:
        missing = [c for c in spec.columns if c not in known]
        if missing:
            raise SchemaMismatchError(str(spec.ref), [f"column {c!r} is requested but not in the table" for c in missing])
        by_name = dict(all_cols)
        cols = [(c, by_name[c]) for c in spec.columns]
    else:
        cols = all_cols
    pred = spec.predicate.bind(params.bindings()) if spec.predicate is not None else None
    if pred is not None:
        check_columns(pred, known, table=str(spec.ref))
    schema = tuple(ColumnSchema(n, *from_clickhouse(t)) for n, t in cols)
    return select_sql(spec.ref, cols, engine=engine, predicate=pred), schema


def read_sql(conn: ClickHouseConnection, sql: str, schema: Schema, *, streaming: bool) -> pl.LazyFrame:
    """Run ``sql`` and return its rows in the Loom ``schema``'s Polars types.

    Eager: fetched now as one Arrow table. Streaming: spooled batch by batch to lz4-compressed
    Arrow IPC files and scanned lazily; peak memory is about one batch, and the spool is deleted
    when the connection closes (the step ends), on success and on failure.
    """
    client = conn.client()
    if not streaming:
        table = conn._call("read", client.query_arrow, sql)
        if table.num_rows == 0:
            return empty_frame(schema).lazy()
        return _to_loom_types(pl.from_arrow(table).lazy(), schema)  # type: ignore[union-attr]
    spool = new_spool(conn.spool_dir)
    conn.track_spool(spool)
    files: list[str] = []
    writer = None
    rows_in_file = 0
    try:
        for batch in arrow_batches(conn, sql):
            if writer is None or rows_in_file >= _SPOOL_FILE_ROWS:
                # several files: Polars memory-maps each one it scans, so one file would keep
                # the whole spool resident in the page cache of this process
                if writer is not None:
                    writer.close()
                files.append(os.path.join(spool, f"part-{len(files):05d}.arrow"))
                writer = ipc.new_file(files[-1], batch.schema, options=ipc.IpcWriteOptions(compression="lz4"))
                rows_in_file = 0
            writer.write(batch)
            rows_in_file += batch.num_rows
        if writer is None:
            shutil.rmtree(spool, ignore_errors=True)
            return empty_frame(schema).lazy()
        writer.close()
    except Exception as exc:
        if writer is not None:
            writer.close()
        shutil.rmtree(spool, ignore_errors=True)
        failure = conn.failure(exc, "stream a query result")
    else:
        return _to_loom_types(pl.scan_ipc(files), schema)
    raise failure

def arrow_batches(conn: ClickHouseConnection, sql: str) -> Iterator[pa.RecordBatch]:
    """Arrow record batches of a query's result, pulled one block at a time."""
    if not conn.is_embedded():
        with conn.client().query_arrow_stream(sql) as stream:
            yield from stream
        return
    # clickhouse-connect's chdb backend materializes Arrow results whole (Arrow is not one of its
    # stream-safe formats), so stream through a chdb handle of our own on the same engine path
    import chdb

    conn.client()  # open (or fail clearly on) the engine path first
    handle = chdb.connect(os.path.realpath(conn.location().path))
    result = None
    try:
        result = handle.send_query(sql, "Arrow")
        yield from result.record_batch(rows_per_batch=_STREAM_BATCH_ROWS)
    finally:
        if result is not None:
            result.close()
        handle.close()


def _to_loom_types(lf: pl.LazyFrame, schema: Schema) -> pl.LazyFrame:
    """Cast what Arrow gave back to the Polars types of the Loom schema."""
    actual = lf.collect_schema()
    exprs = []
    for c in schema:
        want = to_polars(c.dtype)
        got = actual[c.name]
        e = pl.col(c.name)
        if isinstance(got, pl.Datetime) and got.time_zone is not None and isinstance(want, pl.Datetime) and want.time_zone is None:
            # naive timestamps are stored as UTC epochs; Arrow output labels them with the server zone
            e = e.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
        exprs.append(e.cast(want) if got != want else e)
    return lf.select(exprs)
