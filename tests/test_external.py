"""External tables: written outside the platform (deltalake directly, a raw ClickHouse client),
observed as source assets, checked before runs read them, and read by declared tables."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest
from deltalake import DeltaTable, write_deltalake

from loom_assets import ExternalTable, Source, Table, build_definitions
from loom_resources import ColumnSchema as C
from loom_resources import SpecError, TableRef
from loom_resources.clickhouse import ClickHouseResource
from loom_resources.delta import DeltaResource

DAILY = dg.DailyPartitionsDefinition(start_date="2026-11-01", end_offset=0)
EVENTS = [C("event_id", "int64", False), C("day", "date", False), C("kind", "string", True)]


class Platform:
    """A Delta root and the session's ClickHouse path, and definitions built over them."""

    def __init__(self, root: Path, chdb_url: str) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.delta = DeltaResource(root=str(root))
        self.ch = ClickHouseResource(url=chdb_url)

    def defs(self, tables: list[Any]) -> dg.Definitions:
        return build_definitions(tables, backends={"delta": self.delta, "clickhouse": self.ch})

    def land(self, ref: str, df: pl.DataFrame, **kw: Any) -> None:
        """Write a Delta table as another engine would: with deltalake, outside Loom."""
        write_deltalake(self.delta.table_uri(TableRef.parse(ref)), df.to_arrow(), **kw)

    def rows(self, ref: str) -> pl.DataFrame:
        df: pl.DataFrame = pl.from_arrow(DeltaTable(self.delta.table_uri(TableRef.parse(ref))).to_pyarrow_table())  # type: ignore[assignment]
        return df.sort(df.columns)


@pytest.fixture
def platform(tmp_path: Path, chdb_url: str) -> Any:
    p = Platform(tmp_path / "delta", chdb_url)
    yield p
    p.ch.close()


def events(days: list[dt.date], per_day: int = 3) -> pl.DataFrame:
    rows = [(i * 100 + j, d, "click") for i, d in enumerate(days) for j in range(per_day)]
    return pl.DataFrame(rows, schema={"event_id": pl.Int64, "day": pl.Date, "kind": pl.String}, orient="row")


def materialize(defs: dg.Definitions, keys: list[dg.AssetKey], **kw: Any) -> dg.ExecuteInProcessResult:
    job = defs.get_implicit_global_asset_job_def()
    return job.execute_in_process(asset_selection=keys, resources=None, raise_on_error=False, **kw)


def test_declared_table_reads_an_external_delta_table_sliced_to_its_day(platform: Platform, unique_schema: str) -> None:
    s = unique_schema
    platform.land(f"{s}.events", events([dt.date(2026, 11, d) for d in (1, 2, 3)]))
    ext = ExternalTable(f"{s}.events", "delta", columns=EVENTS, partition_column="day")
    daily = Table(f"{s}.daily", "delta", [C("day", "date", False), C("n", "int64", False)], sources=[f"{s}.events"],
                  sql="SELECT day, count(*) AS n FROM events GROUP BY day", mode="replace_partitions",
                  partitions=DAILY, partition_column="day")
    defs = platform.defs([ext, daily])
    result = materialize(defs, [daily.asset_key], partition_key="2026-11-02")
    assert result.success
    assert platform.rows(f"{s}.daily").rows() == [(dt.date(2026, 11, 2), 3)]


def test_observation_reports_version_rows_schema_and_changes_with_the_table(platform: Platform, unique_schema: str) -> None:
    s = unique_schema
    platform.land(f"{s}.events", events([dt.date(2026, 11, 1)]))
    ext = ExternalTable(f"{s}.events", "delta", columns=EVENTS)
    defs = platform.defs([ext])
    job = defs.resolve_job_def("loom_observe_external")
    first = job.execute_in_process()
    obs = [e.asset_observation_data.asset_observation for e in first.all_events if e.event_type_value == "ASSET_OBSERVATION"]
    assert len(obs) == 1
    md = obs[0].metadata
    assert md["dagster/row_count"].value == 3 and obs[0].tags["dagster/data_version"] == "0"
    assert [c.name for c in md["dagster/column_schema"].value.columns] == ["event_id", "day", "kind"]
    platform.land(f"{s}.events", events([dt.date(2026, 11, 2)], per_day=2), mode="append")
    second = job.execute_in_process()
    obs2 = [e.asset_observation_data.asset_observation for e in second.all_events if e.event_type_value == "ASSET_OBSERVATION"]
    assert obs2[0].tags["dagster/data_version"] == "1" and obs2[0].metadata["dagster/row_count"].value == 5


def test_missing_table_or_column_fails_before_the_body_runs(platform: Platform, unique_schema: str) -> None:
    s = unique_schema
    ran: list[bool] = []

    def body(context: Any, events: pl.LazyFrame) -> pl.LazyFrame:
        ran.append(True)
        return events.select("event_id")

    ext = ExternalTable(f"{s}.events", "delta", columns=EVENTS)
    t = Table(f"{s}.ids", "delta", [C("event_id", "int64", False)], sources=[f"{s}.events"], transform=body)
    missing = materialize(platform.defs([ext, t]), [t.asset_key])
    assert not missing.success and not ran
    assert f"{s}.events does not exist" in str(missing.all_events)
    platform.land(f"{s}.events", events([dt.date(2026, 11, 1)]).drop("kind").with_columns(pl.lit(1).alias("other")))
    retyped = materialize(platform.defs([ext, t]), [t.asset_key])
    assert not retyped.success and not ran
    assert "declared column 'kind'" in str(retyped.all_events) and f"{s}.events" in str(retyped.all_events)
    assert not platform.delta.exists(TableRef.parse(f"{s}.ids"))


