"""The sample platform's sources from outside: a Delta landing table of web events that another
engine writes, and a ClickHouse table of exchange rates fed by another system, with the
declared tables that read them. :func:`land_external` plays those other systems in the demo."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import polars as pl

from loom_assets.declare import Table, not_null
from loom_assets.external import ExternalTable
from loom_resources import TableRef
from sample_platform.synthetic import N_CUSTOMERS
from sample_platform.tables import C, daily

WEB_EVENTS = ExternalTable(
    "landing.web_events", "delta",
    columns=[C("event_id", "int64", False), C("event_date", "date", False), C("customer_id", "int64", False),
             C("page", "string")],
    partition_column="event_date", observe_cron="0 * * * *",
    description="web events landed by the tracking pipeline (written outside this platform)",
)
FX_RATES = ExternalTable(
    "feeds.fx_rates", "clickhouse",
    description="exchange rates from the treasury feed (a ClickHouse table another system inserts into); "
                "its columns are discovered",
)

TABLES = [
    Table(
        "staging.web_daily", backend="delta", mode="replace_partitions", partitions=daily, partition_column="event_date",
        sources=["landing.web_events"],
        columns=[C("event_date", "date", False), C("visits", "int64", False), C("visitors", "int64", False)],
        sql="""SELECT event_date, count(*) AS visits, count(DISTINCT customer_id) AS visitors
               FROM web_events GROUP BY event_date""",
        checks=[not_null("visits")],
    ),
    Table(
        "marts.revenue_by_currency", backend="clickhouse", mode="overwrite",
        sources=["marts.daily_category_revenue", "feeds.fx_rates"],
        columns=[C("currency", "string", False), C("revenue", "float64", False)],
        sql="""SELECT f.currency AS currency, toFloat64(sum(r.revenue)) * any(f.rate) AS revenue
               FROM daily_category_revenue AS r CROSS JOIN fx_rates AS f GROUP BY f.currency""",
    ),
]

EXTERNAL = [WEB_EVENTS, FX_RATES]


def web_events(start: dt.date, end: dt.date, per_day: int = 1_000) -> pl.DataFrame:
    """Deterministic web events for days ``start`` (inclusive) to ``end`` (exclusive)."""
    days = pl.date_range(start, end - dt.timedelta(days=1), eager=True)
    return (
        pl.DataFrame({"event_date": days}).join(pl.DataFrame({"n": pl.int_range(0, per_day, eager=True)}), how="cross")
        .with_columns(
            event_id=(pl.col("event_date").cast(pl.Int64) * per_day + pl.col("n")).cast(pl.Int64),
            customer_id=(pl.col("n") * 7919 % N_CUSTOMERS).cast(pl.Int64),
            page=pl.format("/p/{}", pl.col("n") % 50),
        )
        .select("event_id", "event_date", "customer_id", "page")
    )


def land_external(start: dt.date, end: dt.date) -> None:
    """Write the external tables as their own systems would, outside Dagster and Loom: the web
    events with deltalake, the rates with a plain ClickHouse client. Rerunning replaces them."""
    import clickhouse_connect
    from deltalake import write_deltalake

    home = Path(os.environ.get("LOOM_HOME") or ".loom").resolve()
    root = Path(os.environ.get("LOOM_DELTA_ROOT") or home / "delta")
    ref = TableRef.parse(WEB_EVENTS.name)
    write_deltalake(str(root / ref.schema / ref.table), web_events(start, end).to_arrow(), mode="overwrite",
                    partition_by=["event_date"])
    url = os.environ.get("LOOM_CLICKHOUSE_URL") or f"chdb://{home / 'clickhouse'}"
    client = clickhouse_connect.get_client(dsn=url)
    try:
        client.command("CREATE DATABASE IF NOT EXISTS feeds")
        client.command("CREATE OR REPLACE TABLE feeds.fx_rates (currency String, rate Float64) ENGINE = MergeTree ORDER BY currency")
        client.command("INSERT INTO feeds.fx_rates VALUES ('EUR', 1.0), ('USD', 1.08), ('GBP', 0.86)")
    finally:
        client.close()
