"""Rows per partition from the Delta log (``delta._stats``) against a scan of the same table."""

from __future__ import annotations

import datetime as dt
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
