"""The engines of the Delta conformance suite, each reading a table with and without a filter,
and the truth each must return.

Engines: deltalake's ``to_pyarrow_table``, its Arrow dataset with a filter expression,
DataFusion SQL (deltalake's ``QueryBuilder``) with ``WHERE``, ``polars.scan_delta`` with a
filter, pyarrow over exactly the files the log lists (partition values from the log), our own
``DeltaResource.read`` / ``read_streaming`` with a predicate, and daft's ``read_deltalake``.

Comparisons follow each engine's own float semantics: polars, DataFusion and daft order NaN
above every number (``NaN > 1.0`` is true), pyarrow compares by IEEE 754 (false). Filter values
are finite and never NaN, so no other difference arises.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import polars as pl
from polars.testing import assert_frame_equal

from loom_resources import DeltaResource, RunParams, SourceSpec, TableRef, col

Op = str  # "=", "<", ">=", "is_null", "not_null"


@dataclass(frozen=True)
class Filter:
    """One filter: ``column op value`` (``value`` unused for the null tests)."""

    column: str
    op: Op
    value: Any = None

    def __str__(self) -> str:
        return f"{self.column} {self.op} {self.value!r}" if self.op in ("=", "<", ">=") else f"{self.column} {self.op}"


_PY_OPS: dict[str, Callable[[Any, Any], Any]] = {"=": operator.eq, "<": operator.lt, ">=": operator.ge}


# -- truth ---------------------------------------------------------------------------------------
def canonical(df: pl.DataFrame, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """``df`` in one comparable form: declared column order, integers as Int64 (Delta widens
    unsigned types), categoricals and string views as String, rows sorted by id."""
    exprs = []
    for name, dtype in schema.items():
        e = pl.col(name)
        if dtype.is_integer():
            e = e.cast(pl.Int64)
        elif isinstance(dtype, pl.Categorical | pl.Enum):
            e = e.cast(pl.String)
        else:
            e = e.cast(dtype)
        exprs.append(e)
    return df.select(exprs).sort("id")


def truth(df: pl.DataFrame, f: Filter | None, *, nan_largest: bool) -> pl.DataFrame:
    """The rows of the oracle's table ``df`` that ``f`` keeps, in an engine's float semantics."""
    if f is None:
        return df
    c = pl.col(f.column)
    if f.op == "is_null":
        return df.filter(c.is_null())
    if f.op == "not_null":
        return df.filter(c.is_not_null())
    if isinstance(f.value, float):
        keep = _PY_OPS[f.op](c, f.value)
        nan = c.is_nan()
        # polars orders NaN last (NaN >= v is true); IEEE engines make every NaN comparison false
        keep = pl.when(nan).then(pl.lit(nan_largest and f.op == ">=")).otherwise(keep)
        return df.filter(keep.fill_null(False))
    if isinstance(f.value, str):
        return df.filter(_PY_OPS[f.op](c.cast(pl.String), f.value).fill_null(False))
    return df.filter(_PY_OPS[f.op](c, pl.lit(f.value, df.schema[f.column])).fill_null(False))


# -- filters in each engine's words ---------------------------------------------------------------
def to_polars(f: Filter, dtype: pl.DataType) -> pl.Expr:
    c = pl.col(f.column)
    if f.op == "is_null":
        return c.is_null()
    if f.op == "not_null":
        return c.is_not_null()
    return _PY_OPS[f.op](c, pl.lit(f.value, dtype))


def to_arrow(f: Filter, pa_type: Any) -> Any:
    import pyarrow as pa
    import pyarrow.dataset as ds

    c = ds.field(f.column)
    if f.op == "is_null":
        return c.is_null()
    if f.op == "not_null":
        return c.is_valid()
    if pa.types.is_string_view(pa_type) or pa.types.is_large_string(pa_type):
        pa_type = pa.string()
    if pa.types.is_binary_view(pa_type) or pa.types.is_large_binary(pa_type):
        pa_type = pa.binary()
    return _PY_OPS[f.op](c, ds.scalar(pa.scalar(f.value, pa_type)))


def _sql_literal(value: Any, dtype: pl.DataType) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        assert math.isfinite(value)
        return f"CAST({value!r} AS {'REAL' if dtype == pl.Float32 else 'DOUBLE'})"
    if isinstance(value, decimal.Decimal):
        assert isinstance(dtype, pl.Decimal)
        return f"CAST('{value}' AS DECIMAL({dtype.precision},{dtype.scale}))"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, bytes):
        return f"X'{value.hex()}'"
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            text = value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
            return f"arrow_cast('{text}Z', 'Timestamp(Microsecond, Some(\"UTC\"))')"
        return f"arrow_cast('{value:%Y-%m-%dT%H:%M:%S.%f}', 'Timestamp(Microsecond, None)')"
    if isinstance(value, dt.date):
        return f"DATE '{value.isoformat()}'"
    raise TypeError(f"no SQL literal for {value!r}")


def to_sql(f: Filter, dtype: pl.DataType) -> str:
    name = '"' + f.column.replace('"', '""') + '"'
    if f.op == "is_null":
        return f"{name} IS NULL"
    if f.op == "not_null":
        return f"{name} IS NOT NULL"
    return f"{name} {f.op} {_sql_literal(f.value, dtype)}"


def to_loom(f: Filter) -> Any:
    c = col(f.column)
    return {"=": c.eq, "<": c.lt, ">=": c.ge}[f.op](f.value) if f.op in _PY_OPS else (
        c.is_null() if f.op == "is_null" else c.is_not_null())


def to_daft(f: Filter, dtype: pl.DataType) -> Any:
    import daft

    c = daft.col(f.column)
    if f.op == "is_null":
        return c.is_null()
    if f.op == "not_null":
        return c.not_null()
    return _PY_OPS[f.op](c, daft.lit(f.value))


# -- the engines ---------------------------------------------------------------------------------
@dataclass
class Table:
    """One Delta table as the engines reach it."""

    delta: DeltaResource
    ref: TableRef
    schema: dict[str, pl.DataType]  # declared Polars types of every column

    @property
    def uri(self) -> str:
        return self.delta.table_uri(self.ref)

    @property
    def options(self) -> dict[str, str]:
        return dict(self.delta.storage_options)

    def open(self) -> Any:
        from deltalake import DeltaTable

        return DeltaTable(self.uri, storage_options=self.options or None)


def _from_arrow(data: Any) -> pl.DataFrame:
    """A DataFrame of Arrow data, also of deltalake's arro3 objects (through the C interface)."""
    import pyarrow as pa

    if not isinstance(data, pa.Table | pa.RecordBatch):
        data = pa.table(data)
    out = pl.from_arrow(data)
    assert isinstance(out, pl.DataFrame)
    return out


