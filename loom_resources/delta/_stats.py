"""Row counts from the Delta log: what each data file holds, without reading data.

delta-rs records ``numRecords`` in every file's statistics and the file's partition values in
the log, so rows per partition come from the add actions of the snapshot (a few hundred
bytes per file) instead of a scan of the table.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl
from deltalake import DeltaTable

from loom_resources.partitions import FILE_ROWS

__all__ = ["partition_counts"]


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
