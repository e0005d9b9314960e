"""Rows per partition from the Delta log (``delta._stats``) against a scan of the same table."""

from __future__ import annotations

import datetime as dt
import decimal
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from loom_resources import ColumnSchema, DeltaResource, RunParams, TableRef, TargetSpec
from loom_resources.model import Backend, WriteMode
from loom_resources.partitions import rows_by_partition

DAY0 = dt.date(2024, 1, 1)
UTC = dt.UTC


def _spec(partition_by: tuple[str, ...] = ("day",)) -> TargetSpec:
    return TargetSpec(
        ref=TableRef("s", "events"), backend=Backend.DELTA,
        columns=(ColumnSchema("id", "int64", False), ColumnSchema("day", "date", False), ColumnSchema("kind", "string")),
        mode=WriteMode.APPEND, partition_by=partition_by,
    )


def _frame(n: int, offset: int = 0) -> pl.DataFrame:
    return pl.DataFrame({
        "id": range(offset, offset + n),
        "day": [DAY0 + dt.timedelta(days=i % 7) for i in range(n)],
        "kind": [("a", "b", None)[i % 3] for i in range(n)],
    }, schema={"id": pl.Int64, "day": pl.Date, "kind": pl.String})


def _day(i: int) -> RunParams:
    start = dt.datetime.combine(DAY0 + dt.timedelta(days=i), dt.time(), UTC)
    return RunParams(partition_keys=((DAY0 + dt.timedelta(days=i)).isoformat(),), window_start=start,
                     window_end=start + dt.timedelta(days=1))


class _ScanOnly:
    """The resource without ``partition_counts``: rows_by_partition must scan."""

    def __init__(self, res: DeltaResource) -> None:
        self.res = res

    def read(self, *a: Any) -> pl.LazyFrame:
        return self.res.read(*a)


def _counts(reader: Any, spec: TargetSpec, days: range) -> dict[str, int]:
    each = {(DAY0 + dt.timedelta(days=i)).isoformat(): _day(i) for i in days}
    run = RunParams(partition_keys=tuple(each), window_start=_day(days[0]).window_start,
                    window_end=_day(days[-1]).window_end)
    return rows_by_partition(reader, spec, {"": "day"}, run, each)


@pytest.fixture(params=["polars", "delta-rs"])
def delta(tmp_path: Path, request: pytest.FixtureRequest) -> DeltaResource:
    """Partition counts come from the log's file statistics, which both Parquet writers record."""
    return DeltaResource(root=str(tmp_path), parquet_writer=request.param)


def test_log_counts_match_a_scan_over_several_commits(delta: DeltaResource) -> None:
    spec = _spec()
    delta.write(_frame(1000), spec, RunParams())
    delta.write(_frame(333, offset=1000), spec, RunParams())  # a second file in every partition
    files = delta.partition_counts(spec.ref, ["day"])
    assert files is not None and files.height == 14
    from_log = _counts(delta, spec, range(0, 8))
    scanned = _counts(_ScanOnly(delta), spec, range(0, 8))
    truth = pl.scan_delta(delta.table_uri(spec.ref)).group_by("day").len().collect()
    expected = {d.isoformat(): n for d, n in truth.iter_rows()} | {(DAY0 + dt.timedelta(days=7)).isoformat(): 0}
    assert from_log == scanned == expected
    assert sum(from_log.values()) == 1333


def test_not_a_partition_column_falls_back_to_a_scan(delta: DeltaResource) -> None:
    spec = _spec(partition_by=())
    delta.write(_frame(100), spec, RunParams())
    assert delta.partition_counts(spec.ref, ["day"]) is None
    assert _counts(delta, spec, range(0, 2)) == _counts(_ScanOnly(delta), spec, range(0, 2))
    assert sum(_counts(delta, spec, range(0, 7)).values()) == 100


def test_missing_table_has_no_counts(delta: DeltaResource) -> None:
    assert delta.partition_counts(TableRef("s", "nope"), ["day"]) is None


class _MistypedLog(_ScanOnly):
    """A store whose log reports partition values as text: counting falls back to a scan."""

    def partition_counts(self, ref: TableRef, columns: list[str]) -> pl.DataFrame | None:
        files = self.res.partition_counts(ref, columns)
        assert files is not None
        return files.with_columns(pl.col("day").cast(pl.String) + "x")


