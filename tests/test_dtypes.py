"""Unit tests of the backend-neutral data types: parser, printer, validation, safe casts,
column schemas and schema diffs."""

from __future__ import annotations

import dataclasses

import pytest

from loom_resources.dtypes import (
    Binary,
    Boolean,
    Categorical,
    ColumnSchema,
    DataType,
    Date,
    Datetime,
    Decimal,
    Duration,
    Enum,
    Field,
    Float32,
    Float64,
    Int8,
    Int16,
    Int32,
    Int64,
    List,
    Null,
    String,
    Struct,
    Time,
    UInt8,
    UInt16,
    UInt32,
    UInt64,
    integer_bits,
    is_safe_cast,
    parse_dtype,
    schema_diff,
)

# --- parse_dtype ---------------------------------------------------------------------------

PARSE_CASES: list[tuple[str, DataType]] = [
    ("int8", Int8()),
    ("int16", Int16()),
    ("int32", Int32()),
    ("int64", Int64()),
    ("uint8", UInt8()),
    ("uint16", UInt16()),
    ("uint32", UInt32()),
    ("uint64", UInt64()),
    ("float32", Float32()),
    ("float64", Float64()),
    ("float", Float64()),
    ("double", Float64()),
    ("string", String()),
    ("str", String()),
    ("utf8", String()),
    ("binary", Binary()),
    ("boolean", Boolean()),
    ("bool", Boolean()),
    ("date", Date()),
    ("time", Time()),
    ("categorical", Categorical()),
    ("null", Null()),
    ("INT64", Int64()),
    ("  String  ", String()),
    ("decimal(18,2)", Decimal(18, 2)),
    ("decimal( 38 , 0 )", Decimal(38, 0)),
    ("decimal(5)", Decimal(5, 0)),
    ("DECIMAL(10,10)", Decimal(10, 10)),
    ("datetime", Datetime("us", None)),
    ("datetime(ms)", Datetime("ms", None)),
    ("datetime(ns)", Datetime("ns", None)),
    ("datetime(us, UTC)", Datetime("us", "UTC")),
    ("datetime(NS, Europe/Berlin)", Datetime("ns", "Europe/Berlin")),
    ("datetime(us,America/New_York)", Datetime("us", "America/New_York")),
    ("datetime(ms, None)", Datetime("ms", None)),
    ("duration", Duration("us")),
    ("duration(ms)", Duration("ms")),
    ("duration(ns)", Duration("ns")),
    ("list<string>", List(String())),
    ("list<list<int32>>", List(List(Int32()))),
    ("list<decimal(10,2)>", List(Decimal(10, 2))),
    ("struct<a: int32, b: string>", Struct((Field("a", Int32()), Field("b", String())))),
    (
        "struct<id: int64 not null, tags: list<string>, inner: struct<x: float64, y: datetime(us, UTC) not null>>",
        Struct(
            (
                Field("id", Int64(), nullable=False),
                Field("tags", List(String())),
                Field(
                    "inner",
                    Struct((Field("x", Float64()), Field("y", Datetime("us", "UTC"), nullable=False))),
                ),
            )
        ),
    ),
    ("struct<d: decimal(18,2), e: enum('a','b')>", Struct((Field("d", Decimal(18, 2)), Field("e", Enum(("a", "b")))))),
    ("enum('a','b')", Enum(("a", "b"))),
    ("enum('low', 'mid', 'high')", Enum(("low", "mid", "high"))),
    ("enum('it\\'s','a,b','(x)','<y>')", Enum(("it's", "a,b", "(x)", "<y>"))),
    ("list<enum('x')>", List(Enum(("x",)))),
]


@pytest.mark.parametrize(("text", "expected"), PARSE_CASES)
def test_parse_dtype(text: str, expected: DataType) -> None:
    got = parse_dtype(text)
    assert got == expected
    assert type(got) is type(expected)


ROUND_TRIP: list[DataType] = [
    Int8(), Int16(), Int32(), Int64(), UInt8(), UInt16(), UInt32(), UInt64(),
    Float32(), Float64(), String(), Binary(), Boolean(), Date(), Time(), Categorical(), Null(),
    Decimal(18, 2), Decimal(1, 0), Decimal(38, 38),
    Datetime("ms"), Datetime("us"), Datetime("ns"), Datetime("us", "UTC"), Datetime("ns", "Europe/Berlin"),
    Duration("ms"), Duration("us"), Duration("ns"),
    List(Int64()), List(List(String())), List(Struct((Field("a", Int8()),))),
    Struct((Field("a", Int32()), Field("b", String()))),
    Struct((Field("id", Int64(), nullable=False), Field("v", List(Decimal(10, 3)), nullable=True))),
    Struct((Field("outer", Struct((Field("inner", Datetime("us", "UTC"), nullable=False),))),)),
    Enum(("a", "b", "c")),
    Enum(("it's", "a,b", "with space", "(paren)")),
    Enum(("x\\", "y")),
    Enum(("\\'", "a\\b", "\\\\", "'")),
    Struct((Field("e", Enum(("p\\", "q,r"))), Field("n", Int8()))),
]


