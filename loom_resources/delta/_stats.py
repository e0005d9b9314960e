"""Delta file statistics: the ones written for files Polars encodes, and row counts read back.

Written (:func:`file_stats`): every add action of a file Polars encoded (``_files``) carries
``numRecords`` and, for every flat column but binary ones, ``nullCount`` *and* correct
``minValues`` / ``maxValues`` (only ``nullCount`` when the column is all null in the file).
Measured with deltalake 1.6 (its Arrow dataset, which ``DeltaResource.read`` uses for some
tables), a column with fewer than all three is misread: a null count without both bounds as
"nulls only" (range filters skip the file: issue 23), and a column left out of the statistics
as "no nulls" (``IS NULL`` skips the file, ``IS NOT NULL`` returns its nulls). DataFusion and
polars read either as unknown. So every bound is written, exact or widened outward:

==========================  =====================================================================
stored type                 minValues / maxValues (with nullCount)
==========================  =====================================================================
byte, short, integer, long  exact JSON integers (int64 extremes included)
decimal(p, s)               exact JSON numbers written digit for digit (``-99…9.999999``); delta-rs
                            parses them as decimals, so a 38-digit bound is exact (a float64
                            would round ``99…9.99`` up past the type's range)
float, double               the finite extremes, exact; ``1e999`` as the maximum when the file
                            holds NaN or +inf and ``-1e999`` as the minimum when it holds -inf
                            (JSON has no infinity; delta-rs, Python and Jackson read these as
                            ±inf): NaN sorts above every number in polars, so a finite maximum
                            would let a reader skip a file whose NaN matches ``x > v``. A zero
                            bound is ``-0.0`` (min) / ``0.0`` (max), for engines ordering -0.0
                            below 0.0 (arrow-rs' total order)
boolean                     JSON ``false`` / ``true`` (as delta-rs writes them)
date                        ``YYYY-MM-DD``
timestamp (UTC)             ``...T..:..:...mmmZ``: min down, max up to whole milliseconds
timestamp_ntz               ``YYYY-MM-DD HH:MM:SS.mmm``: min down, max up (as above)
string                      min: the first 32 characters (a prefix is below the value); max: the
                            first 32 characters with the last one incremented (above every value
                            with that prefix), as delta-rs does; the whole value when no character
                            can be incremented (all U+10FFFF)
binary                      none, and no nullCount (as delta-rs' writer: Delta defines no binary
                            bounds, and deltalake reads a binary column without them correctly)
list, struct                none (nested columns carry no statistics here)
==========================  =====================================================================

Which columns get statistics at all is the table's ``delta.dataSkippingStatsColumns`` when it
has one; the tables Loom creates list only the columns both Parquet writers bound exactly
(:func:`stats_columns`), since delta-rs' writer gets timestamps, NaN and wide decimals wrong.
The whole rule and the measurements behind it: ``docs/delta-conformance.md``.

Strings compare by code point (UTF-8 byte order) in every engine checked (polars, pyarrow,
DataFusion), so a code-point prefix and its increment are bounds for all of them. The
conformance suite (``tests/conformance``) checks each add action against its Parquet file and
reads the tables with deltalake, DataFusion, polars, pyarrow, daft and our own reader under
filters.

Read (:func:`partition_counts`): delta-rs records ``numRecords`` in every file's statistics
and the file's partition values in the log, so rows per partition come from the add actions
of the snapshot (a few hundred bytes per file) instead of a scan of the table.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import secrets
from collections.abc import Sequence
from typing import Any

import polars as pl
from deltalake import DeltaTable

from loom_resources import dtypes as t
from loom_resources.dtypes import DataType
from loom_resources.partitions import FILE_ROWS

__all__ = ["STATS_COLUMNS_PROPERTY", "STRING_PREFIX", "file_bounds", "file_stats", "partition_counts", "stats_columns",
           "string_max_bound"]

#: The table property naming the columns whose statistics writers collect and readers use.
STATS_COLUMNS_PROPERTY = "delta.dataSkippingStatsColumns"
#: Types whose statistics delta-rs' writer gets right too (see :func:`stats_columns`).
_BOTH_WRITERS_EXACT = (t.Int8, t.Int16, t.Int32, t.Int64, t.Date, t.Boolean, t.String)
_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

#: Characters of a string bound, as delta-rs keeps them.
STRING_PREFIX = 32
_BOUNDED = (t.Int8, t.Int16, t.Int32, t.Int64, t.Date, t.Datetime, t.Boolean, t.String, t.Decimal,
            t.Float32, t.Float64)
_FLOAT_TYPES = (t.Float32, t.Float64)
#: Decimal precision whose values a float64 parse gives back exactly (delta-rs' writer).
_EXACT_DECIMAL_DIGITS = 15
_MAX_CODE_POINT = 0x10FFFF
_SURROGATES = range(0xD800, 0xE000)
# A number written into the JSON text as it is (json has no Decimal, and no infinity): a string
# "<marker><digits>" that the JSON text then loses its quotes; the marker holds a per-process
# random part, so no string a column holds can pass for it
_RAW = f"\x00{secrets.token_hex(8)}:"
_RAW_TOKEN = re.compile(re.escape(json.dumps(_RAW)[:-1]) + r'([-0-9.e]+)"')
_PLUS_INF, _MINUS_INF = _RAW + "1e999", _RAW + "-1e999"


def string_max_bound(value: str) -> str:
    """An upper bound of ``value`` of at most ``STRING_PREFIX`` characters where one exists:
    ``value`` itself when short enough, else its prefix with the last incrementable character
    incremented (above every string with that prefix); ``value`` whole when every character of
    the prefix is U+10FFFF.

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
    return value


