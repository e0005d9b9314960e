"""Delta reads: a lazy scan with the projection and the bound predicate pushed down.

Two readers, chosen per table (and version):

* ``polars.scan_delta`` (native Parquet scan, fast) for the normal case. It takes partition
  values from the *directory names* of the data files (Hive partitioning), not from the log.
* deltalake's Arrow dataset (``DeltaTable.to_pyarrow_dataset()`` through
  ``polars.scan_pyarrow_dataset``, still lazy: projections and predicates reach the dataset) when
  the directories cannot be trusted to say what the log says. The Delta protocol makes the log's
  ``partitionValues`` authoritative; other engines (Spark, Databricks) write layouts where the
  native scan fails or, worse, reads wrong values:

  - a binary (or float32) partition column: polars cannot parse it from a path;
  - partition values in a form polars reads differently or not at all (Delta 3's ISO
    ``...T10:00:00.000000Z`` timestamps next to Spark's ``10:00:00``, an empty string, which
    the protocol reads as null);
  - data files outside ``col=value`` directories (random file prefixes), or directories that
    disagree with the log;
  - a table root whose own path contains ``key=value`` (polars takes it for a partition column).

:func:`native_scan_is_exact` decides by the partition column types, then probes every data
directory of the snapshot against the log (one pass over the distinct directories).
"""

from __future__ import annotations

import datetime as dt
import decimal
import functools
import operator
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import polars as pl
from deltalake import DeltaTable
from deltalake.schema import PrimitiveType

from loom_resources.errors import LoomError
from loom_resources.model import RunParams, SourceSpec
from loom_resources.predicates import And, Compare, In, IsNull, Or, Param, Predicate
from loom_resources.reading import apply_source

if TYPE_CHECKING:
    import pyarrow.dataset as pds

__all__ = ["native_scan_is_exact", "scan"]

_HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"
# Partition column types whose directory text polars parses to the value the log holds, as long
# as the text is canonical (checked per directory). Others always use the Arrow dataset.
_NATIVE_PARTITION_TYPES = frozenset(
    {"string", "byte", "short", "integer", "long", "boolean", "date", "timestamp", "timestamp_ntz", "double"}
)
_PLAIN_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?")


def scan(table: DeltaTable, spec: SourceSpec, params: RunParams) -> pl.LazyFrame:
    """The table as a LazyFrame; partition predicates prune files, projections skip columns."""
    if native_scan_is_exact(table):
        lf = pl.scan_delta(table)
    else:
        lf = pl.scan_pyarrow_dataset(_pruned_dataset(table, spec, params))
    return apply_source(lf, spec, params, [f.name for f in table.schema().fields])


def _pruned_dataset(table: DeltaTable, spec: SourceSpec, params: RunParams) -> pds.Dataset:
    """The snapshot's Arrow dataset, narrowed to the files the predicate's partition conditions
    can match. polars hands the dataset only the predicates it can translate to Arrow (not a
    binary literal, for one); the partition conditions rendered here prune in every case. The
    full predicate is still applied by polars on top, so this only ever skips files."""
    dataset = table.to_pyarrow_dataset()
    if spec.predicate is None:
        return dataset
    try:
        bound = spec.predicate.bind(params.bindings())
    except LoomError:
        return dataset  # apply_source reports it
    types = {f.name: f.type for f in table.schema().fields}
    prunable = {c for c in table.metadata().partition_columns
                if isinstance(types.get(c), PrimitiveType) and types[c].type not in ("float", "double")}
    expr = _arrow_filter(bound, prunable)
    if expr is None:
        return dataset
    import pyarrow as pa  # here, not at load: pyarrow+NumPy cost ~0.1 s

    try:
        dataset.scanner(filter=expr, columns=[])  # binds the expression: a type mismatch raises here
    except (pa.ArrowException, TypeError, ValueError):
        return dataset
    return dataset.filter(expr)


