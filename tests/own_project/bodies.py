"""Python bodies of my_shop's tables."""

import datetime as dt

import dagster as dg
import polars as pl


def land_orders(context: dg.AssetExecutionContext) -> pl.LazyFrame:
    """100 orders a day over the run's window (a backfill of several days is one run), amounts
    1.00 to 100.00."""
    window = context.partition_time_window
    days = [window.start.date() + dt.timedelta(days=i) for i in range((window.end - window.start).days)]
    return pl.LazyFrame({
        "order_id": [d.toordinal() * 1000 + i for d in days for i in range(100)],
        "order_date": [d for d in days for _ in range(100)],
        "amount": [f"{i}.00" for _ in days for i in range(1, 101)],
    }).with_columns(pl.col("amount").str.to_decimal(scale=2).cast(pl.Decimal(18, 2)))
