"""Declared checks: run after each materialization, and on their own (no materialization),
scoped to a partition or a range, from ``dg.materialize`` and from the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest
from deltalake import DeltaTable, write_deltalake

from loom_assets.checks import SCHEMA_CHECK
from loom_assets.declare import Table, accepted_values, not_null, row_count, unique
from loom_assets.factory import build_assets
from loom_resources import ColumnSchema, TableRef
from loom_resources.clickhouse import ClickHouseResource
from loom_resources.delta import DeltaResource
from loom_resources.io_manager import LoomIOManager

DAILY = dg.DailyPartitionsDefinition(start_date="2026-11-01", end_offset=0)
THREE_DAYS = {"dagster/asset_partition_range_start": "2026-11-15",
              "dagster/asset_partition_range_end": "2026-11-17"}
COLS = [ColumnSchema("id", "int64", False), ColumnSchema("day", "date", False), ColumnSchema("status", "string")]
CHECKS = [unique("id"), not_null("status"), accepted_values("status", ["ok"]), row_count(min_rows=3, max_rows=9)]


def three_per_day(context: dg.AssetExecutionContext) -> pl.DataFrame:
    days = [d for d in context.partition_keys for _ in range(3)]
    return pl.DataFrame({"id": range(len(days)), "day": days, "status": "ok"}).with_columns(pl.col("day").str.to_date())


@pytest.fixture
def resources(tmp_path: Path, chdb_url: str) -> dict[str, Any]:
    (tmp_path / "delta").mkdir()
    delta = DeltaResource(root=str(tmp_path / "delta"))
    ch = ClickHouseResource(url=chdb_url)
    return {"delta": delta, "clickhouse": ch, "io_manager": LoomIOManager(delta=delta, clickhouse=ch)}


def duplicate_a_row_of(resources: dict[str, Any], backend: str, name: str, day: str) -> None:
    """Damage the stored table by hand, outside Dagster: one row of ``day`` twice, status 'bad'."""
    ref = TableRef.parse(name)
    if backend == "delta":
        uri = resources["delta"].table_uri(ref)
        rows = DeltaTable(uri).to_pyarrow_table()
        df = pl.from_arrow(rows)
        assert isinstance(df, pl.DataFrame)
        one = df.filter(pl.col("day") == pl.lit(day).str.to_date()).head(1).with_columns(status=pl.lit("bad"))
        write_deltalake(uri, one.to_arrow().cast(rows.schema), mode="append")
    else:
        resources["clickhouse"].command(
            f"INSERT INTO `{ref.schema}`.`{ref.table}` SELECT id, day, 'bad' FROM `{ref.schema}`.`{ref.table}` "
            f"WHERE day = '{day}' LIMIT 1", what="damage the table")


def run_checks(table: Table, resources: dict[str, Any], instance: dg.DagsterInstance, **tags: str) -> dict[str, Any]:
    result = dg.materialize(build_assets([table]), resources=resources, instance=instance, tags=tags,
                            selection=dg.AssetSelection.checks_for_assets(table.asset_key), raise_on_error=False)
    # a failing blocking check (the schema contract) fails the run; the others only warn
    assert result.success is all(e.passed for e in result.get_asset_check_evaluations() if e.blocking)
    assert result.get_asset_materialization_events() == []  # checks only: nothing materialized
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


@pytest.mark.parametrize("backend", ["delta", "clickhouse"])
def test_checks_run_alone_on_a_partition_or_range(resources: dict[str, Any], unique_schema: str, backend: str) -> None:
    table = Table(f"{unique_schema}.events", backend=backend, columns=COLS, transform=three_per_day,
                  mode="replace_partitions", partitions=DAILY, partition_column="day", checks=CHECKS)
    instance = dg.DagsterInstance.ephemeral()
    first = dg.materialize(build_assets([table]), resources=resources, instance=instance, tags=THREE_DAYS)
    evals = {e.check_name: e for e in first.get_asset_check_evaluations()}
    assert set(evals) == {SCHEMA_CHECK, "unique_id", "not_null_status", "accepted_values_status", "row_count"}
    assert all(e.passed for e in evals.values())  # run in the materialization, over its range

    duplicate_a_row_of(resources, backend, table.name, "2026-11-16")
    healthy = run_checks(table, resources, instance, **{"dagster/partition": "2026-11-15"})
    assert all(e.passed for e in healthy.values()) and healthy["unique_id"].metadata["checked"].value == "partition 2026-11-15"
    damaged = run_checks(table, resources, instance, **{"dagster/partition": "2026-11-16"})
    assert damaged["unique_id"].passed is False and damaged["unique_id"].metadata["duplicate_keys"].value == 1
    assert damaged["accepted_values_status"].passed is False
    assert damaged["row_count"].metadata["rows"].value == 4 and damaged[SCHEMA_CHECK].passed
    ranged = run_checks(table, resources, instance, **THREE_DAYS)
    assert ranged["unique_id"].passed is False and ranged["row_count"].metadata["rows"].value == 10
    assert ranged["row_count"].passed is False  # 10 > 9
    assert ranged["row_count"].metadata["checked"].value == "3 partitions, 2026-11-15 to 2026-11-17"


@pytest.mark.parametrize("backend", ["delta", "clickhouse"])
def test_checks_of_a_partitioned_table_run_without_a_partition(
    resources: dict[str, Any], unique_schema: str, backend: str
) -> None:
    """What "Execute all" on the Checks tab does: a run of the checks alone, with no partition,
    checks the whole stored table (it used to fail with "Cannot access partition_key for a
    non-partitioned run")."""
    table = Table(f"{unique_schema}.events", backend=backend, columns=COLS, transform=three_per_day,
                  mode="replace_partitions", partitions=DAILY, partition_column="day", checks=CHECKS)
    instance = dg.DagsterInstance.ephemeral()
    dg.materialize(build_assets([table]), resources=resources, instance=instance, tags=THREE_DAYS)
    whole = run_checks(table, resources, instance)
    assert all(e.passed for e in whole.values() if e.check_name != "row_count"), whole
    assert whole["row_count"].metadata["rows"].value == 9  # every stored row, read back from the store
    assert whole["unique_id"].metadata["checked"].value == "the whole stored table"
    duplicate_a_row_of(resources, backend, table.name, "2026-11-17")
    damaged = run_checks(table, resources, instance)
    assert damaged["unique_id"].passed is False and damaged["unique_id"].metadata["duplicate_keys"].value == 1
    assert damaged["row_count"].metadata["rows"].value == 10


def test_one_check_alone_and_a_missing_table(resources: dict[str, Any], unique_schema: str) -> None:
    table = Table(f"{unique_schema}.t", backend="delta", columns=COLS[:1], mode="overwrite",
                  transform=lambda context: pl.DataFrame({"id": [1, 2]}), checks=[unique("id")])
    instance = dg.DagsterInstance.ephemeral()
    key = dg.AssetCheckKey(table.asset_key, "unique_id")
    result = dg.materialize(build_assets([table]), resources=resources, instance=instance,
                            selection=dg.AssetSelection.checks(key))
    evals = result.get_asset_check_evaluations()
    assert [(e.check_name, e.passed) for e in evals] == [("unique_id", False)]  # the table does not exist yet
    assert "does not exist" in evals[0].metadata["problems"].value  # type: ignore[operator]
    dg.materialize(build_assets([table]), resources=resources, instance=instance)
    result = dg.materialize(build_assets([table]), resources=resources, instance=instance,
                            selection=dg.AssetSelection.checks(key))
    assert [(e.check_name, e.passed) for e in result.get_asset_check_evaluations()] == [("unique_id", True)]


def test_schema_check_alone_finds_a_table_changed_by_hand(resources: dict[str, Any], unique_schema: str) -> None:
    table = Table(f"{unique_schema}.t", backend="clickhouse", columns=COLS[:1], mode="overwrite",
                  transform=lambda context: pl.DataFrame({"id": [1, 2]}))
    instance = dg.DagsterInstance.ephemeral()
    dg.materialize(build_assets([table]), resources=resources, instance=instance)
    resources["clickhouse"].command(f"ALTER TABLE `{unique_schema}`.t MODIFY COLUMN id Int32", what="change by hand")
    evals = run_checks(table, resources, instance)
    assert evals[SCHEMA_CHECK].passed is False
    assert "'id'" in evals[SCHEMA_CHECK].metadata["problems"].value


def test_every_check_has_a_description_and_can_run_alone() -> None:
    from sample_platform.definitions import defs

    declared = [c for c in defs.asset_checks or [] if isinstance(c, dg.AssetChecksDefinition) and c.node_def.name.endswith("__checks")]
    assert len(declared) == 15  # one per table of the sample platform
    specs = {}
    for checks in declared:
        assert checks.can_subset  # each check runs without its asset ("Execute" in the UI)
        for spec in checks.check_specs:
            assert spec.description, spec.key
            specs[spec.key] = spec
    raw_orders = dg.AssetKey(["raw", "orders"])
    assert specs[dg.AssetCheckKey(raw_orders, SCHEMA_CHECK)].blocking
    # unpartitioned checks of a partitioned table: runnable from the UI without a partition
    assert specs[dg.AssetCheckKey(raw_orders, "unique_order_id")].partitions_def is None
    assert {s.name for s in defs.schedules or []} >= {"loom_daily_checks"}  # type: ignore[union-attr]


def test_check_job_from_the_cli(tmp_path: Path) -> None:
    from tests.test_cli import run

    mat = run(["asset", "materialize", "-m", "sample_platform.definitions", "--select", "raw/orders,raw/products",
               "--partition", "2026-11-02"], tmp_path, LOOM_DEMO_ROWS_PER_DAY="50")
    assert mat.returncode == 0, mat.stderr[-3000:]
    uri = str(tmp_path / "delta" / "raw" / "orders")
    version = DeltaTable(uri).version()
    checks = run(["job", "execute", "-m", "sample_platform.definitions", "-j", "loom_checks", "-o", "raw__orders__checks*",
                  "--tags", json.dumps({"dagster/partition": "2026-11-02"})], tmp_path)
    out = checks.stdout + checks.stderr
    assert checks.returncode == 0, out[-3000:]
    assert DeltaTable(uri).version() == version  # nothing written
    assert "ASSET_CHECK_EVALUATION" in out and "unique_order_id" in out
