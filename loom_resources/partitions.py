"""The one place that says which rows belong to a run's partitions.

Writers replace "the rows of these partitions", readers slice an upstream table to the
partitions a downstream run needs, and validators refuse rows outside the run: all three
use the :class:`~loom_resources.predicates.Predicate` built here, which each backend renders
(DataFusion SQL for delta-rs, ClickHouse SQL, a Polars expression in memory).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any
from zoneinfo import ZoneInfo

from loom_resources.dtypes import DataType, Date, Datetime
from loom_resources.errors import SchemaMismatchError
from loom_resources.model import RunParams, SourceSpec, TargetSpec, partition_key_value
from loom_resources.predicates import And, Compare, In, IsNull, Or, Predicate, col

#: The row-count column of a reader's optional ``partition_counts(ref, columns)``: one row per
#: data file with its partition values (see :func:`rows_by_partition`).
FILE_ROWS = "__loom_rows"

__all__ = ["partition_predicate", "rows_by_partition", "run_partition_values", "slice_predicate"]

PartitionValues = tuple[Mapping[str, Any], ...]


def run_partition_values(spec: TargetSpec, params: RunParams, column_types: Mapping[str, DataType]) -> PartitionValues:
    """The typed partition values of the run, one mapping per partition, by the table's actual
    partition column types. Empty when the run is not partitioned."""
    out = []
    for part in params.partitions:
        row: dict[str, Any] = {}
        for column, key in part.items():
            if column not in column_types:
                raise SchemaMismatchError(str(spec.ref), [f"run partition column {column!r} is not a column of the table"])
            row[column] = partition_key_value(key, column_types[column], table=str(spec.ref), column=column,
                                              timezone=params.timezone)
        out.append(row)
    return tuple(out)


def partition_predicate(values: Sequence[Mapping[str, Any]]) -> Predicate:
    """Rows inside any of the given partitions: one ``IN`` for one column, else an OR of ANDs.
    No partitions select no rows. A null value is the null partition: ``IS NULL``, since
    ``IN (NULL)`` and ``= NULL`` match nothing in SQL (delta-rs refused such a replace, and a
    ClickHouse replace would keep the null partition's old rows)."""
    if not values:
        return Or(())
    cols = list(values[0])
    if len(cols) == 1:
        name = cols[0]
        present = tuple(v[name] for v in values if v[name] is not None)
        parts: list[Predicate] = [In(name, present)] if present else []
        if len(present) < len(values):
            parts.append(IsNull(name))
        return parts[0] if len(parts) == 1 else Or(tuple(parts))
    return Or(tuple(And(tuple(_equals(k, v[k]) for k in cols)) for v in values))


def _equals(column: str, value: Any) -> Predicate:
    return IsNull(column) if value is None else Compare(column, "=", value)


def _window_bound(value: dt.datetime, dtype: DataType) -> Any:
    if isinstance(dtype, Date):
        return value.date()
    if isinstance(dtype, Datetime) and dtype.tz is None:
        return value.astimezone(dt.UTC).replace(tzinfo=None)
    if isinstance(dtype, Datetime) and dtype.tz is not None:
        return value.astimezone(ZoneInfo(dtype.tz))
    return value


def slice_predicate(spec: TargetSpec, partition_columns: Mapping[str, str], params: RunParams) -> Predicate | None:
    """Rows of ``spec``'s table that belong to the partitions in ``params`` (``None``: all rows).

    A time window over one dimension becomes ``start <= column < end`` (one range, however many
    days); other partitions become the typed key values of each partition column.
    """
    if not partition_columns or not params.partition_keys:
        return None
    if params.window_start is not None and params.window_end is not None and "" in partition_columns:
        c = partition_columns[""]
        dtype = spec.column(c).dtype
        return col(c).window(_window_bound(params.window_start, dtype), _window_bound(params.window_end, dtype))
    types = {c: spec.column(c).dtype for c in partition_columns.values()}
    values = run_partition_values(spec, params, types)
    return partition_predicate(values) if values else None


def rows_by_partition(
    reader: Any, spec: TargetSpec, partition_columns: Mapping[str, str], run: RunParams,
    each: Mapping[str, RunParams],
) -> dict[str, int]:
    """Rows stored in each partition of a run, read back from the store: from each data file's
    row count when the reader has ``partition_counts`` (the Delta log), else in one scan.

    Args:
        reader: The table's ``SourceReader``.
        spec: The table.
        partition_columns: Partition dimension -> column.
        run: The whole run (its slice bounds the scan).
        each: Partition key -> the run parameters of that one partition.

    Returns:
        Partition key -> rows; ``{}`` when the run is not partitioned.
    """
    import polars as pl

    from loom_resources.polars_types import to_expr

    if not each or not partition_columns:
        return {}
    columns = tuple(dict.fromkeys(partition_columns.values()))
    # a store that knows each file's partition values and row count (the Delta log) answers
    # without reading data: each file's rows count towards the partitions its values fall in
    per_file = getattr(reader, "partition_counts", None)
    files: pl.DataFrame | None = per_file(spec.ref, columns) if per_file is not None else None

    def count(lf: pl.LazyFrame, weight: pl.Expr) -> dict[str, int]:
        exprs = []
        for key, params in each.items():
            pred = slice_predicate(spec, partition_columns, params)
            inside = pl.lit(True) if pred is None else to_expr(pred).fill_null(False)
            exprs.append((inside.cast(pl.Int64) * weight).sum().alias(key))
        counts = lf.select(exprs).collect().row(0, named=True)
        return {k: int(v or 0) for k, v in counts.items()}

    if files is not None:
        try:
            return count(files.lazy(), pl.col(FILE_ROWS))
        except pl.exceptions.PolarsError:
            pass  # partition values the log types differently from the predicate: count by a scan
    lf = reader.read(SourceSpec(spec.ref, columns, slice_predicate(spec, partition_columns, run)), RunParams())
    return count(lf, pl.lit(1, pl.Int64))