def test_partition_values_the_predicate_cannot_compare_fall_back_to_a_scan(delta: DeltaResource) -> None:
    spec = _spec()
    delta.write(_frame(700), spec, RunParams())
    assert _counts(_MistypedLog(delta), spec, range(0, 7)) == _counts(_ScanOnly(delta), spec, range(0, 7)) \
        == {(DAY0 + dt.timedelta(days=i)).isoformat(): 100 for i in range(7)}


# -- statistics no reader can misread (issue 23, defect 1) ---------------------------------------

def _mixed_spec(partition_by: tuple[str, ...] = ()) -> TargetSpec:
    cols = [ColumnSchema("flag", "boolean"), ColumnSchema("x", "float64"), ColumnSchema("amount", "decimal(10,2)"),
            ColumnSchema("s", "string"), ColumnSchema("k", "string")]
    return TargetSpec(ref=TableRef("s", "mixed"), backend=Backend.DELTA, columns=tuple(cols), partition_by=partition_by)


def _mixed(n: int = 2) -> pl.DataFrame:
    # one row matches each filter below; the other row does not
    return pl.DataFrame({
        "flag": [True] + [False] * (n - 1), "x": [3.0] + [1.0] * (n - 1),
        "amount": [decimal.Decimal("-1.50")] + [decimal.Decimal("2.00")] * (n - 1),
        "s": ["z" * 40] + ["y" * 40] * (n - 1), "k": ["a"] * n,
    }, schema_overrides={"amount": pl.Decimal(10, 2)})


def _arrow_filters() -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.dataset as ds

    return {
        "flag == true": ds.field("flag") == True,  # noqa: E712  (an Arrow expression, not a Python test)
        "x > 2.0": ds.field("x") > 2.0,
        "amount < 0": ds.field("amount") < ds.scalar(pa.scalar(decimal.Decimal("0.00"), pa.decimal128(10, 2))),
        "s == 'z'*40": ds.field("s") == "z" * 40,
    }


def test_deltalake_dataset_filters_find_the_rows_of_polars_encoded_files(tmp_path: Path) -> None:
    """deltalake read a null count without bounds as "nulls only" and skipped the file."""
    from deltalake import DeltaTable

    delta = DeltaResource(root=str(tmp_path), parquet_writer="polars")
    spec = _mixed_spec()
    delta.write(_mixed(), spec, RunParams())
    dataset = DeltaTable(delta.table_uri(spec.ref)).to_pyarrow_dataset()
    found = {name: dataset.to_table(filter=f).num_rows for name, f in _arrow_filters().items()}
    assert found == dict.fromkeys(found, 1)


def test_our_read_on_the_arrow_dataset_path_finds_the_rows(tmp_path: Path) -> None:
    """A table root with '=' in its path makes ``read`` take deltalake's Arrow dataset."""
    from deltalake import DeltaTable

    from loom_resources import SourceSpec, col
    from loom_resources.delta._read import native_scan_is_exact

    root = tmp_path / "lake=1"
    root.mkdir()
    delta = DeltaResource(root=str(root), parquet_writer="polars")
    spec = _mixed_spec(partition_by=("k",))
    delta.write(_mixed(108), spec, RunParams())
    assert not native_scan_is_exact(DeltaTable(delta.table_uri(spec.ref)))
    for pred, truth in [(col("x").gt(2.0), 1), (col("x").lt(2.0), 107), (col("flag").eq(True), 1),
                        (col("amount").lt(decimal.Decimal("0")), 1), (col("s").eq("y" * 40), 107)]:
        got = delta.read(SourceSpec(spec.ref, predicate=pred), RunParams()).collect()
        assert got.height == truth, pred


@pytest.mark.parametrize("values, bounds", [
    ([1.0, float("nan")], (1.0, float("inf"))), ([1.0, float("inf")], (1.0, float("inf"))),
    ([-float("inf"), 1.0], (-float("inf"), 1.0)), ([float("nan")], (-float("inf"), float("inf"))),
    ([1.0, None, 3.5], (1.0, 3.5)), ([None, None], None),
])
def test_float_bounds_widen_to_infinity_over_nan_and_infinities(values: list[float | None],
                                                                 bounds: tuple[float, float] | None) -> None:
    """Every column with values gets a null count *and* both bounds: deltalake reads anything
    less as "nulls only" or as "no nulls". JSON has no infinity: 1e999 reads as one."""
    import json

    from loom_resources import dtypes as t
    from loom_resources.delta._stats import file_stats

    stats = json.loads(file_stats(pl.DataFrame({"x": values}, schema={"x": pl.Float64}), {"x": t.Float64()}))
    assert stats["nullCount"]["x"] == sum(v is None for v in values)
    got = (stats["minValues"]["x"], stats["maxValues"]["x"]) if "minValues" in stats else None
    assert got == bounds


