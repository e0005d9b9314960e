"""The sample platform's declared tables: raw landing (Python), staging (SQL, merge, SCD2),
ClickHouse warehouse and marts (SQL pushed down into ClickHouse), and an export back to Delta."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import polars as pl

from loom_assets.automation import eager_every_partition
from loom_assets.declare import Source, Table, accepted_values, not_null, row_count, unique
from loom_resources import ClickHouseTableOptions, ColumnSchema, HistoryOptions, col, param
from sample_platform import synthetic

DEMO_START = dt.date(2026, 11, 1)
DEMO_END = dt.date(2026, 11, 14)  # inclusive: `make demo` materializes 14 days

daily = dg.DailyPartitionsDefinition(start_date=DEMO_START.isoformat(), end_offset=0)


def C(name: str, dtype: str, nullable: bool = True) -> ColumnSchema:
    """Shorthand for a column declaration."""
    return ColumnSchema(name, dtype, nullable)


def _window(context: dg.AssetExecutionContext) -> tuple[dt.date, dt.date]:
    w = context.partition_time_window
    return w.start.date(), w.end.date()


def land_orders(context: dg.AssetExecutionContext) -> pl.LazyFrame:
    """Synthetic orders of the run's days, produced lazily (written on the streaming path)."""
    start, end = _window(context)
    last = end - dt.timedelta(days=1)  # the window's end is exclusive
    context.log.info(f"generating {synthetic.rows_per_day()} orders/day for {start} to {last} (inclusive)")
    return synthetic.orders(start, end)


def land_products(context: dg.AssetExecutionContext) -> pl.DataFrame:
    """The product catalogue (small: written eagerly)."""
    return synthetic.products()


def land_customers(context: dg.AssetExecutionContext) -> pl.DataFrame:
    """Today's customer snapshot, as of the end of the demo window."""
    return synthetic.customers(DEMO_END)


def export_revenue(context: dg.AssetExecutionContext, daily_category_revenue: pl.LazyFrame) -> pl.LazyFrame:
    """Stream the ClickHouse mart back into Delta with a 7-day moving revenue."""
    return daily_category_revenue.sort("category", "order_date").with_columns(
        pl.col("orders").cast(pl.Int64),
        revenue_7d=pl.col("revenue").cast(pl.Float64).rolling_sum(7, min_samples=1).over("category"),
    )


ORDER_COLUMNS = [
    C("order_id", "int64", False), C("order_date", "date", False), C("order_ts", "datetime(us, UTC)", False),
    C("customer_id", "int64", False), C("product_id", "int32", False), C("quantity", "int32", False),
    C("status", "string", False),
]

