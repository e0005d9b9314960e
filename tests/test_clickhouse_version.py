"""``loom/table_version`` of ClickHouse tables: a write counter kept by the resource."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import polars as pl

from loom_assets.declare import Table
from loom_assets.factory import build_assets
from loom_resources import ColumnSchema, RunParams, TableRef, TargetSpec
from loom_resources.clickhouse import ClickHouseResource
from loom_resources.delta import DeltaResource
from loom_resources.io_manager import LoomIOManager

COLS = (ColumnSchema("id", "int64", False),)


def test_each_write_counts_one_version_per_table(chdb_url: str, unique_schema: str) -> None:
    ch = ClickHouseResource(url=chdb_url)
    a = TargetSpec(TableRef(unique_schema, "a"), "clickhouse", COLS, mode="append")  # type: ignore[arg-type]
    b = TargetSpec(TableRef(unique_schema, "b"), "clickhouse", COLS, mode="overwrite")  # type: ignore[arg-type]
    try:
        assert ch.table_version(a.ref) is None
        versions = [ch.write(pl.DataFrame({"id": [i]}), a, RunParams()).version for i in range(3)]
        assert versions == [1, 2, 3]
        assert ch.write(pl.DataFrame({"id": [9]}), b, RunParams()).version == 1
        assert ch.table_version(a.ref) == 3 and ch.table_version(b.ref) == 1
        # changes made outside Loom do not move it
        ch.command(f"INSERT INTO `{unique_schema}`.a VALUES (7)", what="insert by hand")
        assert ch.table_version(a.ref) == 3
    finally:
        ch.close()


def test_materialization_reports_the_clickhouse_version(tmp_path: Path, chdb_url: str, unique_schema: str) -> None:
    (tmp_path / "delta").mkdir()
    delta, ch = DeltaResource(root=str(tmp_path / "delta")), ClickHouseResource(url=chdb_url)
    table = Table(f"{unique_schema}.t", backend="clickhouse", columns=list(COLS), mode="overwrite",
                  transform=lambda context: pl.DataFrame({"id": [1, 2]}))
    instance = dg.DagsterInstance.ephemeral()
    for expected in (1, 2):
        result = dg.materialize(build_assets([table]), instance=instance,
                                resources={"delta": delta, "clickhouse": ch, "io_manager": LoomIOManager(delta=delta, clickhouse=ch)})
        md = result.get_asset_materialization_events()[0].materialization.metadata
        assert md["loom/table_version"].value == expected
