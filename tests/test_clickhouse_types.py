"""Loom <-> ClickHouse type mapping: parsing, rendering, and round trips of every type through
ClickHouseResource into the embedded engine, read back with a separate client."""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Iterator

import clickhouse_connect
import polars as pl
import pytest

from loom_resources import dtypes as t
from loom_resources.clickhouse import ClickHouseResource, _inplace
from loom_resources.clickhouse._types import from_clickhouse, storable, to_clickhouse
from loom_resources.dtypes import ColumnSchema
from loom_resources.errors import UnsupportedTypeError
from loom_resources.model import RunParams, SourceSpec, TableRef, TargetSpec
from loom_resources.polars_types import to_polars


@pytest.fixture
def resource(chdb_url: str) -> Iterator[ClickHouseResource]:
    res = ClickHouseResource(url=chdb_url)
    yield res
    res.close()


@pytest.fixture
def reader(chdb_url: str) -> Iterator[object]:
    client = clickhouse_connect.get_client(dsn=chdb_url)
    yield client
    client.close()


@pytest.mark.parametrize(
    ("column", "expected"),
    [
        (ColumnSchema("a", t.Int64(), False), "Int64"),
        (ColumnSchema("a", t.UInt64(), True), "Nullable(UInt64)"),
        (ColumnSchema("a", t.Date(), False), "Date32"),
        (ColumnSchema("a", t.Time(), False), "Time64(9)"),
        (ColumnSchema("a", t.Binary(), True), "Nullable(String)"),
        (ColumnSchema("a", t.Categorical(), True), "LowCardinality(Nullable(String))"),
        (ColumnSchema("a", t.Categorical(), False), "LowCardinality(String)"),
        (ColumnSchema("a", t.Datetime("ns", "Europe/Berlin"), False), "DateTime64(9, 'Europe/Berlin')"),
        (ColumnSchema("a", t.Datetime("ms"), True), "Nullable(DateTime64(3))"),
        (ColumnSchema("a", t.Decimal(38, 10), False), "Decimal(38, 10)"),
        (ColumnSchema("a", t.Enum(("x", "it's")), False), "Enum8('x' = 1, 'it\\'s' = 2)"),
        (ColumnSchema("a", t.Enum(tuple(f"c{i}" for i in range(200))), False), None),
        (ColumnSchema("a", t.List(t.Int32()), True), "Array(Nullable(Int32))"),
        (ColumnSchema("a", t.List(t.List(t.String())), False), "Array(Array(Nullable(String)))"),
        (
            ColumnSchema("a", t.Struct((t.Field("x y", t.Int32(), False), t.Field("b", t.String()))), True),
            "Tuple(`x y` Int32, b Nullable(String))",
        ),
    ],
)
def test_to_clickhouse_renders_exact_types(column: ColumnSchema, expected: str | None) -> None:
    rendered = to_clickhouse(column)
    if expected is None:  # over 127 categories needs Enum16
        assert rendered.startswith("Enum16(") and "'c199' = 200" in rendered
    else:
        assert rendered == expected


@pytest.mark.parametrize("dtype", [t.Duration("us"), t.Null()])
def test_unrepresentable_types_name_the_column(dtype: t.DataType) -> None:
    with pytest.raises(UnsupportedTypeError, match="elapsed"):
        to_clickhouse(ColumnSchema("elapsed", dtype))
    with pytest.raises(UnsupportedTypeError):
        storable(dtype)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("UInt64", (t.UInt64(), False)),
        ("Nullable(Int8)", (t.Int8(), True)),
        ("LowCardinality(Nullable(String))", (t.Categorical(), True)),
        ("LowCardinality(Int32)", (t.Int32(), False)),
        ("DateTime64(6, 'Asia/Tokyo')", (t.Datetime("us", "Asia/Tokyo"), False)),
        ("DateTime64(9)", (t.Datetime("ns"), False)),
        ("DateTime('UTC')", (t.Datetime("ms", "UTC"), False)),
        ("Date", (t.Date(), False)),
        ("Decimal(18, 2)", (t.Decimal(18, 2), False)),
        ("Decimal64(4)", (t.Decimal(18, 4), False)),
        ("Enum8('b' = 2, 'a\\'q' = 1)", (t.Enum(("a'q", "b")), False)),
        ("Array(Nullable(Float64))", (t.List(t.Float64()), False)),
        (
            "Tuple(`k k` String, v Nullable(DateTime64(3, 'UTC')))",
            (t.Struct((t.Field("k k", t.String(), False), t.Field("v", t.Datetime("ms", "UTC"), True))), False),
        ),
        ("Tuple(Int32, String)", (t.Struct((t.Field("1", t.Int32(), False), t.Field("2", t.String(), False))), False)),
        (
            "Map(String, Nullable(Int64))",
            (t.List(t.Struct((t.Field("key", t.String(), False), t.Field("value", t.Int64(), True)))), False),
        ),
        ("FixedString(16)", (t.Binary(), False)),
    ],
)
def test_from_clickhouse_parses_type_strings(text: str, expected: tuple[t.DataType, bool]) -> None:
    assert from_clickhouse(text) == expected


