"""Definitions for the multiprocess-executor test (tests/test_clickhouse_multiprocess.py): four
independent ClickHouse tables and one SQL table over two of them, on the ClickHouse URL in
``$LOOM_CLICKHOUSE_URL`` and the database in ``$LOOM_MP_SCHEMA``. A module of its own so that
Dagster's step processes can import it (``dg.reconstructable``)."""

from __future__ import annotations

import datetime as dt
import os

import dagster as dg
from sample_platform import synthetic

from loom_assets.declare import Table
from loom_assets.definitions import build_definitions
from loom_resources import ColumnSchema
from loom_resources.clickhouse import ClickHouseResource
from loom_resources.delta import DeltaResource

ORDER_COLS = [
    ColumnSchema("order_id", "int64", False), ColumnSchema("order_date", "date", False),
    ColumnSchema("order_ts", "datetime(us, UTC)", False), ColumnSchema("customer_id", "int64", False),
    ColumnSchema("product_id", "int32", False), ColumnSchema("quantity", "int32", False),
    ColumnSchema("status", "string", False),
]
PARALLEL = 4
ROWS_PER_DAY = 5_000
DAYS = 4


def _orders(index: int):  # noqa: ANN202 - a transform body
    start = dt.date(2026, 11, 1) + dt.timedelta(days=index)
    return lambda context: synthetic.orders(start, start + dt.timedelta(days=DAYS), ROWS_PER_DAY)


def tables(schema: str) -> list[Table]:
    """The tables of one test run."""
    out = [Table(f"{schema}.orders_{i}", backend="clickhouse", columns=ORDER_COLS, transform=_orders(i),
                 mode="append" if i % 2 else "overwrite", partition_by=("order_date",)) for i in range(PARALLEL)]
    out.append(Table(
        f"{schema}.joined", backend="clickhouse", sources=[f"{schema}.orders_0", f"{schema}.orders_1"],
        columns=[ColumnSchema("order_date", "date", False), ColumnSchema("n", "int64", False)], mode="overwrite",
        sql="SELECT order_date, toInt64(count()) AS n FROM (SELECT order_date FROM orders_0 UNION ALL "
            "SELECT order_date FROM orders_1) GROUP BY order_date",
    ))
    return out


def defs() -> dg.Definitions:
    """The Definitions over ``$LOOM_CLICKHOUSE_URL`` (a server: the multiprocess executor)."""
    backends = {"clickhouse": ClickHouseResource(url=dg.EnvVar("LOOM_CLICKHOUSE_URL")),
                "delta": DeltaResource(root=os.path.join(os.environ["LOOM_HOME"], "delta"))}
    return build_definitions(tables(os.environ["LOOM_MP_SCHEMA"]), backends=backends)


def job() -> dg.JobDefinition:
    """A job of every asset of :func:`defs`, under the code location's executor."""
    merged = dg.Definitions.merge(defs(), dg.Definitions(jobs=[dg.define_asset_job("mp_all")]))
    return merged.resolve_job_def("mp_all")
