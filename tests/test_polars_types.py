"""Mapping between Loom types and Polars types, on declarations and on real data."""

from __future__ import annotations

import datetime as dt
import decimal

import polars as pl
import pytest

from loom_resources import dtypes as t
from loom_resources.dtypes import ColumnSchema
from loom_resources.errors import UnsupportedTypeError
from loom_resources.polars_types import (
    empty_frame,
    from_polars,
    polars_schema,
    schema_from_polars,
    to_polars,
)

MAPPING: list[tuple[t.DataType, pl.DataType]] = [
    (t.Int8(), pl.Int8()),
    (t.Int16(), pl.Int16()),
    (t.Int32(), pl.Int32()),
    (t.Int64(), pl.Int64()),
    (t.UInt8(), pl.UInt8()),
    (t.UInt16(), pl.UInt16()),
    (t.UInt32(), pl.UInt32()),
    (t.UInt64(), pl.UInt64()),
    (t.Float32(), pl.Float32()),
    (t.Float64(), pl.Float64()),
    (t.String(), pl.String()),
    (t.Binary(), pl.Binary()),
    (t.Boolean(), pl.Boolean()),
    (t.Date(), pl.Date()),
    (t.Time(), pl.Time()),
    (t.Categorical(), pl.Categorical()),
    (t.Null(), pl.Null()),
    (t.Decimal(18, 2), pl.Decimal(18, 2)),
    (t.Decimal(38, 10), pl.Decimal(38, 10)),
    (t.Datetime("ms"), pl.Datetime("ms")),
    (t.Datetime("us"), pl.Datetime("us")),
    (t.Datetime("ns", "UTC"), pl.Datetime("ns", "UTC")),
    (t.Datetime("us", "Europe/Berlin"), pl.Datetime("us", "Europe/Berlin")),
    (t.Duration("ms"), pl.Duration("ms")),
    (t.Duration("ns"), pl.Duration("ns")),
    (t.List(t.Int64()), pl.List(pl.Int64())),
    (t.List(t.List(t.String())), pl.List(pl.List(pl.String()))),
    (
        t.Struct((t.Field("a", t.Int32()), t.Field("b", t.List(t.Decimal(10, 2))))),
        pl.Struct([pl.Field("a", pl.Int32()), pl.Field("b", pl.List(pl.Decimal(10, 2)))]),
    ),
    (t.Enum(("lo", "hi")), pl.Enum(["lo", "hi"])),
]


@pytest.mark.parametrize(("loom", "polars"), MAPPING, ids=lambda d: str(d))
def test_to_polars(loom: t.DataType, polars: pl.DataType) -> None:
    got = to_polars(loom)
    assert got == polars
    assert type(got) is type(polars)


@pytest.mark.parametrize(("loom", "polars"), MAPPING, ids=lambda d: str(d))
def test_from_polars(loom: t.DataType, polars: pl.DataType) -> None:
    assert from_polars(polars) == loom


@pytest.mark.parametrize(("loom", "polars"), MAPPING, ids=lambda d: str(d))
def test_round_trip(loom: t.DataType, polars: pl.DataType) -> None:
    assert from_polars(to_polars(loom)) == loom


def test_enum_category_order_preserved() -> None:
    assert to_polars(t.Enum(("z", "a", "m"))).categories.to_list() == ["z", "a", "m"]  # type: ignore[attr-defined]


def test_struct_field_nullability_is_not_kept_by_polars() -> None:
    # Polars does not track nullability: not-null struct fields come back nullable.
    declared = t.Struct((t.Field("id", t.Int64(), nullable=False),))
    assert from_polars(to_polars(declared)) == t.Struct((t.Field("id", t.Int64(), nullable=True),))


def test_from_polars_array_is_list() -> None:
    assert from_polars(pl.Array(pl.Int16(), 3)) == t.List(t.Int16())


def test_from_polars_unsupported() -> None:
    with pytest.raises(UnsupportedTypeError, match="Object"):
        from_polars(pl.Object())


def test_to_polars_unsupported() -> None:
    class Weird(t.DataType):
        pass

    with pytest.raises(UnsupportedTypeError, match="no Polars type"):
        to_polars(Weird())


SCHEMA: tuple[ColumnSchema, ...] = (
    ColumnSchema("i8", t.Int8()),
    ColumnSchema("i16", t.Int16()),
    ColumnSchema("i32", t.Int32()),
    ColumnSchema("i64", t.Int64(), nullable=False),
    ColumnSchema("u8", t.UInt8()),
    ColumnSchema("u16", t.UInt16()),
    ColumnSchema("u32", t.UInt32()),
    ColumnSchema("u64", t.UInt64()),
    ColumnSchema("f32", t.Float32()),
    ColumnSchema("f64", t.Float64()),
    ColumnSchema("dec", t.Decimal(18, 2)),
    ColumnSchema("s", t.String()),
    ColumnSchema("bin", t.Binary()),
    ColumnSchema("b", t.Boolean()),
    ColumnSchema("d", t.Date()),
    ColumnSchema("ts", t.Datetime("us")),
    ColumnSchema("ts_ms", t.Datetime("ms")),
    ColumnSchema("ts_utc", t.Datetime("ns", "UTC")),
    ColumnSchema("ts_ber", t.Datetime("us", "Europe/Berlin")),
    ColumnSchema("dur", t.Duration("ms")),
    ColumnSchema("tm", t.Time()),
    ColumnSchema("lst", t.List(t.Int64())),
    ColumnSchema("lst_s", t.List(t.String())),
    ColumnSchema("st", t.Struct((t.Field("a", t.Int32()), t.Field("b", t.String()), t.Field("c", t.List(t.Float64()))))),
    ColumnSchema("en", t.Enum(("red", "green", "blue"))),
    ColumnSchema("cat", t.Categorical()),
    ColumnSchema("nul", t.Null()),
)