def _arrow_filter(pred: Predicate, columns: set[str]) -> pds.Expression | None:
    """An Arrow expression keeping every row ``pred`` keeps, over ``columns`` only; ``None``
    when it cannot say anything. Conjuncts it cannot render are dropped (a weaker filter)."""
    import pyarrow.dataset as pds  # deferred: it imports pandas (~0.3 s), only foreign tables need it

    if isinstance(pred, And):
        parts = [e for e in (_arrow_filter(p, columns) for p in pred.parts) if e is not None]
        return functools.reduce(operator.and_, parts) if parts else None
    if isinstance(pred, Or):
        alts = [_arrow_filter(p, columns) for p in pred.parts]
        if not alts or any(e is None for e in alts):
            return None
        return functools.reduce(operator.or_, alts)
    if isinstance(pred, IsNull) and pred.column in columns:
        field = pds.field(pred.column)
        return field.is_valid() if pred.negate else field.is_null()
    if isinstance(pred, In) and pred.column in columns and not isinstance(pred.values, Param):
        return pds.field(pred.column).isin([v for v in pred.values if v is not None] or [None])
    if isinstance(pred, Compare) and pred.column in columns and not isinstance(pred.value, Param):
        field = pds.field(pred.column)
        if pred.value is None:
            return {"=": field.is_null(), "!=": field.is_valid()}.get(pred.op)
        value = pds.scalar(pred.value)
        ops = {"=": field == value, "!=": field != value, "<": field < value, "<=": field <= value,
               ">": field > value, ">=": field >= value}
        return ops[pred.op]
    return None


def native_scan_is_exact(table: DeltaTable) -> bool:
    """Whether ``polars.scan_delta`` reads this snapshot exactly as its log describes it."""
    partition_columns = list(table.metadata().partition_columns)
    if not partition_columns:
        return True
    types = {f.name: f.type for f in table.schema().fields}
    for name in partition_columns:
        typ = types.get(name)
        if not isinstance(typ, PrimitiveType) or not (
                typ.type in _NATIVE_PARTITION_TYPES or typ.type.startswith("decimal(")):
            return False
    if any("=" in segment for segment in _table_path(table.table_uri).split("/")):
        return False
    actions = pl.DataFrame(table.get_add_actions(flatten=True))
    if actions.height == 0:
        return True
    value_columns = [f"partition.{c}" for c in partition_columns]
    if any(c not in actions.columns for c in value_columns):
        return False
    directories = (
        actions.select(pl.col("path").str.replace(r"[^/]*$", "").alias("directory"), *value_columns)
        .unique()
        .iter_rows()
    )
    return all(_directory_matches(row[0], partition_columns, row[1:]) for row in directories)


def _table_path(uri: str) -> str:
    """The path part of a table URI (``file:///a/b`` -> ``/a/b``, ``s3://bucket/a`` -> ``/a``)."""
    if "://" in uri:
        uri = uri.split("://", 1)[1]
        uri = uri[uri.find("/"):] if "/" in uri else ""
    return uri


def _directory_matches(directory: str, columns: list[str], values: tuple[Any, ...]) -> bool:
    """Whether a data file's directory (as the log's URI-encoded path has it) is exactly
    ``col=value/...`` for the partition columns, with values polars parses to the log's values."""
    # The log path is a URI: decode once to get the path on storage; polars then decodes each
    # Hive value again (Spark and delta-rs escape '/', '=', '%'... in directory names).
    segments = [s for s in unquote(directory).split("/") if s]
    if len(segments) != len(columns):
        return False
    for segment, column, value in zip(segments, columns, values, strict=True):
        key, sep, text = segment.partition("=")
        if not sep or unquote(key) != column:
            return False
        if not _text_means(unquote(text), value):
            return False
    return True


def _text_means(text: str, value: Any) -> bool:
    """Whether polars parses the directory text ``text`` to ``value`` (as delta-rs typed it from
    the log): only canonical texts count, so anything unusual goes to the Arrow dataset."""
    if value is None:
        return text == _HIVE_NULL
    if isinstance(value, bool):
        return text == ("true" if value else "false")
    if isinstance(value, int):
        return text == str(value)
    if isinstance(value, float | decimal.Decimal):
        # plain decimal notation only (no exponent, NaN, infinities); both sides round exactly
        return bool(_PLAIN_NUMBER.fullmatch(text)) and type(value)(text) == value
    if isinstance(value, dt.datetime):
        whole = value.strftime("%Y-%m-%d %H:%M:%S")
        return text in ((f"{whole}.{value.microsecond:06d}",) if value.microsecond else (whole, f"{whole}.000000"))
    if isinstance(value, dt.date):
        return text == value.isoformat()
    return isinstance(value, str) and value != "" and value != _HIVE_NULL and text == value