def test_enum_backslash_forms() -> None:
    assert str(Enum(("x\\", "y"))) == "enum('x\\\\','y')"
    # a lone backslash before another character is kept as written
    assert parse_dtype("enum('a\\b')") == Enum(("a\\b",))


@pytest.mark.parametrize("dtype", ROUND_TRIP, ids=lambda d: repr(d))
def test_str_round_trip(dtype: DataType) -> None:
    text = str(dtype)
    assert parse_dtype(text) == dtype, text


def test_str_forms() -> None:
    assert str(Int64()) == "int64"
    assert str(UInt8()) == "uint8"
    assert str(Decimal(18, 2)) == "decimal(18,2)"
    assert str(Datetime("ns")) == "datetime(ns)"
    assert str(Datetime("us", "UTC")) == "datetime(us, UTC)"
    assert str(Duration("ms")) == "duration(ms)"
    assert str(List(String())) == "list<string>"
    assert str(Struct((Field("a", Int32()), Field("b", String())))) == "struct<a: int32, b: string>"
    assert str(Enum(("a", "b"))) == "enum('a','b')"


@pytest.mark.parametrize(
    "text",
    [
        "int128",
        "",
        "varchar",
        "decimal(18,2",
        "decimal(a,b)",
        "datetime(s)",
        "datetime(sec, UTC)",
        "duration(s)",
        "list<>",
        "list<nope>",
        "struct<a int32>",
        "struct<a: wat>",
        "enum(a,b)",
        "enum('a',b)",
        "map<string,int64>",
    ],
)
def test_parse_invalid_names_text(text: str) -> None:
    with pytest.raises(ValueError) as exc:
        parse_dtype(text)
    # the message names the offending text (or the offending inner part)
    msg = str(exc.value)
    assert repr(text) in msg or any(repr(p) in msg for p in _inner_parts(text)), msg


def _inner_parts(text: str) -> list[str]:
    inner = text[text.find("<") + 1 : -1] if "<" in text else ""
    parts = [inner] + [p.split(":", 1)[-1].strip() for p in inner.split(",")]
    return [p for p in parts if p]


def test_parse_invalid_names_exact_text() -> None:
    with pytest.raises(ValueError, match=r"unknown data type 'int128'"):
        parse_dtype("int128")
    with pytest.raises(ValueError, match=r"struct field needs 'name: type'.*'struct<a int32>'"):
        parse_dtype("struct<a int32>")
    with pytest.raises(ValueError, match=r"enum categories must be quoted strings.*enum\(a,b\)"):
        parse_dtype("enum(a,b)")


def test_parse_decimal_out_of_range() -> None:
    with pytest.raises(ValueError, match="precision must be 1..38, got 39"):
        parse_dtype("decimal(39,2)")
    with pytest.raises(ValueError, match="scale must be 0..precision, got 5"):
        parse_dtype("decimal(4,5)")


def test_parse_enum_duplicate_categories() -> None:
    with pytest.raises(ValueError, match="unique"):
        parse_dtype("enum('a','a')")


# --- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(("p", "s"), [(0, 0), (39, 0), (-1, 0), (10, 11), (10, -1)])
def test_decimal_validation(p: int, s: int) -> None:
    with pytest.raises(ValueError, match="decimal"):
        Decimal(p, s)


def test_decimal_valid_bounds() -> None:
    assert Decimal(1).scale == 0
    assert Decimal(38, 38).precision == 38


@pytest.mark.parametrize("unit", ["s", "sec", "US", "", "minutes"])
def test_datetime_and_duration_unit_validation(unit: str) -> None:
    with pytest.raises(ValueError, match="datetime unit must be ms, us or ns"):
        Datetime(unit)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="duration unit must be ms, us or ns"):
        Duration(unit)  # type: ignore[arg-type]


def test_types_are_immutable_values() -> None:
    d = Datetime("us", "UTC")
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.tz = None  # type: ignore[misc]
    assert hash(Decimal(10, 2)) == hash(Decimal(10, 2))
    assert {Int64(), Int64(), Int32()} == {Int64(), Int32()}
    assert Int32() != Int64()
    assert Datetime("us") != Datetime("us", "UTC")
    assert Enum(("a", "b")) != Enum(("b", "a"))  # order matters


def test_integer_bits() -> None:
    assert [integer_bits(x) for x in (Int8(), Int16(), Int32(), Int64())] == [8, 16, 32, 64]
    assert [integer_bits(x) for x in (UInt8(), UInt16(), UInt32(), UInt64())] == [8, 16, 32, 64]
    assert integer_bits(Float64()) is None
    assert integer_bits(String()) is None


# --- is_safe_cast ------------------------------------------------------------------------------

