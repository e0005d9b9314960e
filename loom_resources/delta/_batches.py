"""Validated Arrow data of a Delta write: casts to the storable types and the batch stream.

Streaming writes hand delta-rs a ``pyarrow.RecordBatchReader`` fed by Polars' streaming engine;
every batch is validated inside the reader, so an invalid batch raises before delta-rs commits.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Iterator
from typing import TYPE_CHECKING

import polars as pl
from dagster import get_dagster_logger

from loom_resources import dtypes as t
from loom_resources._prefetch import prefetch
from loom_resources.delta._types import storable
from loom_resources.dtypes import DataType, Schema
from loom_resources.errors import DataValidationError
from loom_resources.polars_types import to_polars

if TYPE_CHECKING:  # pyarrow (+NumPy, ~0.1 s) is imported when data moves, not when a code location loads
    import pyarrow as pa

__all__ = ["BatchSource", "as_arrow", "batch_schema", "storable_exprs", "whole_microseconds_check", "without_views"]

Frame = pl.LazyFrame | pl.DataFrame
_LOG_EVERY_BATCHES = 10  # progress in the log (and the demo's console line) on long streaming writes
#: Validated batches a streaming write's source may run ahead of its encoder (~4 MiB each at the
#: ClickHouse reader's 131,072 rows): enough to keep both busy, little enough for the RSS bound.
_PREFETCH_BATCHES = 4


def storable_exprs(columns: Schema) -> list[pl.Expr]:
    """Expressions casting declared columns to the types Delta stores (see ``_types.storable``)."""
    exprs = []
    for c in columns:
        target = storable(c.dtype, column=c.name)
        e = pl.col(c.name)
        if isinstance(c.dtype, t.Datetime) and c.dtype.tz and c.dtype.tz != "UTC":
            e = e.dt.convert_time_zone("UTC")
        if target != c.dtype:
            e = e.cast(to_polars(target))
        exprs.append(e)
    return exprs


def _nullability(pa_type: pa.DataType, dtype: DataType) -> pa.DataType:
    import pyarrow as pa
    if isinstance(dtype, t.Struct) and pa.types.is_struct(pa_type):
        fields = [pa_type.field(i) for i in range(pa_type.num_fields)]
        return pa.struct([
            f.with_type(_nullability(f.type, d.dtype)).with_nullable(d.nullable)
            for f, d in zip(fields, dtype.fields, strict=True)
        ])
    if isinstance(dtype, t.List) and (pa.types.is_large_list(pa_type) or pa.types.is_list(pa_type)):
        return pa.large_list(pa_type.value_field.with_type(_nullability(pa_type.value_type, dtype.inner)))
    return pa_type


def batch_schema(columns: Schema) -> pa.Schema:
    """The Arrow schema of written batches: the types Polars exports (views, so the export is
    zero-copy) with the declared nullability, which Delta keeps when it creates the table."""
    import pyarrow as pa
    exported = pa.RecordBatchReader.from_stream(pl.DataFrame(schema={c.name: to_polars(c.dtype) for c in columns})).schema
    return pa.schema(
        [f.with_type(_nullability(f.type, c.dtype)).with_nullable(c.nullable).remove_metadata()
         for f, c in zip(exported, columns, strict=True)]
    )


def _unviewed(t: pa.DataType) -> pa.DataType:
    import pyarrow as pa

    if pa.types.is_string_view(t):
        return pa.large_string()
    if pa.types.is_binary_view(t):
        return pa.large_binary()
    if pa.types.is_struct(t):
        return pa.struct([t.field(i).with_type(_unviewed(t.field(i).type)) for i in range(t.num_fields)])
    if pa.types.is_large_list(t) or pa.types.is_list(t):
        return pa.large_list(t.value_field.with_type(_unviewed(t.value_type)))
    return t


def without_views(schema: pa.Schema) -> pa.Schema:
    """``schema`` with string and binary views as large strings and binaries: delta-rs' writer
    stores the Arrow schema it is handed in every Parquet file, and readers that meet
    ``Utf8View`` there fail (daft 0.7: "Unsupported Arrow DataType: Utf8View"; deltalake's
    Arrow dataset: no kernel for a string filter). Polars' own Parquet files hold no views."""
    import pyarrow as pa
    return pa.schema([f.with_type(_unviewed(f.type)) for f in schema], metadata=schema.metadata)


