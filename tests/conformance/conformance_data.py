"""Generated tables for the Delta conformance suite: every declared type Delta stores, hostile
values, and a sequence of writes (every mode) whose result an oracle knows.

The oracle is :class:`~loom_resources.testing.InMemoryTables`: it applies the same writes to a
Polars DataFrame with the same write-mode semantics (it passes the contract kit like every
backend), so the table every engine reads is compared with a truth computed from the generated
frames alone, never with what the Delta writer believes it wrote.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
from dataclasses import dataclass, field
from typing import Any

import polars as pl
from hypothesis import strategies as st

from loom_resources import ColumnSchema, RunParams, TableRef, TargetSpec, col
from loom_resources.model import Backend, WriteMode

# -- the columns -------------------------------------------------------------------------------
#: Declared type of each data column (partition columns come apart, below).
DATA_TYPES: dict[str, str] = {
    "i8": "int8", "i16": "int16", "i32": "int32", "i64": "int64",
    "u8": "uint8", "u16": "uint16", "u32": "uint32",
    "f32": "float32", "f64": "float64",
    "dec": "decimal(10,2)", "dec38": "decimal(38,6)",
    "s": "string", "cat": "categorical", "bin": "binary", "flag": "boolean",
    "d": "date", "ts": "datetime(us)", "tstz": "datetime(us, UTC)",
    "lst": "list<int64>", "st": "struct<a: int32, b: string>",
}
#: Partition columns and their declared types.
PART_TYPES: dict[str, str] = {"pk_s": "string", "pk_d": "date", "pk_i": "int32", "pk_b": "boolean"}
#: Partition layouts drawn per table: none, each type alone, and several columns.
LAYOUTS: list[tuple[str, ...]] = [(), ("pk_s",), ("pk_d",), ("pk_i",), ("pk_b",), ("pk_s", "pk_i"),
                                  ("pk_d", "pk_b", "pk_s")]
NESTED = ("lst", "st")

_INT_BOUNDS = {"i8": 7, "i16": 15, "i32": 31, "i64": 63}
_UINT_BITS = {"u8": 8, "u16": 16, "u32": 32}
_DEC38_MAX = decimal.Decimal("99999999999999999999999999999999.999999")
_DEC_MAX = decimal.Decimal("99999999.99")
# Hostile partition strings: separators and escapes of Hive paths, unicode, text that looks like
# a null ('' and the null marker are refused: see test_delta_partition_values.py)
HOSTILE = [" ", "a b", " lead", "a/b", "k=v", "100%", "%2F", "a%3Db", "zürich", "東京", "😀", "null", "NULL",
           "x" * 40, "a+b", "#", "?", "a,b"]
_LONG = ["", "é", "a" * 31, "a" * 32, "a" * 33, "z" * 40, "é" * 40, "\U0010ffff" * 34, "😀" * 33, "東京" * 20]


def _ints(bits: int, signed: bool = True) -> st.SearchStrategy[int]:
    lo, hi = (-(2**bits), 2**bits - 1) if signed else (0, 2**bits - 1)
    return st.one_of(st.sampled_from([lo, hi, lo + 1, hi - 1, 0, -1 if signed else 1]), st.integers(lo, hi))


def _finite_or_not(width: int) -> st.SearchStrategy[float]:
    # -0.0 is left out: engines disagree on -0.0 < 0.0 (DataFusion orders it first, polars and
    # pyarrow call them equal), which says nothing about Delta; the bound rule covers it
    special = st.sampled_from([math.nan, math.inf, -math.inf, 0.0, 1.5, -2.25])
    return st.one_of(special, st.floats(width=width, allow_nan=False, allow_infinity=False, allow_subnormal=True)
                     .map(lambda v: 0.0 if v == 0 else v))


def _decimals(max_abs: decimal.Decimal, places: int) -> st.SearchStrategy[decimal.Decimal]:
    # from integers: st.decimals rounds in the default 28-digit context, past decimal(38)'s range
    units = int(max_abs.scaleb(places, context=decimal.Context(prec=60)))
    scaled = st.one_of(st.sampled_from([units, -units, 1, -1, 0, -123]), st.integers(-units, units))
    wide = decimal.Context(prec=60)
    return scaled.map(lambda i: decimal.Decimal(i).scaleb(-places, context=wide))


def _datetimes(tz: bool) -> st.SearchStrategy[dt.datetime]:
    lo, hi = dt.datetime(1900, 1, 1), dt.datetime(2200, 12, 31)
    s = st.datetimes(lo, hi)  # microseconds: sub-millisecond values are the norm
    return s.map(lambda v: v.replace(tzinfo=dt.UTC)) if tz else s


_VALUES: dict[str, st.SearchStrategy[Any]] = {
    **{c: _ints(b) for c, b in _INT_BOUNDS.items()},
    **{c: _ints(b, signed=False) for c, b in _UINT_BITS.items()},
    "f32": _finite_or_not(32), "f64": _finite_or_not(64),
    "dec": _decimals(_DEC_MAX, 2), "dec38": _decimals(_DEC38_MAX, 6),
    "s": st.one_of(st.sampled_from(_LONG + HOSTILE), st.text(max_size=50)),
    "cat": st.sampled_from(["red", "green", "", "ünï"]),
    "bin": st.binary(max_size=40),
    "flag": st.booleans(),
    "d": st.dates(dt.date(1900, 1, 1), dt.date(2200, 12, 31)),
    "ts": _datetimes(False), "tstz": _datetimes(True),
    "lst": st.lists(st.one_of(st.none(), _ints(63)), max_size=3),
    "st": st.fixed_dictionaries({"a": st.one_of(st.none(), _ints(31)), "b": st.one_of(st.none(), st.text(max_size=5))}),
    "pk_s": st.sampled_from([*HOSTILE[:12], None]),
    "pk_d": st.sampled_from([dt.date(2024, 1, 1), dt.date(1999, 12, 31), dt.date(2200, 3, 1), None]),
    "pk_i": st.sampled_from([0, -1, 2**31 - 1, -(2**31), 7, None]),
    "pk_b": st.sampled_from([True, False, None]),
}


def columns(partition_by: tuple[str, ...]) -> tuple[ColumnSchema, ...]:
    """The declared columns: ``id`` (not null, the merge key), the data columns, then the
    partition columns of the layout."""
    cols = [ColumnSchema("id", "int64", False)]
    cols += [ColumnSchema(n, t) for n, t in DATA_TYPES.items()]
    cols += [ColumnSchema(n, PART_TYPES[n]) for n in partition_by]
    return tuple(cols)


def polars_schema(partition_by: tuple[str, ...]) -> dict[str, pl.DataType]:
    """The Polars types of the generated frames (declared types, before Delta widens any)."""
    from loom_resources.polars_types import to_polars

    return {c.name: to_polars(c.dtype) for c in columns(partition_by)}


@st.composite
def frames(draw: st.DrawFn, partition_by: tuple[str, ...], ids: list[int], *,
           parts_of: dict[int, dict[str, Any]] | None = None) -> pl.DataFrame:
    """One frame with the rows ``ids``; each column is drawn whole: values with nulls, all
    null, or no nulls. ``parts_of``: partition values to keep for ids the table holds already
    (a merge updates a row in its own partition)."""
    n = len(ids)
    data: dict[str, list[Any]] = {"id": ids}
    for name in [*DATA_TYPES, *partition_by]:
        shape = draw(st.sampled_from(["mixed", "mixed", "mixed", "all_null", "no_null"]))
        if shape == "all_null":
            data[name] = [None] * n
            continue
        values = draw(st.lists(_VALUES[name], min_size=n, max_size=n))
        if shape == "mixed":
            mask = draw(st.lists(st.booleans(), min_size=n, max_size=n))
            values = [None if m else v for v, m in zip(values, mask, strict=True)]
        data[name] = values
    if parts_of:
        for i, rid in enumerate(ids):
            for c in partition_by:
                if rid in parts_of:
                    data[c][i] = parts_of[rid][c]
    return pl.DataFrame(data, schema=polars_schema(partition_by))


# -- the writes --------------------------------------------------------------------------------
@dataclass
class Write:
    """One write of the sequence: a spec (mode, replace predicate) and its frame."""

    spec: TargetSpec
    frame: pl.DataFrame
    streaming: bool


@dataclass
class Plan:
    """A generated table: its layout and the writes that build it."""

    ref: TableRef
    partition_by: tuple[str, ...]
    writes: list[Write] = field(default_factory=list)


def spec(ref: TableRef, partition_by: tuple[str, ...], mode: WriteMode, **kw: Any) -> TargetSpec:
    """The target spec of one write."""
    if mode is WriteMode.MERGE:
        kw["merge_keys"] = ("id",)
    return TargetSpec(ref=ref, backend=Backend.DELTA, columns=columns(partition_by), mode=mode,
                      partition_by=partition_by, **kw)


@st.composite
def plans(draw: st.DrawFn, ref: TableRef, *, commits: int) -> Plan:
    """A layout and ``commits`` writes: an append creates the table, then any write mode."""
    partition_by = draw(st.sampled_from(LAYOUTS))
    plan = Plan(ref, partition_by)
    next_id, held, parts = 0, [], {}
    modes = [WriteMode.APPEND, WriteMode.OVERWRITE, WriteMode.REPLACE_WHERE, WriteMode.MERGE]
    if partition_by:
        modes.append(WriteMode.REPLACE_PARTITIONS)
    for i in range(commits):
        mode = WriteMode.APPEND if i == 0 else draw(st.sampled_from(modes))
        n = draw(st.integers(1, 12))
        kw: dict[str, Any] = {}
        if mode is WriteMode.MERGE and held:
            # some rows update held ids (in their own partitions), the others are new
            reused = draw(st.lists(st.sampled_from(held), max_size=n, unique=True))
            ids = reused + list(range(next_id, next_id + n - len(reused)))
        else:
            ids = list(range(next_id, next_id + n))
        if mode is WriteMode.REPLACE_WHERE:
            # the new rows' ids are above every held id: they all satisfy id >= lo
            lo = draw(st.sampled_from(held)) if held else next_id
            kw["replace_predicate"] = col("id").ge(lo)
        frame = draw(frames(partition_by, ids, parts_of=parts))
        next_id = max(next_id, *ids) + 1
        streaming = draw(st.booleans())
        plan.writes.append(Write(spec(ref, partition_by, mode, **kw), frame, streaming))
        if mode is WriteMode.OVERWRITE:
            held = list(ids)
        elif mode is WriteMode.REPLACE_WHERE:
            held = sorted({h for h in held if h < kw["replace_predicate"].value} | set(ids))
        else:
            held = sorted(set(held) | set(ids))
        for row in frame.select("id", *partition_by).iter_rows(named=True):
            parts[row["id"]] = row
    return plan


def apply(store: Any, plan: Plan) -> list[int]:
    """Run the plan's writes against ``store`` (Delta or the oracle); returns the versions."""
    versions = []
    for w in plan.writes:
        frame: pl.DataFrame | pl.LazyFrame = w.frame.lazy() if w.streaming else w.frame
        res = store.write(frame, w.spec, RunParams(), streaming=w.streaming)
        versions.append(res.version)
    return versions
