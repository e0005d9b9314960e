"""my_shop's tables declared in Python: they read the YAML ones, and the YAML ones can read them."""

from loom_assets import Table, row_count
from loom_resources import ColumnSchema as C

TABLES = [
    Table(
        "marts.big_orders", backend="delta", mode="overwrite",
        columns=[C("order_id", "int64", False), C("amount", "decimal(18,2)")],
        sources=["raw.orders"],
        sql="SELECT order_id, amount FROM orders WHERE amount >= 90",
        checks=[row_count(min_rows=1)],
    ),
]
