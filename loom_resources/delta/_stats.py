"""Delta file statistics: the ones written for files Polars encodes, and row counts read back.

Written (:func:`file_stats`): every add action of a file Polars encoded (``_files``) carries
``numRecords`` and, per flat column, either ``nullCount`` *with* correct ``minValues`` /
``maxValues``, or nothing at all. Never a null count without bounds: deltalake (1.6 and 0.25)
reads such a column as "nulls only" and skips the file under any filter on it (issue 23: its
Arrow dataset, hence ``DeltaResource.read`` on the Arrow path, returned no rows). A column left
out of the statistics is "unknown" to every reader, which then reads the file. The rule per type:

==========================  =========  ==============================================================
stored type                 nullCount  minValues / maxValues
==========================  =========  ==============================================================
byte, short, integer, long  yes        exact JSON integers (int64 extremes included)
date                        yes        ``YYYY-MM-DD``
timestamp (UTC)             yes        ``...T..:..:...mmmZ``: min down, max up to whole milliseconds
timestamp_ntz               yes        ``YYYY-MM-DD HH:MM:SS.mmm``: min down, max up (as above)
boolean                     yes        JSON ``false`` / ``true`` (as delta-rs writes them)
float, double               yes        exact JSON numbers when every value is finite; a zero bound
                                       is written as ``-0.0`` (min) / ``0.0`` (max), so engines
                                       that order -0.0 < 0.0 (DataFusion, arrow-rs) keep the file.
                                       A file holding NaN or ±inf: the column is left out (JSON has
                                       no inf; NaN sorts above every number in DataFusion and
                                       polars, but Parquet and delta-rs bounds leave it out, so a
                                       bound would skip rows those engines match)
decimal(p, s), p <= 15      yes        exact JSON numbers (15 digits survive a float64 parse)
decimal(p, s), p > 15       --         left out: readers parse the JSON number as float64
                                       (delta-rs writes 99…9.99 as ``1e+35``): no exact bound
string                      yes        min: its first 32 characters (a prefix is below the value);
                                       max: the first 32 characters with the last one incremented
                                       (above every value with that prefix), as delta-rs does; if
                                       no character can be incremented, the column is left out
binary, list, struct        --         left out (delta-rs writes no binary statistics either)
any type, all values null   yes        no bounds: "nulls only" is the truth
==========================  =========  ==============================================================

Strings compare by code point (UTF-8 byte order) in every engine checked (polars, pyarrow,
DataFusion), so a code-point prefix and its increment are bounds for all of them. The
conformance suite (``tests/conformance``) checks each add action against its Parquet file and
reads the tables with deltalake, DataFusion, polars, pyarrow and our own reader under filters.

Read (:func:`partition_counts`): delta-rs records ``numRecords`` in every file's statistics
and the file's partition values in the log, so rows per partition come from the add actions
of the snapshot (a few hundred bytes per file) instead of a scan of the table.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Sequence
from typing import Any

import polars as pl
from deltalake import DeltaTable

from loom_resources import dtypes as t
from loom_resources.dtypes import DataType
from loom_resources.partitions import FILE_ROWS

__all__ = ["STRING_PREFIX", "file_stats", "partition_counts", "string_max_bound"]

#: Characters of a string bound, as delta-rs keeps them.
STRING_PREFIX = 32
#: Decimal precision whose values a float64 parse of the JSON number gives back exactly.
_EXACT_DECIMAL_DIGITS = 15
_EXACT_TYPES = (t.Int8, t.Int16, t.Int32, t.Int64, t.Date, t.Datetime, t.Boolean, t.String)
_FLOAT_TYPES = (t.Float32, t.Float64)
_MAX_CODE_POINT = 0x10FFFF
_SURROGATES = range(0xD800, 0xE000)


def string_max_bound(value: str) -> str | None:
    """An upper bound of every string starting with ``value[:STRING_PREFIX]`` that is at most
    ``STRING_PREFIX`` characters long: ``value`` itself when short enough, else the prefix with
    its last incrementable character incremented (``None``: every character is U+10FFFF).

    Written by hand: no library offers a code-point "next prefix"; delta-rs does the same in Rust.
    """
    if len(value) <= STRING_PREFIX:
        return value
    prefix = value[:STRING_PREFIX]
    for i in range(len(prefix) - 1, -1, -1):
        cp = ord(prefix[i]) + 1
        if cp in _SURROGATES:  # not encodable in UTF-8: the next code point is U+E000
            cp = _SURROGATES.stop
        if cp <= _MAX_CODE_POINT:
            return prefix[:i] + chr(cp)
    return None


def _timestamp(value: dt.datetime, *, up: bool) -> str | None:
    """A timestamp bound in delta-rs' millisecond form, rounded outward (``None``: out of range)."""
    ms = value.replace(microsecond=value.microsecond // 1000 * 1000)
    if up and ms != value:
        try:
            ms += dt.timedelta(milliseconds=1)  # a bound must hold every value of the file
        except OverflowError:
            return None
    if value.tzinfo is not None:
        return f"{ms.astimezone(dt.UTC):%Y-%m-%dT%H:%M:%S}.{ms.microsecond // 1000:03d}Z"
    return f"{ms:%Y-%m-%d %H:%M:%S}.{ms.microsecond // 1000:03d}"


def _bound(dtype: DataType, value: Any, *, up: bool) -> Any:
    """``value`` (a column's min, or its max when ``up``) as the log's JSON bound; ``None``
    when no correct bound can be written."""
    if isinstance(dtype, t.String):
        return string_max_bound(value) if up else value[:STRING_PREFIX]
    if isinstance(dtype, t.Datetime):
        return _timestamp(value, up=up)
    if isinstance(dtype, t.Date):
        return value.isoformat()
    if isinstance(dtype, _FLOAT_TYPES):
        value = float(value)
        if not math.isfinite(value):
            return None
        if value == 0.0:
            return 0.0 if up else -0.0  # the outer zero in the engines ordering -0.0 < 0.0
        return value
    if isinstance(dtype, t.Decimal):
        return float(value)  # exact: only precisions <= _EXACT_DECIMAL_DIGITS get here
    return value  # integers, booleans


def _has_bounds(dtype: DataType | None) -> bool:
    if isinstance(dtype, t.Decimal):
        return dtype.precision <= _EXACT_DECIMAL_DIGITS
    return isinstance(dtype, _EXACT_TYPES + _FLOAT_TYPES)


def file_stats(df: pl.DataFrame, types: dict[str, DataType]) -> str:
    """The Delta statistics of one file holding ``df`` (``types``: its columns' stored types)
    by the rule of this module's docstring, as the add action's JSON string."""
    cols = [c for c in df.columns if not df.schema[c].is_nested()]
    exprs = [pl.col(c).null_count().alias(f"n{i}") for i, c in enumerate(cols)]
    bounded = [(i, c) for i, c in enumerate(cols) if _has_bounds(types.get(c))]
    exprs += [pl.col(c).min().alias(f"a{i}") for i, c in bounded]
    exprs += [pl.col(c).max().alias(f"z{i}") for i, c in bounded]
    # NaN is left out of min/max by polars (as by Parquet): count the non-finite values apart
    exprs += [(~pl.col(c).is_finite()).any().alias(f"f{i}") for i, c in bounded
              if isinstance(types.get(c), _FLOAT_TYPES)]
    row = df.select(exprs).row(0, named=True) if exprs else {}
    nulls: dict[str, int] = {}
    lows: dict[str, Any] = {}
    highs: dict[str, Any] = {}
    for i, c in enumerate(cols):
        n = row[f"n{i}"]
        if n == df.height:
            nulls[c] = n  # all null: no bounds, and "nulls only" is exact
            continue
        dtype = types.get(c)
        if not _has_bounds(dtype) or row.get(f"f{i}"):
            continue  # the whole column left out: unknown to every reader, never "nulls only"
        assert dtype is not None
        lo, hi = _bound(dtype, row[f"a{i}"], up=False), _bound(dtype, row[f"z{i}"], up=True)
        if lo is None or hi is None:
            continue
        nulls[c], lows[c], highs[c] = n, lo, hi
    stats: dict[str, Any] = {"numRecords": df.height, "nullCount": nulls}
    if lows:
        stats["minValues"] = lows
        stats["maxValues"] = highs
    return json.dumps(stats, allow_nan=False)


def partition_counts(table: DeltaTable, columns: Sequence[str]) -> pl.DataFrame | None:
    """One row per data file of the snapshot: its partition values (typed, named after
    ``columns``) and its row count in ``partitions.FILE_ROWS``.

    ``None`` when a column is not a partition column of the table, or a file was written
    without a row count (some foreign writers skip statistics): the caller then scans.
    """
    partitioned = set(table.metadata().partition_columns)
    if not columns or not set(columns) <= partitioned:
        return None
    actions = pl.DataFrame(table.get_add_actions(flatten=True))
    needed = ["num_records", *(f"partition.{c}" for c in columns)]
    if any(n not in actions.columns for n in needed):
        return None
    frame = actions.select(pl.col(f"partition.{c}").alias(c) for c in columns).with_columns(
        actions["num_records"].alias(FILE_ROWS))
    if frame[FILE_ROWS].null_count():
        return None
    return frame