def as_arrow(df: pl.DataFrame, schema: pa.Schema) -> pa.RecordBatchReader:
    """``df`` (already in storable types) as an Arrow stream in ``schema`` without views (see
    :func:`without_views`), for delta-rs' writer. A stream, not a table: delta-rs then overlaps
    Polars' export with writing, as ``DataFrame.write_delta`` does."""
    import pyarrow as pa
    return pa.RecordBatchReader.from_stream(df).cast(without_views(schema))


def whole_microseconds_check(columns: Schema, table: str) -> Callable[[pl.DataFrame], None] | None:
    """A validator refusing nanosecond timestamps Delta would truncate (``None``: no such column)."""
    ns = [c.name for c in columns if isinstance(c.dtype, t.Datetime) and c.dtype.unit == "ns"]
    if not ns:
        return None

    def check(df: pl.DataFrame) -> None:
        for name in ns:
            lossy = df.select((pl.col(name).dt.nanosecond() % 1000 != 0).sum()).item()
            if lossy:
                raise DataValidationError(
                    table, name, f"{lossy} value(s) have sub-microsecond digits; Delta stores microseconds"
                )

    return check


class BatchSource:
    """A re-startable source of validated Arrow data for one write attempt.

    Args:
        frame: The conformed frame.
        columns: What each batch holds, in declared types.
        schema: The storable Arrow schema of the batches.
        validate: The plan's batch validator.
        streaming: Pull batches with Polars' streaming engine instead of collecting.
        table: The table's name, for progress logs.
    """

    def __init__(self, frame: Frame, columns: Schema, schema: pa.Schema, validate: Callable[[pl.DataFrame], None],
                 *, streaming: bool, table: str) -> None:
        self.frame, self.columns, self.schema, self.validate = frame, columns, schema, validate
        self.streaming, self.table = streaming, table
        self.rows = 0
        self.error: BaseException | None = None
        self._eager: pl.DataFrame | None = None
        self._exprs = storable_exprs(columns)
        names = [c.name for c in columns]
        # batches already in storable types and order pass through without a select
        self._identity = all(e.meta.is_column() and e.meta.output_name() == n for e, n in zip(self._exprs, names, strict=True))
        self._names = names

    def prepare(self, df: pl.DataFrame) -> pl.DataFrame:
        """Validate one batch (in declared types) and return it in the storable types."""
        self.validate(df)
        if self._identity and df.columns == self._names:
            return df
        return df.select(self._exprs)

    def data(self) -> pa.RecordBatchReader:
        """The whole write's data for one commit attempt, as the Arrow stream delta-rs reads."""
        import pyarrow as pa
        if not self.streaming:
            return as_arrow(next(self.frames()), self.schema)
        return pa.RecordBatchReader.from_batches(
            without_views(self.schema), (b for df in self.frames() for b in as_arrow(df, self.schema)))

    def frames(self) -> Generator[pl.DataFrame, None, None]:
        """The whole write's data for one commit attempt: validated frames in the storable types
        (the collected frame once when eager, else the streaming engine's batches)."""
        self.error = None
        if not self.streaming:
            if self._eager is None:
                df = self.frame.collect() if isinstance(self.frame, pl.LazyFrame) else self.frame
                self._eager = self.prepare(df)
                self.rows = df.height
            yield self._eager
            return
        # a thread runs the source (and the validation) ahead of the consumer's encoding
        yield from prefetch(self._streamed(get_dagster_logger()), _PREFETCH_BATCHES, name=f"loom-read-{self.table}")

    def _streamed(self, log: logging.Logger) -> Iterator[pl.DataFrame]:
        """The streaming engine's validated batches (run by :func:`prefetch`'s thread)."""
        self.rows = 0
        assert isinstance(self.frame, pl.LazyFrame)
        try:
            for i, df in enumerate(self.frame.collect_batches(engine="streaming")):
                out = self.prepare(df)
                self.rows += df.height
                if i and i % _LOG_EVERY_BATCHES == 0:
                    log.info(f"{self.table}: {self.rows} rows in {i} batches so far")
                yield out
        except GeneratorExit:
            raise  # the consumer stopped (its own error is the one to report), not a reader failure
        except BaseException as exc:
            # delta-rs wraps the reader's exception; keep the original to re-raise it
            self.error = exc
            raise
