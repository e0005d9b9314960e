"""Golden SQL of cluster-ready ClickHouse tables (``loom_resources.clickhouse._cluster``): ON
CLUSTER DDL, Replicated engines with their Keeper paths, the Distributed table and the insert
settings, and the full statement sequence of each mode's publication and of a recovery on a
cluster. Rendered only: no cluster or Keeper can run here (docs/clickhouse-server.md)."""

from __future__ import annotations

import datetime as dt
import logging
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from pydantic import PrivateAttr

from loom_resources import ColumnSchema, RunParams, TableRef, TargetSpec, WriteContext
from loom_resources.clickhouse import ClickHouseResource, _publish
from loom_resources.clickhouse._cluster import (
    ddl_on_cluster,
    distributed_sql,
    insert_settings,
    on_cluster,
    partition_on_cluster,
    replicated_engine,
)
from loom_resources.clickhouse._ledger import ledger_engine
from loom_resources.clickhouse._publish import marker, marker_cluster
from loom_resources.clickhouse._sql import ch_columns, create_table_sql, engine_clause, lit, qt
from loom_resources.clickhouse._sweep import sweep_staging
from loom_resources.clickhouse._version import versions_engine
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


# -- the statements of a publication on a cluster -----------------------------------------------
#
# chdb cannot run ON CLUSTER (no cluster, no Keeper), so these tests capture the statements a real
# ClickHouseResource sends (a recording subclass, used only here) and run each on the embedded
# engine with its ON CLUSTER clause removed: the write really runs, on one node, and its rows are
# read back, while the golden sequence shows what a cluster would receive. Reads (SELECTs) are not
# shown; the ledger's own DDL is in test_ledger_ddl_*. A cluster's behaviour itself is not tested.

_ON_CLUSTER = re.compile(r" ON CLUSTER `[^`]+`")
_STAGING = re.compile(r"_loom_stage_[a-z_]+?_[0-9a-f]{12}_p\d+h[0-9a-f]{4}_[0-9a-f]{6}")
_OWNER = re.compile(r"'[^']*:\d+'")


class RecordingResource(ClickHouseResource):
    """The resource, recording every statement it sends (test only: see above)."""

    _sent: list[str] = PrivateAttr(default_factory=list)

    def command(self, sql: str, *, what: str = "run a command", settings: Mapping[str, Any] | None = None) -> Any:
        shown = sql + (f" -- settings {dict(settings)}" if settings else "")
        self._sent.append(shown)
        return super().command(_ON_CLUSTER.sub("", sql), what=what, settings=settings)

    def insert_arrow(self, ref: TableRef, table: Any, *, settings: Mapping[str, Any] | None = None,
                     what: str | None = None) -> None:
        self._sent.append(f"INSERT INTO {qt(ref)} FORMAT Arrow -- {table.num_rows} rows"
                          + (f", settings {dict(settings)}" if settings else ""))
        super().insert_arrow(ref, table, settings=settings, what=what)

    def sent(self, schema: str, token: str = "") -> list[str]:
        """The statements sent so far, with the test's names made stable: ``sales`` for the
        database, ``<stage1>``, ``<stage2>``... for staging tables in order of appearance,
        ``<token>`` for the write token and ``<owner>`` for ``host:pid``; the DDL of Loom's own tables
        (ledger, version counter: test_loom_tables_in_a_replicated_database) left out."""
        names: dict[str, str] = {}

        def stage(m: re.Match[str]) -> str:
            return names.setdefault(m.group(0), f"<stage{len(names) + 1}>")

        out = []
        for sql in self._sent:
            if sql.startswith(("CREATE DATABASE IF NOT EXISTS `_loom`", "CREATE TABLE IF NOT EXISTS `_loom`",
                               "ALTER TABLE `_loom`", "CREATE DATABASE IF NOT EXISTS `loom`",
                               "CREATE TABLE IF NOT EXISTS `loom`")):
                continue
            sql = _STAGING.sub(stage, sql.replace(schema, "sales"))
            sql = _OWNER.sub("'<owner>'", sql.replace(token, "<token>") if token else sql)
            out.append(sql)
        return out


def cluster_spec(schema: str, mode: str) -> TargetSpec:
    return TargetSpec(TableRef(schema, "orders"), "clickhouse", COLS, mode=mode, partition_by=("day",),
                      merge_keys=("id",) if mode == "merge" else (), clickhouse=ClickHouseTableOptions(cluster="prod"))


