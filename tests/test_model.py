"""Unit tests of the table model: references, target declarations, run parameters,
partition keys and write contexts."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest

from loom_resources.dtypes import (
    Boolean,
    Categorical,
    ColumnSchema,
    Date,
    Datetime,
    Enum,
    Float64,
    Int32,
    Int64,
    String,
    UInt16,
)
from loom_resources.errors import LoomError, SpecError
from loom_resources.model import (
    AUDIT_COLUMNS,
    Backend,
    HistoryOptions,
    RunParams,
    SchemaMode,
    SourceSpec,
    TableRef,
    TargetSpec,
    WriteContext,
    WriteMode,
    partition_key_value,
)
from loom_resources.predicates import col, param

# --- TableRef --------------------------------------------------------------------------------


def test_table_ref_parse_and_name() -> None:
    ref = TableRef.parse("sales.orders")
    assert ref == TableRef("sales", "orders")
    assert ref.schema == "sales" and ref.table == "orders"
    assert ref.name == "sales.orders" == str(ref)
    assert TableRef.parse(ref) is ref
    assert TableRef("_a1", "B_2").name == "_a1.B_2"
    assert sorted([TableRef("b", "a"), TableRef("a", "z"), TableRef("a", "b")]) == [
        TableRef("a", "b"), TableRef("a", "z"), TableRef("b", "a"),
    ]
    assert {TableRef("a", "b"): 1}[TableRef.parse("a.b")] == 1


@pytest.mark.parametrize(
    ("schema", "table", "bad", "label"),
    [
        ("x; DROP TABLE y", "t", "x; DROP TABLE y", "schema"),
        ("s", "x; DROP TABLE y", "x; DROP TABLE y", "table"),
        ("1abc", "t", "1abc", "schema"),
        ("s", "1abc", "1abc", "table"),
        ("s", "", "", "table"),
        ("", "t", "", "schema"),
        ("s", "a-b", "a-b", "table"),
        ("s", "a b", "a b", "table"),
        ("s", "a`b", "a`b", "table"),
        ("s", "ümlaut", "ümlaut", "table"),
        # issue 23: "$" under re.match let a trailing newline through
        ("loom\n", "run_records", "loom\n", "schema"),
        ("s", "t\n", "t\n", "table"),
    ],
)
def test_table_ref_invalid_parts(schema: str, table: str, bad: str, label: str) -> None:
    with pytest.raises(ValueError) as exc:
        TableRef(schema, table)
    assert f"invalid {label} name {bad!r}" in str(exc.value)


@pytest.mark.parametrize("name", ["a.b.c", "nodot", "x; DROP TABLE y", "", "a..b"])
def test_table_ref_parse_invalid(name: str) -> None:
    with pytest.raises(ValueError) as exc:
        TableRef.parse(name)
    assert repr(name) in str(exc.value)


def test_table_ref_parse_invalid_part_after_split() -> None:
    with pytest.raises(ValueError, match=r"invalid table name 'x; DROP TABLE y'"):
        TableRef.parse("s.x; DROP TABLE y")
    with pytest.raises(ValueError, match=r"invalid schema name '1abc'"):
        TableRef.parse("1abc.t")
    with pytest.raises(ValueError, match=r"invalid table name ''"):
        TableRef.parse("a.")
    with pytest.raises(ValueError, match=r"invalid schema name ''"):
        TableRef.parse(".b")
    with pytest.raises(ValueError, match=r"invalid schema name 'loom\\n'"):
        TableRef.parse("loom\n.run_records")


def test_table_ref_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        TableRef("a", "b").table = "c"  # type: ignore[misc]


def test_source_spec_normalises() -> None:
    s = SourceSpec("raw.orders", columns=["id", "amount"])  # type: ignore[arg-type]
    assert s.ref == TableRef("raw", "orders")
    assert s.columns == ("id", "amount")
    with pytest.raises(ValueError, match="'raw.a.b'"):
        SourceSpec("raw.a.b")  # type: ignore[arg-type]


# --- TargetSpec --------------------------------------------------------------------------------

COLS = (
    ColumnSchema("id", Int64(), nullable=False),
    ColumnSchema("day", Date(), nullable=False),
    ColumnSchema("country", String()),
    ColumnSchema("amount", Float64()),
)


def spec(**kw: Any) -> TargetSpec:
    args: dict[str, Any] = {"ref": TableRef("mart", "sales"), "backend": Backend.DELTA, "columns": COLS}
    args.update(kw)
    return TargetSpec(**args)


def test_target_spec_valid_and_normalised() -> None:
    s = TargetSpec(
        ref="mart.sales",  # type: ignore[arg-type]
        backend="clickhouse",  # type: ignore[arg-type]
        columns=list(COLS),  # type: ignore[arg-type]
        mode="merge",  # type: ignore[arg-type]
        schema_mode="evolve",  # type: ignore[arg-type]
        merge_keys=["id"],  # type: ignore[arg-type]
        partition_by=["day"],  # type: ignore[arg-type]
    )
    assert s.ref == TableRef("mart", "sales")
    assert s.backend is Backend.CLICKHOUSE
    assert s.mode is WriteMode.MERGE
    assert s.schema_mode is SchemaMode.EVOLVE
    assert s.columns == COLS and isinstance(s.columns, tuple)
    assert s.merge_keys == ("id",) and s.partition_by == ("day",)
    assert s.column_names == ("id", "day", "country", "amount")
    assert s.column("amount") == COLS[3]
    assert s.tracked_columns == ("day", "country", "amount")
    with pytest.raises(KeyError, match="mart.sales.*'nope'"):
        s.column("nope")


def test_target_spec_string_dtypes() -> None:
    s = spec(columns=(ColumnSchema("id", "int64", nullable=False), ColumnSchema("d", "decimal(18,2)")))  # type: ignore[arg-type]
    assert s.column("id").dtype == Int64()
    assert str(s.column("d").dtype) == "decimal(18,2)"


def _spec_error(match_parts: list[str], **kw: Any) -> str:
    with pytest.raises(ValueError) as exc:
        spec(**kw)
    msg = str(exc.value)
    assert isinstance(exc.value, LoomError)
    for part in ["mart.sales", *match_parts]:
        assert part in msg, (part, msg)
    return msg


def test_merge_without_keys() -> None:
    msg = _spec_error(["'merge'", "merge_keys"], mode=WriteMode.MERGE)
    assert msg.startswith("table mart.sales:")


def test_history_without_keys() -> None:
    _spec_error(["'history'", "merge_keys"], mode=WriteMode.HISTORY)


def test_replace_partitions_without_partition_by() -> None:
    _spec_error(["replace_partitions", "partition_by"], mode=WriteMode.REPLACE_PARTITIONS)


def test_partition_column_not_in_schema() -> None:
    _spec_error(["partition column 'month'"], partition_by=("month",))


def test_merge_key_not_in_schema() -> None:
    _spec_error(["merge key 'customer_id'"], mode=WriteMode.MERGE, merge_keys=("id", "customer_id"))


def test_nullable_merge_key() -> None:
    _spec_error(["merge key 'country'", "nullable=False"], mode=WriteMode.MERGE, merge_keys=("id", "country"))
    _spec_error(["merge key 'country'"], mode=WriteMode.HISTORY, merge_keys=("country",))


def test_nullable_partition_column_is_allowed() -> None:
    assert spec(partition_by=("country",)).partition_by == ("country",)


def test_replace_where_without_predicate() -> None:
    _spec_error(["replace_where", "replace_predicate"], mode=WriteMode.REPLACE_WHERE)


def test_predicate_on_unknown_column() -> None:
    _spec_error(
        ["'region'"],
        mode=WriteMode.REPLACE_WHERE,
        replace_predicate=col("day").eq(param("partition_start_date")) & col("region").eq("EU"),
    )


def test_delete_unmatched_on_non_merge() -> None:
    _spec_error(["delete_unmatched", "'merge'"], mode=WriteMode.APPEND, delete_unmatched=True)
    assert spec(mode=WriteMode.MERGE, merge_keys=("id",), delete_unmatched=True).delete_unmatched is True


def test_duplicate_columns() -> None:
    _spec_error(["['amount']", "more than once"], columns=COLS + (ColumnSchema("amount", Int32()),))


def test_no_columns() -> None:
    _spec_error(["declares no columns"], columns=())


def test_schema_mode_overwrite_needs_overwrite_mode() -> None:
    _spec_error(["schema_mode 'overwrite'"], schema_mode=SchemaMode.OVERWRITE, mode=WriteMode.APPEND)
    assert spec(schema_mode=SchemaMode.OVERWRITE, mode=WriteMode.OVERWRITE).schema_mode is SchemaMode.OVERWRITE


def test_history_options_on_non_history_mode() -> None:
    _spec_error(["history options"], mode=WriteMode.APPEND, history=HistoryOptions())


@pytest.mark.parametrize("name", ["valid_from", "valid_to", "is_current"])
def test_declaring_history_columns(name: str) -> None:
    cols = COLS + (ColumnSchema(name, Boolean()),)
    _spec_error([repr(name), "maintained by the writer"], columns=cols, mode=WriteMode.HISTORY, merge_keys=("id",))


def test_declaring_custom_history_column() -> None:
    cols = COLS + (ColumnSchema("current", Boolean()),)
    _spec_error(
        ["'current'"], columns=cols, mode=WriteMode.HISTORY, merge_keys=("id",),
        history=HistoryOptions(current_column="current"),
    )


def test_history_unknown_tracked_column() -> None:
    _spec_error(
        ["tracked column 'price'"], mode=WriteMode.HISTORY, merge_keys=("id",),
        history=HistoryOptions(tracked_columns=("amount", "price")),
    )


def test_spec_error_is_spec_error() -> None:
    with pytest.raises(SpecError):
        spec(mode=WriteMode.MERGE)


def test_specs_are_immutable() -> None:
    s = spec(mode=WriteMode.MERGE, merge_keys=("id",))
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.mode = WriteMode.APPEND  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.merge_keys = ()  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        SourceSpec(TableRef("a", "b")).columns = ("x",)  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        HistoryOptions().valid_to = "x"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        RunParams().values = {}  # type: ignore[misc]
    with pytest.raises(TypeError):
        RunParams(values={"a": 1}).values["a"] = 2  # type: ignore[index]


def test_stored_columns_plain() -> None:
    s = spec()
    assert s.stored_columns() == COLS
    assert s.history is None and s.history_columns() == ()


def test_stored_columns_with_history_and_audit() -> None:
    s = spec(mode=WriteMode.HISTORY, merge_keys=("id",), audit_columns=True)
    assert s.history == HistoryOptions()
    names = [c.name for c in s.stored_columns()]
    assert names == [
        "id", "day", "country", "amount",
        "valid_from", "valid_to", "is_current",
        "_loom_run_id", "_loom_asset_key", "_loom_partition_key", "_loom_written_at",
    ]
    assert s.column("valid_from") == ColumnSchema("valid_from", Datetime("us"), nullable=False)
    assert s.column("valid_to") == ColumnSchema("valid_to", Datetime("us"), nullable=True)
    assert s.column("is_current") == ColumnSchema("is_current", Boolean(), nullable=False)
    assert s.column("_loom_written_at").dtype == Datetime("us", "UTC")
    assert s.stored_columns()[-4:] == AUDIT_COLUMNS


def test_stored_columns_soft_delete_and_custom_names() -> None:
    h = HistoryOptions(
        valid_from="vf", valid_to="vt", current_column="cur", delete_policy="soft_delete",
        deleted_column="gone", tracked_columns=("amount",),
    )
    s = spec(mode=WriteMode.HISTORY, merge_keys=("id",), history=h)
    assert [c.name for c in s.history_columns()] == ["vf", "vt", "cur", "gone"]
    assert s.column("gone") == ColumnSchema("gone", Boolean(), nullable=False)
    assert s.tracked_columns == ("amount",)
    assert spec(mode=WriteMode.HISTORY, merge_keys=("id",), history=HistoryOptions()).stored_columns()[-1].name == "is_current"


def test_audit_only() -> None:
    s = spec(audit_columns=True)
    assert s.stored_columns() == COLS + AUDIT_COLUMNS


# --- RunParams -----------------------------------------------------------------------------------


def test_run_params_bindings_full() -> None:
    start = dt.datetime(2024, 1, 31, tzinfo=dt.UTC)
    end = dt.datetime(2024, 2, 2, tzinfo=dt.UTC)
    p = RunParams(
        partition_keys=["2024-01-31", "2024-02-01"],  # type: ignore[arg-type]
        partitions=[{"day": "2024-01-31"}, {"day": "2024-02-01"}],  # type: ignore[arg-type]
        window_start=start,
        window_end=end,
        values={"effective_date": dt.date(2024, 2, 1), "partition_key": "override"},
    )
    assert p.partition_keys == ("2024-01-31", "2024-02-01")
    assert p.partitions[1]["day"] == "2024-02-01"
    assert p.bindings() == {
        "partition_key": "override",  # free values win
        "partition_keys": ("2024-01-31", "2024-02-01"),
        "partition_start": start,
        "partition_end": end,
        "partition_start_date": dt.date(2024, 1, 31),
        "partition_end_date": dt.date(2024, 2, 2),
        "effective_date": dt.date(2024, 2, 1),
    }


def test_run_params_bindings_empty_and_partial() -> None:
    assert RunParams().bindings() == {}
    p = RunParams(partition_keys=("a",), window_start=dt.datetime(2024, 1, 1))
    assert p.bindings() == {"partition_key": "a", "partition_keys": ("a",)}


def test_run_params_copy_inputs() -> None:
    values = {"x": 1}
    part = {"day": "2024-01-01"}
    p = RunParams(partitions=(part,), values=values)
    values["x"] = 2
    part["day"] = "changed"
    assert p.values["x"] == 1
    assert p.partitions[0]["day"] == "2024-01-01"


# --- partition_key_value -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "dtype", "expected"),
    [
        ("2024-01-31", Date(), dt.date(2024, 1, 31)),
        ("2024-01-31-05:00", Date(), dt.date(2024, 1, 31)),
        ("2024-01-31-05:00", Datetime("us"), dt.datetime(2024, 1, 31, 5, 0)),
        ("2024-01-31-05:00", Datetime("us", "UTC"), dt.datetime(2024, 1, 31, 5, 0, tzinfo=dt.UTC)),
        ("2024-01-31", Datetime("ms"), dt.datetime(2024, 1, 31)),
        ("2024-01-31T05:30:00", Datetime("ns", "UTC"), dt.datetime(2024, 1, 31, 5, 30, tzinfo=dt.UTC)),
        (
            "2024-01-31T05:00:00+01:00",
            Datetime("us", "UTC"),
            dt.datetime(2024, 1, 31, 5, 0, tzinfo=dt.timezone(dt.timedelta(hours=1))),
        ),
        ("42", Int64(), 42),
        ("-7", Int32(), -7),
        ("65535", UInt16(), 65535),
        ("DE", String(), "DE"),
        ("2024-01-31", String(), "2024-01-31"),
        ("a", Categorical(), "a"),
        ("b", Enum(("a", "b")), "b"),
    ],
)
def test_partition_key_value(key: str, dtype: Any, expected: Any) -> None:
    got = partition_key_value(key, dtype, table="mart.sales", column="day")
    assert got == expected
    assert type(got) is type(expected)
    if isinstance(expected, dt.datetime):
        assert got.tzinfo == expected.tzinfo


def test_partition_key_value_tz_aware_instant() -> None:
    got = partition_key_value("2024-01-31T05:00:00+01:00", Datetime("us", "UTC"), table="t.x", column="ts")
    assert got.astimezone(dt.UTC) == dt.datetime(2024, 1, 31, 4, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("key", "dtype"),
    [
        ("2024-13-01", Date()),
        ("yesterday", Date()),
        ("2024-01-31-25:00", Datetime("us")),
        ("not-a-time", Datetime("us", "UTC")),
        ("12a", Int64()),
        ("2024-01-31", Int64()),
    ],
)
def test_partition_key_value_bad_key(key: str, dtype: Any) -> None:
    with pytest.raises(SpecError) as exc:
        partition_key_value(key, dtype, table="mart.sales", column="day")
    msg = str(exc.value)
    assert "mart.sales.day" in msg
    assert repr(key) in msg
    assert str(dtype) in msg


@pytest.mark.parametrize("dtype", [Float64(), Boolean()])
def test_partition_key_value_unsupported_type(dtype: Any) -> None:
    with pytest.raises(SpecError, match=r"mart\.sales\.day.*cannot be a partition column"):
        partition_key_value("1", dtype, table="mart.sales", column="day")


# --- WriteContext ------------------------------------------------------------------------------


def test_idempotency_token() -> None:
    first = WriteContext("run-1", "mart/sales", ("2024-01-31",), attempt=1)
    retry = WriteContext("run-1", "mart/sales", ("2024-01-31",), attempt=3, timestamp=dt.datetime(2030, 1, 1, tzinfo=dt.UTC))
    reexec = WriteContext("run-2", "mart/sales", ("2024-01-31",), root_run_id="run-1")
    other_part = WriteContext("run-1", "mart/sales", ("2024-02-01",))
    other_asset = WriteContext("run-1", "mart/other", ("2024-01-31",))
    other_run = WriteContext("run-3", "mart/sales", ("2024-01-31",))
    no_part = WriteContext("run-1", "mart/sales")
    tok = first.idempotency_token()
    assert len(tok) == 32 and int(tok, 16) >= 0
    assert retry.idempotency_token() == tok
    assert reexec.idempotency_token() == tok
    assert first.idempotency_token() == tok  # deterministic
    others = {x.idempotency_token() for x in (other_part, other_asset, other_run, no_part)}
    assert tok not in others and len(others) == 4


def test_partition_label() -> None:
    assert WriteContext("r", "a").partition_label is None
    assert WriteContext("r", "a", ("2024-01-01",)).partition_label == "2024-01-01"
    assert WriteContext("r", "a", ("2024-01-01", "2024-01-02", "2024-01-03")).partition_label == "2024-01-01...2024-01-03"


def test_write_context_timestamp_is_utc() -> None:
    ts = WriteContext("r", "a").timestamp
    assert ts.tzinfo is not None and ts.utcoffset() == dt.timedelta(0)
