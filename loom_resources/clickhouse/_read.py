"""ClickHouse reads: source SELECTs, eager Arrow fetches, and streaming reads (streamed straight\ninto the consumer through a Polars IO source, or spooled to capped segments on request)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING

from loom_resources._lazy import lazy_import
from loom_resources._prefetch import prefetch
from loom_resources.clickhouse._client import ClickHouseConnection
from loom_resources.clickhouse._discovery import ch_columns, table_engine
from loom_resources.clickhouse._spool import new_spool, write_spool
from loom_resources.clickhouse._sql import qi, select_sql
from loom_resources.clickhouse._types import from_clickhouse
from loom_resources.dtypes import ColumnSchema, Schema
from loom_resources.errors import LoomError, SchemaMismatchError, TableNotFoundError
from loom_resources.model import RunParams, SourceSpec
from loom_resources.polars_types import empty_frame, polars_schema, to_polars
from loom_resources.predicates import check_columns

if TYPE_CHECKING:
    import polars as pl
else:
    pl = lazy_import("polars")  # imported when data moves, not when the code location loads

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["arrow_batches", "read_sql", "source_sql", "stream_sql"]

_STREAM_BATCH_ROWS = 131_072
#: Arrow batches the engine may read ahead of a streaming read's consumer (~4 MiB each)
_PREFETCH_BLOCKS = 2


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

    Eager: fetched now as one Arrow table.

    Streaming (``streaming_reads="direct"``, the default): nothing is read now. The LazyFrame is a
    Polars IO source that runs the query each time it is collected, sunk or batched, and converts
    its Arrow record batches one by one as the consumer pulls them: peak memory is about one
    batch and no temporary disk is used. Projections and ``head`` are pushed into the SQL;
    filters are applied per batch.

    Streaming with ``streaming_reads="spool"``: the result is written now, once, to lz4-compressed
    Arrow IPC segments (capped by ``spool_max_bytes``) and scanned lazily, so the frame is a
    snapshot that can be scanned many times. The spool is deleted when the connection closes
    (the step ends), and at once if the read fails.

    Raises:
        SpoolLimitError / SpoolDiskFullError: spool mode only, the spool hit its cap or a full disk.
    """
    if not streaming:
        table = conn._call("read", conn.client().query_arrow, sql)
        if table.num_rows == 0:
            return empty_frame(schema).lazy()
        return _to_loom_types(pl.from_arrow(table).lazy(), schema)  # type: ignore[union-attr]
    if getattr(conn, "streaming_reads", "direct") == "spool":
        return _spooled(conn, sql, schema)
    return stream_sql(conn, sql, schema)


def stream_sql(conn: ClickHouseConnection, sql: str, schema: Schema) -> pl.LazyFrame:
    """A LazyFrame that streams ``sql``'s result from ClickHouse whenever it is executed (see
    :func:`read_sql`). It works with ``collect``, ``collect(engine="streaming")``,
    ``collect_batches`` and ``sink_*``; each execution runs the query again."""
    from polars.io.plugins import register_io_source  # here: polars loads when data moves

    names = [c.name for c in schema]

    def source(
        with_columns: list[str] | None, predicate: pl.Expr | None, n_rows: int | None, batch_size: int | None
    ) -> Iterator[pl.DataFrame]:
        cols = names if with_columns is None else [c for c in with_columns if c in names] or names[:1]
        query = sql
        if cols != names:
            query = f"SELECT {', '.join(qi(c) for c in cols)} FROM ({sql})"
        if n_rows is not None and predicate is None:
            query = f"SELECT * FROM ({query}) LIMIT {int(n_rows)}"
        by_name = {c.name: c for c in schema}
        return _stream(conn, query, tuple(by_name[c] for c in cols), predicate, n_rows)

    return register_io_source(
        source, schema=polars_schema(schema), explain_name="clickhouse", explain_detail=_label(sql)
    )


def _stream(
    conn: ClickHouseConnection, sql: str, schema: Schema, predicate: pl.Expr | None, n_rows: int | None
) -> Iterator[pl.DataFrame]:
    exprs: list[pl.Expr] | None = None
    left = n_rows
    # the engine reads and converts the next blocks in a thread of its own while this batch is
    # handed on (the consumer's thread converts, validates and encodes)
    batches = prefetch(arrow_batches(conn, sql), _PREFETCH_BLOCKS, name="loom-clickhouse-read")
    try:
        for batch in batches:
            if batch.num_rows == 0:
                continue
            df = pl.from_arrow(batch)
            assert isinstance(df, pl.DataFrame)
            if exprs is None:
                exprs = _loom_exprs(df.schema, schema)
            df = df.select(exprs)
            if predicate is not None:
                df = df.filter(predicate)
            if left is not None:
                df = df.head(left)
                left -= df.height
            yield df
            if left is not None and left <= 0:
                return
    except LoomError:
        raise
    except Exception as exc:
        err = conn.failure(exc, f"stream the result of {_label(sql)}")
    else:
        return
    finally:
        batches.close()  # stop the query when the consumer stops early
    raise err


def _spooled(conn: ClickHouseConnection, sql: str, schema: Schema) -> pl.LazyFrame:
    directory = new_spool(conn.spool_dir)
    conn.track_spool(directory)
    try:
        files = write_spool(arrow_batches(conn, sql), directory, max_bytes=conn.spool_max_bytes, what=_label(sql))
    except Exception as exc:
        shutil.rmtree(directory, ignore_errors=True)
        failure = conn.failure(exc, f"spool the result of {_label(sql)}")
    else:
        if not files:
            shutil.rmtree(directory, ignore_errors=True)
            return empty_frame(schema).lazy()
        return _to_loom_types(pl.scan_ipc(files), schema)
    raise failure


def _label(sql: str) -> str:
    """A short, one-line name of a query for errors and ``explain``."""
    flat = " ".join(sql.split())
    return f"query `{flat if len(flat) <= 160 else flat[:157] + '...'}`"


def arrow_batches(conn: ClickHouseConnection, sql: str) -> Generator[pa.RecordBatch, None, None]:
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
        # the batches never leave the process: ClickHouse's default lz4 framing of Arrow output
        # only costs a compression here and a decompression in pyarrow (~0.9 CPU-s per 20M rows)
        handle.query("SET output_format_arrow_compression_method = 'none'")
        result = handle.send_query(sql, "Arrow")
        yield from result.record_batch(rows_per_batch=_STREAM_BATCH_ROWS)
    finally:
        if result is not None:
            result.close()
        handle.close()


def _to_loom_types(lf: pl.LazyFrame, schema: Schema) -> pl.LazyFrame:
    """Cast what Arrow gave back to the Polars types of the Loom schema."""
    return lf.select(_loom_exprs(lf.collect_schema(), schema))


def _loom_exprs(actual: pl.Schema, schema: Schema) -> list[pl.Expr]:
    exprs = []
    for c in schema:
        want = to_polars(c.dtype)
        got = actual[c.name]
        e = pl.col(c.name)
        if isinstance(got, pl.Datetime) and got.time_zone is not None and isinstance(want, pl.Datetime) and want.time_zone is None:
            # naive timestamps are stored as UTC epochs; Arrow output labels them with the server zone
            e = e.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
        exprs.append(e.cast(want) if got != want else e)
    return exprs
