"""Reading Delta tables that other engines wrote (issue 10, item 2).

The tables come from tests/delta_foreign_tables.py: Spark/Databricks layouts laid out by hand as
the Delta protocol specifies, and delta-rs tables where delta-rs can write the case. Every read
is compared with the expected rows, exact values and polars types.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

import polars as pl
import pytest
from delta_foreign_tables import CASES, Case
from deltalake import DeltaTable
from polars.testing import assert_frame_equal

from loom_resources.delta import DeltaResource
from loom_resources.delta._read import native_scan_is_exact
from loom_resources.model import RunParams, SourceSpec
from loom_resources.polars_types import from_polars
from loom_resources.predicates import col

IDS = [c.name for c in CASES]


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> DeltaResource:
    root = tmp_path_factory.mktemp("foreign_lake")
    for case in CASES:
        case.build(root / "foreign" / case.name)
    return DeltaResource(root=str(root))


def read(lake: DeltaResource, case: Case, **kw: object) -> pl.DataFrame:
    return lake.read(SourceSpec(f"foreign.{case.name}", **kw), RunParams()).collect()  # type: ignore[arg-type]


def by_id(df: pl.DataFrame) -> pl.DataFrame:
    return df.sort("id") if "id" in df.columns else df.sort(df.columns)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_reader_choice_is_needed_and_sufficient(lake: DeltaResource, case: Case) -> None:
    """The native scan is kept exactly where it reads the table right; elsewhere it fails or
    returns wrong rows, which is why the read falls back."""
    table = DeltaTable(lake.table_uri(f"foreign.{case.name}"))
    assert native_scan_is_exact(table) is case.native
    try:
        native = by_id(pl.scan_delta(table).collect())
        native_right = native.equals(case.expected) and native.schema == case.expected.schema
    except Exception:
        native_right = False
    assert native_right is case.native


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_read_whole_table(lake: DeltaResource, case: Case) -> None:
    assert_frame_equal(by_id(read(lake, case)), case.expected)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_read_projection(lake: DeltaResource, case: Case) -> None:
    cols = (case.partition_column, "id")
    assert_frame_equal(by_id(read(lake, case, columns=cols)), case.expected.select(cols))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_predicate_on_partition_column(lake: DeltaResource, case: Case) -> None:
    p = case.partition_column
    got = read(lake, case, columns=("id", p), predicate=col(p).eq(case.partition_value))
    want = case.expected.filter(pl.col(p) == case.partition_value).select("id", p)
    assert want.height > 0
    assert_frame_equal(by_id(got), want)
    nulls = read(lake, case, columns=("id", p), predicate=col(p).is_null())
    assert_frame_equal(by_id(nulls), case.expected.filter(pl.col(p).is_null()).select("id", p))
    others = read(lake, case, columns=("id",), predicate=col(p).ne(case.partition_value))
    assert_frame_equal(by_id(others), case.expected.filter(pl.col(p) != case.partition_value).select("id"))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_predicate_on_data_column(lake: DeltaResource, case: Case) -> None:
    pred = col("v").is_in(["v1", "v3"]) | col("id").ge(4)
    got = read(lake, case, predicate=pred)
    want = case.expected.filter(pl.col("v").is_in(["v1", "v3"]) | (pl.col("id") >= 4))
    assert_frame_equal(by_id(got), want)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_read_streaming(lake: DeltaResource, case: Case) -> None:
    p = case.partition_column
    spec = SourceSpec(f"foreign.{case.name}", predicate=col(p).is_not_null())
    lf = lake.read_streaming(spec, RunParams())
    assert isinstance(lf, pl.LazyFrame)
    got = lf.collect(engine="streaming")
    assert_frame_equal(by_id(got), case.expected.filter(pl.col(p).is_not_null()))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_discovery(lake: DeltaResource, case: Case) -> None:
    ref = f"foreign.{case.name}"
    assert lake.exists(ref)  # type: ignore[arg-type]
    assert lake.columns(ref) == tuple(case.expected.columns)  # type: ignore[arg-type]
    schema = lake.schema(ref)  # type: ignore[arg-type]
    assert schema is not None
    assert [(c.name, c.dtype) for c in schema] == [(n, from_polars(t)) for n, t in case.expected.schema.items()]


def test_fallback_is_lazy_and_pushes_the_predicate_down(lake: DeltaResource) -> None:
    case = next(c for c in CASES if c.name == "binary")
    lf = lake.read(SourceSpec("foreign.binary", columns=("id",), predicate=col("p").eq(b"ab")), RunParams())
    plan = lf.explain()
    assert "PYTHON SCAN" in plan and "SELECTION" in plan and "PROJECT 2/" in plan
    assert_frame_equal(lf.collect(), case.expected.filter(pl.col("p") == b"ab").select("id"))


@pytest.mark.parametrize("name", ["binary", "escaped_strings"])
def test_partition_predicate_prunes_files(tmp_path: Path, name: str) -> None:
    """A read filtered on the partition column never opens other partitions' files, on both
    readers: with those files deleted, the pruned read still works and the full read fails."""
    case = next(c for c in CASES if c.name == name)
    case.build(tmp_path / "foreign" / name)
    lake = DeltaResource(root=str(tmp_path))
    table_dir = lake.table_uri(f"foreign.{name}")
    keep = {f for f in glob.glob(os.path.join(table_dir, "**", "*.parquet"), recursive=True)
            if os.path.basename(os.path.dirname(f)) in ("p=ab", "p=k%3Dv")}
    assert len(keep) == 1
    for f in glob.glob(os.path.join(table_dir, "**", "*.parquet"), recursive=True):
        if f not in keep:
            os.remove(f)
    got = read(lake, case, columns=("id",), predicate=col("p").eq(case.partition_value))
    assert got["id"].to_list() == case.expected.filter(pl.col("p") == case.partition_value)["id"].to_list()
    with pytest.raises(Exception, match="No such file|not found|os error|Generic"):
        read(lake, case)


def test_time_travel_before_a_column_was_added(lake: DeltaResource) -> None:
    old = lake.read(SourceSpec("foreign.evolved_binary", version=0), RunParams()).collect()
    assert old.columns == ["id", "v", "p"]
    assert by_id(old).to_dicts() == [{"id": 1, "v": "v1", "p": b"a"}, {"id": 2, "v": "v2", "p": b"a"}]


def test_table_under_a_key_value_directory(tmp_path: Path) -> None:
    """polars' native scan takes ``year=2024`` in the root's own path for a partition column."""
    case = next(c for c in CASES if c.name == "boolean")
    root = tmp_path / "year=2024" / "lake"
    case.build(root / "foreign" / "boolean")
    lake = DeltaResource(root=str(root))
    assert not native_scan_is_exact(DeltaTable(lake.table_uri("foreign.boolean")))
    assert_frame_equal(by_id(read(lake, case)), case.expected)
    got = read(lake, case, columns=("id",), predicate=col("p").eq(True))
    assert got["id"].to_list() == [1]
