"""What the IO manager needs travels on the asset definition (:mod:`loom_resources.binding`), and
the one translation of Dagster contexts into RunParams (:mod:`loom_resources.run_params`),
checked against real Dagster contexts: directly invoked assets and real materializations."""


import datetime as dt
from typing import Any

import dagster as dg
import pytest
from dagster import AssetExecutionContext

from loom_resources import ColumnSchema, RunParams, SourceSpec, SpecError, TargetSpec, col, param
from loom_resources.binding import (
    INPUT_METADATA,
    PARTITION_COLUMNS_METADATA,
    AssetBinding,
    InputBinding,
    asset_binding,
    attach_binding,
    input_binding,
    source_binding,
)
from loom_resources.run_params import run_params, run_params_for

DAILY = dg.DailyPartitionsDefinition(start_date="2024-01-01", end_offset=1)
REGIONS = dg.StaticPartitionsDefinition(["eu", "us"])
MULTI = dg.MultiPartitionsDefinition({"date": DAILY, "region": REGIONS})
UTC = dt.UTC
TARGET = TargetSpec("s.t", "delta", (ColumnSchema("d", "date", False), ColumnSchema("r", "string", False)),
                    mode="replace_partitions", partition_by=("d",))


# -- binding metadata ---------------------------------------------------------------------------

def test_partition_columns_round_trip_through_the_metadata_the_ui_shows() -> None:
    """An upstream outside the run is read from its visible definition metadata and kinds."""
    key = dg.AssetKey(["s", "t"])
    schema = dg.TableSchema([dg.TableColumn("d", "date"), dg.TableColumn("r", "string"), dg.TableColumn("x", "int64")])
    for cols, shown in (({"": "d"}, "d"), ({"date": "d", "region": "r"}, "date=d, region=r"), ({}, None)):
        md = AssetBinding(TARGET, cols).metadata()
        assert md.get(PARTITION_COLUMNS_METADATA) == shown
        full = {"dagster/table_name": "s.t", "dagster/column_schema": dg.MetadataValue.table_schema(schema), **md}
        assert source_binding(full, {"delta", "polars"}, key) == AssetBinding(TARGET, cols).source()
    with pytest.raises(SpecError, match="s/t"):
        source_binding({"dagster/table_name": "s.t"}, {"polars"}, key)


def test_input_binding_round_trips_through_metadata() -> None:
    ib = InputBinding(SourceSpec("s.up", ("d",), col("d").ge(param("partition_start_date"))), streaming=True,
                      relation=False, consumer_partition_columns={"date": "d", "region": "r"})
    md = ib.metadata()
    assert list(md) == [INPUT_METADATA]
    assert input_binding(md) == ib
    assert input_binding({INPUT_METADATA: dg.MetadataValue.text(md[INPUT_METADATA])}) == ib
    assert input_binding(None) is None and input_binding({"other": 1}) is None


def test_asset_without_binding_is_named() -> None:
    @dg.asset(key=["raw", "not_loom"], metadata={"dagster/table_name": "x"})
    def plain() -> None:
        return None

    with pytest.raises(SpecError) as ei:
        asset_binding(plain.op, dg.AssetKey(["raw", "not_loom"]))
    assert "raw/not_loom" in str(ei.value) and "not a declared Loom table" in str(ei.value)
    with pytest.raises(SpecError, match="raw/none"):
        asset_binding(None, dg.AssetKey(["raw", "none"]))


def test_binding_on_a_real_asset_definition() -> None:
    b = AssetBinding(TARGET, {"": "d"})

    def body() -> None:
        return None

    t = dg.asset(key=["s", "t"])(attach_binding(body, b))
    assert asset_binding(t.op, t.key) == b
    assert not [k for k in t.metadata_by_key[t.key] if k.startswith("loom/")] and not t.op.tags  # nothing shown


# -- run_params_for ------------------------------------------------------------------------------

def test_run_params_for() -> None:
    w = dg.TimeWindow(dt.datetime(2024, 1, 2, tzinfo=UTC), dt.datetime(2024, 1, 4, tzinfo=UTC))
    p = run_params_for(["2024-01-02", "2024-01-03"], w, {"": "d"}, {"x": 1})
    assert p == RunParams(partition_keys=("2024-01-02", "2024-01-03"),
                          partitions=({"d": "2024-01-02"}, {"d": "2024-01-03"}),
                          window_start=w.start, window_end=w.end, values={"x": 1})
    assert run_params_for(["a"], None, {}) == RunParams(partition_keys=("a",))
    mk = dg.MultiPartitionKey({"date": "2024-01-02", "region": "eu"})
    p = run_params_for([mk], None, {"date": "d", "region": "r"})
    assert p.partitions == ({"d": "2024-01-02", "r": "eu"},)
    assert p.partition_keys == (str(mk),)
    # a dimension the table does not map is ignored
    assert run_params_for([mk], None, {"region": "r"}).partitions == ({"r": "eu"},)


# -- directly invoked assets ---------------------------------------------------------------------

def _invoke(partitions_def: dg.PartitionsDefinition | None, columns: dict[str, str], **ctx_kw: Any) -> RunParams:
    seen: dict[str, RunParams] = {}

    @dg.asset(partitions_def=partitions_def)
    def a(context: AssetExecutionContext) -> None:
        seen["p"] = run_params(context, columns)

    a(dg.build_asset_context(**ctx_kw))
    return seen["p"]


