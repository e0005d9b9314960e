"""Loss-free JSON of the table model (:mod:`loom_resources.codec`): what travels on an asset
definition must come back equal, with the same Python types, and nothing else may be built."""

from __future__ import annotations

import datetime as dt
import decimal
import json
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sample_platform.platform import TABLES as ALL_TABLES

from loom_assets import Table
from loom_resources import (
    Backend,
    ClickHouseTableOptions,
    ColumnSchema,
    HistoryOptions,
    SchemaMode,
    SourceSpec,
    TableRef,
    TargetSpec,
    WriteMode,
    codec,
    col,
    param,
)
from loom_resources.binding import AssetBinding, InputBinding
from loom_resources.dtypes import Decimal, Enum, Field, List, Struct
from loom_resources.predicates import And, Compare, In, IsNull, Not, Or, Param

TABLES = [t for t in ALL_TABLES if isinstance(t, Table)]

def roundtrip(obj: Any) -> Any:
    text = codec.dumps(obj)
    json.loads(text)  # plain JSON
    return codec.loads(text)


@pytest.mark.parametrize("table", TABLES, ids=[str(t.ref) for t in TABLES])
def test_every_sample_platform_spec_round_trips(table: Any) -> None:
    spec = table.target
    back = roundtrip(spec)
    assert back == spec
    assert type(back.ref) is TableRef and back.backend is spec.backend and back.mode is spec.mode
    assert back.stored_columns() == spec.stored_columns()
    binding = AssetBinding(spec, table.partition_columns)
    assert roundtrip(binding) == binding


def test_every_sample_platform_input_binding_round_trips() -> None:
    n = 0
    for t in TABLES:
        for s in t.sources:
            ib = InputBinding(SourceSpec(s.ref, s.columns, s.predicate), streaming=s.streaming,
                              consumer_partition_columns=t.partition_columns)
            assert roundtrip(ib) == ib
            n += 1
    assert n > 0


BERLIN = dt.datetime(2024, 3, 31, 1, 30, tzinfo=ZoneInfo("Europe/Berlin"))
OFFSET = dt.datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=dt.timezone(dt.timedelta(hours=-5, minutes=-30)))

PREDICATES = {
    "dates": col("d").window(dt.date(2024, 1, 1), dt.date(2024, 2, 1)),
    "naive_datetime": col("ts").ge(dt.datetime(2024, 1, 2, 3, 4, 5, 6)),
    "utc_datetime": col("ts").lt(dt.datetime(2024, 1, 2, tzinfo=dt.UTC)),
    "offset_datetime": col("ts").eq(OFFSET),
    "zoneinfo_datetime": col("ts").eq(BERLIN),
    "decimal": col("amount").gt(decimal.Decimal("10.50")),
    "bytes": col("b").eq(b"\x00\xffab"),
    "tuple_in": col("s").is_in(("a", "o'b", "")),
    "mixed_in": In("x", (1, 2.5, None, True, "z")),
    "param": col("d").between(param("partition_start_date"), param("partition_end_date")),
    "param_in": In("s", Param("partition_keys")),
    "nested": Not(Or((And((IsNull("a"), IsNull("b", negate=True))), Compare("c", "!=", -1)))),
    "empty": And(()) | Or(()),
    "time_and_timedelta": In("t", (dt.time(1, 2, 3, 4), dt.timedelta(days=-1, seconds=5, microseconds=7))),
}


@pytest.mark.parametrize("name", list(PREDICATES))
def test_predicates_round_trip_with_their_python_types(name: str) -> None:
    pred = PREDICATES[name]
    back = roundtrip(pred)
    assert back == pred

    def values(p: Any) -> list[Any]:
        if isinstance(p, Compare):
            return [p.value]
        if isinstance(p, In):
            return [p.values] if isinstance(p.values, Param) else list(p.values)
        if isinstance(p, (And, Or)):
            return [v for q in p.parts for v in values(q)]
        if isinstance(p, Not):
            return values(p.part)
        return []

    for a, b in zip(values(pred), values(back), strict=True):
        assert type(a) is type(b), (a, b)
        if isinstance(a, dt.datetime):
            assert (a.tzinfo is None) == (b.tzinfo is None)
            assert a.utcoffset() == b.utcoffset()
        if isinstance(a, decimal.Decimal):
            assert str(a) == str(b)  # scale kept: 10.50, not 10.5


