"""Checks a frame against a target declaration before anything is written.

Both backends call these functions, so a bad frame fails with the same message whichever
store it was headed for, and always before the first byte reaches the table.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

from loom_resources._lazy import lazy_import
from loom_resources.dtypes import ColumnSchema, DataType, Schema, is_safe_cast
from loom_resources.errors import DataValidationError, SchemaMismatchError, UnsupportedTypeError
from loom_resources.model import AUDIT_COLUMNS, SchemaMode, TargetSpec, WriteContext, WriteMode
from loom_resources.partitions import partition_predicate, run_partition_values
from loom_resources.polars_types import from_polars, to_expr, to_polars

if TYPE_CHECKING:
    import polars as pl
else:
    pl = lazy_import("polars")  # imported when data moves, not when the code location loads

__all__ = [
    "HIVE_NULL", "Conformed", "check_nulls", "check_partition_markers", "check_partition_values", "check_unique_keys", "conform", "frame_partitions",
    "partition_filter", "require_partition_values_for", "run_partition_values", "with_audit_columns",
]

Frame: TypeAlias = "pl.LazyFrame | pl.DataFrame"  # a string: polars loads when data moves


def _identity(d: DataType) -> DataType:
    return d


@dataclass(frozen=True)
class Conformed:
    """A frame cast and ordered to the columns it will be written as.

    Attributes:
        frame: The frame (same kind as the input: lazy stays lazy).
        columns: Target columns of the frame (declared, plus new nullable ones under ``evolve``).
        new_columns: Columns the table does not have yet and the write will add.
    """

    frame: Frame
    columns: Schema
    new_columns: Schema


def frame_schema(frame: Frame) -> pl.Schema:
    """The frame's schema without collecting it."""
    return frame.collect_schema() if isinstance(frame, pl.LazyFrame) else frame.schema


def conform(
    frame: Frame,
    spec: TargetSpec,
    stored: Schema | None,
    *,
    storable: Callable[[DataType], DataType] = _identity,
) -> Conformed:
    """Check the frame's columns and types against the declaration and the stored table.

    Args:
        frame: The frame to write (not collected).
        spec: The target declaration.
        stored: The table's current schema, or ``None`` when it does not exist yet.
        storable: How the backend stores a declared type (e.g. Delta keeps unsigned ints as
            wider signed ones); used to compare the declaration with the stored schema.

    Raises:
        SchemaMismatchError: listing every missing, extra and mistyped column.
    """
    table = str(spec.ref)
    fschema = frame_schema(frame)
    problems: list[str] = []
    casts: dict[str, pl.DataType] = {}
    declared = {c.name: c for c in spec.columns}
    maintained = {c.name for c in spec.history_columns() + AUDIT_COLUMNS}
    for c in spec.columns:
        if c.name not in fschema:
            problems.append(f"column {c.name!r} ({c.dtype}) is declared but missing from the frame")
            continue
        try:
            got = from_polars(fschema[c.name])
        except UnsupportedTypeError as exc:
            problems.append(f"column {c.name!r}: {exc}")
            continue
        if got != c.dtype:
            if is_safe_cast(got, c.dtype):
                casts[c.name] = to_polars(c.dtype)
            else:
                problems.append(f"column {c.name!r} has type {got}, expected {c.dtype} (no lossless cast)")
    extra = [n for n in fschema if n not in declared and n not in maintained]
    new_cols: list[ColumnSchema] = []
    evolved: list[ColumnSchema] = []
    if extra:
        if spec.schema_mode is SchemaMode.EVOLVE:
            for n in extra:
                new_cols.append(ColumnSchema(n, from_polars(fschema[n]), nullable=True))
            evolved = list(new_cols)  # frame-only columns kept under evolve (new or stored already)
        else:
            for n in extra:
                problems.append(
                    f"column {n!r} ({from_polars(fschema[n])}) is not declared (schema_mode={spec.schema_mode.value!r})"
                )
    if stored is not None and spec.schema_mode is not SchemaMode.OVERWRITE:
        have = {c.name: c for c in stored}
        for c in spec.columns:
            s = have.get(c.name)
            if s is None:
                if spec.schema_mode is SchemaMode.EVOLVE and c.nullable:
                    new_cols.append(c)
                else:
                    problems.append(
                        f"the stored table has no column {c.name!r}; declare it nullable with schema_mode='evolve' to add it"
                    )
            elif storable(c.dtype) != s.dtype:
                problems.append(f"column {c.name!r} is stored as {s.dtype} but declared as {c.dtype}")
        for i, c in enumerate(evolved):
            s = have.get(c.name)
            if s is not None and storable(c.dtype) != s.dtype:
                if is_safe_cast(c.dtype, s.dtype):
                    casts[c.name], evolved[i] = to_polars(s.dtype), ColumnSchema(c.name, s.dtype, nullable=True)
                else:
                    problems.append(f"column {c.name!r} is stored as {s.dtype} but the frame has {c.dtype}")
        new_cols = [c for c in new_cols if c.name not in have]
    if problems:
        raise SchemaMismatchError(table, problems)
    out_cols = spec.columns + tuple(evolved)
    exprs = [pl.col(c.name).cast(casts[c.name]) if c.name in casts else pl.col(c.name) for c in out_cols]
    exprs += [pl.col(n) for n in fschema if n in maintained and n not in {c.name for c in out_cols}]
    return Conformed(frame.select(exprs), out_cols, tuple(new_cols))


