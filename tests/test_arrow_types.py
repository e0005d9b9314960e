"""Mapping between Loom types and Arrow types, on declarations and on real data."""

from __future__ import annotations

import datetime as dt
import decimal

import polars as pl
import pyarrow as pa
import pytest

from loom_resources import dtypes as t
from loom_resources.arrow_types import arrow_schema, from_arrow, schema_from_arrow, to_arrow
from loom_resources.dtypes import ColumnSchema
from loom_resources.errors import UnsupportedTypeError
from loom_resources.polars_types import polars_schema, schema_from_polars

MAPPING: list[tuple[t.DataType, pa.DataType]] = [
    (t.Int8(), pa.int8()),
    (t.Int16(), pa.int16()),
    (t.Int32(), pa.int32()),
    (t.Int64(), pa.int64()),
    (t.UInt8(), pa.uint8()),
    (t.UInt16(), pa.uint16()),
    (t.UInt32(), pa.uint32()),
    (t.UInt64(), pa.uint64()),
    (t.Float32(), pa.float32()),
    (t.Float64(), pa.float64()),
    (t.String(), pa.large_string()),
    (t.Binary(), pa.large_binary()),
    (t.Boolean(), pa.bool_()),
    (t.Date(), pa.date32()),
    (t.Time(), pa.time64("ns")),
    (t.Null(), pa.null()),
    (t.Decimal(18, 2), pa.decimal128(18, 2)),
    (t.Decimal(38, 0), pa.decimal128(38, 0)),
    (t.Datetime("ms"), pa.timestamp("ms")),
    (t.Datetime("us"), pa.timestamp("us")),
    (t.Datetime("ns", "UTC"), pa.timestamp("ns", "UTC")),
    (t.Datetime("us", "Europe/Berlin"), pa.timestamp("us", "Europe/Berlin")),
    (t.Duration("ms"), pa.duration("ms")),
    (t.Duration("us"), pa.duration("us")),
    (t.Duration("ns"), pa.duration("ns")),
    (t.List(t.Int64()), pa.large_list(pa.int64())),
    (t.List(t.List(t.String())), pa.large_list(pa.large_list(pa.large_string()))),
    (
        t.Struct((t.Field("a", t.Int32(), nullable=False), t.Field("b", t.String()))),
        pa.struct([pa.field("a", pa.int32(), nullable=False), pa.field("b", pa.large_string())]),
    ),
    (t.Categorical(), pa.dictionary(pa.uint32(), pa.large_string())),
]


@pytest.mark.parametrize(("loom", "arrow"), MAPPING, ids=lambda d: str(d))
def test_to_arrow(loom: t.DataType, arrow: pa.DataType) -> None:
    assert to_arrow(loom) == arrow


@pytest.mark.parametrize(("loom", "arrow"), MAPPING, ids=lambda d: str(d))
def test_from_arrow(loom: t.DataType, arrow: pa.DataType) -> None:
    assert from_arrow(arrow) == loom


@pytest.mark.parametrize(("loom", "arrow"), MAPPING, ids=lambda d: str(d))
def test_round_trip(loom: t.DataType, arrow: pa.DataType) -> None:
    assert from_arrow(to_arrow(loom)) == loom


def test_struct_nullability_round_trips_in_arrow() -> None:
    st = t.Struct((t.Field("id", t.Int64(), nullable=False), t.Field("v", t.Float64(), nullable=True)))
    arrow = to_arrow(st)
    assert [f.nullable for f in arrow] == [False, True]
    assert from_arrow(arrow) == st


def test_enum_maps_to_dictionary_and_back_to_categorical() -> None:
    # Documented: Categorical and Enum share the Arrow dictionary type, so Enum comes back
    # from Arrow as Categorical (the category list is not part of the Arrow type).
    enum = t.Enum(("a", "b"))
    assert to_arrow(enum) == to_arrow(t.Categorical())
    assert from_arrow(to_arrow(enum)) == t.Categorical()
    assert from_arrow(pa.dictionary(pa.uint8(), pa.large_string(), ordered=True)) == t.Categorical()


