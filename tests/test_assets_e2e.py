"""End-to-end materializations of declared tables against real Delta tables and the
embedded ClickHouse engine (the pytest process's one ``chdb://`` path)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest
from deltalake import DeltaTable
from sample_platform import synthetic

from loom_assets.declare import Source, Table, not_null, row_count, unique
from loom_assets.factory import build_assets
from loom_resources import ColumnSchema
from loom_resources.clickhouse import ClickHouseResource
from loom_resources.delta import DeltaResource
from loom_resources.io_manager import LoomIOManager

DAILY = dg.DailyPartitionsDefinition(start_date="2026-11-01", end_offset=0)
RANGE_TAGS = {"dagster/asset_partition_range_start": "2026-11-01", "dagster/asset_partition_range_end": "2026-11-05"}
ORDER_COLS = [
    ColumnSchema("order_id", "int64", False), ColumnSchema("order_date", "date", False),
    ColumnSchema("order_ts", "datetime(us, UTC)", False), ColumnSchema("customer_id", "int64", False),
    ColumnSchema("product_id", "int32", False), ColumnSchema("quantity", "int32", False),
    ColumnSchema("status", "string", False),
]


@pytest.fixture
def resources(tmp_path: Path, chdb_url: str) -> dict[str, Any]:
    (tmp_path / "delta").mkdir()
    delta = DeltaResource(root=str(tmp_path / "delta"))
    ch = ClickHouseResource(url=chdb_url)
    return {"delta": delta, "clickhouse": ch, "io_manager": LoomIOManager(delta=delta, clickhouse=ch)}


def window_orders(context: dg.AssetExecutionContext) -> pl.LazyFrame:
    w = context.partition_time_window
    return synthetic.orders(w.start.date(), w.end.date(), 100)


def read_delta(resources: dict[str, Any], name: str) -> pl.DataFrame:
    from loom_resources import TableRef

    return pl.from_arrow(DeltaTable(resources["delta"].table_uri(TableRef.parse(name))).to_pyarrow_table())  # type: ignore[return-value]


def read_ch(chdb_url: str, sql: str) -> pl.DataFrame:
    import clickhouse_connect

    client = clickhouse_connect.get_client(dsn=chdb_url)
    try:
        return pl.from_arrow(client.query_arrow(sql))  # type: ignore[return-value]
    finally:
        client.close()


def mat(tables: list[Table], resources: dict[str, Any], **kw: Any) -> dg.ExecuteInProcessResult:
    assets = build_assets(tables)
    kw.setdefault("instance", dg.DagsterInstance.ephemeral())
    return dg.materialize(assets, resources=resources, **kw)


def test_downstream_partition_reads_only_its_window(resources: dict[str, Any], unique_schema: str) -> None:
    s = unique_schema
    up = Table(f"{s}.orders", backend="delta", columns=ORDER_COLS, transform=window_orders,
               mode="replace_partitions", partitions=DAILY, partition_column="order_date")
    down = Table(
        f"{s}.daily_counts", backend="delta", sources=[f"{s}.orders"], mode="replace_partitions",
        partitions=DAILY, partition_column="order_date",
        columns=[ColumnSchema("order_date", "date", False), ColumnSchema("n", "int64", False)],
        transform=lambda context, orders: orders.group_by("order_date").agg(n=pl.len().cast(pl.Int64)),
    )
    inst = dg.DagsterInstance.ephemeral()
    assert mat([up, down], resources, selection=[up.asset_key], tags=RANGE_TAGS, instance=inst).success
    assert read_delta(resources, f"{s}.orders").height == 500
    assert mat([up, down], resources, selection=[down.asset_key], partition_key="2026-11-03", instance=inst).success
    out = read_delta(resources, f"{s}.daily_counts")
    assert out.to_dicts() == [{"order_date": dt.date(2026, 11, 3), "n": 100}]


def test_streaming_and_eager_paths_write_identical_tables(resources: dict[str, Any], unique_schema: str) -> None:
    s = unique_schema
    gen = lambda context: synthetic.orders(dt.date(2026, 11, 1), dt.date(2026, 11, 3), 2_000)  # noqa: E731
    tables = [
        Table(f"{s}.{backend}_{path}", backend=backend, columns=ORDER_COLS, transform=gen, mode="overwrite",
              streaming=(path == "streaming"))
        for backend in ("delta", "clickhouse") for path in ("streaming", "eager")
    ]
    result = mat(tables, resources)
    assert result.success
    paths = {
        ev.asset_key.path[-1]: ev.materialization.metadata["loom/write_path"].value
        for ev in result.get_asset_materialization_events()
    }
    assert paths == {"delta_streaming": "streaming", "delta_eager": "eager",
                     "clickhouse_streaming": "streaming", "clickhouse_eager": "eager"}
    a = read_delta(resources, f"{s}.delta_streaming").sort("order_id")
    b = read_delta(resources, f"{s}.delta_eager").sort("order_id")
    assert a.height == 4_000 and a.equals(b)
    c = read_ch(resources["clickhouse"].url, f"SELECT * FROM `{s}`.clickhouse_streaming ORDER BY order_id")
    d = read_ch(resources["clickhouse"].url, f"SELECT * FROM `{s}`.clickhouse_eager ORDER BY order_id")
    assert c.height == 4_000 and c.equals(d)
    assert c["order_id"].to_list() == a["order_id"].to_list()


def test_schema_violation_is_blocked_and_table_unchanged(resources: dict[str, Any], unique_schema: str) -> None:
    s = unique_schema
    good = Table(f"{s}.t", backend="delta", mode="append",
                 columns=[ColumnSchema("id", "int64", False), ColumnSchema("v", "string")],
                 transform=lambda context: pl.DataFrame({"id": [1, 2], "v": ["a", "b"]}))
    assert mat([good], resources).success
    before = DeltaTable(resources["delta"].table_uri(good.ref))
    version = before.version()
    bad = Table(f"{s}.t", backend="delta", mode="append",
                columns=[ColumnSchema("id", "int64", False), ColumnSchema("v", "string")],
                transform=lambda context: pl.DataFrame({"id": ["x", "y"], "v": ["c", "d"]}))
    result = mat([bad], resources, raise_on_error=False)
    assert not result.success
    failure = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"][0]
    msg = str(failure.event_specific_data.error)  # type: ignore[union-attr]
    assert f"{s}.t" in msg and "'id'" in msg and "expected int64" in msg
    # Loom's message is the failure itself (the run header, the asset's event), not Dagster's wrapper
    error = failure.event_specific_data.error  # type: ignore[union-attr]
    assert "DagsterExecutionHandleOutputError" not in error.message, error.message
    assert f"Schema mismatch for table {s}.t; nothing was written" in error.message
    user = failure.event_specific_data.user_failure_data  # type: ignore[union-attr]
    assert user is not None and user.metadata["loom/table"].value == f"{s}.t"
    assert "'id'" in user.metadata["loom/problems"].value and user.metadata["loom/error"].value == "SchemaMismatchError"
    after = DeltaTable(resources["delta"].table_uri(good.ref))
    assert after.version() == version
    assert read_delta(resources, f"{s}.t").sort("id").to_dicts() == [{"id": 1, "v": "a"}, {"id": 2, "v": "b"}]


def test_schema_change_check_fails_after_type_change(resources: dict[str, Any], unique_schema: str) -> None:
    s = unique_schema
    v1 = Table(f"{s}.t", backend="delta", mode="overwrite", columns=[ColumnSchema("x", "int64")],
               transform=lambda context: pl.DataFrame({"x": [1, 2]}))
    v2 = Table(f"{s}.t", backend="delta", mode="overwrite", schema_mode="overwrite", columns=[ColumnSchema("x", "float64")],
               transform=lambda context: pl.DataFrame({"x": [1.5, 2.5]}))
    inst = dg.DagsterInstance.ephemeral()
    for table in (v1, v2):
        assets = build_assets([table])
        checks = dg.build_column_schema_change_checks(assets=assets)
        result = dg.materialize([*assets, *checks], resources=resources, instance=inst)
        assert result.success
        evals = {e.check_name: e for e in result.get_asset_check_evaluations()}
        change = [e for name, e in evals.items() if "column_schema_change" in name]
        assert len(change) == 1
        assert evals["schema_matches_declaration"].passed
    assert change[0].passed is False
    assert read_delta(resources, f"{s}.t")["x"].to_list() == [1.5, 2.5]


def test_blocking_schema_check_stops_downstream(resources: dict[str, Any], unique_schema: str) -> None:
    s = unique_schema
    from deltalake import write_deltalake

    uri = resources["delta"].table_uri(__import__("loom_resources").TableRef(s, "up"))
    Path(uri).parent.mkdir(parents=True, exist_ok=True)
    # the table was created outside Loom with a nullable id; the declaration says not null
    write_deltalake(uri, pl.DataFrame({"id": [0]}).to_arrow())
    up = Table(f"{s}.up", backend="delta", mode="append", columns=[ColumnSchema("id", "int64", False)],
               transform=lambda context: pl.DataFrame({"id": [1]}))
    down = Table(f"{s}.down", backend="delta", mode="overwrite", columns=[ColumnSchema("id", "int64")],
                 sources=[f"{s}.up"], sql="SELECT id FROM up")
    result = mat([up, down], resources, raise_on_error=False)
    assert not result.success
    evals = {e.asset_key.path[-1]: e for e in result.get_asset_check_evaluations()}
    assert evals["up"].passed is False
    assert "'id' nullability differs" in evals["up"].metadata["problems"].value  # type: ignore[operator]
    assert read_delta(resources, f"{s}.up")["id"].sort().to_list() == [0, 1]
    assert not Path(resources["delta"].table_uri(down.ref)).exists()


def test_data_checks_query_the_stored_table(resources: dict[str, Any], unique_schema: str) -> None:
    s = unique_schema
    t = Table(f"{s}.c", backend="clickhouse", mode="overwrite",
              columns=[ColumnSchema("id", "int64", False), ColumnSchema("v", "string")],
              transform=lambda context: pl.DataFrame({"id": [1, 1, 2], "v": [None, "a", "b"]}),
              checks=[unique("id"), not_null("v"), row_count(min_rows=2, max_rows=3)])
    result = mat([t], resources)
    evals = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert evals["unique_id"].passed is False and evals["unique_id"].metadata["duplicate_keys"].value == 1
    assert evals["not_null_v"].passed is False and evals["not_null_v"].metadata["nulls_v"].value == 1
    assert evals["row_count"].passed is True and evals["row_count"].metadata["rows"].value == 3
    assert evals["schema_matches_declaration"].passed


def test_sql_pushdown_runs_inside_clickhouse(resources: dict[str, Any], unique_schema: str) -> None:
    s = unique_schema
    src = Table(f"{s}.orders", backend="clickhouse", mode="replace_partitions", columns=ORDER_COLS,
                transform=window_orders, partitions=DAILY, partition_column="order_date")
    mart = Table(
        f"{s}.by_day", backend="clickhouse", mode="replace_partitions", partitions=DAILY, partition_column="order_date",
        sources=[f"{s}.orders"],
        columns=[ColumnSchema("order_date", "date", False), ColumnSchema("n", "uint64", False)],
        sql="SELECT order_date, count() AS n FROM orders WHERE order_date >= {partition_start_date} "
            "AND order_date < {partition_end_date} GROUP BY order_date",
    )
    result = mat([src, mart], resources, tags=RANGE_TAGS)
    assert result.success
    md = {e.asset_key.path[-1]: e.materialization.metadata for e in result.get_asset_materialization_events()}
    by_day = [e.materialization.metadata for e in result.get_asset_materialization_events()
              if e.asset_key.path[-1] == "by_day"]
    assert len(by_day) == 5
    assert md["by_day"]["loom/sql_engine"].value == "clickhouse"
    rows = read_ch(resources["clickhouse"].url, f"SELECT order_date, n FROM `{s}`.by_day ORDER BY order_date")
    assert rows["n"].to_list() == [100] * 5
    assert {m["dagster/partition_row_count"].value for m in by_day} == {1}


def test_materialization_metadata_and_run_records(resources: dict[str, Any], unique_schema: str) -> None:
    s = unique_schema
    t = Table(f"{s}.m", backend="delta", mode="overwrite", columns=[ColumnSchema("id", "int64", False)],
              transform=lambda context: pl.LazyFrame({"id": [1, 2, 3]}))
    result = mat([t], resources)
    md = result.get_asset_materialization_events()[0].materialization.metadata
    assert md["dagster/row_count"].value == 3
    assert md["dagster/table_name"].value == f"{s}.m"
    assert [c.name for c in md["dagster/column_schema"].value.columns] == ["id"]  # type: ignore[attr-defined]
    assert md["loom/write_mode"].value == "overwrite"
    records = read_delta(resources, "loom.run_records").filter(pl.col("table_name") == f"{s}.m")
    assert records.select("run_id", "status", "rows").to_dicts() == [{"run_id": result.run_id, "status": "success", "rows": 3}]


def test_source_projection_and_streaming_input(resources: dict[str, Any], unique_schema: str) -> None:
    s = unique_schema
    seen: dict[str, Any] = {}

    def capture(context: Any, orders: pl.LazyFrame) -> pl.LazyFrame:
        seen["columns"] = orders.collect_schema().names()
        return orders

    src = Table(f"{s}.o", backend="clickhouse", mode="overwrite", columns=ORDER_COLS[:2],
                transform=lambda context: synthetic.orders(dt.date(2026, 11, 1), dt.date(2026, 11, 2), 50).select("order_id", "order_date"))
    dst = Table(f"{s}.copy", backend="delta", mode="overwrite", columns=ORDER_COLS[:1],
                sources=[Source(f"{s}.o", columns=("order_id",), streaming=True, alias="orders")], transform=capture)
    assert mat([src, dst], resources).success
    assert seen["columns"] == ["order_id"]
    assert read_delta(resources, f"{s}.copy").height == 50


def test_failed_body_is_recorded_in_run_records(resources: dict[str, Any], unique_schema: str) -> None:
    s = unique_schema

    def boom(context: Any) -> pl.DataFrame:
        raise RuntimeError("upstream system unavailable")

    t = Table(f"{s}.f", backend="delta", mode="overwrite", columns=[ColumnSchema("id", "int64")], transform=boom)
    result = mat([t], resources, raise_on_error=False)
    assert not result.success
    records = read_delta(resources, "loom.run_records").filter(pl.col("table_name") == f"{s}.f")
    assert records.select("status").to_series().to_list() == ["failed"]
    assert "upstream system unavailable" in records["error"][0]


def test_maintenance_job_compacts_delta_and_optimizes_clickhouse_merges(
    resources: dict[str, Any], unique_schema: str
) -> None:
    from loom_assets.jobs import build_jobs

    s = unique_schema
    d = Table(f"{s}.d", backend="delta", mode="append", columns=[ColumnSchema("id", "int64")],
              transform=lambda context: pl.DataFrame({"id": [1]}))
    m = Table(f"{s}.m", backend="clickhouse", mode="merge", merge_keys=["id"],
              columns=[ColumnSchema("id", "int64", False), ColumnSchema("v", "string")],
              transform=lambda context: pl.DataFrame({"id": [1, 2], "v": ["a", "b"]}))
    for _ in range(3):
        assert mat([d, m], resources).success
    files_before = len(DeltaTable(resources["delta"].table_uri(d.ref)).file_uris())
    assert files_before == 3
    jobs, _ = build_jobs([d, m], build_assets([d, m]))
    job = [j for j in jobs if j.name == "loom_maintenance_job"][0]
    assert job.execute_in_process(resources=resources).success
    assert len(DeltaTable(resources["delta"].table_uri(d.ref)).file_uris()) == 1
    parts = read_ch(resources["clickhouse"].url,
                    f"SELECT count() AS n FROM system.parts WHERE database = '{s}' AND table = 'm' AND active")
    assert parts["n"][0] == 1
    assert read_delta(resources, f"{s}.d")["id"].to_list() == [1, 1, 1]
