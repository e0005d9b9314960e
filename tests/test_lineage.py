"""Column-level lineage (:mod:`loom_assets.lineage`): what each output column of a SQL body
derives from, declared lineage of Python bodies, and ``dagster/column_lineage`` on the asset
definition and on the materializations Dagster records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest

import loom_assets.lineage as lineage_mod
import loom_assets.sql_cache as sql_cache
from loom_assets.declare import Source, Table
from loom_assets.external import ExternalTable
from loom_assets.factory import build_assets
from loom_assets.lineage import sql_lineage
from loom_resources import ColumnSchema, SpecError
from loom_resources.clickhouse import ClickHouseResource
from loom_resources.delta import DeltaResource
from loom_resources.io_manager import LoomIOManager

C = ColumnSchema
ORDERS = ("order_id", "customer_id", "product_id", "quantity", "order_date")
CUSTOMERS = ("customer_id", "name", "city")
PRODUCTS = ("product_id", "price")
SOURCES: dict[str, tuple[str, ...] | None] = {"orders": ORDERS, "customers": CUSTOMERS, "products": PRODUCTS}


@pytest.fixture(autouse=True)
def fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> sql_cache.LineageCache:
    """Every test derives its lineage (and may inspect the file) instead of reading another's."""
    monkeypatch.setenv("LOOM_CACHE_DIR", str(tmp_path / "cache"))
    fresh = sql_cache.LineageCache()
    monkeypatch.setattr(lineage_mod, "LINEAGE_CACHE", fresh)
    return fresh


def derive(sql: str, sources: dict[str, tuple[str, ...] | None] | None = None) -> dict[str, list[tuple[str, str]]]:
    return sql_lineage(sql, SOURCES if sources is None else sources, table="s.t")


# -- SQL bodies ---------------------------------------------------------------------------------
def test_join_with_table_aliases_names_each_side() -> None:
    got = derive("SELECT o.order_id, c.name, c.city FROM orders AS o JOIN customers c ON o.customer_id = c.customer_id")
    assert got == {"order_id": [("orders", "order_id")], "name": [("customers", "name")],
                   "city": [("customers", "city")]}


def test_unqualified_columns_of_a_join_resolve_through_the_declared_columns() -> None:
    got = derive("SELECT order_id, name FROM orders JOIN customers USING (customer_id)")
    assert got == {"order_id": [("orders", "order_id")], "name": [("customers", "name")]}


def test_column_aliases_map_the_output_name_to_the_source_column() -> None:
    assert derive("SELECT order_id AS id, customer_id AS buyer FROM orders") == {
        "id": [("orders", "order_id")], "buyer": [("orders", "customer_id")]}


def test_expression_over_columns_of_two_sources() -> None:
    got = derive("SELECT o.order_id, o.quantity * p.price + 0 AS revenue "
                 "FROM orders o LEFT JOIN products p ON o.product_id = p.product_id")
    assert got["order_id"] == [("orders", "order_id")]
    assert got["revenue"] == [("orders", "quantity"), ("products", "price")]


def test_aggregates_and_count_star() -> None:
    got = derive("SELECT customer_id, sum(quantity) AS items, count(*) AS n, max(order_date) AS last_day "
                 "FROM orders GROUP BY customer_id")
    # count(*) derives from no column: no entry rather than an invented one
    assert got == {"customer_id": [("orders", "customer_id")], "items": [("orders", "quantity")],
                   "last_day": [("orders", "order_date")]}


def test_select_star_expands_to_the_declared_columns() -> None:
    assert derive("SELECT * FROM customers") == {c: [("customers", c)] for c in CUSTOMERS}
    got = derive("SELECT o.*, c.city FROM orders o JOIN customers c ON o.customer_id = c.customer_id")
    assert got == {**{c: [("orders", c)] for c in ORDERS}, "city": [("customers", "city")]}


def test_cte_and_subquery_trace_to_the_underlying_table() -> None:
    got = derive(
        "WITH per_customer AS (SELECT customer_id, sum(quantity) AS items FROM orders GROUP BY customer_id) "
        "SELECT c.city, t.items FROM per_customer t JOIN customers c ON c.customer_id = t.customer_id")
    assert got == {"city": [("customers", "city")], "items": [("orders", "quantity")]}
    assert derive("SELECT x.id FROM (SELECT order_id + customer_id AS id FROM orders) AS x") == {
        "id": [("orders", "customer_id"), ("orders", "order_id")]}


