"""A plain dagster-polars asset among the declared tables: customer features computed from a
ClickHouse mart (read through the Loom IO manager) and stored as Parquet by dagster-polars,
feeding a declared Delta export."""

from __future__ import annotations

import dagster as dg
import polars as pl

from loom_assets.declare import Source, Table
from sample_platform.tables import C

PARQUET_IO_MANAGER = "polars_parquet_io_manager"


@dg.asset(
    key=["features", "customer_features"], group_name="features", io_manager_key=PARQUET_IO_MANAGER,
    ins={"clv": dg.AssetIn(key=["marts", "customer_lifetime_value"])}, kinds={"polars", "parquet"},
    # like the declared tables, so "everything over a partition range" stays one run from the CLI
    backfill_policy=dg.BackfillPolicy.single_run(),
    description="per-customer features (a plain dagster-polars asset stored as Parquet)",
)
def customer_features(clv: pl.LazyFrame) -> pl.DataFrame:
    """Value tier and order frequency per customer."""
    return (
        clv.select(
            "customer_id", "segment",
            pl.col("orders").cast(pl.Int64),
            # thirds of the customers by lifetime value
            value_tier=pl.col("lifetime_value").cast(pl.Float64).qcut(3, labels=["low", "mid", "high"]).cast(pl.String),
        )
        .collect()
    )


TABLES = [
    Table(
        "exports.customer_tiers", backend="delta", mode="overwrite",
        sources=[Source("features.customer_features", asset=True)],
        columns=[C("value_tier", "string", False), C("customers", "int64", False), C("orders", "int64", False)],
        sql="""SELECT value_tier, count(*) AS customers, sum(orders) AS orders
               FROM customer_features GROUP BY value_tier""",
    ),
]

ASSETS = [customer_features]
