"""The sample platform, materialized end to end on the embedded defaults (small volume),
checked across stores, then rerun to show nothing is duplicated."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import clickhouse_connect
import dagster as dg
import polars as pl
import pytest
from deltalake import DeltaTable


def delta(home: Path, name: str) -> pl.DataFrame:
    schema, table = name.split(".")
    out = pl.from_arrow(DeltaTable(str(home / "delta" / schema / table)).to_pyarrow_table())
    assert isinstance(out, pl.DataFrame)
    return out


def ch(url: str, sql: str) -> pl.DataFrame:
    client = clickhouse_connect.get_client(dsn=url)
    try:
        out = pl.from_arrow(client.query_arrow(sql))
    finally:
        client.close()
    assert isinstance(out, pl.DataFrame)
    return out


def snapshot(home: Path, url: str) -> dict[str, int]:
    counts = {n: delta(home, n).height for n in (
        "raw.orders", "raw.products", "raw.customers", "staging.orders", "staging.order_status",
        "staging.customers", "staging.customers_history", "exports.category_revenue")}
    for n in ("warehouse.orders", "marts.daily_category_revenue", "marts.customer_lifetime_value"):
        counts[n] = int(ch(url, f"SELECT count() AS n FROM {n}")["n"][0])
    counts["warehouse.customers"] = int(ch(url, "SELECT count() AS n FROM warehouse.customers FINAL")["n"][0])
    return counts


def test_sample_platform(loom_home: Path, chdb_url: str, monkeypatch: pytest.MonkeyPatch,
                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LOOM_DEMO_ROWS_PER_DAY", "200")
    from sample_platform.definitions import defs
    from sample_platform.external import land_external
    from sample_platform.platform import TABLES

    from loom_assets.demo import materialize_platform

    instance = dg.DagsterInstance.ephemeral()
    land_external(date(2026, 11, 1), date(2026, 11, 15))
    log_file = loom_home / "logs" / "test-demo.log"
    results = materialize_platform(defs, instance, "2026-11-01", "2026-11-14", tables=TABLES, log_file=log_file)
    assert all(r.success for r in results)
    # the console: one line per table with rows, seconds, where SQL ran and the checks' outcome
    printed = capsys.readouterr().out
    assert "== daily tables 2026-11-01 to 2026-11-14 (inclusive)" in printed
    lines = {ln.split()[0]: ln for ln in printed.splitlines() if ln.startswith("  ") and "/" in ln.split()[0]}
    plain = {k for k, ln in lines.items() if " plain " in ln}  # dagster-polars assets: their own IO manager
    assert plain == {"features/customer_features"}
    assert len(lines) == 16 and all("checks" in ln and "passed" in ln for k, ln in lines.items() if k not in plain)
    assert "2,800 rows  14 partitions" in lines["raw/orders"]
    assert "sql in clickhouse" in lines["marts/daily_category_revenue"]
    assert "STEP_SUCCESS" not in printed and "RUN_START" not in printed  # Dagster's own log goes to the file
    log = log_file.read_text()
    assert "STEP_SUCCESS" in log and "for 2026-11-01 to 2026-11-14 (inclusive)" in log
    tiers = delta(loom_home, "exports.customer_tiers")
    clv_rows = ch(chdb_url, "SELECT count() AS n, sum(orders) AS o FROM marts.customer_lifetime_value")
    assert tiers["customers"].sum() == clv_rows["n"][0] and tiers["orders"].sum() == clv_rows["o"][0]
    web = delta(loom_home, "staging.web_daily").sort("event_date")
    assert web.height == 14 and web["visits"].to_list() == [1000] * 14
    fx = ch(chdb_url, "SELECT currency, revenue FROM marts.revenue_by_currency ORDER BY currency")
    total = ch(chdb_url, "SELECT toFloat64(sum(revenue)) AS r FROM marts.daily_category_revenue")["r"][0]
    assert fx["currency"].to_list() == ["EUR", "GBP", "USD"]
    assert fx["revenue"].to_list() == pytest.approx([total, total * 0.86, total * 1.08])

    raw = delta(loom_home, "raw.orders")
    assert raw.height == 14 * 200 and raw["order_id"].n_unique() == raw.height
    staged = delta(loom_home, "staging.orders")
    assert staged.height == raw.filter(pl.col("status") != "cancelled").height
    wh = ch(chdb_url, "SELECT count() AS n, sum(amount) AS s FROM warehouse.orders")
    assert wh["n"][0] == staged.height
    assert Decimal(str(wh["s"][0])) == staged["amount"].sum()
    mart = ch(chdb_url, "SELECT sum(orders) AS n, sum(revenue) AS r, count() AS rows FROM marts.daily_category_revenue")
    assert mart["n"][0] == staged.height and Decimal(str(mart["r"][0])) == staged["amount"].sum()
    export = delta(loom_home, "exports.category_revenue")
    assert export.height == mart["rows"][0]
    status = delta(loom_home, "staging.order_status")
    assert status["orders"].sum() == raw.height
    assert status["_loom_run_id"].null_count() == 0
    history = delta(loom_home, "staging.customers_history")
    assert history.filter(pl.col("is_current")).height == 20_000
    clv = ch(chdb_url, "SELECT sum(orders) AS n FROM marts.customer_lifetime_value")
    assert clv["n"][0] == staged.height
    records = delta(loom_home, "loom.run_records")
    assert set(records["status"]) == {"success"}
    assert set(records["table_name"]) >= {"raw.orders", "marts.daily_category_revenue", "exports.category_revenue"}

    before = snapshot(loom_home, chdb_url)
    again = materialize_platform(defs, instance, "2026-11-01", "2026-11-14", tables=TABLES, log_level="WARNING")
    assert all(r.success for r in again)
    assert snapshot(loom_home, chdb_url) == before
    assert delta(loom_home, "raw.orders").sort("order_id").equals(raw.sort("order_id"))
