"""Asset checks (:mod:`loom_assets.checks`): the schema contract and declared data checks, run as
real queries against tables stored in Delta and in the embedded ClickHouse engine."""

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest

from loom_assets.checks import SCHEMA_CHECK, data_check, schema_check
from loom_assets.declare import Table, accepted_values, not_null, row_count, unique
from loom_resources import ColumnSchema, RunParams, col
from loom_resources.clickhouse import ClickHouseResource
from loom_resources.delta import DeltaResource
from loom_resources.predicates import Predicate

C = ColumnSchema
COLS = [C("id", "int64", False), C("d", "date", False), C("v", "string"), C("n", "int32")]


def body(context: Any) -> None:
    return None


# -- schema_check --------------------------------------------------------------------------------

def table(**kw: Any) -> Table:
    return Table("s.t", backend="delta", columns=kw.pop("columns", COLS), transform=body, **kw)


def test_schema_check_passes_when_stored_matches() -> None:
    t = table()
    expected = tuple(t.target.stored_columns())
    r = schema_check(t, expected, expected)
    assert r.passed and r.check_name == SCHEMA_CHECK and r.severity == dg.AssetCheckSeverity.ERROR
    assert r.metadata["problems"].value == "none"


@pytest.mark.parametrize(
    ("stored", "needle"),
    [
        ((C("id", "int64", False), C("d", "date", False), C("v", "int64"), C("n", "int32")), "'v'"),
        ((C("id", "int64", True), C("d", "date", False), C("v", "string"), C("n", "int32")), "'id' nullability"),
        ((C("id", "int64", False), C("d", "date", False), C("v", "string")), "'n'"),
        ((C("d", "date", False), C("id", "int64", False), C("v", "string"), C("n", "int32")), "order"),
    ],
    ids=["type", "nullability", "missing", "order"],
)
def test_schema_check_fails_naming_the_difference(stored: tuple[ColumnSchema, ...], needle: str) -> None:
    t = table()
    r = schema_check(t, tuple(t.target.stored_columns()), stored)
    assert not r.passed
    assert needle in str(r.metadata["problems"].value)


def test_schema_check_of_a_missing_table() -> None:
    t = table()
    r = schema_check(t, tuple(t.target.stored_columns()), None)
    assert not r.passed and "s.t does not exist" in str(r.metadata["problems"].value)


def test_evolve_tolerates_added_columns_strict_does_not() -> None:
    stored = (*table().target.stored_columns(), C("added_later", "string"))
    evolve = table(schema_mode="evolve")
    assert schema_check(evolve, tuple(evolve.target.stored_columns()), stored).passed
    strict = table()
    r = schema_check(strict, tuple(strict.target.stored_columns()), stored)
    assert not r.passed and "added_later" in str(r.metadata["problems"].value)
    # evolve still fails on a change of a declared column
    changed = tuple(C(c.name, "int64", c.nullable) if c.name == "v" else c for c in stored)
    assert not schema_check(evolve, tuple(evolve.target.stored_columns()), changed).passed


# -- data_check against stored tables ----------------------------------------------------------------

ROWS = pl.DataFrame(
    {
        "id": [1, 2, 2, 3, 4, 5],
        "d": [dt.date(2026, 1, 1)] * 3 + [dt.date(2026, 1, 2)] * 3,
        "v": ["a", "b", "b", None, "zz", "a"],
        "n": [1, 1, 2, 3, 4, None],
    },
    schema={"id": pl.Int64, "d": pl.Date, "v": pl.String, "n": pl.Int32},
)
DAY1 = col("d").eq(dt.date(2026, 1, 1))
DAY2 = col("d").eq(dt.date(2026, 1, 2))


@pytest.fixture(params=["delta", "clickhouse"])
def stored(request: pytest.FixtureRequest, tmp_path: Path, chdb_url: str, unique_schema: str) -> Iterator[tuple[Any, Table]]:
    backend = request.param
    resource: Any = DeltaResource(root=str(tmp_path)) if backend == "delta" else ClickHouseResource(url=chdb_url)
    t = Table(f"{unique_schema}.t", backend=backend, columns=COLS, transform=body, mode="overwrite")
    try:
        resource.write(ROWS, t.target, RunParams())
        yield resource, t
    finally:
        if backend == "clickhouse":
            resource.close()


def run(stored: tuple[Any, Table], check: Any, scope: Predicate | None = None) -> dg.AssetCheckResult:
    resource, t = stored
    return data_check(check, resource, t, scope)


def md(r: dg.AssetCheckResult) -> dict[str, Any]:
    return {k: v.value for k, v in r.metadata.items()}  # type: ignore[attr-defined]


def test_stored_rows_are_what_the_checks_see(stored: tuple[Any, Table]) -> None:
    from loom_resources import SourceSpec

    resource, t = stored
    back = resource.read(SourceSpec(t.ref), RunParams()).collect().sort("id", "n", nulls_last=True)
    assert back.equals(ROWS.sort("id", "n", nulls_last=True))


def test_not_null(stored: tuple[Any, Table]) -> None:
    r = run(stored, not_null("v", "n"))
    assert not r.passed and md(r) == {"nulls_v": 1, "nulls_n": 1}
    assert r.severity == dg.AssetCheckSeverity.WARN
    assert run(stored, not_null("v"), DAY1).passed  # the null is in day 2
    r = run(stored, not_null("v", blocking=True), DAY2)
    assert not r.passed and r.severity == dg.AssetCheckSeverity.ERROR


def test_unique(stored: tuple[Any, Table]) -> None:
    r = run(stored, unique("id"))
    assert not r.passed and md(r) == {"duplicate_keys": 1}
    assert run(stored, unique("id"), DAY2).passed
    assert run(stored, unique("id", "n")).passed  # (2, 1) and (2, 2) differ


def test_accepted_values(stored: tuple[Any, Table]) -> None:
    r = run(stored, accepted_values("v", ["a", "b"]))
    assert not r.passed and md(r)["rows_with_other_values"] == 1  # 'zz'; the null is accepted
    assert run(stored, accepted_values("v", ["a", "b"]), DAY1).passed
    assert run(stored, accepted_values("n", [1, 2, 3, 4])).passed


def test_row_count(stored: tuple[Any, Table]) -> None:
    assert md(run(stored, row_count(min_rows=6, max_rows=6))) == {"rows": 6}
    assert run(stored, row_count(min_rows=6, max_rows=6)).passed
    assert not run(stored, row_count(min_rows=7)).passed
    assert not run(stored, row_count(max_rows=5)).passed
    r = run(stored, row_count(min_rows=3, max_rows=3), DAY2)
    assert r.passed and md(r) == {"rows": 3}
    assert md(run(stored, row_count(), col("d").eq(dt.date(2030, 1, 1)))) == {"rows": 0}


def test_unknown_check_kind(stored: tuple[Any, Table]) -> None:
    from loom_assets.declare import DataCheck

    with pytest.raises(ValueError, match=r"\.t: unknown data check kind 'median'"):
        run(stored, DataCheck("median", ("n",)))