@pytest.mark.parametrize(
    ("arrow", "loom"),
    [
        (pa.string(), t.String()),
        (pa.string_view(), t.String()),
        (pa.binary(), t.Binary()),
        (pa.binary_view(), t.Binary()),
        (pa.binary(4), t.Binary()),
        (pa.time32("ms"), t.Time()),
        (pa.time64("us"), t.Time()),
        (pa.date64(), t.Date()),
        (pa.timestamp("s"), t.Datetime("ms")),
        (pa.timestamp("s", "UTC"), t.Datetime("ms", "UTC")),
        (pa.duration("s"), t.Duration("ms")),
        (pa.list_(pa.int32()), t.List(t.Int32())),
        (pa.list_(pa.int32(), 3), t.List(t.Int32())),
        (pa.list_view(pa.string()), t.List(t.String())),
        (pa.decimal128(5, 1), t.Decimal(5, 1)),
    ],
    ids=str,
)
def test_from_arrow_other_variants(arrow: pa.DataType, loom: t.DataType) -> None:
    assert from_arrow(arrow) == loom


def test_unsupported() -> None:
    with pytest.raises(UnsupportedTypeError, match="map"):
        from_arrow(pa.map_(pa.string(), pa.int64()))

    class Weird(t.DataType):
        pass

    with pytest.raises(UnsupportedTypeError, match="no Arrow type"):
        to_arrow(Weird())


DECLARED: tuple[ColumnSchema, ...] = (
    ColumnSchema("i8", t.Int8()),
    ColumnSchema("i16", t.Int16()),
    ColumnSchema("i32", t.Int32()),
    ColumnSchema("i64", t.Int64()),
    ColumnSchema("u8", t.UInt8()),
    ColumnSchema("u16", t.UInt16()),
    ColumnSchema("u32", t.UInt32()),
    ColumnSchema("u64", t.UInt64()),
    ColumnSchema("f32", t.Float32()),
    ColumnSchema("f64", t.Float64()),
    ColumnSchema("dec", t.Decimal(10, 3)),
    ColumnSchema("s", t.String()),
    ColumnSchema("bin", t.Binary()),
    ColumnSchema("b", t.Boolean()),
    ColumnSchema("d", t.Date()),
    ColumnSchema("ts", t.Datetime("us")),
    ColumnSchema("ts_ns_utc", t.Datetime("ns", "UTC")),
    ColumnSchema("ts_ms_ny", t.Datetime("ms", "America/New_York")),
    ColumnSchema("dur", t.Duration("us")),
    ColumnSchema("tm", t.Time()),
    ColumnSchema("lst", t.List(t.Int32())),
    ColumnSchema("st", t.Struct((t.Field("k", t.String()), t.Field("v", t.List(t.Int64()))))),
    ColumnSchema("en", t.Enum(("a", "b"))),
    ColumnSchema("cat", t.Categorical()),
    ColumnSchema("nul", t.Null()),
)

VALUES: dict[str, list[object]] = {
    "i8": [1, None, -1],
    "i16": [None, 300, -300],
    "i32": [70000, -70000, None],
    "i64": [2**40, None, -(2**40)],
    "u8": [200, None, 0],
    "u16": [60000, 0, None],
    "u32": [None, 4_000_000_000, 1],
    "u64": [18_000_000_000_000_000_000, None, 0],
    "f32": [0.5, None, 2.0],
    "f64": [None, -1e300, 1e-300],
    "dec": [decimal.Decimal("1234567.891"), decimal.Decimal("0.000"), None],
    "s": ["O'Brien", None, "ünïcode"],
    "bin": [None, b"\x01\x02", b""],
    "b": [None, True, False],
    "d": [dt.date(2020, 2, 29), dt.date(2100, 12, 31), None],
    "ts": [dt.datetime(2024, 1, 31, 5), None, dt.datetime(1900, 1, 1, 0, 0, 0, 1)],
    "ts_ns_utc": [None, dt.datetime(2024, 7, 1, tzinfo=dt.UTC), dt.datetime(1970, 1, 1, tzinfo=dt.UTC)],
    "ts_ms_ny": [dt.datetime(2024, 1, 1, 9), None, dt.datetime(2024, 7, 4, 12, 30)],
    "dur": [dt.timedelta(hours=36, microseconds=1), None, -dt.timedelta(seconds=1)],
    "tm": [None, dt.time(23, 59, 59, 999999), dt.time(12)],
    "lst": [[1, None, 3], [], None],
    "st": [{"k": "x", "v": [1]}, {"k": None, "v": None}, None],
    "en": [None, "a", "b"],
    "cat": ["p", None, "p"],
    "nul": [None, None, None],
}