def test_hand_built_spec_with_everything_round_trips() -> None:
    spec = TargetSpec(
        ref=TableRef("s", "t"), backend=Backend.CLICKHOUSE,
        columns=(
            ColumnSchema("id", "int64", False), ColumnSchema("d", "date", False),
            ColumnSchema("amount", Decimal(18, 4)), ColumnSchema("tags", List(Decimal(9, 2))),
            ColumnSchema("kind", Enum(("a", "b"))), ColumnSchema("st", Struct((Field("x", Decimal(5, 1)),))),
            ColumnSchema("ts", "datetime(us, Europe/Berlin)"),
        ),
        mode=WriteMode.REPLACE_WHERE, schema_mode=SchemaMode.EVOLVE,
        replace_predicate=(col("d").window(param("partition_start_date"), dt.date(2025, 1, 1))
                           & col("amount").ge(decimal.Decimal("-0.0001")) & col("ts").lt(BERLIN)),
        audit_columns=True, streaming=False,
        clickhouse=ClickHouseTableOptions(engine="ReplacingMergeTree(id)", order_by=("id", "d"), ttl="d + INTERVAL 1 YEAR"),
    )
    assert roundtrip(spec) == spec
    hist = TargetSpec("s.h", "delta", (ColumnSchema("k", "string", False), ColumnSchema("v", "int32")), mode="history",
                      merge_keys=("k",), history=HistoryOptions(tracked_columns=("v",), delete_policy="soft_delete",
                                                                input="changelog"))
    back = roundtrip(hist)
    assert back == hist and back.history_columns() == hist.history_columns()


def test_mappings_and_lists() -> None:
    obj = AssetBinding(TargetSpec("s.t", "delta", (ColumnSchema("d", "date", False),)), {"date": "d", "": "d"})
    back = roundtrip(obj)
    assert back == obj and dict(back.partition_columns) == {"date": "d", "": "d"}
    assert codec.decode(codec.encode([1, (2, 3), {"k": b"v"}])) == [1, (2, 3), {"k": b"v"}]


def test_values_outside_the_model_are_refused_when_encoding() -> None:
    with pytest.raises(TypeError, match="set"):
        codec.dumps({1, 2})

    class Foreign:
        pass

    with pytest.raises(TypeError, match="Foreign"):
        codec.dumps(Foreign())
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class NotLoom:
        x: int = 1

    with pytest.raises(TypeError, match="not a loom_resources class"):
        codec.dumps(NotLoom())


@pytest.mark.parametrize(
    "payload",
    [
        {"$dc": "builtins:dict", "f": {}},
        {"$dc": "os:PathLike", "f": {}},
        {"$enum": "subprocess:Popen", "v": "true"},
        {"$dc": "loom_resourcesX.evil:Thing", "f": {}},
    ],
)
def test_refuses_to_decode_a_class_outside_loom_resources(payload: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="refusing to decode"):
        codec.decode(payload)


@pytest.mark.parametrize(
    "payload",
    [
        # callables that are not loom_resources classes, reached through a loom_resources module's imports
        {"$dc": "loom_resources.codec:importlib.import_module", "f": {"name": "json"}},
        {"$enum": "loom_resources.codec:importlib.import_module", "v": "json"},
        {"$enum": "loom_resources.codec:json.loads", "v": "[1]"},
        {"$dc": "loom_resources.codec:decode", "f": {"data": 1}},
    ],
    ids=["dc_import_module", "enum_import_module", "enum_json_loads", "dc_module_function"],
)
def test_refuses_to_call_anything_but_a_loom_resources_model_class(payload: dict[str, Any]) -> None:
    """Only classes *defined* in loom_resources may be built; a name that merely starts in a
    loom_resources module must not reach a function it imports (``os.system`` is as close)."""
    with pytest.raises(ValueError, match="refusing to decode"):
        codec.decode(payload)


def test_unknown_tag() -> None:
    with pytest.raises(ValueError, match=r"\$pickle"):
        codec.decode({"$pickle": "x"})
