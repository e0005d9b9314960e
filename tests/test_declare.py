"""Declaration errors fail at load with a message naming the table."""

from __future__ import annotations

import dagster as dg
import pytest

from loom_assets.declare import Source, Table, not_null
from loom_assets.factory import validate_tables
from loom_assets.sql_body import bind_sql, check_sql, referenced_tables
from loom_resources import ColumnSchema, SpecError

COLS = [ColumnSchema("id", "int64", False), ColumnSchema("day", "date")]


def t(name: str, **kw: object) -> Table:
    kw.setdefault("sql", "SELECT 1 AS id")
    return Table(name, backend="delta", columns=COLS, **kw)  # type: ignore[arg-type]


def test_unknown_source_is_named() -> None:
    with pytest.raises(SpecError, match=r"s\.b: source s\.missing is not a declared table"):
        validate_tables([t("s.b", sources=["s.missing"], sql="SELECT * FROM missing")])


def test_cycle_is_named_with_its_path() -> None:
    a = t("s.a", sources=["s.b"], sql="SELECT * FROM b")
    b = t("s.b", sources=["s.a"], sql="SELECT * FROM a")
    with pytest.raises(SpecError, match=r"cycle s\.a -> s\.b -> s\.a"):
        validate_tables([a, b])


def test_a_long_chain_declared_downstream_first_loads() -> None:
    # the cycle search was recursive: a chain of more than ~1,000 tables, declared from its end,
    # failed the load with RecursionError
    def body(context: object, **inputs: object) -> None:
        return None

    n = 2000
    chain = [t(f"s.t{i}", sources=[f"s.t{i - 1}"] if i else [], sql=None, transform=body) for i in reversed(range(n))]
    validate_tables(chain)
    chain[-1] = t("s.t0", sources=["s.loop"], sql=None, transform=body)
    chain.append(t("s.loop", sources=["s.t1999"], sql=None, transform=body))
    with pytest.raises(SpecError, match=r"cycle s\.t1999 -> s\.t1998 -> .* -> s\.t0 -> s\.loop -> s\.t1999"):
        validate_tables(chain)


def test_sql_alias_not_a_source() -> None:
    a = t("s.a")
    b = t("s.b", sources=["s.a"], sql="SELECT * FROM a JOIN other ON a.id = other.id")
    with pytest.raises(SpecError, match=r"table s\.b: SQL reads \['other'\]"):
        validate_tables([a, b])


def test_cte_names_are_not_sources() -> None:
    assert referenced_tables("WITH x AS (SELECT * FROM a) SELECT * FROM x JOIN b USING (id)", table="s.t") == {"a", "b"}


def test_partition_column_missing_from_schema() -> None:
    with pytest.raises(SpecError, match=r"s\.p: partition column 'nope'"):
        t("s.p", partitions=dg.DailyPartitionsDefinition("2024-01-01"), partition_column="nope")


def test_partitioned_table_needs_partition_column() -> None:
    with pytest.raises(SpecError, match=r"s\.p: partitioned tables need partition_column"):
        t("s.p", partitions=dg.DailyPartitionsDefinition("2024-01-01"))


def test_exactly_one_body() -> None:
    with pytest.raises(SpecError, match="exactly one body"):
        Table("s.x", backend="delta", columns=COLS)
    with pytest.raises(SpecError, match="exactly one body"):
        Table("s.x", backend="delta", columns=COLS, sql="SELECT 1", transform=lambda c: None)


def test_merge_without_keys_named() -> None:
    with pytest.raises(SpecError, match=r"table s\.m: write mode 'merge' needs merge_keys"):
        t("s.m", mode="merge")


def test_check_on_unknown_column() -> None:
    with pytest.raises(SpecError, match=r"s\.c: check 'not_null_zzz' names unknown column 'zzz'"):
        t("s.c", checks=[not_null("zzz")])


def test_duplicate_alias() -> None:
    with pytest.raises(SpecError, match="share the alias"):
        t("s.d", sources=["a.x", Source("b.x")])


def test_unknown_sql_parameter() -> None:
    with pytest.raises(SpecError, match=r"unknown parameter\(s\) \['evil'\]"):
        check_sql("SELECT * FROM a WHERE d = {evil}", ["a"], table="s.t")


def test_bind_sql_escapes_values() -> None:
    sql = bind_sql("SELECT * FROM a WHERE k = {partition_key}", {"partition_key": "x'; DROP TABLE a; --"}, "polars", table="s.t")
    assert sql == "SELECT * FROM a WHERE k = 'x''; DROP TABLE a; --'"
    ch = bind_sql("SELECT * FROM a WHERE k = {partition_key}", {"partition_key": "x\\' OR 1=1"}, "clickhouse", table="s.t")
    assert ch == "SELECT * FROM a WHERE k = 'x\\\\\\' OR 1=1'"


def test_bind_sql_missing_value_names_parameter() -> None:
    with pytest.raises(SpecError, match=r"\{partition_start\} has no value"):
        bind_sql("SELECT {partition_start}", {}, "polars", table="s.t")


def test_code_version_changes_with_sql() -> None:
    assert t("s.v", sql="SELECT 1 AS id").code_version != t("s.v", sql="SELECT 2 AS id").code_version
    assert t("s.v", sql="SELECT 1 AS id").code_version == t("s.v", sql="SELECT 1 AS id").code_version


def test_type_the_backend_cannot_store_fails_at_load() -> None:
    bad = Table("s.u", backend="delta", columns=[ColumnSchema("n", "uint64")], sql="SELECT 1 AS n")
    with pytest.raises(SpecError, match=r"table s\.u: .*uint64"):
        validate_tables([bad])