def frame(ids: range, day: int = 1) -> pl.DataFrame:
    return pl.DataFrame({"id": list(ids), "day": [dt.date(2026, 1, day)] * len(ids), "v": list(ids)})


def two_days(ids: range) -> pl.DataFrame:
    return pl.concat([frame(ids, 1), frame(range(ids.start + 1000, ids.stop + 1000), 2)])


def publication(chdb_url: str, schema: str, mode: str, first: pl.DataFrame, second: pl.DataFrame,
                params: RunParams | None = None) -> tuple[list[str], int]:
    """Write ``first`` (not recorded), then ``second`` as run ``run-2``: the statements of the
    second write and the rows the table holds after it."""
    s = cluster_spec(schema, mode)
    RecordingResource(url=chdb_url).write(first, s, RunParams(), write_ctx=WriteContext(run_id="run-1", asset_key="o"))
    res = RecordingResource(url=chdb_url)
    ctx = WriteContext(run_id="run-2", asset_key="o")
    res.write(second, s, params or RunParams(), write_ctx=ctx)
    final = " FINAL" if mode == "merge" else ""
    n = int(res.query_rows(f"SELECT count() FROM {qt(s.ref)}{final}")[0][0])
    sent = res.sent(schema, f"loom-{ctx.idempotency_token()}")
    res.close()
    return sent, n


#: the staging table of a write to an existing table: its engine as stored, its cluster in its comment
STAGE_DDL = ("CREATE TABLE `sales`.`<stage1>` ON CLUSTER `prod` (`id` Int64, `day` Date32, `v` Int64) ENGINE = MergeTree "
             "PARTITION BY day ORDER BY tuple() SETTINGS allow_nullable_key = 1, index_granularity = 8192 "
             "COMMENT 'loom:<token> on cluster prod'")
#: the write counter (a plain INSERT: no DDL, see test_loom_tables_in_a_replicated_database)
VERSION = ("INSERT INTO `loom`.`table_versions` SELECT 'sales.orders', ifNull(max(version), 0) + 1, now64(6, 'UTC') "
           "FROM `loom`.`table_versions` WHERE table = 'sales.orders'")