def _timestamp(value: dt.datetime, *, up: bool) -> str:
    """A timestamp bound in delta-rs' millisecond form, rounded outward."""
    ms = value.replace(microsecond=value.microsecond // 1000 * 1000)
    if up and ms != value:
        try:
            ms += dt.timedelta(milliseconds=1)  # a bound must hold every value of the file
        except OverflowError:  # 9999-12-31 23:59:59.999xxx: the last millisecond (cannot round up)
            return f"{ms:%Y-%m-%d %H:%M:%S}.999" if value.tzinfo is None else f"{ms:%Y-%m-%dT%H:%M:%S}.999Z"
    if value.tzinfo is not None:
        return f"{ms.astimezone(dt.UTC):%Y-%m-%dT%H:%M:%S}.{ms.microsecond // 1000:03d}Z"
    return f"{ms:%Y-%m-%d %H:%M:%S}.{ms.microsecond // 1000:03d}"


def _bound(dtype: DataType, value: Any, *, up: bool) -> Any:
    """``value`` (a column's min, or its max when ``up``) as the log's JSON bound."""
    if isinstance(dtype, t.String):
        return string_max_bound(value) if up else value[:STRING_PREFIX]
    if isinstance(dtype, t.Datetime):
        return _timestamp(value, up=up)
    if isinstance(dtype, t.Date):
        return value.isoformat()
    if isinstance(dtype, t.Decimal):
        return _RAW + format(value, "f")  # digit for digit: a float would round 38 digits
    if isinstance(dtype, _FLOAT_TYPES):
        value = float(value)
        if value == 0.0:
            return 0.0 if up else -0.0  # the outer zero in the engines ordering -0.0 < 0.0
        return value
    return value  # integers, booleans


def _float_bounds(lo: float | None, hi: float | None, nan: bool, pos_inf: bool, neg_inf: bool,
                  dtype: DataType) -> tuple[Any, Any]:
    """Bounds of a float column from its finite extremes and its non-finite values."""
    low = _MINUS_INF if neg_inf or lo is None else _bound(dtype, lo, up=False)
    high = _PLUS_INF if nan or pos_inf or hi is None else _bound(dtype, hi, up=True)
    return low, high


def stats_columns(types: dict[str, DataType]) -> str:
    """The ``delta.dataSkippingStatsColumns`` of a table Loom creates: the columns whose bounds
    both Parquet writers record exactly. delta-rs' writer (merges, predicate replaces, schema
    changes and ``parquet_writer="delta-rs"`` go through it) truncates timestamp maxima to the
    millisecond below (a reader then skips a file holding ``…:00.123456`` under ``ts >= that``),
    leaves NaN and infinities out of float bounds, and writes decimals as float64 (``1e+32`` for
    a 38-digit maximum). Columns left out carry no statistics from either writer, which every
    reader (deltalake's Arrow dataset included) treats as unknown: their files are read, never
    skipped. Decimals up to 15 digits survive the float64 and stay in."""
    names = []
    for name, dtype in types.items():
        exact = isinstance(dtype, _BOTH_WRITERS_EXACT) or (
            isinstance(dtype, t.Decimal) and dtype.precision <= _EXACT_DECIMAL_DIGITS)
        if exact and _PLAIN_NAME.fullmatch(name):
            names.append(name)
    return ",".join(names)


def file_stats(df: pl.DataFrame, types: dict[str, DataType], only: set[str] | None = None) -> str:
    """The Delta statistics of one file holding ``df`` (``types``: its columns' stored types)
    by the rule of this module's docstring, as the add action's JSON string; ``only``: the
    columns the table's ``delta.dataSkippingStatsColumns`` names (``None``: every column)."""
    cols = [c for c in df.columns if not df.schema[c].is_nested() and isinstance(types.get(c), _BOUNDED)
            and (only is None or c in only)]
    floats = [c for c in cols if isinstance(types.get(c), _FLOAT_TYPES)]
    exprs = [pl.col(c).null_count().alias(f"n:{c}") for c in cols]
    exprs += [pl.col(c).min().alias(f"a:{c}") for c in cols if c not in floats]
    exprs += [pl.col(c).max().alias(f"z:{c}") for c in cols if c not in floats]
    for c in floats:  # finite extremes apart from NaN and the infinities
        finite = pl.col(c).filter(pl.col(c).is_finite())
        exprs += [finite.min().alias(f"a:{c}"), finite.max().alias(f"z:{c}"), pl.col(c).is_nan().any().alias(f"nan:{c}"),
                  (pl.col(c) == math.inf).any().alias(f"+inf:{c}"), (pl.col(c) == -math.inf).any().alias(f"-inf:{c}")]
    row = df.select(exprs).row(0, named=True) if exprs else {}
    nulls: dict[str, int] = {}
    lows: dict[str, Any] = {}
    highs: dict[str, Any] = {}
    for c in cols:
        nulls[c] = row[f"n:{c}"]
        if nulls[c] == df.height:
            continue  # all null: no bounds, and "nulls only" is exact
        dtype = types[c]
        if c in floats:
            lows[c], highs[c] = _float_bounds(row[f"a:{c}"], row[f"z:{c}"], bool(row[f"nan:{c}"]),
                                              bool(row[f"+inf:{c}"]), bool(row[f"-inf:{c}"]), dtype)
        else:
            lows[c], highs[c] = _bound(dtype, row[f"a:{c}"], up=False), _bound(dtype, row[f"z:{c}"], up=True)
    stats: dict[str, Any] = {"numRecords": df.height, "nullCount": nulls}
    if lows:
        stats["minValues"] = lows
        stats["maxValues"] = highs
    # UTF-8 text, not \u escapes: deltalake 1.6 decodes the surrogate pair of U+10FFFF to U+FFFFF
    return _RAW_TOKEN.sub(r"\1", json.dumps(stats, allow_nan=False, ensure_ascii=False))


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


def file_bounds(table: DeltaTable, column: str) -> pl.DataFrame | None:
    """Each data file's ``min`` and ``max`` of ``column`` from the snapshot's add actions, for
    files holding a non-null value of it (a file of nulls only cannot match a key).

    ``None`` when any file holding non-null values has no bounds for the column (a foreign
    writer without statistics, a column outside ``delta.dataSkippingStatsColumns``, a partition
    column): the caller must then assume a file may hold any value.
    """
    actions = pl.DataFrame(table.get_add_actions(flatten=True))
    lo, hi, nulls = f"min.{column}", f"max.{column}", f"null_count.{column}"
    if actions.height == 0:
        return pl.DataFrame({"min": [], "max": []})
    if lo not in actions.columns or hi not in actions.columns:
        return None
    only_nulls = (actions[nulls] == actions["num_records"]) if nulls in actions.columns else pl.Series([False] * actions.height)
    frame = pl.DataFrame({"min": actions[lo], "max": actions[hi]}).filter(~only_nulls.fill_null(False))
    if frame["min"].null_count() or frame["max"].null_count():
        return None
    return frame