def test_union_names_every_branch() -> None:
    got = derive("SELECT customer_id AS id, 'order' AS kind FROM orders "
                 "UNION ALL SELECT customer_id, 'customer' FROM customers")
    assert got == {"id": [("customers", "customer_id"), ("orders", "customer_id")]}


def test_quoted_identifiers_keep_their_exact_names() -> None:
    got = derive('SELECT `Order Id` AS id, "Qty" * 2 AS qty FROM orders', {"orders": ("Order Id", "Qty", "qty")})
    assert got == {"id": [("orders", "Order Id")], "qty": [("orders", "Qty")]}


def test_run_parameters_are_read_as_literals() -> None:
    got = derive("SELECT order_id, {partition_start_date} AS day FROM orders "
                 "WHERE order_date >= {partition_start_date} AND order_date < {partition_end_date}")
    assert got == {"order_id": [("orders", "order_id")]}


def test_unknown_sources_give_no_entry_rather_than_a_guess() -> None:
    unknown = {"orders": ORDERS, "events": None}
    # a star over a source of unknown columns, and an unqualified column two sources could hold
    assert derive("SELECT * FROM events", unknown) == {}
    got = derive("SELECT o.order_id, payload FROM orders o JOIN events e ON o.order_id = e.order_id", unknown)
    assert got == {"order_id": [("orders", "order_id")]}
    # a qualified column of the unknown source is what the statement says it is
    assert derive("SELECT e.payload FROM orders o JOIN events e ON o.order_id = e.order_id", unknown) == {
        "payload": [("events", "payload")]}
    # a column the declared source does not have is not attributed to it
    assert derive("SELECT o.nonexistent FROM orders o") == {}


def test_a_statement_sqlglot_cannot_follow_has_no_lineage_and_does_not_fail_the_load(
        caplog: pytest.LogCaptureFixture) -> None:
    assert derive("DESCRIBE orders") == {}
    assert "table s.t: no column lineage, sqlglot cannot follow the SQL body" in caplog.text
    # two outputs of one name: no entry for it, the other column keeps its own
    assert derive("SELECT order_id AS a, quantity AS a, customer_id FROM orders") == {
        "customer_id": [("orders", "customer_id")]}