def test_zero_bounds_hold_negative_zero() -> None:
    import json

    from loom_resources import dtypes as t
    from loom_resources.delta._stats import file_stats

    stats = json.loads(file_stats(pl.DataFrame({"x": [0.0, -0.0, 0.0]}), {"x": t.Float64()}))
    assert str(stats["minValues"]["x"]) == "-0.0" and str(stats["maxValues"]["x"]) == "0.0"


@pytest.mark.parametrize("value, bound", [
    ("a" * 32, "a" * 32), ("a" * 40, "a" * 31 + "b"), ("é" * 40, "é" * 31 + "ê"),
    ("a" * 31 + "\U0010ffff" * 9, "a" * 30 + "b"), ("a" * 31 + "\ud7ff" + "b", "a" * 31 + "\ue000"),
    ("\U0010ffff" * 33, "\U0010ffff" * 33),  # no prefix can be incremented: the whole value
])
def test_string_maximum_is_an_incremented_prefix(value: str, bound: str) -> None:
    from loom_resources.delta._stats import string_max_bound

    assert string_max_bound(value) == bound
    assert bound >= value


def test_decimal_bounds_are_exact_at_38_digits_and_binary_has_none() -> None:
    import json

    from loom_resources import dtypes as t
    from loom_resources.delta._stats import file_stats

    top, low = decimal.Decimal("99999999999999999999999999999999.999999"), decimal.Decimal("-0.000001")
    df = pl.DataFrame({"d": [top, low, None], "b": [b"x", None, None]}, schema={"d": pl.Decimal(38, 6), "b": pl.Binary})
    stats = json.loads(file_stats(df, {"d": t.Decimal(38, 6), "b": t.Binary()}), parse_float=decimal.Decimal)
    assert (stats["minValues"]["d"], stats["maxValues"]["d"], stats["nullCount"]["d"]) == (low, top, 1)
    assert "b" not in stats["nullCount"] and "b" not in stats["minValues"]  # as delta-rs' writer


def test_deltalake_reads_38_digit_decimal_bounds_exactly(tmp_path: Path) -> None:
    """A float64 bound would be 1e32, past decimal(38,6)'s range; delta-rs parses the digits."""
    from deltalake import DeltaTable

    delta = DeltaResource(root=str(tmp_path), parquet_writer="polars")
    spec = TargetSpec(ref=TableRef("s", "dec"), backend=Backend.DELTA,
                      columns=(ColumnSchema("id", "int64"), ColumnSchema("d", "decimal(38,6)")))
    top = decimal.Decimal("99999999999999999999999999999999.999999")
    schema = {"id": pl.Int64, "d": pl.Decimal(38, 6)}
    # Loom's own tables leave 38-digit decimals out of the statistics (delta-rs' writer rounds
    # them); a table whose owner lists the column gets them from the Polars path, exact
    from deltalake import write_deltalake

    write_deltalake(delta.table_uri(spec.ref), pl.DataFrame(schema=schema).to_arrow(),
                    configuration={"delta.dataSkippingStatsColumns": "id,d"})
    delta.write(pl.DataFrame({"id": [1, 2, 3], "d": [top, decimal.Decimal("-1.5"), None]}, schema=schema),
                spec, RunParams())
    row = pl.DataFrame(DeltaTable(delta.table_uri(spec.ref)).get_add_actions(flatten=True)).row(0, named=True)
    assert (row["min.d"], row["max.d"], row["null_count.d"]) == (decimal.Decimal("-1.5"), top, 1)


