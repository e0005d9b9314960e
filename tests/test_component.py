"""The LoomTables component: YAML declarations become the same tables as Python ones, errors
name the file, the line and the table, the scaffolded template materializes, and YAML and
Python tables read each other (real Delta tables and the embedded ClickHouse engine)."""

from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path

import clickhouse_connect
import dagster as dg
import jsonschema
import polars as pl
import pytest
import yaml
from dagster.components.testing import create_defs_folder_sandbox
from deltalake import DeltaTable

from loom_assets import LoomTables, Source, Table, accepted_values, not_null, row_count, unique
from loom_assets.component import LoomTablesModel
from loom_assets.yaml_tables import predicate_from_sql, to_table
from loom_resources import ClickHouseTableOptions, ColumnSchema, HistoryOptions, SpecError, col, param
from loom_resources.predicates import In, Not

FULL = """
tables:
  - name: staging.orders
    backend: delta
    description: Orders, one row per order.
    columns:
      - {name: order_id, type: int64, nullable: false}
      - {name: order_date, type: date, nullable: false}
      - {name: status, type: string}
      - {name: amount, type: "decimal(18,2)"}
    mode: merge
    merge_keys: [order_id]
    partitions: {daily: {start_date: "2026-11-01", timezone: Europe/Berlin}}
    partition_column: order_date
    sources:
      - raw.orders
      - table: raw.customers
        alias: c
        columns: [customer_id]
        predicate: "region IN ('EU', 'US') AND signup_date >= {partition_start}"
        streaming: true
        partition_mapping: {start_offset: -6}
    sql: SELECT order_id, order_date, status, amount FROM orders
    checks:
      - not_null: order_id
      - unique: [order_id]
      - accepted_values: {column: status, values: [open, shipped]}
      - row_count: {min_rows: 1}
      - {not_null: [order_date], blocking: true}
    automation_condition: {on_cron: "0 2 * * *"}
    fresh_within: 26h
    owners: [team:data]
    tags: {domain: sales}
    clickhouse: {engine: ReplacingMergeTree, order_by: [order_id]}
    history: null
"""


def python_twin() -> Table:
    return Table(
        "staging.orders", backend="delta", description="Orders, one row per order.",
        columns=[ColumnSchema("order_id", "int64", False), ColumnSchema("order_date", "date", False),
                 ColumnSchema("status", "string"), ColumnSchema("amount", "decimal(18,2)")],
        mode="merge", merge_keys=["order_id"],
        partitions=dg.DailyPartitionsDefinition(start_date="2026-11-01", timezone="Europe/Berlin"),
        partition_column="order_date",
        sources=["raw.orders", Source(
            "raw.customers", alias="c", columns=("customer_id",), streaming=True,
            predicate=col("region").is_in(["EU", "US"]) & col("signup_date").ge(param("partition_start")),
            partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-6),
        )],
        sql="SELECT order_id, order_date, status, amount FROM orders",
        checks=[not_null("order_id"), unique("order_id"), accepted_values("status", ["open", "shipped"]),
                row_count(min_rows=1), not_null("order_date", blocking=True)],
        automation_condition=dg.AutomationCondition.on_cron("0 2 * * *"), fresh_within=dt.timedelta(hours=26),
        owners=["team:data"], tags={"domain": "sales"},
        clickhouse=ClickHouseTableOptions(engine="ReplacingMergeTree", order_by=("order_id",)),
    )


def test_a_yaml_table_is_the_table_its_python_twin_declares() -> None:
    model = LoomTablesModel.model_validate(yaml.safe_load(FULL))
    got, want = to_table(model.tables[0]), python_twin()
    assert got.target == want.target
    assert got.sources == want.sources
    assert got.checks == want.checks
    assert got.partitions == want.partitions
    assert (got.partition_column, got.fresh_within, got.owners, got.tags, got.description) == (
        want.partition_column, want.fresh_within, tuple(want.owners) if isinstance(got.owners, tuple) else want.owners,
        want.tags, want.description)
    assert str(got.automation_condition) == str(want.automation_condition)
    assert got.code_version == want.code_version