SAFE = [
    (Int8(), Int16()), (Int8(), Int64()), (Int16(), Int32()), (Int32(), Int64()),
    (UInt8(), UInt16()), (UInt16(), UInt64()), (UInt32(), UInt64()),
    (UInt8(), Int16()), (UInt16(), Int32()), (UInt32(), Int64()),
    (Float32(), Float64()),
    (Int32(), Float64()), (UInt32(), Float64()), (Int8(), Float64()),
    (Datetime("ms"), Datetime("us")), (Datetime("us"), Datetime("ns")),
    (Datetime("ms", "UTC"), Datetime("ns", "UTC")),
    (Categorical(), String()), (Enum(("a",)), String()), (String(), Categorical()),
    (Null(), Int64()), (Null(), String()),
    (List(Int32()), List(Int64())),
    (Int64(), Int64()), (Decimal(10, 2), Decimal(10, 2)),
]
UNSAFE = [
    (Int64(), Int32()), (Int16(), Int8()), (UInt64(), UInt32()),
    (Int8(), UInt8()), (Int32(), UInt64()), (Int64(), UInt64()),
    (UInt32(), Int32()), (UInt64(), Int64()), (UInt8(), Int8()),
    (Float64(), Float32()),
    (Float64(), Int64()), (Float32(), Int64()),
    (Int64(), Float64()), (UInt64(), Float64()), (Int32(), Float32()),
    (String(), Int64()), (Int64(), String()), (String(), Enum(("a",))),
    (Datetime("us"), Datetime("ms")), (Datetime("us"), Datetime("us", "UTC")),
    (Datetime("us", "UTC"), Datetime("us", "Europe/Berlin")),
    (Date(), Datetime("us")), (Boolean(), Int8()),
    (Decimal(10, 2), Decimal(12, 2)),
    (List(Int64()), List(Int32())), (List(Int32()), Int32()),
    (Int64(), Null()),
]


@pytest.mark.parametrize(("src", "dst"), SAFE, ids=lambda d: str(d))
def test_safe_casts(src: DataType, dst: DataType) -> None:
    assert is_safe_cast(src, dst) is True


@pytest.mark.parametrize(("src", "dst"), UNSAFE, ids=lambda d: str(d))
def test_unsafe_casts(src: DataType, dst: DataType) -> None:
    assert is_safe_cast(src, dst) is False


# --- ColumnSchema ------------------------------------------------------------------------------


def test_column_schema_parses_string_dtype() -> None:
    c = ColumnSchema("amount", "decimal(18,2)", nullable=False)  # type: ignore[arg-type]
    assert c.dtype == Decimal(18, 2)
    assert c == ColumnSchema("amount", Decimal(18, 2), nullable=False)
    assert str(c) == "amount decimal(18,2) not null"
    assert str(ColumnSchema("ts", "datetime(us, UTC)")) == "ts datetime(us, UTC)"  # type: ignore[arg-type]
    assert ColumnSchema("tags", "list<string>").dtype == List(String())  # type: ignore[arg-type]
    assert ColumnSchema("x", Int64()).nullable is True


def test_column_schema_errors() -> None:
    with pytest.raises(ValueError, match="'varchar2'"):
        ColumnSchema("a", "varchar2")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="column 'a'.*42"):
        ColumnSchema("a", 42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-empty"):
        ColumnSchema("", Int64())
    with pytest.raises(dataclasses.FrozenInstanceError):
        ColumnSchema("a", Int64()).name = "b"  # type: ignore[misc]


# --- schema_diff ---------------------------------------------------------------------------------

BASE = (
    ColumnSchema("id", Int64(), nullable=False),
    ColumnSchema("name", String()),
    ColumnSchema("amount", Decimal(18, 2)),
)


def test_schema_diff_equal() -> None:
    assert schema_diff(BASE, tuple(BASE)) == []


def test_schema_diff_missing_and_extra() -> None:
    actual = (BASE[0], BASE[1], ColumnSchema("extra", Float64()))
    problems = schema_diff(BASE, actual)
    assert problems == [
        "column 'amount' (decimal(18,2)) is missing",
        "column 'extra' (float64) is not declared",
    ]


def test_schema_diff_type_and_nullability() -> None:
    actual = (
        ColumnSchema("id", Int64(), nullable=True),
        ColumnSchema("name", Categorical()),
        BASE[2],
    )
    problems = schema_diff(BASE, actual)
    assert problems == [
        "column 'id' nullability differs: expected not null",
        "column 'name' has type categorical, expected string",
    ]
    assert schema_diff(actual[:1], BASE[:1]) == ["column 'id' nullability differs: expected nullable"]


def test_schema_diff_order() -> None:
    actual = (BASE[1], BASE[0], BASE[2])
    problems = schema_diff(BASE, actual)
    assert len(problems) == 1
    assert "column order differs" in problems[0]
    assert "['id', 'name', 'amount']" in problems[0]
    assert "['name', 'id', 'amount']" in problems[0]
    assert schema_diff(BASE, actual, check_order=False) == []