DATA: dict[str, list[object]] = {
    "i8": [-128, None, 127],
    "i16": [-32768, 0, None],
    "i32": [None, -(2**31), 2**31 - 1],
    "i64": [-(2**63), 0, 2**63 - 1],
    "u8": [0, 255, None],
    "u16": [None, 65535, 1],
    "u32": [2**32 - 1, None, 0],
    "u64": [2**64 - 1, 0, None],
    "f32": [1.5, None, -0.25],
    "f64": [3.141592653589793, float("inf"), None],
    "dec": [decimal.Decimal("12345678901234.56"), None, decimal.Decimal("-0.01")],
    "s": ["héllo", "", None],
    "bin": [b"\x00\xff", None, b""],
    "b": [True, False, None],
    "d": [dt.date(2024, 1, 31), None, dt.date(1970, 1, 1)],
    "ts": [dt.datetime(2024, 1, 31, 5, 0, 0, 123456), None, dt.datetime(1999, 12, 31, 23, 59, 59)],
    "ts_ms": [None, dt.datetime(2024, 2, 29, 12, 0, 0, 1000), dt.datetime(2000, 1, 1)],
    "ts_utc": [dt.datetime(2024, 1, 1, tzinfo=dt.UTC), None, dt.datetime(2024, 6, 1, 12, tzinfo=dt.UTC)],
    "ts_ber": [dt.datetime(2024, 3, 31, 1, 30), None, dt.datetime(2024, 10, 27, 0, 30)],
    "dur": [dt.timedelta(days=1, milliseconds=5), None, dt.timedelta(0)],
    "tm": [dt.time(5, 6, 7, 890123), None, dt.time(0)],
    "lst": [[1, 2, None], None, []],
    "lst_s": [["a", "b"], [], None],
    "st": [{"a": 1, "b": "x", "c": [1.0]}, None, {"a": None, "b": None, "c": None}],
    "en": ["red", None, "blue"],
    "cat": ["x", "y", None],
    "nul": [None, None, None],
}


def typed_frame() -> pl.DataFrame:
    """A frame with one column of every Loom type, built from the declaration."""
    schema = polars_schema(SCHEMA)
    cols = []
    for c in SCHEMA:
        dtype = schema[c.name]
        if c.name == "ts_ber":
            # local wall-clock values, then attach the zone
            s = pl.Series(c.name, DATA[c.name], dtype=pl.Datetime("us")).dt.replace_time_zone("Europe/Berlin")
        elif c.name == "ts_utc":
            s = pl.Series(c.name, DATA[c.name]).cast(dtype)
        else:
            s = pl.Series(c.name, DATA[c.name], dtype=dtype)
        cols.append(s)
    return pl.DataFrame(cols)


def test_polars_schema_of_declaration() -> None:
    schema = polars_schema(SCHEMA)
    assert list(schema.names()) == [c.name for c in SCHEMA]
    assert schema["dec"] == pl.Decimal(18, 2)
    assert schema["ts_utc"] == pl.Datetime("ns", "UTC")
    assert schema["en"] == pl.Enum(["red", "green", "blue"])


def test_real_frame_schema_matches_declaration() -> None:
    df = typed_frame()
    assert df.height == 3
    got = schema_from_polars(df.schema)
    # Polars does not track nullability: every column comes back nullable
    assert got == tuple(ColumnSchema(c.name, c.dtype, True) for c in SCHEMA)
    assert schema_from_polars(df.schema, nullable=False)[0] == ColumnSchema("i8", t.Int8(), False)
    # the values survived construction, including nulls
    assert df["u64"].to_list() == [2**64 - 1, 0, None]
    assert df["dec"].to_list() == [decimal.Decimal("12345678901234.56"), None, decimal.Decimal("-0.01")]
    assert df["ts_utc"].to_list()[2] == dt.datetime(2024, 6, 1, 12, tzinfo=dt.UTC)
    assert df["st"].to_list()[2] == {"a": None, "b": None, "c": None}
    assert df["en"].to_list() == ["red", None, "blue"]
    assert df.null_count().row(0) == tuple(sum(v is None for v in DATA[c.name]) for c in SCHEMA)


def test_real_frame_polars_arrow_polars() -> None:
    df = typed_frame()
    back = pl.from_arrow(df.to_arrow())
    assert isinstance(back, pl.DataFrame)
    assert schema_from_polars(back.schema) == schema_from_polars(df.schema)
    assert back.equals(df)


def test_empty_frame() -> None:
    df = empty_frame(SCHEMA)
    assert df.height == 0
    assert schema_from_polars(df.schema) == tuple(ColumnSchema(c.name, c.dtype) for c in SCHEMA)