def test_history_and_partition_forms() -> None:
    model = LoomTablesModel.model_validate(yaml.safe_load("""
tables:
  - name: dims.customers
    backend: delta
    columns: [{name: id, type: int64, nullable: false}, {name: tier, type: string}, {name: region, type: string},
              {name: day, type: date}]
    mode: history
    merge_keys: [id]
    history: {tracked_columns: [tier], delete_policy: soft_delete}
    partitions: {multi: {day: {daily: {start_date: "2026-11-01"}}, region: {static: [eu, us]}}}
    partition_column: {day: day, region: region}
    transform: tests.test_component:python_twin
    automation_condition: eager
    column_lineage: {tier: [raw.customers.tier], region: [[raw.customers, region]]}
    sources: [raw.customers]
"""))
    t = to_table(model.tables[0])
    assert t.history == HistoryOptions(tracked_columns=("tier",), delete_policy="soft_delete")
    assert isinstance(t.partitions, dg.MultiPartitionsDefinition)
    assert t.partition_columns == {"day": "day", "region": "region"}
    assert t.transform is not None and t.transform.__qualname__ == "python_twin"  # imported by its module path
    assert t.column_lineage == {"tier": ["raw.customers.tier"], "region": [("raw.customers", "region")]}
    assert t.declared_lineage == Table("dims.customers", backend="delta", columns=t.columns, transform=python_twin,
                                       sources=["raw.customers"], column_lineage=t.column_lineage).declared_lineage


@pytest.mark.parametrize(("text", "want"), [
    ("day >= {partition_start} AND day < {partition_end}",
     col("day").ge(param("partition_start")) & col("day").lt(param("partition_end"))),
    ("region = 'EU' OR amount > -2.5", col("region").eq("EU") | col("amount").gt(-2.5)),
    ("id BETWEEN 1 AND 10", col("id").between(1, 10)),
    ("x IS NULL", col("x").is_null()),
    ("x IS NOT NULL", col("x").is_not_null()),
    ("k IN ({partition_key})", In("k", (param("partition_key"),))),
    ("NOT (flag = TRUE)", Not(col("flag").eq(True))),
    ("d = DATE '2026-11-01'", col("d").eq(dt.date(2026, 11, 1))),
])
def test_conditions_parse_into_loom_predicates(text: str, want: object) -> None:
    assert predicate_from_sql(text) == want


@pytest.mark.parametrize("text", ["upper(region) = 'EU'", "a = b", "x LIKE 'a%'", "day >="])
def test_an_unsupported_condition_is_refused_with_the_reason(text: str) -> None:
    with pytest.raises(SpecError, match="condition|cannot parse"):
        predicate_from_sql(text)


def test_the_json_schema_points_at_the_mistake_inside_its_table() -> None:
    schema = LoomTablesModel.model_json_schema()
    doc = yaml.safe_load(FULL)
    jsonschema.validate(doc, schema)
    doc["tables"][0]["partition_colum"] = "order_date"
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(doc))
    assert [list(e.absolute_path) for e in errors] == [["tables", 0]]
    assert "partition_colum" in errors[0].message


def write_defs(sandbox_path: Path, body: str) -> Path:
    path = sandbox_path / "tables"
    path.mkdir(parents=True, exist_ok=True)
    (path / "defs.yaml").write_text("type: loom_assets.LoomTables\nattributes:\n" + textwrap.indent(body.strip(), "  ") + "\n")
    return path


def test_a_declaration_error_names_the_file_the_line_and_the_table(unique_schema: str) -> None:
    with create_defs_folder_sandbox() as sandbox:
        path = write_defs(sandbox.defs_folder_path, f"""
tables:
  - name: {unique_schema}.ok
    backend: delta
    columns: [{{name: id, type: int64}}]
    sql: SELECT 1 AS id
  - name: {unique_schema}.bad
    backend: delta
    columns: [{{name: id, type: int64}}]
    partition_column: nope
    sql: SELECT 1 AS id
""")
        with pytest.raises(Exception) as err, sandbox.build_all_defs():
            pass
        text = "".join(str(e) for e in _chain(err.value))
        assert f"{path / 'defs.yaml'}:{line_of(path, f'- name: {unique_schema}.bad')}:" in text, text
        assert f"table {unique_schema}.bad: partition column 'nope'" in text