def deltalake_table(t: Table, f: Filter | None) -> pl.DataFrame:
    table = t.open()
    if f is None:
        return _from_arrow(table.to_pyarrow_table())
    dataset = table.to_pyarrow_dataset()
    return _from_arrow(table.to_pyarrow_table(filters=to_arrow(f, dataset.schema.field(f.column).type)))


def deltalake_dataset(t: Table, f: Filter | None) -> pl.DataFrame:
    dataset = t.open().to_pyarrow_dataset()
    if f is None:
        return _from_arrow(dataset.to_table())
    return _from_arrow(dataset.to_table(filter=to_arrow(f, dataset.schema.field(f.column).type)))


def datafusion_sql(t: Table, f: Filter | None) -> pl.DataFrame:
    import pyarrow as pa
    from deltalake import QueryBuilder

    where = "" if f is None else " WHERE " + to_sql(f, t.schema[f.column])
    reader = QueryBuilder().register("t", t.open()).execute(f"SELECT * FROM t{where}")
    return _from_arrow(pa.RecordBatchReader.from_stream(reader).read_all())


def polars_scan(t: Table, f: Filter | None) -> pl.DataFrame:
    lf = pl.scan_delta(t.uri, storage_options=t.options or None)
    if f is not None:
        lf = lf.filter(to_polars(f, lf.collect_schema()[f.column]))
    return lf.collect()