def test_drift_check_warns_and_discovered_clickhouse_source_is_read_inside_clickhouse(
    platform: Platform, unique_schema: str
) -> None:
    s = unique_schema
    platform.ch.command(f"CREATE DATABASE {s}")
    platform.ch.command(f"CREATE TABLE {s}.feed (id Int64, amount Float64) ENGINE = MergeTree ORDER BY id")
    platform.ch.command(f"INSERT INTO {s}.feed VALUES (1, 1.5), (2, 2.5)")
    ext = ExternalTable(f"{s}.feed", "clickhouse")  # columns discovered
    total = Table(f"{s}.total", "clickhouse", [C("total", "float64", True)], sources=[f"{s}.feed"],
                  sql="SELECT sum(amount) AS total FROM feed", mode="overwrite")
    defs = platform.defs([ext, total])
    result = materialize(defs, [total.asset_key])
    assert result.success
    assert platform.ch.query_rows(f"SELECT total FROM {s}.total") == [(4.0,)]
    md = result.asset_materializations_for_node(f"{s}__total")[0].metadata
    assert md["loom/sql_engine"].value == "clickhouse"
    obs = defs.resolve_job_def("loom_observe_external").execute_in_process()
    before = [e.asset_observation_data.asset_observation for e in obs.all_events if e.event_type_value == "ASSET_OBSERVATION"]
    platform.ch.command(f"INSERT INTO {s}.feed VALUES (3, 1.0)")
    obs = defs.resolve_job_def("loom_observe_external").execute_in_process()
    after = [e.asset_observation_data.asset_observation for e in obs.all_events if e.event_type_value == "ASSET_OBSERVATION"]
    assert before[0].tags["dagster/data_version"] != after[0].tags["dagster/data_version"]
    assert after[0].metadata["dagster/row_count"].value == 3
    # a declared external table whose column changed type: the drift check warns, it does not block
    declared = ExternalTable(f"{s}.feed", "clickhouse", columns=[C("id", "int64", False), C("amount", "float32", False)])
    check_job = dg.define_asset_job("drift", selection=dg.AssetSelection.checks(
        dg.AssetCheckKey(declared.asset_key, "schema_matches_declaration")))
    checked = dg.Definitions.merge(platform.defs([declared]), dg.Definitions(jobs=[check_job])).resolve_job_def(
        "drift").execute_in_process()
    evals = [e.event_specific_data for e in checked.all_events  # type: ignore[union-attr]
             if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    assert len(evals) == 1 and not evals[0].passed and evals[0].severity == dg.AssetCheckSeverity.WARN


def test_external_declaration_mistakes_are_named() -> None:
    with pytest.raises(SpecError, match="partition column 'day'"):
        ExternalTable("landing.events", "delta", columns=[C("id", "int64")], partition_column="day")
    with pytest.raises(ValueError, match="invalid"):
        ExternalTable("landing", "delta")
    with pytest.raises(SpecError, match="source landing.other is not a declared table"):
        build_definitions([ExternalTable("landing.events", "delta"),
                           Table("a.b", "delta", [C("x", "int64")], sources=[Source("landing.other")], sql="SELECT 1 AS x FROM other")])


def test_external_tables_are_described_in_the_ui(platform: Platform, unique_schema: str, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Kind badges, a Columns section for a discovered table once observed (the UI draws it from
    the definition, not from observations), and descriptions of the observation job and schedule."""
    monkeypatch.setenv("LOOM_HOME", str(tmp_path / "home"))
    s = unique_schema
    platform.ch.command(f"CREATE DATABASE {s}")
    platform.ch.command(f"CREATE TABLE {s}.rates (currency String, rate Float64) ENGINE = MergeTree ORDER BY currency")
    platform.ch.command(f"INSERT INTO {s}.rates VALUES ('EUR', 1.0)")
    landed = ExternalTable(f"{s}.landed", "delta", columns=EVENTS, observe_cron="0 * * * *")
    rates = ExternalTable(f"{s}.rates", "clickhouse")  # columns discovered
    defs = platform.defs([landed, rates])
    graph = defs.resolve_asset_graph()
    assert graph.get(landed.asset_key).kinds == {"delta"} and graph.get(rates.asset_key).kinds == {"clickhouse"}
    assert "dagster/column_schema" not in graph.get(rates.asset_key).metadata  # not observed yet
    observed = materialize(defs, [rates.asset_key])
    assert observed.success
    # the next load shows the columns the observation found in the store
    schema = platform.defs([landed, rates]).resolve_asset_graph().get(rates.asset_key).metadata["dagster/column_schema"]
    assert [(c.name, c.type) for c in schema.columns] == [("currency", "string"), ("rate", "float64")]
    job = defs.resolve_job_def("loom_observe_external")
    assert job.description and f"{s}.landed" in job.description and f"{s}.rates" in job.description
    schedules = {sd.name: sd for sd in defs.schedules or []}  # type: ignore[union-attr]
    assert schedules["loom_observe_external_0"].description and f"{s}.landed" in schedules["loom_observe_external_0"].description
    from sample_platform.definitions import defs as sample

    for sd in sample.schedules or []:  # type: ignore[union-attr]
        assert sd.description, sd.name  # type: ignore[union-attr]
    assert sample.resolve_job_def("loom_observe_external").description