@pytest.mark.parametrize("text", ["Decimal(76, 2)", "Object('json')", "AggregateFunction(sum, Int64)", "Int256"])
def test_from_clickhouse_rejects_types_without_loom_equivalent(text: str) -> None:
    with pytest.raises(UnsupportedTypeError, match="no Loom equivalent|more than 38"):
        from_clickhouse(text)


UTC = dt.UTC
# name, Loom type, nullable, three values (the last one None where nullable)
CASES: list[tuple[str, t.DataType, bool, list[object]]] = [
    ("i8", t.Int8(), False, [-128, 0, 127]),
    ("i16", t.Int16(), True, [-32768, 32767, None]),
    ("i32", t.Int32(), False, [-(2**31), 0, 2**31 - 1]),
    ("i64", t.Int64(), True, [-(2**63), 2**63 - 1, None]),
    ("u8", t.UInt8(), False, [0, 1, 255]),
    ("u16", t.UInt16(), False, [0, 1, 65535]),
    ("u32", t.UInt32(), True, [0, 2**32 - 1, None]),
    ("u64", t.UInt64(), False, [0, 2**63, 2**64 - 1]),
    ("f32", t.Float32(), False, [1.5, -0.25, 3.0e38]),
    ("f64", t.Float64(), True, [1e-300, -2.5, None]),
    ("s", t.String(), True, ["it's \\ `x`", "ünïcødé", None]),
    ("bin", t.Binary(), True, [b"abc", b"", None]),
    ("b", t.Boolean(), True, [True, False, None]),
    ("d", t.Date(), False, [dt.date(1900, 1, 1), dt.date(2024, 2, 29), dt.date(2299, 12, 31)]),
    ("tm", t.Time(), True, [dt.time(0, 0), dt.time(23, 59, 59, 999999), None]),
    ("cat", t.Categorical(), True, ["a", "b", None]),
    ("en", t.Enum(("lo", "it's hi")), False, ["lo", "it's hi", "lo"]),
    ("dec", t.Decimal(38, 10), True, [decimal.Decimal("1234567890123456789012345678.0123456789"), decimal.Decimal("-0.5"), None]),
    ("dec2", t.Decimal(9, 2), False, [decimal.Decimal("1.25"), decimal.Decimal("-9999999.99"), decimal.Decimal("0")]),
    ("ts_ms", t.Datetime("ms"), False, [dt.datetime(1970, 1, 1), dt.datetime(2024, 3, 31, 2, 30, 0, 123000), dt.datetime(2100, 1, 1)]),
    ("ts_us", t.Datetime("us", "UTC"), True, [dt.datetime(2024, 1, 1, 12, 0, 0, 1, tzinfo=UTC), dt.datetime(1999, 12, 31, tzinfo=UTC), None]),
    ("ts_ns", t.Datetime("ns", "Europe/Berlin"), False, [
        dt.datetime(2024, 7, 1, 12, tzinfo=UTC), dt.datetime(2024, 1, 1, tzinfo=UTC), dt.datetime(2030, 5, 5, 5, 5, 5, tzinfo=UTC),
    ]),
    ("lst", t.List(t.Int64()), False, [[1, None, 3], [], [2**62]]),
    ("lst2", t.List(t.List(t.String())), False, [[["a", None], []], [], [["it's"]]]),
    ("st", t.Struct((t.Field("x", t.Int32()), t.Field("y y", t.String()))), False, [
        {"x": 1, "y y": "a"}, {"x": 2, "y y": None}, {"x": -3, "y y": "c"},
    ]),
    ("lst_st", t.List(t.Struct((t.Field("k", t.String()), t.Field("v", t.Float64())))), False, [
        [{"k": "a", "v": 1.0}], [], [{"k": "b", "v": None}, {"k": "c", "v": 2.5}],
    ]),
]


