"""dagster-polars assets alongside Loom tables: a plain asset stored as Parquet by dagster-polars
is a Source of a declared table, and a plain asset reads a declared table through the Loom IO
manager, sliced to its partition. dagster-polars' own Parquet reads fail on polars 2.x; ours work."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest
from dagster_polars import PolarsParquetIOManager as UpstreamParquetIOManager
from deltalake import DeltaTable

from loom_assets import Source, Table, build_definitions
from loom_assets.polars_io import PolarsParquetIOManager
from loom_resources import ColumnSchema as C
from loom_resources import TableRef
from loom_resources.clickhouse import ClickHouseResource
from loom_resources.delta import DeltaResource

DAILY = dg.DailyPartitionsDefinition(start_date="2026-11-01", end_offset=0)


def defs_for(tmp_path: Path, chdb_url: str, tables: list[Any], assets: list[Any], io: Any) -> dg.Definitions:
    backends = {"delta": DeltaResource(root=str(tmp_path / "delta")), "clickhouse": ClickHouseResource(url=chdb_url)}
    (tmp_path / "delta").mkdir(exist_ok=True)
    return build_definitions(tables, backends=backends, assets=assets, resources={"polars_parquet_io_manager": io})


def run(defs: dg.Definitions, keys: list[dg.AssetKey], **kw: Any) -> dg.ExecuteInProcessResult:
    return defs.get_implicit_global_asset_job_def().execute_in_process(asset_selection=keys, raise_on_error=False, **kw)


def delta_rows(tmp_path: Path, name: str) -> pl.DataFrame:
    ref = TableRef.parse(name)
    df: pl.DataFrame = pl.from_arrow(DeltaTable(str(tmp_path / "delta" / ref.schema / ref.table)).to_pyarrow_table())  # type: ignore[assignment]
    return df.sort(df.columns)


def make(unique_schema: str) -> tuple[Any, Table, Table, Any]:
    s = unique_schema

    @dg.asset(key=[s, "scores"], io_manager_key="polars_parquet_io_manager")
    def scores() -> pl.DataFrame:
        return pl.DataFrame({"id": [1, 2, 3], "score": [0.5, 0.9, 0.1]})

    best = Table(f"{s}.best", "delta", [C("id", "int64", False), C("score", "float64", True)],
                 sources=[Source(f"{s}.scores", asset=True)], sql="SELECT id, score FROM scores WHERE score > 0.4",
                 mode="overwrite")
    events = Table(f"{s}.events", "delta", [C("id", "int64", False), C("day", "date", False)], mode="replace_partitions",
                   partitions=DAILY, partition_column="day",
                   transform=lambda context: pl.DataFrame({"id": [1, 2, 3], "day": [context.partition_time_window.start.date()] * 3}))
    seen: dict[str, Any] = {}

    @dg.asset(key=[s, "per_day"], partitions_def=DAILY, io_manager_key="polars_parquet_io_manager",
              ins={"events": dg.AssetIn(key=[s, "events"])})
    def per_day(events: pl.LazyFrame) -> pl.DataFrame:
        seen["type"] = type(events)
        return events.group_by("day").len().collect()

    per_day.seen = seen  # type: ignore[attr-defined]
    return scores, best, events, per_day


def test_a_dagster_polars_asset_feeds_a_declared_table(tmp_path: Path, chdb_url: str, unique_schema: str) -> None:
    scores, best, events, per_day = make(unique_schema)
    defs = defs_for(tmp_path, chdb_url, [best], [scores], PolarsParquetIOManager(base_dir=str(tmp_path / "pq")))
    result = run(defs, [scores.key, best.asset_key])
    assert result.success
    assert delta_rows(tmp_path, f"{unique_schema}.best").rows() == [(1, 0.5), (2, 0.9)]
    assert (tmp_path / "pq" / unique_schema / "scores.parquet").exists()


def test_a_dagster_polars_asset_reads_a_declared_table_sliced_to_its_partition(
    tmp_path: Path, chdb_url: str, unique_schema: str
) -> None:
    scores, best, events, per_day = make(unique_schema)
    defs = defs_for(tmp_path, chdb_url, [events], [per_day], PolarsParquetIOManager(base_dir=str(tmp_path / "pq")))
    for day in ("2026-11-01", "2026-11-02"):
        assert run(defs, [events.asset_key], partition_key=day).success
    assert run(defs, [per_day.key], partition_key="2026-11-02").success
    assert per_day.seen["type"] is pl.LazyFrame  # read by the Loom IO manager, lazily
    out = pl.read_parquet(tmp_path / "pq" / unique_schema / "per_day" / "2026-11-02.parquet")
    assert out.rows() == [(dt.date(2026, 11, 2), 3)]  # only its own day of the 6 stored rows


def test_upstream_parquet_reads_fail_on_polars_2_and_ours_work(tmp_path: Path, chdb_url: str, unique_schema: str) -> None:
    scores, best, events, per_day = make(unique_schema)
    broken = defs_for(tmp_path, chdb_url, [best], [scores], UpstreamParquetIOManager(base_dir=str(tmp_path / "pq1")))
    result = run(broken, [scores.key, best.asset_key])
    if result.success:
        pytest.fail("dagster-polars' Parquet read works on this polars; the subclass may be dropped")
    assert "has been removed" in str(result.all_events)
    fixed = defs_for(tmp_path, chdb_url, [best], [scores], PolarsParquetIOManager(base_dir=str(tmp_path / "pq2")))
    assert run(fixed, [scores.key, best.asset_key]).success
