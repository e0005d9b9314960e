"""Per-partition materialization metadata of range runs, checked against the stores."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest

from loom_assets.declare import Table
from loom_assets.factory import build_assets
from loom_resources import ColumnSchema, TableRef, WriteMode
from loom_resources.clickhouse import ClickHouseResource
from loom_resources.delta import DeltaResource
from loom_resources.io_manager import LoomIOManager
from loom_resources.metadata import partition_metadata
from loom_resources.model import WriteResult

DAILY = dg.DailyPartitionsDefinition(start_date="2026-11-01", end_offset=0)
THREE_DAYS = {"dagster/asset_partition_range_start": "2026-11-15",
              "dagster/asset_partition_range_end": "2026-11-17"}
COLS = [ColumnSchema("id", "int64", False), ColumnSchema("day", "date", False)]
ROWS_PER_DAY = {"2026-11-15": 3, "2026-11-16": 5, "2026-11-17": 7}


def uneven_days(context: dg.AssetExecutionContext) -> pl.DataFrame:
    """A different number of rows per day, so a total repeated per partition shows."""
    days = [d for d in context.partition_keys for _ in range(ROWS_PER_DAY[d])]
    return pl.DataFrame({"id": range(len(days)), "day": days}).with_columns(pl.col("day").str.to_date())


@pytest.fixture
def resources(tmp_path: Path, chdb_url: str) -> dict[str, Any]:
    (tmp_path / "delta").mkdir()
    delta = DeltaResource(root=str(tmp_path / "delta"))
    ch = ClickHouseResource(url=chdb_url)
    return {"delta": delta, "clickhouse": ch, "io_manager": LoomIOManager(delta=delta, clickhouse=ch)}


def stored_per_day(resources: dict[str, Any], backend: str, name: str) -> dict[str, int]:
    from loom_resources import RunParams, SourceSpec

    df = resources[backend].read(SourceSpec(TableRef.parse(name)), RunParams()).collect()
    return {str(d): n for d, n in df.group_by("day").len().iter_rows()}


@pytest.mark.parametrize("backend", ["delta", "clickhouse"])
@pytest.mark.parametrize("mode", ["replace_partitions", "append"])
def test_three_day_backfill_has_per_partition_counts(
    resources: dict[str, Any], unique_schema: str, backend: str, mode: str
) -> None:
    name = f"{unique_schema}.events"
    table = Table(name, backend=backend, columns=COLS, transform=uneven_days, mode=mode,
                  partitions=DAILY, partition_column="day")
    instance = dg.DagsterInstance.ephemeral()
    for _ in range(2):  # the second run replaces (or appends to) the same days
        result = dg.materialize(build_assets([table]), resources=resources, tags=THREE_DAYS, instance=instance)
        assert result.success
    stored = stored_per_day(resources, backend, name)
    factor = 1 if mode == "replace_partitions" else 2
    assert stored == {k: n * factor for k, n in ROWS_PER_DAY.items()}

    events = result.get_asset_materialization_events()
    by_key = {e.partition: e.materialization.metadata for e in events}
    assert sorted(by_key) == sorted(ROWS_PER_DAY)  # one materialization per partition, one run
    for key, md in by_key.items():
        assert md["dagster/partition_row_count"].value == stored[key]
        assert md["loom/run_rows_written"].value == sum(ROWS_PER_DAY.values())
        if mode == "replace_partitions":
            assert md["loom/rows_written"].value == ROWS_PER_DAY[key]
        else:  # an append to several partitions does not know what each received
            assert "loom/rows_written" not in md
    # the instance shows the same per partition
    latest = instance.get_latest_materialization_event(table.asset_key)
    assert latest is not None


def test_single_partition_run_reports_rows_written(resources: dict[str, Any], unique_schema: str) -> None:
    table = Table(f"{unique_schema}.events", backend="delta", columns=COLS, transform=uneven_days, mode="append",
                  partitions=DAILY, partition_column="day")
    instance = dg.DagsterInstance.ephemeral()
    for _ in range(2):
        result = dg.materialize(build_assets([table]), resources=resources, partition_key="2026-11-16",
                                instance=instance)
    md = result.get_asset_materialization_events()[0].materialization.metadata
    assert md["dagster/partition_row_count"].value == 10  # what the partition holds after two appends
    assert md["loom/rows_written"].value == 5


def test_partition_metadata_of_a_skipped_retry() -> None:
    r = WriteResult(table=TableRef("a", "b"), uri="u", rows_written=0, mode=WriteMode.APPEND, streaming=False,
                    version=None, schema=(), skipped=True)
    assert partition_metadata(r, {"k1": 4, "k2": 6}) == {
        "k1": {"dagster/partition_row_count": 4, "loom/rows_written": 0},
        "k2": {"dagster/partition_row_count": 6, "loom/rows_written": 0},
    }