def test_build_asset_context_with_partition_key() -> None:
    p = _invoke(DAILY, {"": "d"}, partition_key="2024-01-02")
    assert p.partition_keys == ("2024-01-02",)
    assert p.partitions == ({"d": "2024-01-02"},)
    assert (p.window_start, p.window_end) == (dt.datetime(2024, 1, 2, tzinfo=UTC), dt.datetime(2024, 1, 3, tzinfo=UTC))
    assert p.bindings()["partition_start_date"] == dt.date(2024, 1, 2)


def test_build_asset_context_with_partition_key_range() -> None:
    p = _invoke(DAILY, {"": "d"}, partition_key_range=dg.PartitionKeyRange("2024-01-02", "2024-01-04"))
    assert p.partition_keys == ("2024-01-02", "2024-01-03", "2024-01-04")
    assert [dict(x) for x in p.partitions] == [{"d": "2024-01-02"}, {"d": "2024-01-03"}, {"d": "2024-01-04"}]
    # the window of a range is checked on real runs (test_range_backfill_materialization): a directly
    # invoked context's partition_time_window raises inside Dagster for ranges


def test_static_partitions_have_no_window() -> None:
    p = _invoke(REGIONS, {"": "r"}, partition_key="eu")
    assert p == RunParams(partition_keys=("eu",), partitions=({"r": "eu"},))


def test_unpartitioned_context() -> None:
    assert _invoke(None, {}) == RunParams()


# -- real materializations: body, output and input contexts agree ---------------------------------------

class _Capture(dg.ConfigurableIOManager):
    """Records run_params of every Output/InputContext (and the step context of inputs)."""

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        SEEN.setdefault("out", []).append(run_params(context, COLUMNS[context.asset_key.path[-1]]))

    def load_input(self, context: dg.InputContext) -> Any:
        SEEN.setdefault("in", []).append(run_params(context, COLUMNS[context.asset_key.path[-1]]))
        assert context.step_context is not None
        SEEN.setdefault("step", []).append(run_params(context.step_context, COLUMNS["down"]))
        return 1


SEEN: dict[str, list[RunParams]] = {}
COLUMNS = {"up": {"": "d"}, "down": {"": "day"}, "m": {"date": "d", "region": "r"}}


@dg.asset(partitions_def=DAILY, backfill_policy=dg.BackfillPolicy.single_run())
def up(context: AssetExecutionContext) -> int:
    SEEN.setdefault("body", []).append(run_params(context, COLUMNS["up"]))
    return 1


@dg.asset(partitions_def=DAILY, backfill_policy=dg.BackfillPolicy.single_run())
def down(context: AssetExecutionContext, up: int) -> int:
    SEEN.setdefault("body", []).append(run_params(context, COLUMNS["down"]))
    return up


@dg.asset(partitions_def=MULTI)
def m(context: AssetExecutionContext) -> int:
    SEEN.setdefault("body", []).append(run_params(context, COLUMNS["m"]))
    return 1


@pytest.fixture(autouse=True)
def _clear() -> None:
    SEEN.clear()


def test_single_partition_materialization() -> None:
    res = dg.materialize([up, down], partition_key="2024-01-03", resources={"io_manager": _Capture()},
                         instance=dg.DagsterInstance.ephemeral())
    assert res.success
    day = (dt.datetime(2024, 1, 3, tzinfo=UTC), dt.datetime(2024, 1, 4, tzinfo=UTC))
    for kind in ("body", "out"):
        up_p, down_p = SEEN[kind]
        assert up_p.partitions == ({"d": "2024-01-03"},) and down_p.partitions == ({"day": "2024-01-03"},)
        assert (up_p.window_start, up_p.window_end) == day == (down_p.window_start, down_p.window_end)
    (inp,) = SEEN["in"]
    assert inp.partitions == ({"d": "2024-01-03"},) and (inp.window_start, inp.window_end) == day
    (step,) = SEEN["step"]
    assert step.partitions == ({"day": "2024-01-03"},) and (step.window_start, step.window_end) == day


def test_range_backfill_materialization() -> None:
    tags = {"dagster/asset_partition_range_start": "2024-01-02", "dagster/asset_partition_range_end": "2024-01-04"}
    res = dg.materialize([up, down], tags=tags, resources={"io_manager": _Capture()},
                         instance=dg.DagsterInstance.ephemeral())
    assert res.success
    keys = ("2024-01-02", "2024-01-03", "2024-01-04")
    window = (dt.datetime(2024, 1, 2, tzinfo=UTC), dt.datetime(2024, 1, 5, tzinfo=UTC))
    for p in SEEN["body"] + SEEN["out"] + SEEN["in"] + SEEN["step"]:
        assert p.partition_keys == keys
        assert (p.window_start, p.window_end) == window
    assert [dict(x) for x in SEEN["step"][0].partitions] == [{"day": k} for k in keys]
    assert [dict(x) for x in SEEN["in"][0].partitions] == [{"d": k} for k in keys]


def test_multi_partition_materialization() -> None:
    key = dg.MultiPartitionKey({"date": "2024-01-02", "region": "us"})
    res = dg.materialize([m], partition_key=key, resources={"io_manager": _Capture()},
                         instance=dg.DagsterInstance.ephemeral())
    assert res.success
    for p in SEEN["body"] + SEEN["out"]:
        assert p.partitions == ({"d": "2024-01-02", "r": "us"},)
        assert p.partition_keys == (str(key),)


def test_unpartitioned_materialization() -> None:
    @dg.asset
    def plain(context: AssetExecutionContext) -> int:
        SEEN.setdefault("body", []).append(run_params(context, {}))
        return 1

    COLUMNS["plain"] = {}
    assert dg.materialize([plain], resources={"io_manager": _Capture()}, instance=dg.DagsterInstance.ephemeral()).success
    assert SEEN["body"] == SEEN["out"] == [RunParams()]