def check_nulls(df: pl.DataFrame, spec: TargetSpec) -> None:
    """Raise when a non-nullable declared column holds nulls in ``df`` (one batch or all)."""
    required = [c.name for c in spec.columns if not c.nullable and c.name in df.columns]
    if not required or df.height == 0:
        return
    for name in required:
        n = df.get_column(name).null_count()  # kept by Arrow arrays: no pass over the data
        if n:
            raise DataValidationError(str(spec.ref), name, f"{n} null value(s) in a column declared not null")


def check_unique_keys(df: pl.DataFrame, spec: TargetSpec) -> None:
    """Raise when the frame holds a merge key more than once (merge and history need unique keys)."""
    keys = list(spec.merge_keys)
    if not keys:
        return
    dupes = df.group_by(keys).len().filter(pl.col("len") > 1)
    if dupes.height:
        sample = dupes.head(3).drop("len").to_dicts()
        raise DataValidationError(
            str(spec.ref), ",".join(keys), f"{dupes.height} duplicate merge key(s) in the frame, e.g. {sample}"
        )


def partition_filter(values: tuple[Mapping[str, Any], ...]) -> pl.Expr:
    """A Polars expression true for rows inside any of the given partitions (all rows for none),
    false for every other row: a comparison with a null (``pk_s = 'a'`` on a row whose ``pk_s`` is
    null) is outside, never null, so ``~partition_filter(...)`` keeps such rows."""
    return to_expr(partition_predicate(values)).fill_null(False) if values else pl.lit(True)


def check_partition_values(df: pl.DataFrame, spec: TargetSpec, values: tuple[Mapping[str, Any], ...]) -> None:
    """Raise when a row of ``df`` falls outside the run's partitions (it would be lost or
    land in a partition the run does not own)."""
    if not values or df.height == 0:
        return
    bad = df.filter(~partition_filter(values))
    if bad.height:
        cols = list(values[0])
        sample = bad.select(cols).unique().head(3).to_dicts()
        allowed = [dict(v) for v in values[:3]]
        raise DataValidationError(
            str(spec.ref),
            ",".join(cols),
            f"{bad.height} row(s) have partition values outside the run's partitions: {sample} "
            f"(run partitions start with {allowed}{'...' if len(values) > 3 else ''})",
        )


#: The directory name of the null partition (Hive, Spark, delta-rs, polars).
HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"


def check_partition_markers(df: pl.DataFrame, spec: TargetSpec) -> None:
    """Refuse the empty string and ``'__HIVE_DEFAULT_PARTITION__'`` in string partition columns.

    The Delta protocol serializes an empty partition value like a null, and the marker is the
    null partition's directory name, so both would read back as null (polars reads the marker's
    directory as null) and a replace of the ``''`` partition would match no file and keep its
    old rows. Refused instead of rewritten: which value stands for "empty" is the data
    engineer's choice, not ours. Applied by the Delta writer and by ``InMemoryTables``.
    """
    if not spec.partition_by or df.height == 0:
        return
    for name in spec.partition_by:
        if name not in df.columns or not isinstance(df.schema[name], (pl.String, pl.Categorical, pl.Enum)):
            continue
        hits = df.get_column(name).cast(pl.String).is_in(["", HIVE_NULL])
        bad = int(hits.sum())
        if bad:
            found = sorted(set(df.get_column(name).cast(pl.String).filter(hits).to_list()))
            raise DataValidationError(
                str(spec.ref), name,
                f"{bad} row(s) hold the partition value(s) {found}, which Delta reads back as null "
                f"(an empty partition value is serialized like a null; {HIVE_NULL!r} is the null "
                f"partition's directory); map them to null or to another value before writing, e.g. "
                f"pl.col({name!r}).replace('', None)",
            )


def frame_partitions(df: pl.DataFrame, spec: TargetSpec) -> tuple[dict[str, Any], ...]:
    """The distinct partition values present in ``df``."""
    if not spec.partition_by or df.height == 0:
        return ()
    return tuple(df.select(list(spec.partition_by)).unique(maintain_order=True).to_dicts())


def with_audit_columns(frame: Frame, spec: TargetSpec, ctx: WriteContext | None) -> Frame:
    """Add the ``_loom_*`` audit columns when the spec asks for them and a context is given."""
    if not spec.audit_columns:
        return frame
    written_at = ctx.timestamp if ctx else dt.datetime.now(dt.UTC)
    return frame.with_columns(
        pl.lit(ctx.run_id if ctx else None, pl.String).alias("_loom_run_id"),
        pl.lit(ctx.asset_key if ctx else None, pl.String).alias("_loom_asset_key"),
        pl.lit(ctx.partition_label if ctx else None, pl.String).alias("_loom_partition_key"),
        pl.lit(written_at, pl.Datetime("us", "UTC")).alias("_loom_written_at"),
    )


def require_partition_values_for(spec: TargetSpec) -> bool:
    """Whether the write mode replaces partitions (so run partitions must be honoured)."""
    return spec.mode is WriteMode.REPLACE_PARTITIONS