def test_deltalake_dataset_reads_nan_infinity_and_wide_decimal_files_exactly(tmp_path: Path) -> None:
    """The bounds rule against deltalake's Arrow dataset, the reader that misreads partial
    statistics: a null count without bounds skipped the file under x < 2.0; no statistics at
    all made IS NULL skip it and IS NOT NULL return its nulls."""
    import pyarrow as pa
    import pyarrow.dataset as ds
    from deltalake import DeltaTable

    delta = DeltaResource(root=str(tmp_path), parquet_writer="polars")
    spec = TargetSpec(ref=TableRef("s", "odd"), backend=Backend.DELTA, columns=(
        ColumnSchema("id", "int64"), ColumnSchema("x", "float64"), ColumnSchema("d", "decimal(38,6)")))
    big = decimal.Decimal("99999999999999999999999999999999.999999")
    delta.write(pl.DataFrame({"id": [1, 2, 3, 4], "x": [float("nan"), 1.0, None, float("-inf")],
                              "d": [big, decimal.Decimal("-1.5"), None, None]},
                             schema={"id": pl.Int64, "x": pl.Float64, "d": pl.Decimal(38, 6)}), spec, RunParams())
    dataset = DeltaTable(delta.table_uri(spec.ref)).to_pyarrow_dataset()
    zero = ds.scalar(pa.scalar(decimal.Decimal(0), pa.decimal128(38, 6)))
    ids = lambda f: sorted(dataset.to_table(filter=f).column("id").to_pylist())  # noqa: E731
    # pyarrow compares floats by IEEE 754: NaN < 2.0 and NaN > 2.0 are both false
    assert ids(ds.field("x") < 2.0) == [2, 4]
    assert ids(ds.field("x") > 0.5) == [2]
    assert ids(ds.field("x").is_null()) == [3]
    assert ids(ds.field("x").is_valid()) == [1, 2, 4]
    assert ids(ds.field("d") > zero) == [1] and ids(ds.field("d") < zero) == [2]
    assert ids(ds.field("d").is_null()) == [3, 4] and ids(ds.field("d").is_valid()) == [1, 2]


@pytest.mark.parametrize("writer", ["polars", "delta-rs"])
def test_loom_tables_keep_statistics_of_the_columns_both_writers_bound_exactly(tmp_path: Path, writer: str) -> None:
    """delta-rs' writer truncates timestamp maxima to the millisecond below, leaves NaN out of
    float bounds and writes 38-digit decimals as float64: the tables Loom creates list only the
    other columns in delta.dataSkippingStatsColumns, so no writer gives those columns bounds
    a reader could skip a matching file by."""
    import pyarrow as pa
    import pyarrow.dataset as ds
    from deltalake import DeltaTable

    from loom_resources.model import WriteMode

    delta = DeltaResource(root=str(tmp_path), parquet_writer=writer)  # type: ignore[arg-type]
    cols = (ColumnSchema("id", "int64", False), ColumnSchema("ts", "datetime(us)"), ColumnSchema("x", "float64"),
            ColumnSchema("d", "decimal(38,6)"), ColumnSchema("small", "decimal(10,2)"), ColumnSchema("s", "string"))
    spec = TargetSpec(ref=TableRef("s", "mixed_stats"), backend=Backend.DELTA, columns=cols)
    at = dt.datetime(2024, 1, 1, 0, 0, 0, 123456)
    df = pl.DataFrame({"id": [1, 2], "ts": [at, None], "x": [float("nan"), 1.0],
                       "d": [decimal.Decimal("99999999999999999999999999999999.999999"), None],
                       "small": [decimal.Decimal("1.25"), None], "s": ["a", None]},
                      schema={"id": pl.Int64, "ts": pl.Datetime("us"), "x": pl.Float64, "d": pl.Decimal(38, 6),
                              "small": pl.Decimal(10, 2), "s": pl.String})
    delta.write(df, spec, RunParams())
    # a merge always goes through delta-rs' writer
    import dataclasses

    delta.write(df.with_columns(pl.col("id") + 10), dataclasses.replace(spec, mode=WriteMode.MERGE, merge_keys=("id",)),
                RunParams())
    table = DeltaTable(delta.table_uri(spec.ref))
    assert table.metadata().configuration["delta.dataSkippingStatsColumns"] == "id,small,s"
    actions = pl.DataFrame(table.get_add_actions(flatten=True))
    assert not [c for c in actions.columns if c.split(".")[-1] in ("ts", "x", "d")]
    dataset = table.to_pyarrow_dataset()
    found = lambda f: sorted(dataset.to_table(filter=f).column("id").to_pylist())  # noqa: E731
    assert found(ds.field("ts") >= pa.scalar(at, pa.timestamp("us"))) == [1, 11]
    assert found(ds.field("x").is_null()) == [] and found(ds.field("d").is_valid()) == [1, 11]
