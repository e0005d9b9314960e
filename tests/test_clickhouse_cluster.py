"""Golden SQL of cluster-ready ClickHouse tables (``loom_resources.clickhouse._cluster``): ON
CLUSTER DDL, Replicated engines with their Keeper paths, the Distributed table and the insert
settings. Rendered only: no cluster or Keeper can run here (docs/clickhouse-server.md)."""

from __future__ import annotations

import pytest

from loom_resources import ColumnSchema, TableRef, TargetSpec
from loom_resources.clickhouse._cluster import distributed_sql, insert_settings, on_cluster, replicated_engine
from loom_resources.clickhouse._sql import ch_columns, create_table_sql, engine_clause
from loom_resources.errors import SpecError
from loom_resources.model import ClickHouseTableOptions

COLS = [ColumnSchema("id", "int64", False), ColumnSchema("day", "date", False), ColumnSchema("v", "int64", False)]


def spec(mode: str = "append", **opts: object) -> TargetSpec:
    return TargetSpec(TableRef("sales", "orders"), "clickhouse", COLS, mode=mode, partition_by=("day",),
                      merge_keys=("id",) if mode == "merge" else (), clickhouse=ClickHouseTableOptions(**opts))  # type: ignore[arg-type]


def test_replicated_table_on_a_cluster() -> None:
    s = spec(cluster="prod", replicated=True)
    staging = TableRef("sales", "_loom_stage_orders_x")
    assert create_table_sql(staging, ch_columns(s.stored_columns()), engine_clause(s), on_cluster(s)) == (
        "CREATE TABLE `sales`.`_loom_stage_orders_x` ON CLUSTER `prod` (`id` Int64, `day` Date32, `v` Int64) "
        "ENGINE = ReplicatedMergeTree('/clickhouse/tables/{uuid}/{shard}', '{replica}') PARTITION BY `day` "
        "ORDER BY tuple() SETTINGS allow_nullable_key = 1"
    )


def test_replicated_replacing_engine_keeps_its_version_column() -> None:
    s = spec("merge", replicated=True, engine="ReplacingMergeTree(v)", keeper_path="/ch/{shard}/{database}/{table}",
             replica="r-{replica}")
    assert engine_clause(s) == (
        "ENGINE = ReplicatedReplacingMergeTree('/ch/{shard}/{database}/{table}', 'r-{replica}', v) "
        "PARTITION BY `day` ORDER BY (`id`) SETTINGS allow_nullable_key = 1"
    )
    # merge tables default to ReplacingMergeTree, replicated too
    assert engine_clause(spec("merge", replicated=True)).startswith(
        "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{uuid}/{shard}', '{replica}') ")
    # an engine already Replicated is left as declared
    assert replicated_engine(s, "ReplicatedMergeTree('/x', 'y')") == "ReplicatedMergeTree('/x', 'y')"


def test_distributed_table_over_the_local_table() -> None:
    s = spec(cluster="prod", replicated=True, distributed="orders_all", sharding_key="cityHash64(id)")
    assert distributed_sql(s) == (
        "CREATE TABLE IF NOT EXISTS `sales`.`orders_all` ON CLUSTER `prod` AS `sales`.`orders` "
        "ENGINE = Distributed('prod', 'sales', 'orders', cityHash64(id))"
    )
    assert distributed_sql(spec()) is None


def test_insert_settings() -> None:
    staging = TableRef("sales", "_loom_stage_orders_x")
    assert insert_settings(spec(), staging, 3) == {}  # plain tables: the embedded engine reads batches in place
    assert insert_settings(spec(replicated=True, insert_quorum=2), staging, 3) == {
        "insert_quorum": 2, "insert_deduplication_token": "_loom_stage_orders_x#3"}


def test_plain_tables_are_unchanged() -> None:
    assert on_cluster(spec()) == ""
    assert engine_clause(spec()) == "ENGINE = MergeTree PARTITION BY `day` ORDER BY tuple() SETTINGS allow_nullable_key = 1"


def test_bad_cluster_options_fail_naming_the_table() -> None:
    with pytest.raises(SpecError, match="sales.orders.*needs clickhouse cluster"):
        distributed_sql(spec(distributed="orders_all"))
    with pytest.raises(SpecError, match="sales.orders.*MergeTree engine"):
        engine_clause(spec(replicated=True, engine="Log"))