def pyarrow_files(t: Table, f: Filter | None) -> pl.DataFrame:
    """pyarrow over exactly the files the snapshot's log lists, each with the partition values
    its add action records (the log is the authority, not the directory names)."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    table = t.open()
    schema = table.to_pyarrow_dataset().schema
    actions = _from_arrow(table.get_add_actions(flatten=True))
    parts = list(table.metadata().partition_columns)
    paths, exprs = [], []
    fs, base = _filesystem(t)
    for row in actions.iter_rows(named=True):
        from urllib.parse import unquote

        paths.append(f"{base}/{unquote(row['path'])}")
        e = ds.scalar(True)
        for c in parts:
            v = row[f"partition.{c}"]
            fld = ds.field(c)
            e = e & (fld.is_null() if v is None else fld == ds.scalar(pa.scalar(v, schema.field(c).type)))
        exprs.append(e)
    dataset = ds.FileSystemDataset.from_paths(paths, schema=schema, format=ds.ParquetFileFormat(), filesystem=fs,
                                              partitions=exprs)
    if f is None:
        return _from_arrow(dataset.to_table())
    return _from_arrow(dataset.to_table(filter=to_arrow(f, schema.field(f.column).type)))


def _filesystem(t: Table) -> tuple[Any, str]:
    from urllib.parse import urlsplit

    import pyarrow.fs as pafs

    if "://" not in t.uri:
        return pafs.LocalFileSystem(), t.uri
    o = t.options
    parts = urlsplit(t.uri)
    endpoint = urlsplit(o["AWS_ENDPOINT_URL"])
    fs = pafs.S3FileSystem(access_key=o["AWS_ACCESS_KEY_ID"], secret_key=o["AWS_SECRET_ACCESS_KEY"],
                           region=o.get("AWS_REGION", "us-east-1"), endpoint_override=endpoint.netloc,
                           scheme=endpoint.scheme)
    return fs, f"{parts.netloc}{parts.path}"


def loom_read(t: Table, f: Filter | None) -> pl.DataFrame:
    spec = SourceSpec(t.ref, predicate=None if f is None else to_loom(f))
    return t.delta.read(spec, RunParams()).collect()


def loom_read_streaming(t: Table, f: Filter | None) -> pl.DataFrame:
    spec = SourceSpec(t.ref, predicate=None if f is None else to_loom(f))
    return t.delta.read_streaming(spec, RunParams()).collect(engine="streaming")


def daft_read(t: Table, f: Filter | None) -> pl.DataFrame:
    import daft
    from daft.io import IOConfig, S3Config

    io = None
    if t.options:
        o = t.options
        io = IOConfig(s3=S3Config(endpoint_url=o["AWS_ENDPOINT_URL"], key_id=o["AWS_ACCESS_KEY_ID"],
                                  access_key=o["AWS_SECRET_ACCESS_KEY"], region_name=o.get("AWS_REGION"),
                                  use_ssl=False))
    df = daft.read_deltalake(t.uri, io_config=io)
    if f is not None:
        df = df.where(to_daft(f, t.schema[f.column]))
    return _from_arrow(df.to_arrow())


@dataclass(frozen=True)
class Engine:
    """A reader and its float semantics."""

    name: str
    read: Callable[[Table, Filter | None], pl.DataFrame]
    nan_largest: bool = True
    #: column kinds it cannot filter on (it still reads them)
    no_filter: tuple[str, ...] = ()


def engines() -> list[Engine]:
    """Every engine this machine runs (daft only where it is installed)."""
    out = [
        Engine("deltalake.to_pyarrow_table", deltalake_table, nan_largest=False),
        Engine("deltalake.to_pyarrow_dataset", deltalake_dataset, nan_largest=False),
        Engine("datafusion.QueryBuilder", datafusion_sql),
        Engine("polars.scan_delta", polars_scan),
        Engine("pyarrow.files_of_the_log", pyarrow_files, nan_largest=False),
        Engine("loom.read", loom_read),
        Engine("loom.read_streaming", loom_read_streaming),
    ]
    try:
        import daft  # noqa: F401
    except ImportError:
        return out
    return [*out, Engine("daft.read_deltalake", daft_read)]


#: Failures of other engines on the Parquet files delta-rs' merge writes: its DataFusion plan
#: reads strings as ``Utf8View`` and stores that type in the files' Arrow schema (our own writes
#: hand it no views: ``_batches.without_views``). Upstream, not ours to fix; tolerated only on
#: a table a merge wrote, where a file's schema holds a view (see ``merge_views``).
KNOWN_VIEW_FAILURES = re.compile(
    r"Unsupported Arrow DataType: (Utf8|Binary)View"  # daft 0.7
    r"|no kernel matching input types \((large_)?(string|binary), (string|binary)_view\)"  # pyarrow filters
)


def compare(engine: Engine, t: Table, oracle: pl.DataFrame, f: Filter | None, *,
            views: bool = False) -> str | None:
    """``None`` when ``engine`` returns exactly the truth, else what differs. ``views``: the
    table holds files with ``Utf8View`` (a merge wrote them): the known failures are tolerated."""
    expected = canonical(truth(oracle, f, nan_largest=engine.nan_largest), t.schema)
    try:
        got = canonical(engine.read(t, f), t.schema)
    except Exception as exc:  # noqa: BLE001  (a failing read is a mismatch, reported with the others)
        if views and KNOWN_VIEW_FAILURES.search(str(exc)):
            return None
        return f"{engine.name} [{f}]: {type(exc).__name__}: {str(exc)[:300]}"
    try:
        assert_frame_equal(got, expected, check_exact=True)
    except AssertionError as exc:
        return f"{engine.name} [{f}]: {got.height} rows, truth {expected.height}: {str(exc)[:400]}"
    return None
