"""Declarative automation and freshness on the declaration, evaluated with Dagster's own helpers."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import polars as pl
import pytest

from loom_assets.declare import Table
from loom_assets.factory import build_assets
from loom_resources import ColumnSchema, SpecError

RAW_ORDERS, STAGING_ORDERS = dg.AssetKey(["raw", "orders"]), dg.AssetKey(["staging", "orders"])


def at(day: int, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2026, 11, day, hour, minute, tzinfo=dt.UTC)


def test_condition_and_freshness_pass_through() -> None:
    cond = dg.AutomationCondition.on_cron("0 2 * * *") & ~dg.AutomationCondition.in_progress()
    t = Table("s.t", backend="delta", columns=[ColumnSchema("id", "int64")], mode="overwrite",
              transform=lambda context: pl.DataFrame({"id": [1]}), automation_condition=cond,
              fresh_within=dt.timedelta(hours=26))
    asset = build_assets([t])[0]
    spec = next(iter(asset.specs))
    assert spec.automation_condition == cond
    assert spec.freshness_policy == dg.FreshnessPolicy.time_window(fail_window=dt.timedelta(hours=26))
    with pytest.raises(SpecError, match="fresh_within"):
        Table("s.t", backend="delta", columns=[ColumnSchema("id", "int64")], transform=lambda context: None,
              fresh_within=dt.timedelta(0))
    with pytest.raises(SpecError, match="AutomationCondition"):
        Table("s.t", backend="delta", columns=[ColumnSchema("id", "int64")], transform=lambda context: None,
              automation_condition="eager")  # type: ignore[arg-type]


def test_sample_platform_conditions_evaluate_as_declared() -> None:
    from sample_platform.definitions import defs

    graph = defs.resolve_asset_graph()
    assert graph.get(RAW_ORDERS).freshness_policy == dg.FreshnessPolicy.time_window(fail_window=dt.timedelta(hours=26))
    assert "loom_automation" in {s.name for s in defs.sensors or []}  # type: ignore[union-attr]
    instance = dg.DagsterInstance.ephemeral()
    selection = dg.AssetSelection.assets(RAW_ORDERS, STAGING_ORDERS)

    # before 02:00 nothing is due; raw.orders is not materialized, so staging.orders waits for it
    r = dg.evaluate_automation_conditions(defs, instance, asset_selection=selection, evaluation_time=at(16, 1))
    assert r.total_requested == 0
    # after the 02:00 tick: raw.orders' latest day (the last complete one) is requested
    r = dg.evaluate_automation_conditions(defs, instance, asset_selection=selection, evaluation_time=at(16, 2, 30),
                                          cursor=r.cursor)
    assert r.get_requested_partitions(RAW_ORDERS) == {"2026-11-15"}
    assert r.get_num_requested(STAGING_ORDERS) == 0
    # once raw.orders (and the products it joins) are materialized, the eager staging.orders follows
    for key, partition in ((RAW_ORDERS, "2026-11-15"), (dg.AssetKey(["raw", "products"]), None)):
        instance.report_runless_asset_event(dg.AssetMaterialization(key, partition=partition))
    r = dg.evaluate_automation_conditions(defs, instance, asset_selection=selection, evaluation_time=at(16, 2, 45),
                                          cursor=r.cursor)
    assert r.get_requested_partitions(STAGING_ORDERS) == {"2026-11-15"}
    assert r.get_num_requested(RAW_ORDERS) == 0


def test_an_eager_table_runs_when_its_external_source_changes(tmp_path: object) -> None:
    """A new observation of an external table (a new data version) requests its eager consumer."""
    from loom_assets import ExternalTable, build_definitions
    from loom_resources.clickhouse import ClickHouseResource
    from loom_resources.delta import DeltaResource

    ext = ExternalTable("landing.events", "delta", columns=[ColumnSchema("id", "int64", False)])
    t = Table("s.copy", backend="delta", columns=[ColumnSchema("id", "int64", False)], mode="overwrite",
              sources=["landing.events"], sql="SELECT id FROM events", automation_condition=dg.AutomationCondition.eager())
    defs = build_definitions([ext, t], backends={"delta": DeltaResource(root=str(tmp_path)), "clickhouse": ClickHouseResource()})
    instance = dg.DagsterInstance.ephemeral()
    selection = dg.AssetSelection.assets(t.asset_key)
    r = dg.evaluate_automation_conditions(defs, instance, asset_selection=selection)
    instance.report_runless_asset_event(dg.AssetMaterialization(t.asset_key))  # the table is up to date
    r = dg.evaluate_automation_conditions(defs, instance, asset_selection=selection, cursor=r.cursor)
    assert r.total_requested == 0
    # the other system changes the table: an observation with a new data version
    instance.report_runless_asset_event(dg.AssetObservation(ext.asset_key, tags={"dagster/data_version": "7"}))
    r = dg.evaluate_automation_conditions(defs, instance, asset_selection=selection, cursor=r.cursor)
    assert r.get_num_requested(t.asset_key) == 1


def test_staging_orders_follows_an_older_raw_orders_partition() -> None:
    """What the automation sensor evaluates under `dagster dev` weeks after the demo window: a
    backfilled raw.orders day (not the latest time window) requests that day of staging.orders.
    Dagster's ``eager()`` only looks at the latest time window, so it launched nothing."""
    from sample_platform.definitions import defs

    instance = dg.DagsterInstance.ephemeral()
    selection = dg.AssetSelection.assets(STAGING_ORDERS)
    now = dt.datetime(2026, 12, 7, 12, tzinfo=dt.UTC)
    r = dg.evaluate_automation_conditions(defs, instance, asset_selection=selection, evaluation_time=now)
    assert r.total_requested == 0  # nothing upstream is stored yet
    for key, partition in ((RAW_ORDERS, "2026-11-15"), (dg.AssetKey(["raw", "products"]), None)):
        instance.report_runless_asset_event(dg.AssetMaterialization(key, partition=partition))
    r = dg.evaluate_automation_conditions(defs, instance, asset_selection=selection, cursor=r.cursor,
                                          evaluation_time=now + dt.timedelta(minutes=1))
    assert r.get_requested_partitions(STAGING_ORDERS) == {"2026-11-15"}
    # once it has run, the same day is not requested again until raw.orders changes again
    instance.report_runless_asset_event(dg.AssetMaterialization(STAGING_ORDERS, partition="2026-11-15"))
    r = dg.evaluate_automation_conditions(defs, instance, asset_selection=selection, cursor=r.cursor,
                                          evaluation_time=now + dt.timedelta(minutes=2))
    assert r.total_requested == 0
    instance.report_runless_asset_event(dg.AssetMaterialization(RAW_ORDERS, partition="2026-11-15"))
    r = dg.evaluate_automation_conditions(defs, instance, asset_selection=selection, cursor=r.cursor,
                                          evaluation_time=now + dt.timedelta(minutes=3))
    assert r.get_requested_partitions(STAGING_ORDERS) == {"2026-11-15"}