def _frame() -> pl.DataFrame:
    cols = {}
    for name, dtype, _, values in CASES:
        pl_type = to_polars(dtype)
        if isinstance(dtype, t.Datetime) and dtype.tz:
            cols[name] = pl.Series(name, values, pl.Datetime(dtype.unit, "UTC")).dt.convert_time_zone(dtype.tz)
        else:
            cols[name] = pl.Series(name, values, pl_type)
    return pl.DataFrame(cols)


@pytest.mark.parametrize("path", ["python-table-function", "arrow-stream"])
def test_every_type_round_trips_through_the_embedded_engine(
    resource: ClickHouseResource, reader: object, unique_schema: str, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both ways a batch reaches the embedded engine (loom_resources.clickhouse._inplace): read in
    place by ``Python()``, or sent as an Arrow IPC stream (small batches before pandas is loaded)."""
    monkeypatch.setattr(_inplace, "streams", lambda conn, rows: path == "arrow-stream")
    columns = tuple(ColumnSchema(n, d, nullable) for n, d, nullable, _ in CASES)
    ref = TableRef(unique_schema, "all_types")
    spec = TargetSpec(ref=ref, backend="clickhouse", columns=columns, mode="overwrite")
    frame = _frame()
    resource.write(frame, spec, RunParams())

    # schema: the exact ClickHouse types, and the Loom types they parse back to
    stored = dict(reader.query(  # type: ignore[attr-defined]
        f"SELECT name, type FROM system.columns WHERE database = '{unique_schema}' AND table = 'all_types' ORDER BY position"
    ).result_rows)
    assert list(stored) == [c.name for c in columns]
    for c in columns:
        assert stored[c.name] == to_clickhouse(c), c.name
        dtype, nullable = from_clickhouse(stored[c.name])
        assert dtype == storable(c.dtype), c.name
        assert nullable == (c.nullable and not isinstance(c.dtype, (t.List, t.Struct))), c.name

    # values read with a separate client, in the order written
    raw = reader.query_arrow(f"SELECT * FROM `{unique_schema}`.`all_types` ORDER BY i8")  # type: ignore[attr-defined]
    got = pl.from_arrow(raw)
    assert isinstance(got, pl.DataFrame)
    for name, dtype, _, values in CASES:
        col = got[name]
        if isinstance(dtype, t.Enum):
            continue  # Arrow output carries Enum codes; checked through the resource below
        if isinstance(dtype, t.Binary):
            assert col.to_list() == [v.decode() if v is not None else None for v in values], name  # type: ignore[attr-defined]
        elif isinstance(dtype, t.Datetime):
            expected = frame[name].dt.convert_time_zone("UTC").dt.replace_time_zone(None) if dtype.tz else frame[name]
            assert col.dt.convert_time_zone("UTC").dt.replace_time_zone(None).cast(expected.dtype).to_list() == expected.to_list(), name
        else:
            assert col.to_list() == frame[name].to_list(), name
    codes = reader.query(f"SELECT toString(en) FROM `{unique_schema}`.`all_types` ORDER BY i8").result_rows  # type: ignore[attr-defined]
    assert [r[0] for r in codes] == ["lo", "it's hi", "lo"]

    # and the resource reads every column back with its Loom type
    back = resource.read(SourceSpec(ref), RunParams()).collect().sort("i8")
    for name, dtype, _, _ in CASES:
        want = frame[name] if not isinstance(dtype, t.Binary) else frame[name].cast(pl.String)
        assert back[name].dtype == want.dtype, name
        assert back[name].to_list() == want.to_list(), name


def test_storable_describes_what_reads_back() -> None:
    assert storable(t.Binary()) == t.String()
    assert storable(t.List(t.Binary())) == t.List(t.String())
    assert storable(t.UInt64()) == t.UInt64()
    assert storable(t.Datetime("ns", "UTC")) == t.Datetime("ns", "UTC")