TABLES: list[Table] = [
    Table(
        "raw.orders", backend="delta", columns=ORDER_COLUMNS, transform=land_orders,
        mode="replace_partitions", partitions=daily, partition_column="order_date",
        checks=[not_null("order_id"), unique("order_id"), accepted_values("status", synthetic.STATUSES)],
        automation_condition=dg.AutomationCondition.on_cron("0 2 * * *"), fresh_within=dt.timedelta(hours=26),
        description="Orders landed daily from the (synthetic) shop system (daily at 02:00; stale after 26 hours).",
        owners=["team:data-platform"],
    ),
    Table(
        "raw.products", backend="delta", transform=land_products, mode="overwrite",
        columns=[C("product_id", "int32", False), C("name", "string"), C("category", "string", False),
                 C("unit_price", "decimal(10,2)", False)],
        checks=[unique("product_id", blocking=True)],
    ),
    Table(
        "raw.customers", backend="delta", transform=land_customers, mode="overwrite",
        columns=[C("customer_id", "int64", False), C("name", "string"), C("segment", "string"), C("city", "string"),
                 C("signup_date", "date")],
    ),
    Table(
        "staging.orders", backend="delta", mode="replace_partitions", partitions=daily, partition_column="order_date",
        sources=["raw.orders", "raw.products"],
        columns=ORDER_COLUMNS[:6] + [C("category", "string", False), C("amount", "decimal(38,2)", False)],
        sql="""
            SELECT o.order_id, o.order_date, o.order_ts, o.customer_id, o.product_id, o.quantity,
                   p.category, CAST(o.quantity * p.unit_price AS DECIMAL(38, 2)) AS amount
            FROM orders o JOIN products p ON o.product_id = p.product_id
            WHERE o.status <> 'cancelled'
              AND o.order_date >= {partition_start_date} AND o.order_date < {partition_end_date}
        """,
        checks=[not_null("amount")], automation_condition=eager_every_partition(),
        description="Orders with category and amount, refreshed whenever raw orders or products change.",
    ),
    Table(
        "staging.order_status", backend="delta", mode="replace_where", partitions=daily,
        partition_column="order_date", audit_columns=True,
        replace_predicate=col("order_date").window(param("partition_start_date"), param("partition_end_date")),
        sources=[Source("raw.orders", columns=("order_date", "status"))],
        columns=[C("order_date", "date", False), C("status", "string", False), C("orders", "uint32", False)],
        sql="SELECT order_date, status, CAST(count(*) AS INT UNSIGNED) AS orders FROM orders GROUP BY order_date, status",
        description="Orders per day and status; the run's window is replaced by predicate, with audit columns.",
    ),
    Table(
        "staging.customers", backend="delta", mode="merge", merge_keys=["customer_id"], sources=["raw.customers"],
        columns=[C("customer_id", "int64", False), C("name", "string"), C("segment", "string"), C("city", "string")],
        sql="SELECT customer_id, name, segment, city FROM customers",
    ),
    Table(
        "staging.customers_history", backend="delta", mode="history", merge_keys=["customer_id"],
        history=HistoryOptions(tracked_columns=("segment", "city"), delete_policy="close"),
        sources=[Source("raw.customers", columns=("customer_id", "segment", "city"))],
        columns=[C("customer_id", "int64", False), C("segment", "string"), C("city", "string")],
        sql="SELECT customer_id, segment, city FROM customers",
    ),
    Table(
        "warehouse.orders", backend="clickhouse", mode="replace_partitions", partitions=daily,
        partition_column="order_date", sources=[Source("staging.orders", streaming=True)],
        columns=ORDER_COLUMNS[:4] + [C("category", "string", False), C("amount", "decimal(38,2)", False)],
        clickhouse=ClickHouseTableOptions(order_by=("order_date", "order_id")),
        transform=lambda context, orders: orders.select(
            "order_id", "order_date", "order_ts", "customer_id", "category", "amount"
        ),
        column_lineage={c: [("orders", c)] for c in ("order_id", "order_date", "order_ts", "customer_id", "category", "amount")},
        description="Orders copied into ClickHouse for the marts (streamed, bounded memory).",
    ),
    Table(
        "warehouse.customers", backend="clickhouse", mode="merge", merge_keys=["customer_id"],
        sources=["staging.customers"],
        columns=[C("customer_id", "int64", False), C("segment", "string"), C("city", "string")],
        transform=lambda context, customers: customers.select("customer_id", "segment", "city"),
        column_lineage={c: [("customers", c)] for c in ("customer_id", "segment", "city")},
    ),
    Table(
        "marts.daily_category_revenue", backend="clickhouse", mode="replace_partitions", partitions=daily,
        partition_column="order_date", sources=["warehouse.orders"],
        columns=[C("order_date", "date", False), C("category", "string", False), C("revenue", "decimal(38,2)", False),
                 C("orders", "uint64", False)],
        clickhouse=ClickHouseTableOptions(order_by=("order_date", "category")),
        sql="""
            SELECT order_date, category, sum(amount) AS revenue, count() AS orders
            FROM orders
            WHERE order_date >= {partition_start_date} AND order_date < {partition_end_date}
            GROUP BY order_date, category
        """,
        checks=[row_count(min_rows=1)],
        description="Daily revenue by category, computed inside ClickHouse.",
    ),
    Table(
        "marts.customer_lifetime_value", backend="clickhouse", mode="overwrite",
        sources=["warehouse.orders", "warehouse.customers"],
        columns=[C("customer_id", "int64", False), C("segment", "string"), C("orders", "uint64", False),
                 C("lifetime_value", "decimal(38,2)", False), C("first_order", "date", False),
                 C("last_order", "date", False)],
        clickhouse=ClickHouseTableOptions(order_by=("customer_id",)),
        sql="""
            SELECT o.customer_id AS customer_id, any(c.segment) AS segment, count() AS orders,
                   sum(o.amount) AS lifetime_value, min(o.order_date) AS first_order, max(o.order_date) AS last_order
            FROM orders AS o LEFT JOIN customers AS c ON o.customer_id = c.customer_id
            GROUP BY o.customer_id
        """,
        checks=[unique("customer_id")],
    ),
    Table(
        "exports.category_revenue", backend="delta", mode="overwrite",
        sources=[Source("marts.daily_category_revenue", streaming=True)],
        columns=[C("order_date", "date", False), C("category", "string", False), C("revenue", "decimal(38,2)", False),
                 C("orders", "int64", False), C("revenue_7d", "float64")],
        transform=export_revenue,
        description="The revenue mart streamed back from ClickHouse into Delta for downstream consumers.",
    ),
]


def all_tables() -> list[Table]:
    """Every declared table of the sample platform."""
    return list(TABLES)


