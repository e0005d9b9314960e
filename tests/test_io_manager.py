"""The Loom IO manager end to end: real ``dagster.materialize`` runs of assets built by
``build_assets`` over real Delta tables and the embedded ClickHouse engine, with every
assertion checked against the data read back from the stores."""

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg
import polars as pl
import pytest
from dagster import AssetExecutionContext
from deltalake import DeltaTable

from loom_assets.declare import Source, Table
from loom_assets.factory import build_assets
from loom_resources import ColumnSchema, SpecError, TableRef
from loom_resources.clickhouse import ClickHouseResource
from loom_resources.delta import DeltaResource
from loom_resources.io_manager import LoomIOManager

DAILY = dg.DailyPartitionsDefinition(start_date="2026-01-01", end_offset=0)
RANGE = {"dagster/asset_partition_range_start": "2026-01-01", "dagster/asset_partition_range_end": "2026-01-03"}
C = ColumnSchema


class Stores:
    """One Delta root and the session's ClickHouse path, with the resources over them."""

    def __init__(self, root: Path, chdb_url: str) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.delta = DeltaResource(root=str(root))
        self.ch = ClickHouseResource(url=chdb_url)

    @property
    def backends(self) -> dict[str, Any]:
        return {"delta": self.delta, "clickhouse": self.ch}

    def resources(self) -> dict[str, Any]:
        return {**self.backends, "io_manager": LoomIOManager(delta=self.delta, clickhouse=self.ch)}

    def mat(self, tables: list[Table], **kw: Any) -> dg.ExecuteInProcessResult:
        kw.setdefault("instance", dg.DagsterInstance.ephemeral())
        return dg.materialize(build_assets(tables, backends=self.backends), resources=self.resources(), **kw)

    def delta_rows(self, name: str) -> pl.DataFrame:
        """The table read back with deltalake, in a stable order (files come back in any order)."""
        df: pl.DataFrame = pl.from_arrow(DeltaTable(self.delta.table_uri(TableRef.parse(name))).to_pyarrow_table())  # type: ignore[assignment]
        return df.sort(df.columns)

    def ch_rows(self, sql: str) -> pl.DataFrame:
        return pl.from_arrow(self.ch.client().query_arrow(sql))  # type: ignore[return-value]

    def ch_columns(self, name: str) -> list[str]:
        return [n for n, _ in self.ch.ch_columns(TableRef.parse(name))]

    def records(self, table: str) -> pl.DataFrame:
        return self.delta_rows("loom.run_records").filter(pl.col("table_name") == table)


@pytest.fixture
def stores(tmp_path: Path, chdb_url: str) -> Iterator[Stores]:
    s = Stores(tmp_path / "delta", chdb_url)
    try:
        yield s
    finally:
        s.ch.close()


def metadata(result: dg.ExecuteInProcessResult) -> dict[str, dict[str, Any]]:
    return {
        e.asset_key.path[-1]: {k: getattr(v, "value", v) for k, v in e.materialization.metadata.items()}
        for e in result.get_asset_materialization_events()
    }