def test_append_publication_on_a_cluster(chdb_url: str, unique_schema: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        sent, n = publication(chdb_url, unique_schema, "append", frame(range(10)), two_days(range(10, 13)))
    # the embedded engine's _loom is no Replicated database: a real cluster would not share the ledger
    assert "Loom's ledger is not in a Replicated database" in caplog.text
    assert sent == [
        "CREATE DATABASE IF NOT EXISTS `sales` ON CLUSTER `prod`",
        STAGE_DDL,
        "INSERT INTO `sales`.`<stage1>` FORMAT Arrow -- 6 rows",
        "INSERT INTO `_loom`.`publications` (target, token, state, staging, rows, owner, cluster) VALUES "
        "('sales.orders', '<token>', 'staged', '<stage1>|append|', 6, '<owner>', 'prod') -- settings "
        "{'insert_deduplication_token': 'loom-claim|sales.orders|<token>', 'insert_deduplicate': 1}",
        # not Replicated: each node moves its own staged parts
        "ALTER TABLE `sales`.`<stage1>` ON CLUSTER `prod` MOVE PARTITION ID '20454' TO TABLE `sales`.`orders`",
        "ALTER TABLE `sales`.`<stage1>` ON CLUSTER `prod` MOVE PARTITION ID '20455' TO TABLE `sales`.`orders`",
        "INSERT INTO `_loom`.`publications` (target, token, state, staging, rows, owner, cluster) VALUES "
        "('sales.orders', '<token>', 'published', '<stage1>', 6, '<owner>', 'prod')",
        "DROP TABLE IF EXISTS `sales`.`<stage1>` ON CLUSTER `prod` SYNC",
        VERSION,
    ]
    assert n == 16


def test_overwrite_publication_on_a_cluster(chdb_url: str, unique_schema: str) -> None:
    sent, n = publication(chdb_url, unique_schema, "overwrite", frame(range(10)), frame(range(3)))
    assert sent == [
        "CREATE DATABASE IF NOT EXISTS `sales` ON CLUSTER `prod`",
        STAGE_DDL,
        "INSERT INTO `sales`.`<stage1>` FORMAT Arrow -- 3 rows",
        "INSERT INTO `_loom`.`publications` (target, token, state, staging, rows, owner, cluster) VALUES "
        "('sales.orders', '<token>', 'staged', '<stage1>|overwrite|', 3, '<owner>', 'prod') -- settings "
        "{'insert_deduplication_token': 'loom-claim|sales.orders|<token>', 'insert_deduplicate': 1}",
        # the swap must happen on every node, or the others keep the old table
        "EXCHANGE TABLES `sales`.`<stage1>` AND `sales`.`orders` ON CLUSTER `prod`",
        "INSERT INTO `_loom`.`publications` (target, token, state, staging, rows, owner, cluster) VALUES "
        "('sales.orders', '<token>', 'published', '<stage1>', 3, '<owner>', 'prod')",
        "DROP TABLE IF EXISTS `sales`.`<stage1>` ON CLUSTER `prod` SYNC",
        VERSION,
    ]
    assert n == 3


def test_first_overwrite_on_a_cluster_creates_the_table_on_every_node(chdb_url: str, unique_schema: str) -> None:
    """A table's first overwrite on a cluster renames the staging table into place on every node
    (each has one: it was created ON CLUSTER). Before, the table was first created AS the staging
    table, comment included, so the overwrite took it for swapped in already and published
    nothing: the table stayed empty."""
    s = cluster_spec(unique_schema, "overwrite")
    res = RecordingResource(url=chdb_url)
    ctx = WriteContext(run_id="run-1", asset_key="o")
    res.write(frame(range(4)), s, RunParams(), write_ctx=ctx)
    assert res.sent(unique_schema, f"loom-{ctx.idempotency_token()}") == [
        "CREATE DATABASE IF NOT EXISTS `sales` ON CLUSTER `prod`",
        "CREATE TABLE `sales`.`<stage1>` ON CLUSTER `prod` (`id` Int64, `day` Date32, `v` Int64) ENGINE = MergeTree "
        "PARTITION BY `day` ORDER BY tuple() SETTINGS allow_nullable_key = 1 COMMENT 'loom:<token> on cluster prod'",
        "INSERT INTO `sales`.`<stage1>` FORMAT Arrow -- 4 rows",
        "INSERT INTO `_loom`.`publications` (target, token, state, staging, rows, owner, cluster) VALUES "
        "('sales.orders', '<token>', 'staged', '<stage1>|overwrite|', 4, '<owner>', 'prod') -- settings "
        "{'insert_deduplication_token': 'loom-claim|sales.orders|<token>', 'insert_deduplicate': 1}",
        "RENAME TABLE `sales`.`<stage1>` TO `sales`.`orders` ON CLUSTER `prod`",
        "INSERT INTO `_loom`.`publications` (target, token, state, staging, rows, owner, cluster) VALUES "
        "('sales.orders', '<token>', 'published', '<stage1>', 4, '<owner>', 'prod')",
        "DROP TABLE IF EXISTS `sales`.`<stage1>` ON CLUSTER `prod` SYNC",
        VERSION,
    ]
    assert int(res.query_rows(f"SELECT count() FROM {qt(s.ref)}")[0][0]) == 4
    res.close()


def test_replace_partitions_publication_on_a_cluster(chdb_url: str, unique_schema: str) -> None:
    days = RunParams(partition_keys=("2026-01-01", "2026-01-02"),
                     partitions=({"day": "2026-01-01"}, {"day": "2026-01-02"}))
    sent, n = publication(chdb_url, unique_schema, "replace_partitions", two_days(range(10)), frame(range(3)), days)
    assert sent == [
        "CREATE DATABASE IF NOT EXISTS `sales` ON CLUSTER `prod`",
        STAGE_DDL,
        "INSERT INTO `sales`.`<stage1>` FORMAT Arrow -- 3 rows",
        "INSERT INTO `_loom`.`publications` (target, token, state, staging, rows, owner, cluster) VALUES "
        "('sales.orders', '<token>', 'staged', "
        "'<stage1>|replace_partitions|`day` IN (toDate32(\\'2026-01-01\\'), toDate32(\\'2026-01-02\\'))', 3, "
        "'<owner>', 'prod') -- settings "
        "{'insert_deduplication_token': 'loom-claim|sales.orders|<token>', 'insert_deduplicate': 1}",
        "ALTER TABLE `sales`.`orders` ON CLUSTER `prod` REPLACE PARTITION ID '20454' FROM `sales`.`<stage1>`",
        # the run's partition without rows is emptied, on every node
        "ALTER TABLE `sales`.`orders` ON CLUSTER `prod` DROP PARTITION ID '20455'",
        "INSERT INTO `_loom`.`publications` (target, token, state, staging, rows, owner, cluster) VALUES "
        "('sales.orders', '<token>', 'published', '<stage1>', 3, '<owner>', 'prod')",
        "DROP TABLE IF EXISTS `sales`.`<stage1>` ON CLUSTER `prod` SYNC",
        VERSION,
    ]
    assert n == 3


def test_merge_publication_on_a_cluster(chdb_url: str, unique_schema: str) -> None:
    sent, n = publication(chdb_url, unique_schema, "merge", frame(range(10)), frame(range(5, 15)))
    assert sent == [
        "CREATE DATABASE IF NOT EXISTS `sales` ON CLUSTER `prod`",
        "CREATE TABLE `sales`.`<stage1>` ON CLUSTER `prod` (`id` Int64, `day` Date32, `v` Int64) ENGINE = "
        "ReplacingMergeTree PARTITION BY day ORDER BY (id) SETTINGS allow_nullable_key = 1, index_granularity = 8192 "
        "COMMENT 'loom:<token> on cluster prod'",
        "INSERT INTO `sales`.`<stage1>` FORMAT Arrow -- 10 rows, settings {'optimize_on_insert': 0}",
        "INSERT INTO `_loom`.`publications` (target, token, state, staging, rows, owner, cluster) VALUES "
        "('sales.orders', '<token>', 'staged', '<stage1>|merge|', 10, '<owner>', 'prod') -- settings "
        "{'insert_deduplication_token': 'loom-claim|sales.orders|<token>', 'insert_deduplicate': 1}",
        "ALTER TABLE `sales`.`<stage1>` ON CLUSTER `prod` MOVE PARTITION ID '20454' TO TABLE `sales`.`orders`",
        "INSERT INTO `_loom`.`publications` (target, token, state, staging, rows, owner, cluster) VALUES "
        "('sales.orders', '<token>', 'published', '<stage1>', 10, '<owner>', 'prod')",
        "DROP TABLE IF EXISTS `sales`.`<stage1>` ON CLUSTER `prod` SYNC",
        VERSION,
    ]
    assert n == 15


def test_recovery_by_another_process_runs_on_the_cluster(chdb_url: str, unique_schema: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A write killed inside its publication; a resource that knows nothing of the table (no
    spec: recovery at start) completes it with ON CLUSTER, from what the ledger recorded."""
    s = cluster_spec(unique_schema, "append")
    ctx = WriteContext(run_id="run-1", asset_key="o")
    writer = RecordingResource(url=chdb_url)
    with monkeypatch.context() as m:
        def die(*a: Any, **k: Any) -> None:
            raise KeyboardInterrupt("killed inside the publication")

        m.setattr(_publish, "_ops", die)
        with pytest.raises(KeyboardInterrupt):
            writer.write(two_days(range(5)), s, RunParams(), write_ctx=ctx)
    writer.close()
    res = RecordingResource(url=chdb_url)
    token = f"loom-{ctx.idempotency_token()}"
    assert [e.cluster for e in res.pending_publications() if e.token == token] == ["prod"]
    _publish.recover(res)
    assert res.sent(unique_schema, token) == [
        # take the staging table over (the DDL queue orders two takers: one wins on every node)
        "RENAME TABLE `sales`.`<stage1>` TO `sales`.`<stage2>` ON CLUSTER `prod`",
        "INSERT INTO `_loom`.`publications` (target, token, state, staging, rows, owner, cluster) VALUES "
        "('sales.orders', '<token>', 'moved', '<stage2>|append|', 10, '<owner>', 'prod')",
        "ALTER TABLE `sales`.`<stage2>` ON CLUSTER `prod` MOVE PARTITION ID '20454' TO TABLE `sales`.`orders`",
        "ALTER TABLE `sales`.`<stage2>` ON CLUSTER `prod` MOVE PARTITION ID '20455' TO TABLE `sales`.`orders`",
        "INSERT INTO `_loom`.`publications` (target, token, state, staging, rows, owner, cluster) VALUES "
        "('sales.orders', '<token>', 'published', '<stage2>', 10, '<owner>', 'prod')",
        "DROP TABLE IF EXISTS `sales`.`<stage2>` ON CLUSTER `prod` SYNC",
    ]
    assert int(res.query_rows(f"SELECT count() FROM {qt(s.ref)}")[0][0]) == 10
    res.close()


def test_sweep_and_abandon_drop_cluster_staging_on_the_cluster(chdb_url: str, unique_schema: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Leftovers of a cluster table are dropped on every node: the sweep reads the cluster from
    the staging table's comment (a write killed before its claim has no ledger entry), abandon
    from the ledger entry."""
    s = cluster_spec(unique_schema, "append")
    for run, dies_in in (("run-1", "claim"), ("run-2", "_ops")):
        writer = RecordingResource(url=chdb_url)
        with monkeypatch.context() as m:
            def die(*a: Any, **k: Any) -> None:
                raise KeyboardInterrupt("killed")

            m.setattr(_publish, dies_in, die)
            with pytest.raises(KeyboardInterrupt):
                writer.write(frame(range(3)), s, RunParams(), write_ctx=WriteContext(run_id=run, asset_key="o"))
        writer.close()
    res = RecordingResource(url=chdb_url)
    swept = [t for t in sweep_staging(res, 0.0) if t.startswith(unique_schema)]
    assert len(swept) == 1  # the unclaimed one; the claimed one is kept for recovery
    token = f"loom-{WriteContext(run_id='run-2', asset_key='o').idempotency_token()}"
    res.abandon_publication(s.ref, token)
    assert [q for q in res.sent(unique_schema, token) if q.startswith("DROP")] == [
        "DROP TABLE IF EXISTS `sales`.`<stage1>` ON CLUSTER `prod` SYNC",
        "DROP TABLE IF EXISTS `sales`.`<stage2>` ON CLUSTER `prod` SYNC",
    ]
    left = res.query_rows(f"SELECT count() FROM system.tables WHERE database = {lit(unique_schema)} "
                          "AND name LIKE '\\\\_loom\\\\_stage\\\\_%'")
    assert left == [(0,)]
    res.close()


def test_plain_table_publication_is_unchanged(chdb_url: str, unique_schema: str) -> None:
    """Without a cluster, the exact single-server statements (no ON CLUSTER, no cluster column)."""
    s = TargetSpec(TableRef(unique_schema, "orders"), "clickhouse", COLS, mode="overwrite", partition_by=("day",))
    RecordingResource(url=chdb_url).write(frame(range(5)), s, RunParams(), write_ctx=WriteContext(run_id="r1", asset_key="o"))
    res = RecordingResource(url=chdb_url)
    ctx = WriteContext(run_id="r2", asset_key="o")
    res.write(frame(range(2)), s, RunParams(), write_ctx=ctx)
    assert res.sent(unique_schema, f"loom-{ctx.idempotency_token()}") == [
        "CREATE DATABASE IF NOT EXISTS `sales`",
        "CREATE TABLE `sales`.`<stage1>` (`id` Int64, `day` Date32, `v` Int64) ENGINE = MergeTree "
        "PARTITION BY day ORDER BY tuple() SETTINGS allow_nullable_key = 1, index_granularity = 8192 "
        "COMMENT 'loom:<token>'",
        "INSERT INTO `sales`.`<stage1>` FORMAT Arrow -- 2 rows",
        "INSERT INTO `_loom`.`publications` (target, token, state, staging, rows, owner) VALUES "
        "('sales.orders', '<token>', 'staged', '<stage1>|overwrite|', 2, '<owner>') -- settings "
        "{'insert_deduplication_token': 'loom-claim|sales.orders|<token>', 'insert_deduplicate': 1}",
        "EXCHANGE TABLES `sales`.`<stage1>` AND `sales`.`orders`",
        "INSERT INTO `_loom`.`publications` (target, token, state, staging, rows, owner) VALUES "
        "('sales.orders', '<token>', 'published', '<stage1>', 2, '<owner>')",
        "DROP TABLE IF EXISTS `sales`.`<stage1>` SYNC",
        VERSION,
    ]
    res.close()


# -- the rule per statement, and the ledger on a cluster -----------------------------------------


def test_partition_statements_of_a_replicated_table_carry_no_on_cluster() -> None:
    """Unit test of the rule in isolation (chdb cannot create a Replicated table): partition and
    column ALTERs of a Replicated table replicate through Keeper; other engines need ON CLUSTER;
    table DDL always does on a cluster."""
    assert partition_on_cluster("prod", "ReplicatedMergeTree('/clickhouse/tables/{uuid}/{shard}', '{replica}')") == ""
    assert partition_on_cluster("prod", "ReplicatedReplacingMergeTree('/p', '{replica}', v)") == ""
    assert partition_on_cluster("prod", "MergeTree PARTITION BY day ORDER BY tuple()") == " ON CLUSTER `prod`"
    assert partition_on_cluster("", "MergeTree") == ""
    assert ddl_on_cluster("prod") == " ON CLUSTER `prod`" and ddl_on_cluster("") == ""
    assert marker_cluster(marker("loom-x", "prod")) == "prod" and marker_cluster(marker("loom-x")) == ""
    assert marker("loom-x") == "loom:loom-x"  # unchanged for plain tables


def test_loom_tables_in_a_replicated_database() -> None:
    """In a Replicated `_loom` database the ledger is a ReplicatedMergeTree (one ledger for every
    node, claims deduplicated through Keeper); anywhere else the MergeTree it always was. The
    same for the version counter in a Replicated `loom` database."""
    assert ledger_engine("Replicated") == (
        "ENGINE = ReplicatedMergeTree('/clickhouse/tables/{uuid}/_loom', '{replica}') ORDER BY (target, token) "
        "SETTINGS replicated_deduplication_window = 10000")
    assert ledger_engine("Atomic") == (
        "ENGINE = MergeTree ORDER BY (target, token) SETTINGS non_replicated_deduplication_window = 10000")
    assert versions_engine("Replicated") == "ReplicatedMergeTree('/clickhouse/tables/{uuid}/loom', '{replica}')"
    assert versions_engine("Atomic") == "MergeTree"


_OLD_LEDGER = """
import sys, os
from loom_resources.clickhouse import ClickHouseResource
res = ClickHouseResource(url="chdb://" + sys.argv[1])
# a ledger and an interrupted append as the version before 'owner' and 'cluster' left them
res.command("CREATE DATABASE s")
res.command("CREATE TABLE s.t (id Int64) ENGINE = MergeTree ORDER BY tuple()")
res.command("CREATE TABLE s._loom_stage_t_x (id Int64) ENGINE = MergeTree ORDER BY tuple()")
res.command("INSERT INTO s._loom_stage_t_x SELECT number FROM numbers(7)")
res.command("CREATE DATABASE _loom")
res.command("CREATE TABLE _loom.publications (target String, token String, state LowCardinality(String), "
            "staging String, rows UInt64, at DateTime64(6, 'UTC') DEFAULT now64(6, 'UTC')) "
            "ENGINE = MergeTree ORDER BY (target, token)")
res.command("INSERT INTO _loom.publications (target, token, state, staging, rows) "
            "VALUES ('s.t', 'loom-old', 'staged', '_loom_stage_t_x|append|', 7)")
res.close()
res = ClickHouseResource(url="chdb://" + sys.argv[1])
assert [(e.token, e.cluster) for e in res.pending_publications()] == [("loom-old", "")]
print(len(res.recover()), res.query_rows("SELECT count() FROM s.t")[0][0],
      res.query_rows("SELECT countIf(cluster = '') FROM _loom.publications")[0][0], flush=True)
res.close()
os._exit(0)
"""


def test_a_ledger_of_an_earlier_version_gains_the_cluster_column_and_recovers(tmp_path: Path) -> None:
    """Backward compatibility: an old ledger (no owner, no cluster column) is brought up to date
    and its entry completes as on one server (own chdb path: a subprocess)."""
    out = subprocess.run([sys.executable, "-c", _OLD_LEDGER, str(tmp_path / "ch")], capture_output=True, text=True,
                         timeout=300, cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stderr[-2000:]
    recovered, rows, no_cluster = map(int, out.stdout.split())
    assert (recovered, rows) == (1, 7) and no_cluster >= 3  # staged, moved, published