def test_derived_lineage_is_remembered_per_statement_and_source_columns(
        fresh_cache: sql_cache.LineageCache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sql = "SELECT * FROM customers"
    assert derive(sql)["city"] == [("customers", "city")]
    fresh_cache.save()
    stored = json.loads((tmp_path / "cache" / "sql_lineage.json").read_text())
    assert stored["format"] == 1 and len(stored["lineage"]) == 1

    def fail(*a: Any, **k: Any) -> Any:
        raise AssertionError("derived although the statement is remembered")

    monkeypatch.setattr(lineage_mod, "LINEAGE_CACHE", sql_cache.LineageCache())  # the next process
    monkeypatch.setattr(lineage_mod, "_derive", fail)
    assert derive(sql)["city"] == [("customers", "city")]
    with pytest.raises(AssertionError, match="derived although"):  # other columns: derived again
        derive(sql, {"customers": ("customer_id", "city", "segment")})


# -- declarations and the asset definition ----------------------------------------------------------
def _noop(context: Any, **inputs: Any) -> pl.LazyFrame:
    return pl.LazyFrame()


def _tables(**kw: Any) -> list[Any]:
    orders = Table("raw.orders", backend="delta", mode="overwrite", transform=_noop,
                   columns=[C("order_id", "int64", False), C("customer_id", "int64", False), C("qty", "int32")])
    customers = ExternalTable("crm.customers", backend="clickhouse",
                              columns=[C("customer_id", "int64", False), C("city", "string")])
    kw.setdefault("columns", [C("order_id", "int64", False), C("city", "string"), C("qty", "int32")])
    mart = Table("mart.orders", backend="delta", mode="overwrite",
                 sources=["raw.orders", Source("crm.customers", alias="c")], **kw)
    return [orders, customers, mart]


def _definition_lineage(tables: list[Any], backends: dict[str, Any]) -> dict[str, list[tuple[str, str]]] | None:
    assets = build_assets(tables, backends=backends)
    md = next(a for a in assets if dg.AssetKey(["mart", "orders"]) in a.keys).metadata_by_key[dg.AssetKey(["mart", "orders"])]
    value = md.get("dagster/column_lineage")
    if value is None:
        return None
    return {col: [(d.asset_key.to_user_string(), d.column_name) for d in deps] for col, deps in value.deps_by_column.items()}


@pytest.fixture
def backends(tmp_path: Path, chdb_url: str) -> dict[str, Any]:
    return {"delta": DeltaResource(root=str(tmp_path)), "clickhouse": ClickHouseResource(url=chdb_url)}


def test_the_asset_definition_carries_lineage_with_the_sources_asset_keys(backends: dict[str, Any]) -> None:
    tables = _tables(sql="SELECT o.order_id, c.city, o.qty * 2 AS qty, 1 AS extra "
                         "FROM orders o JOIN c ON o.customer_id = c.customer_id")
    # "extra" is not a declared column: not shown
    assert _definition_lineage(tables, backends) == {
        "order_id": [("raw/orders", "order_id")], "city": [("crm/customers", "city")], "qty": [("raw/orders", "qty")]}


def test_a_plain_dagster_asset_source_is_named_by_its_key_and_its_columns_are_unknown(backends: dict[str, Any]) -> None:
    t = Table("mart.orders", backend="delta", mode="overwrite", columns=[C("order_id", "int64"), C("note", "string")],
              sources=[Source("ext.events", asset=True)],
              sql="SELECT e.order_id, upper(note) AS note FROM events AS e")
    assets = build_assets([t], backends=backends)
    value = assets[0].metadata_by_key[dg.AssetKey(["mart", "orders"])]["dagster/column_lineage"]
    # one source: sqlglot attributes even the unqualified column to it
    assert {c: [(d.asset_key.path, d.column_name) for d in ds] for c, ds in value.deps_by_column.items()} == {
        "order_id": [(["ext", "events"], "order_id")], "note": [(["ext", "events"], "note")]}
    star = Table("mart.copy", backend="delta", mode="overwrite", columns=[C("order_id", "int64")],
                 sources=[Source("ext.events", asset=True)], sql="SELECT * FROM events")
    assert "dagster/column_lineage" not in build_assets([star], backends=backends)[0].metadata_by_key[
        dg.AssetKey(["mart", "copy"])]


def test_python_bodies_declare_lineage_or_have_none(backends: dict[str, Any]) -> None:
    assert _definition_lineage(_tables(transform=_noop), backends) is None
    declared = _tables(transform=_noop, column_lineage={
        "order_id": ["raw.orders.order_id"], "city": [("c", "city")], "qty": [("raw.orders", "qty")]})
    assert _definition_lineage(declared, backends) == {
        "order_id": [("raw/orders", "order_id")], "city": [("crm/customers", "city")], "qty": [("raw/orders", "qty")]}


def test_declared_lineage_replaces_the_derived_column(backends: dict[str, Any]) -> None:
    tables = _tables(sql="SELECT o.order_id, c.city, o.qty FROM orders o JOIN c USING (customer_id)",
                     column_lineage={"qty": ["raw.orders.qty", "raw.orders.order_id"]})
    got = _definition_lineage(tables, backends)
    assert got is not None and got["qty"] == [("raw/orders", "order_id"), ("raw/orders", "qty")]
    assert got["city"] == [("crm/customers", "city")]


@pytest.mark.parametrize(("column_lineage", "needle"), [
    ({"nope": ["raw.orders.order_id"]}, "column_lineage names column 'nope', which is not declared"),
    ({"qty": ["elsewhere.t.qty"]}, "names 'elsewhere.t', which is not a source"),
    ({"qty": ["qty"]}, "has entry 'qty'; expected 'schema.table.column' or (source, column)"),
    ({"qty": "raw.orders.qty"}, "must be a list of source columns"),
])
def test_bad_declared_lineage_is_refused_naming_table_and_column(column_lineage: Any, needle: str) -> None:
    with pytest.raises(SpecError, match="table mart.orders: ") as ei:
        _tables(transform=_noop, column_lineage=column_lineage)
    assert needle in str(ei.value)


def test_declared_lineage_naming_a_column_the_source_lacks_fails_the_load(backends: dict[str, Any]) -> None:
    tables = _tables(transform=_noop, column_lineage={"qty": ["raw.orders.quantity"]})
    with pytest.raises(SpecError, match=r"table mart.orders: column_lineage of column 'qty' names column 'quantity' "
                                        r"of source raw.orders, which has no such column"):
        build_assets(tables, backends=backends)


# -- end to end: what Dagster records ---------------------------------------------------------------
@pytest.fixture
def resources(tmp_path: Path, chdb_url: str) -> dict[str, Any]:
    (tmp_path / "delta").mkdir()
    delta = DeltaResource(root=str(tmp_path / "delta"))
    ch = ClickHouseResource(url=chdb_url)
    return {"delta": delta, "clickhouse": ch, "io_manager": LoomIOManager(delta=delta, clickhouse=ch)}


def _recorded(instance: dg.DagsterInstance, key: dg.AssetKey) -> dict[str, list[tuple[str, str]]]:
    event = instance.get_latest_materialization_event(key)
    assert event is not None and event.asset_materialization is not None
    value = event.asset_materialization.metadata["dagster/column_lineage"].value
    return {c: [(d.asset_key.to_user_string(), d.column_name) for d in deps]
            for c, deps in value.deps_by_column.items()}  # type: ignore[attr-defined]


def test_a_sql_materialization_records_column_lineage(resources: dict[str, Any], unique_schema: str) -> None:
    s = unique_schema
    orders = Table(f"{s}.orders", backend="delta", mode="overwrite",
                   columns=[C("order_id", "int64", False), C("customer_id", "int64", False), C("qty", "int32", False)],
                   transform=lambda context: pl.LazyFrame({"order_id": [1, 2, 3], "customer_id": [10, 10, 20],
                                                           "qty": [1, 2, 5]}, schema_overrides={"qty": pl.Int32}))
    customers = Table(f"{s}.customers", backend="delta", mode="overwrite",
                      columns=[C("customer_id", "int64", False), C("city", "string", False)],
                      transform=lambda context: pl.LazyFrame({"customer_id": [10, 20], "city": ["Rome", "Oslo"]}))
    by_city = Table(
        f"{s}.by_city", backend="delta", mode="overwrite", sources=[f"{s}.orders", f"{s}.customers"],
        columns=[C("city", "string", False), C("items", "int64", False), C("orders", "int64", False)],
        sql="WITH o AS (SELECT * FROM orders) SELECT c.city, sum(o.qty) AS items, count(*) AS orders "
            "FROM o JOIN customers AS c ON o.customer_id = c.customer_id GROUP BY c.city")
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(build_assets([orders, customers, by_city]), resources=resources, instance=instance)
    assert result.success
    from loom_resources import TableRef

    stored = pl.read_delta(resources["delta"].table_uri(TableRef.parse(f"{s}.by_city"))).sort("city")
    assert stored.select("city", "items").to_dicts() == [{"city": "Oslo", "items": 5}, {"city": "Rome", "items": 3}]
    assert _recorded(instance, dg.AssetKey([s, "by_city"])) == {
        "city": [(f"{s}/customers", "city")], "items": [(f"{s}/orders", "qty")]}


def test_every_partition_materialization_of_a_pushed_down_sql_table_records_lineage(
        resources: dict[str, Any], unique_schema: str) -> None:
    s = unique_schema
    daily = dg.DailyPartitionsDefinition(start_date="2026-11-01", end_offset=0)
    tags = {"dagster/asset_partition_range_start": "2026-11-01", "dagster/asset_partition_range_end": "2026-11-03"}

    def days(context: dg.AssetExecutionContext) -> pl.LazyFrame:
        w = context.partition_time_window
        return pl.LazyFrame({"day": pl.date_range(w.start.date(), w.end.date(), closed="left", eager=True)}).with_columns(
            amount=pl.lit(7, dtype=pl.Int64))

    src = Table(f"{s}.sales", backend="clickhouse", mode="replace_partitions", partitions=daily, partition_column="day",
                columns=[C("day", "date", False), C("amount", "int64", False)], transform=days)
    mart = Table(f"{s}.daily", backend="clickhouse", mode="replace_partitions", partitions=daily,
                 partition_column="day", sources=[f"{s}.sales"],
                 columns=[C("day", "date", False), C("total", "int64", False)],
                 sql="SELECT day, sum(amount) AS total FROM sales WHERE day >= {partition_start_date} "
                     "AND day < {partition_end_date} GROUP BY day")
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(build_assets([src, mart]), resources=resources, instance=instance, tags=tags)
    assert result.success
    events = [e.materialization for e in result.get_asset_materialization_events() if e.asset_key.path[-1] == "daily"]
    assert sorted(e.partition for e in events) == ["2026-11-01", "2026-11-02", "2026-11-03"]  # type: ignore[type-var]
    for e in events:
        deps = e.metadata["dagster/column_lineage"].value.deps_by_column  # type: ignore[attr-defined]
        assert {c: [(d.asset_key.path, d.column_name) for d in ds] for c, ds in deps.items()} == {
            "day": [([s, "sales"], "day")], "total": [([s, "sales"], "amount")]}
    assert _recorded(instance, dg.AssetKey([s, "daily"]))["total"] == [(f"{s}/sales", "amount")]