def test_an_error_across_tables_names_where_the_table_is_declared(unique_schema: str) -> None:
    with create_defs_folder_sandbox() as sandbox:
        path = write_defs(sandbox.defs_folder_path, f"""
tables:
  - name: {unique_schema}.reader
    backend: delta
    columns: [{{name: id, type: int64}}]
    sources: [{unique_schema}.missing]
    sql: SELECT id FROM missing
""")
        with pytest.raises(Exception) as err, sandbox.build_all_defs():
            pass
        text = "".join(str(e) for e in _chain(err.value))
        assert f"{path / 'defs.yaml'}:{line_of(path, f'- name: {unique_schema}.reader')}:" in text, text
        assert f"{unique_schema}.missing" in text


def line_of(path: Path, needle: str) -> int:
    """The 1-based line of ``path/defs.yaml`` holding ``needle``."""
    return next(i for i, line in enumerate((path / "defs.yaml").read_text().splitlines(), 1) if needle in line)


def _chain(e: BaseException | None) -> list[BaseException]:
    out = []
    while e is not None:
        out.append(e)
        e = e.__cause__ or e.__context__
    return out


def test_the_scaffolded_template_materializes(loom_home: Path, chdb_url: str) -> None:
    with create_defs_folder_sandbox() as sandbox:
        defs_path = sandbox.scaffold_component(component_cls=LoomTables, defs_path="starter")
        text = (defs_path / "defs.yaml").read_text()
        assert text.startswith("# Loom tables") and "LoomTables\n" in text and "type: loom_assets." in text
        with sandbox.load_component_and_build_defs(defs_path=defs_path) as (component, defs):
            assert isinstance(component, LoomTables)
            result = dg.materialize([*defs.assets, *defs.asset_checks], resources=defs.resources,  # type: ignore[list-item]
                                    raise_on_error=False)
            assert result.success
    greetings = pl.from_arrow(DeltaTable(str(loom_home / "delta" / "example" / "greetings")).to_pyarrow_table())
    assert greetings.to_dicts() == [{"id": 1, "greeting": "hello"}]
    client = clickhouse_connect.get_client(dsn=chdb_url)
    try:
        assert client.query("SELECT greeting, n FROM example.greeting_counts").result_rows == [("hello", 1)]
    finally:
        client.close()


def test_yaml_and_python_tables_read_each_other(unique_schema: str, loom_home: Path, chdb_url: str) -> None:
    s = unique_schema
    with create_defs_folder_sandbox() as sandbox:
        module = f"{sandbox.project_name}_py_tables"
        (sandbox.project_root / "src" / f"{module}.py").write_text(textwrap.dedent(f"""
            import polars as pl
            from loom_assets import Table
            from loom_resources import ColumnSchema as C

            def land(context):
                return pl.LazyFrame({{"id": [1, 2, 3], "amount": [10, 20, 30]}})

            TABLES = [
                Table("{s}.raw", backend="delta", columns=[C("id", "int64", False), C("amount", "int64")],
                      mode="overwrite", transform=land),
                Table("{s}.doubled", backend="delta", columns=[C("id", "int64", False), C("amount2", "int64")],
                      mode="overwrite", sources=["{s}.yaml_sum"],
                      sql="SELECT id, amount2 FROM yaml_sum"),
            ]
        """))
        write_defs(sandbox.defs_folder_path, f"""
python: [{module}]
tables:
  - name: {s}.yaml_sum
    backend: clickhouse
    columns: [{{name: id, type: int64, nullable: false}}, {{name: amount2, type: int64}}]
    mode: overwrite
    sources: [{s}.raw]
    sql: SELECT id, amount * 2 AS amount2 FROM raw WHERE id > 1
""")
        with sandbox.build_all_defs() as defs:
            result = dg.materialize([*defs.assets, *defs.asset_checks], resources=defs.resources,  # type: ignore[list-item]
                                    raise_on_error=False)
            assert result.success
    doubled = pl.from_arrow(DeltaTable(str(loom_home / "delta" / s / "doubled")).to_pyarrow_table())
    assert sorted(doubled.rows()) == [(2, 40), (3, 60)]