def days(context: AssetExecutionContext) -> pl.LazyFrame:
    w = context.partition_time_window
    n = (w.end - w.start).days
    return pl.LazyFrame({
        "id": list(range(n * 10)),
        "d": [w.start.date() + dt.timedelta(days=i // 10) for i in range(n * 10)],
    }).with_columns(pl.col("id") + pl.col("d").dt.day().cast(pl.Int64) * 1000)


DAY_COLS = [C("id", "int64", False), C("d", "date", False)]


# -- metadata -----------------------------------------------------------------------------------

def test_eager_delta_write_metadata(stores: Stores, unique_schema: str) -> None:
    t = Table(f"{unique_schema}.e", backend="delta", mode="overwrite", columns=[C("id", "int64", False)],
              transform=lambda context: pl.DataFrame({"id": [1, 2, 3]}))
    result = stores.mat([t])
    md = metadata(result)["e"]
    assert md["dagster/row_count"] == 3 and md["loom/rows_written"] == 3
    assert md["loom/write_path"] == "eager"
    assert md["loom/table_version"] == 0
    assert "dagster/partition_row_count" not in md
    assert md["dagster/table_name"] == f"{unique_schema}.e"
    assert stores.delta_rows(f"{unique_schema}.e")["id"].sort().to_list() == [1, 2, 3]
    assert stores.records(f"{unique_schema}.e").select("run_id", "status", "rows").to_dicts() == [
        {"run_id": result.run_id, "status": "success", "rows": 3}]


def test_streaming_clickhouse_write_metadata_counts_table_versions(stores: Stores, unique_schema: str) -> None:
    t = Table(f"{unique_schema}.c", backend="clickhouse", mode="append", columns=[C("id", "int64", False)],
              transform=lambda context: pl.LazyFrame({"id": list(range(25))}))
    md = metadata(stores.mat([t]))["c"]
    assert md["loom/write_path"] == "streaming"
    assert md["loom/rows_written"] == 25 and md["dagster/row_count"] == 25
    assert md["loom/table_version"] >= 1  # the resource's write counter (no -1 placeholder)
    assert md["dagster/uri"].endswith(f"{unique_schema}.c")
    rows = stores.ch_rows(f"SELECT count() AS n, sum(id) AS s FROM `{unique_schema}`.c")
    assert rows.to_dicts() == [{"n": 25, "s": sum(range(25))}]


def test_version_metadata_is_the_committed_version(stores: Stores, unique_schema: str) -> None:
    """The result of a write to an existing table is read from the table object delta-rs committed
    through (moved to the new version), not by reopening the log: it must match the log."""
    name = f"{unique_schema}.v"
    t = Table(name, backend="delta", mode="append", columns=[C("id", "int64", False)],
              transform=lambda context: pl.DataFrame({"id": [1, 2]}))
    inst = dg.DagsterInstance.ephemeral()
    versions = [metadata(stores.mat([t], instance=inst))["v"]["loom/table_version"] for _ in range(3)]
    uri = stores.delta.table_uri(TableRef.parse(name))
    assert versions == [0, 1, 2] and DeltaTable(uri).version() == 2
    assert stores.delta_rows(name)["id"].to_list() == [1, 1, 1, 2, 2, 2]


@pytest.mark.parametrize("backend", ["delta", "clickhouse"])
def test_the_run_log_says_each_write_once(stores: Stores, unique_schema: str, backend: str) -> None:
    """One line when the write starts (mode, path, partitions), one when it ends; the audit row
    appended to loom.run_records is not logged."""
    name = f"{unique_schema}.l"
    t = Table(name, backend=backend, mode="replace_partitions", columns=DAY_COLS, transform=days,
              partitions=DAILY, partition_column="d")
    inst = dg.DagsterInstance.ephemeral()
    result = stores.mat([t], tags=RANGE, instance=inst)
    lines = [e.user_message for e in inst.all_logs(result.run_id) if e.dagster_event is None]
    started = [m for m in lines if m.startswith(f"{name}: replace_partitions write to ")]
    assert len(started) == 1 and started[0].endswith(", 3 partitions)"), lines
    assert [m for m in lines if m.startswith(f"wrote 30 rows to {name} ")], lines
    assert not [m for m in lines if "run_records" in m], lines
    assert len(stores.records(name)) == 1  # the audit row is still written


@pytest.mark.parametrize("backend", ["delta", "clickhouse"])
def test_partition_range_metadata(stores: Stores, unique_schema: str, backend: str) -> None:
    t = Table(f"{unique_schema}.p", backend=backend, mode="replace_partitions", columns=DAY_COLS, transform=days,
              partitions=DAILY, partition_column="d")
    md = metadata(stores.mat([t], tags=RANGE))["p"]
    # each partition carries its own count (10 rows a day); the run total is loom/run_rows_written
    assert md["dagster/partition_row_count"] == 10 and md["loom/rows_written"] == 10 and md["loom/run_rows_written"] == 30
    if backend == "delta":
        got = stores.delta_rows(f"{unique_schema}.p")
    else:
        got = stores.ch_rows(f"SELECT id, d FROM `{unique_schema}`.p")
    assert got.group_by("d").len().sort("d")["len"].to_list() == [10, 10, 10]
    rec = stores.records(f"{unique_schema}.p")
    assert rec["partition_keys"].to_list() == [["2026-01-01", "2026-01-02", "2026-01-03"]]


def test_delta_merge_metrics_reach_the_metadata(stores: Stores, unique_schema: str) -> None:
    name = f"{unique_schema}.m"
    cols = [C("id", "int64", False), C("v", "string")]
    first = Table(name, backend="delta", mode="merge", merge_keys=["id"], columns=cols,
                  transform=lambda context: pl.DataFrame({"id": [1, 2], "v": ["a", "b"]}))
    second = Table(name, backend="delta", mode="merge", merge_keys=["id"], columns=cols,
                   transform=lambda context: pl.DataFrame({"id": [2, 3], "v": ["B", "c"]}))
    assert stores.mat([first]).success
    md = metadata(stores.mat([second]))["m"]
    assert md["loom/merge/num_target_rows_updated"] == 1
    assert md["loom/merge/num_target_rows_inserted"] == 1
    assert md["loom/merge/num_source_rows"] == 2
    assert md["loom/write_path"] == "eager" and md["loom/table_version"] == 1
    assert stores.delta_rows(name).sort("id").to_dicts() == [
        {"id": 1, "v": "a"}, {"id": 2, "v": "B"}, {"id": 3, "v": "c"}]


# -- inputs ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["delta", "clickhouse"])
def test_input_is_sliced_to_the_downstream_partition(stores: Stores, unique_schema: str, backend: str) -> None:
    s = unique_schema
    seen: dict[str, Any] = {}

    def count(context: AssetExecutionContext, p: pl.LazyFrame) -> pl.LazyFrame:
        seen["days"] = sorted(set(p.collect()["d"].to_list()))
        return p.group_by("d").agg(n=pl.len().cast(pl.Int64))

    up = Table(f"{s}.p", backend=backend, mode="replace_partitions", columns=DAY_COLS, transform=days,
               partitions=DAILY, partition_column="d")
    down = Table(f"{s}.n", backend="delta", mode="replace_partitions", sources=[f"{s}.p"], transform=count,
                 columns=[C("d", "date", False), C("n", "int64", False)], partitions=DAILY, partition_column="d")
    inst = dg.DagsterInstance.ephemeral()
    assert stores.mat([up, down], selection=[up.asset_key], tags=RANGE, instance=inst).success
    assert stores.mat([up, down], selection=[down.asset_key], partition_key="2026-01-02", instance=inst).success
    assert seen["days"] == [dt.date(2026, 1, 2)]
    assert stores.delta_rows(f"{s}.n").to_dicts() == [{"d": dt.date(2026, 1, 2), "n": 10}]


@pytest.mark.parametrize("backend", ["delta", "clickhouse"])
def test_streaming_input(stores: Stores, unique_schema: str, backend: str) -> None:
    s = unique_schema
    seen: dict[str, Any] = {}

    def copy(context: AssetExecutionContext, src: pl.LazyFrame) -> pl.LazyFrame:
        seen["type"] = type(src)
        return src.select("id")

    up = Table(f"{s}.src", backend=backend, mode="overwrite", columns=[C("id", "int64", False), C("v", "string")],
               transform=lambda context: pl.DataFrame({"id": list(range(100)), "v": ["x"] * 100}))
    down = Table(f"{s}.dst", backend="delta", mode="overwrite", columns=[C("id", "int64", False)],
                 sources=[Source(f"{s}.src", columns=("id",), predicate=None, streaming=True)], transform=copy)
    result = stores.mat([up, down])
    assert result.success
    assert seen["type"] is pl.LazyFrame
    assert metadata(result)["dst"]["loom/write_path"] == "streaming"
    assert stores.delta_rows(f"{s}.dst")["id"].sort().to_list() == list(range(100))


def test_window_of_a_non_utc_daily_partition_reads_a_utc_column(stores: Stores, unique_schema: str) -> None:
    """Daily partitions in Europe/Berlin over a ``datetime(us, UTC)`` partition column: the
    downstream partition must read the upstream rows of its day."""
    s = unique_schema
    berlin = dg.DailyPartitionsDefinition(start_date="2026-01-01", timezone="Europe/Berlin", end_offset=0)
    cols = [C("id", "int64", False), C("ts", "datetime(us, UTC)", False)]

    def gen(context: AssetExecutionContext) -> pl.DataFrame:
        start = context.partition_time_window.start.astimezone(dt.UTC)
        return pl.DataFrame({"id": [1, 2], "ts": [start, start + dt.timedelta(hours=23)]},
                            schema={"id": pl.Int64, "ts": pl.Datetime("us", "UTC")})

    up = Table(f"{s}.up", backend="delta", mode="append", columns=cols, transform=gen, partitions=berlin,
               partition_column="ts")
    down = Table(f"{s}.down", backend="delta", mode="append", columns=cols, sources=[f"{s}.up"], partitions=berlin,
                 partition_column="ts", transform=lambda context, up: up)
    inst = dg.DagsterInstance.ephemeral()
    assert stores.mat([up], partition_key="2026-01-02", instance=inst).success
    start = dt.datetime(2026, 1, 2, tzinfo=ZoneInfo("Europe/Berlin")).astimezone(dt.UTC)
    assert stores.delta_rows(f"{s}.up")["ts"].to_list() == [start, start + dt.timedelta(hours=23)]
    result = stores.mat([up, down], selection=[down.asset_key], partition_key="2026-01-02", instance=inst,
                        raise_on_error=False)
    failures = [str(e.event_specific_data.error) for e in result.all_events  # type: ignore[union-attr]
                if e.event_type_value == "STEP_FAILURE"]
    assert result.success, failures
    assert stores.delta_rows(f"{s}.down")["id"].sort().to_list() == [1, 2]


# -- failures ---------------------------------------------------------------------------------------

def test_write_failure_is_recorded_and_table_left_unchanged(stores: Stores, unique_schema: str) -> None:
    name = f"{unique_schema}.f"
    cols = [C("id", "int64", False)]
    good = Table(name, backend="clickhouse", mode="append", columns=cols,
                 transform=lambda context: pl.DataFrame({"id": [1]}))
    bad = Table(name, backend="clickhouse", mode="append", columns=cols,
                transform=lambda context: pl.DataFrame({"id": [2, None]}, schema={"id": pl.Int64}))
    ok = stores.mat([good])
    result = stores.mat([bad], raise_on_error=False)
    assert not result.success
    recs = stores.records(name).sort("finished_at")
    assert recs.select("run_id", "status").to_dicts() == [
        {"run_id": ok.run_id, "status": "success"}, {"run_id": result.run_id, "status": "failed"}]
    err = recs["error"][1]
    assert "DataValidationError" in err and f"{name}.id" in err
    assert recs["rows"].to_list() == [1, None]
    assert stores.ch_rows(f"SELECT id FROM `{unique_schema}`.f")["id"].to_list() == [1]


def test_output_of_an_asset_without_binding_is_refused(stores: Stores) -> None:
    @dg.asset(key=["raw", "plain"])
    def plain() -> pl.DataFrame:
        return pl.DataFrame({"id": [1]})

    result = dg.materialize([plain], resources=stores.resources(), instance=dg.DagsterInstance.ephemeral(),
                            raise_on_error=False)
    assert not result.success
    errors = [str(e.event_specific_data.error) for e in result.all_events  # type: ignore[union-attr]
              if e.event_type_value == "STEP_FAILURE"]
    assert any(SpecError.__name__ in e and "raw/plain" in e and "not a declared Loom table" in e for e in errors)


# -- two Definitions in one process ---------------------------------------------------------------

def test_two_definitions_with_the_same_asset_key_do_not_interfere(tmp_path: Path, chdb_url: str,
                                                                   unique_schema: str) -> None:
    name = f"{unique_schema}.t"
    a_stores = Stores(tmp_path / "a", chdb_url)
    b_stores = Stores(tmp_path / "b", chdb_url)
    try:
        a = Table(name, backend="delta", mode="overwrite", columns=[C("id", "int64", False), C("a", "string")],
                  transform=lambda context: pl.DataFrame({"id": [1, 2], "a": ["x", "y"]}))
        b = Table(name, backend="clickhouse", mode="append", columns=[C("id", "int64", False), C("b", "float64")],
                  transform=lambda context: pl.DataFrame({"id": [7], "b": [0.5]}))
        c = Table(name, backend="delta", mode="append", columns=[C("id", "int64", False), C("c", "int32")],
                  transform=lambda context: pl.DataFrame({"id": [9], "c": [3]}, schema={"id": pl.Int64, "c": pl.Int32}))
        # all three built before any runs, so nothing built later can shadow something built earlier
        defs = {
            "a": dg.Definitions(assets=build_assets([a], backends=a_stores.backends), resources=a_stores.resources()),
            "b": dg.Definitions(assets=build_assets([b], backends=b_stores.backends), resources=b_stores.resources()),
            "c": dg.Definitions(assets=build_assets([c], backends=b_stores.backends), resources=b_stores.resources()),
        }
        for key in ("c", "a", "b", "a"):
            job = defs[key].resolve_implicit_global_asset_job_def()
            assert job.execute_in_process(instance=dg.DagsterInstance.ephemeral()).success, key
        assert a_stores.delta_rows(name).sort("id").to_dicts() == [{"id": 1, "a": "x"}, {"id": 2, "a": "y"}]
        assert b_stores.delta_rows(name).to_dicts() == [{"id": 9, "c": 3}]
        assert b_stores.ch_columns(name) == ["id", "b"]
        assert b_stores.ch_rows(f"SELECT id, b FROM `{unique_schema}`.t").to_dicts() == [{"id": 7, "b": 0.5}]
        # each defs' run records landed in its own Delta root
        assert a_stores.records(name)["status"].to_list() == ["success", "success"]
        assert b_stores.records(name)["status"].to_list() == ["success", "success"]
    finally:
        a_stores.ch.close()
        b_stores.ch.close()


def test_hourly_partitions_in_a_non_utc_timezone_replace_their_own_hour(stores: Stores, unique_schema: str) -> None:
    """Hourly keys of a Europe/Berlin partitions definition name Berlin wall-clock hours: the run's
    rows (stamped with the partition's own window start) must be accepted and replace that hour."""
    hourly = dg.HourlyPartitionsDefinition(start_date="2026-01-01-00:00", timezone="Europe/Berlin", end_offset=0)
    cols = [C("id", "int64", False), C("hour", "datetime(us, UTC)", False)]

    def gen(context: AssetExecutionContext) -> pl.DataFrame:
        start = context.partition_time_window.start.astimezone(dt.UTC)
        return pl.DataFrame({"id": [1], "hour": [start]}, schema={"id": pl.Int64, "hour": pl.Datetime("us", "UTC")})

    t = Table(f"{unique_schema}.h", backend="delta", mode="replace_partitions", columns=cols, transform=gen,
              partitions=hourly, partition_column="hour")
    result = stores.mat([t], partition_key="2026-01-02-05:00", raise_on_error=False)
    failures = [str(e.event_specific_data.error) for e in result.all_events  # type: ignore[union-attr]
                if e.event_type_value == "STEP_FAILURE"]
    assert result.success, failures
    berlin_5am = dt.datetime(2026, 1, 2, 5, tzinfo=ZoneInfo("Europe/Berlin"))
    assert stores.delta_rows(f"{unique_schema}.h")["hour"].to_list() == [berlin_5am.astimezone(dt.UTC)]