def frame() -> pl.DataFrame:
    schema = polars_schema(DECLARED)
    cols = []
    for c in DECLARED:
        if c.name == "ts_ms_ny":
            s = pl.Series(c.name, VALUES[c.name], dtype=pl.Datetime("ms")).dt.replace_time_zone("America/New_York")
        elif c.name == "ts_ns_utc":
            s = pl.Series(c.name, VALUES[c.name]).cast(schema[c.name])
        else:
            s = pl.Series(c.name, VALUES[c.name], dtype=schema[c.name])
        cols.append(s)
    return pl.DataFrame(cols)


def test_arrow_schema_of_declaration() -> None:
    decl = DECLARED + (ColumnSchema("req", t.Int64(), nullable=False),)
    schema = arrow_schema(decl)
    assert schema.names == [c.name for c in decl]
    assert schema.field("req").nullable is False
    assert schema.field("i8").nullable is True
    assert schema.field("dec").type == pa.decimal128(10, 3)
    expected = tuple(
        ColumnSchema(c.name, t.Categorical() if isinstance(c.dtype, t.Enum) else c.dtype, c.nullable) for c in decl
    )
    assert schema_from_arrow(schema) == expected


def test_real_data_polars_to_arrow_and_back() -> None:
    df = frame()
    table = df.to_arrow()
    assert table.num_rows == 3
    # Loom schema seen from the Arrow side: same as declared, except Enum -> Categorical
    from_arrow_side = schema_from_arrow(table.schema)
    expected_arrow = tuple(
        ColumnSchema(c.name, t.Categorical() if isinstance(c.dtype, t.Enum) else c.dtype, True) for c in DECLARED
    )
    assert from_arrow_side == expected_arrow
    # Loom schema seen from the Polars side: exactly as declared
    assert schema_from_polars(df.schema) == DECLARED
    # values through Arrow, including nulls
    assert table.column("u64").to_pylist() == VALUES["u64"]
    assert table.column("dec").to_pylist() == VALUES["dec"]
    assert table.column("s").to_pylist() == VALUES["s"]
    assert table.column("ts").to_pylist() == VALUES["ts"]
    assert table.column("tm").to_pylist() == VALUES["tm"]
    assert table.column("st").to_pylist() == VALUES["st"]
    assert table.column("en").to_pylist() == VALUES["en"]
    assert table.column("nul").null_count == 3
    # and back into Polars: identical frame and Loom schema
    back = pl.from_arrow(table)
    assert isinstance(back, pl.DataFrame)
    assert schema_from_polars(back.schema) == DECLARED
    assert back.equals(df)


def test_arrow_table_built_from_declaration_reads_in_polars() -> None:
    decl = tuple(c for c in DECLARED if not isinstance(c.dtype, (t.Enum, t.Categorical)))
    table = pa.Table.from_pydict({c.name: VALUES[c.name] for c in decl if "ts_ms_ny" != c.name}, schema=arrow_schema(
        tuple(c for c in decl if c.name != "ts_ms_ny")
    ))
    df = pl.from_arrow(table)
    assert isinstance(df, pl.DataFrame)
    assert schema_from_polars(df.schema) == tuple(c for c in decl if c.name != "ts_ms_ny")
    assert df["i16"].to_list() == VALUES["i16"]
    assert df["lst"].to_list() == VALUES["lst"]
