"""Dagster metadata of Loom writes: the standard ``dagster/*`` keys plus ``loom/*`` details."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg

from loom_resources.dtypes import Schema
from loom_resources.model import WriteMode, WriteResult

__all__ = [
    "COLUMN_LINEAGE_METADATA", "SQL_ENGINE_METADATA", "STARTED_AT_METADATA", "column_schema_metadata", "partition_metadata", "write_metadata",
]

#: Metadata key an asset body sets to say where its SQL ran.
SQL_ENGINE_METADATA = "loom/sql_engine"
#: Dagster's key of a table's column lineage (a ``dagster.TableColumnLineage``).
COLUMN_LINEAGE_METADATA = "dagster/column_lineage"
#: Metadata key of when the asset body started.
STARTED_AT_METADATA = "loom/started_at"


def column_schema_metadata(schema: Schema) -> dg.TableSchema:
    """Dagster's table schema for Loom columns (drives the UI and schema-change checks)."""
    return dg.TableSchema(
        columns=[
            dg.TableColumn(c.name, str(c.dtype), constraints=dg.TableColumnConstraints(nullable=c.nullable))
            for c in schema
        ]
    )


def write_metadata(r: WriteResult, *, partitioned: bool, seconds: float) -> dict[str, Any]:
    """Materialization metadata of one write, shared by every partition the write touched.

    A partitioned run's own counts (``dagster/partition_row_count``, ``loom/rows_written``) are
    per partition (:func:`partition_metadata`); here it carries the run's total as
    ``loom/run_rows_written``.
    """
    md: dict[str, Any] = {
        "dagster/column_schema": column_schema_metadata(r.schema),
        "dagster/table_name": str(r.table),
        "dagster/uri": dg.MetadataValue.path(r.uri),
        ("loom/run_rows_written" if partitioned else "loom/rows_written"): r.rows_written,
        "loom/write_mode": r.mode.value,
        "loom/write_path": "streaming" if r.streaming else "eager",
        "loom/skipped_duplicate_retry": r.skipped,
        "loom/duration_s": dg.MetadataValue.float(round(seconds, 3)),
    }
    if r.version is not None:
        md["loom/table_version"] = r.version
    if r.table_rows is not None:
        md["dagster/row_count"] = r.table_rows
    elif not partitioned:
        md["dagster/row_count"] = r.rows_written
    if r.noop:
        md["loom/noop"] = True
    if r.sql_engine:
        md[SQL_ENGINE_METADATA] = r.sql_engine
    for k, v in r.merge_metrics.items():
        md[f"loom/merge/{k}"] = v
    return md


# modes whose write leaves each run partition holding exactly the rows written to it
_REPLACES_PARTITIONS = (WriteMode.REPLACE_PARTITIONS, WriteMode.OVERWRITE)


def partition_metadata(r: WriteResult, stored: Mapping[str, int]) -> dict[str, dict[str, Any]]:
    """Per partition key, the metadata of that partition's materialization.

    Args:
        r: The run's write.
        stored: Partition key -> rows the partition holds after the write, read back from the table.

    ``dagster/partition_row_count`` is the partition's stored rows. ``loom/rows_written`` is
    given when it is known per partition: a one-partition run, a skipped retry (0), or a mode
    that replaces each partition wholesale (then it equals the stored rows).
    """
    out: dict[str, dict[str, Any]] = {}
    for key, rows in stored.items():
        md: dict[str, Any] = {"dagster/partition_row_count": rows}
        if r.skipped:
            md["loom/rows_written"] = 0
        elif len(stored) == 1:
            md["loom/rows_written"] = r.rows_written
        elif r.mode in _REPLACES_PARTITIONS:
            md["loom/rows_written"] = rows
        out[key] = md
    return out
