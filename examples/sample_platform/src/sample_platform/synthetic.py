"""Deterministic synthetic retail data, produced lazily so any volume streams.

Every value is a pure function of its row number and day, so rerunning a day produces
identical rows (reruns replace, never duplicate).
"""

from __future__ import annotations

import datetime as dt
import os

import polars as pl

CATEGORIES = ("books", "electronics", "garden", "grocery", "home", "outdoor", "sports", "toys")
SEGMENTS = ("consumer", "corporate", "small_business")
CITIES = ("Berlin", "Lisbon", "Madrid", "Paris", "Rome", "Vienna", "Warsaw", "Zurich")
STATUSES = ("placed", "shipped", "delivered", "cancelled")
N_PRODUCTS = 500
N_CUSTOMERS = 20_000


def rows_per_day() -> int:
    """``LOOM_DEMO_ROWS_PER_DAY`` (default 100,000)."""
    return int(os.environ.get("LOOM_DEMO_ROWS_PER_DAY", "100000"))


def _mix(expr: pl.Expr, salt: int) -> pl.Expr:
    # a cheap integer hash (multiply-xorshift) so values look random but are reproducible
    x = (expr.cast(pl.UInt64) + salt) * 0x9E3779B97F4A7C15
    return x ^ (x // (1 << 29))


def orders(start: dt.date, end: dt.date, per_day: int | None = None) -> pl.LazyFrame:
    """Orders for days ``start`` (inclusive) to ``end`` (exclusive), ``per_day`` rows a day."""
    n = per_day or rows_per_day()
    days = (end - start).days
    base = (start - dt.date(2020, 1, 1)).days
    # a cross join of two small ranges: the streaming engine produces it batch by batch,
    # whereas one big int_range would be materialized up front
    day_lf = pl.LazyFrame({"day_idx": pl.int_range(0, days, eager=True, dtype=pl.Int64)})
    row_lf = pl.LazyFrame({"r": pl.int_range(0, n, eager=True, dtype=pl.Int64)})
    order_date = (pl.lit(start) + pl.duration(days=pl.col("day_idx"))).cast(pl.Date)
    seconds = (_mix(pl.col("gid"), 7) % 86_400).cast(pl.Int64)
    return (
        day_lf.join(row_lf, how="cross")
        .with_columns(gid=(pl.col("day_idx") + base) * n + pl.col("r"))
        .select(
            order_id=pl.col("gid"),
            order_date=order_date,
            order_ts=(order_date.cast(pl.Datetime("us", "UTC")) + pl.duration(seconds=seconds)),
            customer_id=(_mix(pl.col("gid"), 1) % N_CUSTOMERS + 1).cast(pl.Int64),
            product_id=(_mix(pl.col("gid"), 2) % N_PRODUCTS + 1).cast(pl.Int32),
            quantity=(_mix(pl.col("gid"), 3) % 5 + 1).cast(pl.Int32),
            status=pl.lit(pl.Series(STATUSES)).get((_mix(pl.col("gid"), 4) % len(STATUSES)).cast(pl.Int64)),
        )
    )


def products() -> pl.DataFrame:
    """The product catalogue."""
    ids = pl.Series("product_id", range(1, N_PRODUCTS + 1), dtype=pl.Int32)
    return pl.DataFrame({"product_id": ids}).with_columns(
        name=pl.format("product-{}", pl.col("product_id")),
        category=pl.lit(pl.Series(CATEGORIES)).get((_mix(pl.col("product_id"), 5) % len(CATEGORIES)).cast(pl.Int64)),
        unit_price=((_mix(pl.col("product_id"), 6) % 20_000 + 100).cast(pl.Int64).cast(pl.Decimal(10, 2)) / 100).cast(
            pl.Decimal(10, 2)
        ),
    )


def customers(as_of: dt.date) -> pl.DataFrame:
    """The customer snapshot as of ``as_of``; a customer's segment and city change every
    few weeks, so consecutive snapshots differ (SCD2 history has something to track)."""
    epoch = (as_of - dt.date(2020, 1, 1)).days
    ids = pl.Series("customer_id", range(1, N_CUSTOMERS + 1), dtype=pl.Int64)
    period = (pl.lit(epoch) + pl.col("customer_id") % 28) // 28
    return pl.DataFrame({"customer_id": ids}).with_columns(
        name=pl.format("customer-{}", pl.col("customer_id")),
        segment=pl.lit(pl.Series(SEGMENTS)).get((_mix(pl.col("customer_id") + period * 7919, 8) % len(SEGMENTS)).cast(pl.Int64)),
        city=pl.lit(pl.Series(CITIES)).get((_mix(pl.col("customer_id") + period * 104729, 9) % len(CITIES)).cast(pl.Int64)),
        signup_date=pl.lit(dt.date(2020, 1, 1)) + pl.duration(days=(_mix(pl.col("customer_id"), 10) % 1500).cast(pl.Int64)),
    ).with_columns(pl.col("signup_date").cast(pl.Date))
