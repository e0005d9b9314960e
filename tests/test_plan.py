"""The backend-neutral write plan (:mod:`loom_resources.plan`): every decision a write makes
before it touches a store, checked without any store."""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl
import pytest

from loom_resources import ColumnSchema, RunParams, TargetSpec, WriteContext, col, param
from loom_resources.dtypes import Date, Datetime, Int32, Int64, String
from loom_resources.errors import DataValidationError, PredicateError, SchemaMismatchError, SpecError
from loom_resources.plan import WritePlan, accepts_frame, decide_streaming, plan_write, to_frame
from loom_resources.predicates import And, Compare, In, Or

CTX = WriteContext(run_id="run-1", asset_key="s/t", partition_keys=("2024-01-02",))


def spec(**kw: Any) -> TargetSpec:
    kw.setdefault("columns", (
        ColumnSchema("id", "int64", False), ColumnSchema("d", "date", False), ColumnSchema("v", "string"),
    ))
    return TargetSpec(ref=kw.pop("ref", "s.t"), backend=kw.pop("backend", "delta"), **kw)


def plan(frame: Any, sp: TargetSpec, params: RunParams = RunParams(), ctx: WriteContext | None = CTX, *,
         requested: bool = True, resource_audit: bool = False, types: dict[str, Any] | None = None) -> WritePlan:
    if types is None:
        types = {c.name: c.dtype for c in sp.columns}
    return plan_write(frame, sp, params, ctx, requested_streaming=requested, resource_audit=resource_audit,
                      column_types=types)


LAZY = pl.LazyFrame({"id": [1]})
EAGER = pl.DataFrame({"id": [1]})


class _Query:
    """Stands for a query result held in another store (e.g. a ClickHouseQuery)."""

    def __init__(self, lf: pl.LazyFrame) -> None:
        self.lf = lf
        self.calls: list[dict[str, Any]] = []

    def to_lazyframe(self, **kw: Any) -> pl.LazyFrame:
        self.calls.append(kw)
        return self.lf


# -- streaming ---------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("frame", "flag", "requested", "expected"),
    [
        (LAZY, None, True, True),      # by frame type: a LazyFrame streams when asked
        (LAZY, None, False, False),
        (EAGER, None, True, False),    # a DataFrame is in memory already: never streamed
        (LAZY, False, True, False),    # the table's flag wins over the request
        (LAZY, True, False, True),
        (EAGER, True, True, False),    # ... but cannot make an in-memory frame stream
        (_Query(LAZY), None, True, True),
    ],
)
def test_decide_streaming(frame: Any, flag: bool | None, requested: bool, expected: bool) -> None:
    sp = spec(streaming=flag)
    assert decide_streaming(frame, sp, requested) is expected
    assert plan(frame, sp, requested=requested).streaming is expected


# -- audit columns -----------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("table_flag", "resource_flag", "ctx", "expected"),
    [
        (False, False, CTX, False),
        (True, False, CTX, True),
        (False, True, CTX, True),
        (True, True, CTX, True),
        (True, False, None, False),   # without a write context there is nothing to fill them with
        (False, True, None, False),
    ],
)
def test_audit_columns_are_table_or_resource_and_need_a_context(
    table_flag: bool, resource_flag: bool, ctx: WriteContext | None, expected: bool
) -> None:
    p = plan(LAZY, spec(audit_columns=table_flag), ctx=ctx, resource_audit=resource_flag)
    assert p.spec.audit_columns is expected
    names = [c.name for c in p.spec.stored_columns()]
    assert ("_loom_run_id" in names) is expected
    # everything else about the spec is unchanged
    assert p.spec.columns == spec().columns and p.spec.mode is spec().mode


# -- run partitions ------------------------------------------------------------------------------

def test_run_partitions_typed_as_date() -> None:
    sp = spec(mode="replace_partitions", partition_by=("d",))
    params = RunParams(partition_keys=("2024-01-02", "2024-01-03"), partitions=({"d": "2024-01-02"}, {"d": "2024-01-03"}))
    p = plan(LAZY, sp, params)
    assert p.run_partitions == ({"d": dt.date(2024, 1, 2)}, {"d": dt.date(2024, 1, 3)})
    assert p.replace_condition == In("d", (dt.date(2024, 1, 2), dt.date(2024, 1, 3)))


def test_run_partitions_typed_as_datetime_naive_and_tz() -> None:
    cols = (ColumnSchema("id", "int64", False), ColumnSchema("h", "datetime(us)", False),
            ColumnSchema("hz", "datetime(us, UTC)", False))
    params = RunParams(partition_keys=("2024-01-02-05:00",), partitions=({"h": "2024-01-02-05:00"},))
    p = plan(LAZY, spec(columns=cols, mode="replace_partitions", partition_by=("h",)), params)
    assert p.run_partitions == ({"h": dt.datetime(2024, 1, 2, 5)},)
    assert p.run_partitions[0]["h"].tzinfo is None
    params = RunParams(partition_keys=("2024-01-02-05:00",), partitions=({"hz": "2024-01-02-05:00"},))
    p = plan(LAZY, spec(columns=cols, mode="replace_partitions", partition_by=("hz",)), params)
    value = p.run_partitions[0]["hz"]
    assert value == dt.datetime(2024, 1, 2, 5, tzinfo=dt.UTC) and value.utcoffset() == dt.timedelta(0)


def test_run_partitions_typed_as_int_and_string() -> None:
    cols = (ColumnSchema("id", "int64", False), ColumnSchema("bucket", "int32", False), ColumnSchema("r", "string", False))
    p = plan(LAZY, spec(columns=cols, mode="replace_partitions", partition_by=("bucket",)),
             RunParams(partition_keys=("7",), partitions=({"bucket": "7"},)))
    assert p.run_partitions == ({"bucket": 7},) and isinstance(p.run_partitions[0]["bucket"], int)
    p = plan(LAZY, spec(columns=cols, mode="replace_partitions", partition_by=("r",)),
             RunParams(partition_keys=("eu",), partitions=({"r": "eu"},)))
    assert p.run_partitions == ({"r": "eu"},)
    assert p.replace_condition == In("r", ("eu",))


def test_run_partitions_typed_by_the_stored_types_not_the_declaration() -> None:
    # the stored table keeps the partition column as a string: the key stays a string
    sp = spec(columns=(ColumnSchema("id", "int64", False), ColumnSchema("b", "int64", False)),
              mode="replace_partitions", partition_by=("b",))
    params = RunParams(partition_keys=("7",), partitions=({"b": "7"},))
    assert plan(LAZY, sp, params, types={"id": Int64(), "b": String()}).run_partitions == ({"b": "7"},)
    assert plan(LAZY, sp, params, types={"id": Int64(), "b": Int32()}).run_partitions == ({"b": 7},)


def test_multi_partition_condition_is_or_of_ands() -> None:
    cols = (ColumnSchema("id", "int64", False), ColumnSchema("d", "date", False), ColumnSchema("r", "string", False))
    sp = spec(columns=cols, mode="replace_partitions", partition_by=("d", "r"))
    params = RunParams(partition_keys=("2024-01-02|eu", "2024-01-02|us"),
                       partitions=({"d": "2024-01-02", "r": "eu"}, {"d": "2024-01-02", "r": "us"}))
    p = plan(LAZY, sp, params)
    day = dt.date(2024, 1, 2)
    assert p.run_partitions == ({"d": day, "r": "eu"}, {"d": day, "r": "us"})
    assert p.replace_condition == Or((
        And((Compare("d", "=", day), Compare("r", "=", "eu"))),
        And((Compare("d", "=", day), Compare("r", "=", "us"))),
    ))


def test_unpartitioned_run_of_replace_partitions_has_no_condition() -> None:
    p = plan(LAZY, spec(mode="replace_partitions", partition_by=("d",)), RunParams())
    assert p.run_partitions == () and p.replace_condition is None


def test_other_modes_have_no_run_partitions_or_condition() -> None:
    params = RunParams(partition_keys=("2024-01-02",), partitions=({"d": "2024-01-02"},))
    for mode in ("append", "overwrite"):
        p = plan(LAZY, spec(mode=mode, partition_by=("d",)), params)
        assert p.run_partitions == () and p.replace_condition is None


def test_run_partition_column_missing_from_table() -> None:
    sp = spec(mode="replace_partitions", partition_by=("d",))
    params = RunParams(partition_keys=("x",), partitions=({"nope": "x"},))
    with pytest.raises(SchemaMismatchError, match=r"s\.t") as ei:
        plan(LAZY, sp, params)
    assert "'nope'" in str(ei.value)


def test_run_partition_key_that_does_not_fit_its_column() -> None:
    sp = spec(mode="replace_partitions", partition_by=("d",))
    with pytest.raises(SpecError) as ei:
        plan(LAZY, sp, RunParams(partition_keys=("soon",), partitions=({"d": "soon"},)))
    assert "s.t.d" in str(ei.value) and "'soon'" in str(ei.value)


# -- replace_where -----------------------------------------------------------------------------

WINDOW = RunParams(partition_keys=("2024-01-02",), window_start=dt.datetime(2024, 1, 2, tzinfo=dt.UTC),
                   window_end=dt.datetime(2024, 1, 3, tzinfo=dt.UTC))


def test_replace_where_condition_is_bound_from_run_params() -> None:
    sp = spec(mode="replace_where",
              replace_predicate=col("d").window(param("partition_start_date"), param("partition_end_date")))
    p = plan(LAZY, sp, WINDOW)
    assert p.replace_condition == And((Compare("d", ">=", dt.date(2024, 1, 2)), Compare("d", "<", dt.date(2024, 1, 3))))
    assert p.replace_condition.params() == set()
    assert p.run_partitions == ()


def test_replace_where_with_free_value() -> None:
    sp = spec(mode="replace_where", replace_predicate=col("v").eq(param("region")))
    p = plan(LAZY, sp, RunParams(values={"region": "eu"}))
    assert p.replace_condition == Compare("v", "=", "eu")


def test_replace_where_missing_parameter() -> None:
    sp = spec(mode="replace_where", replace_predicate=col("d").ge(param("partition_start_date")))
    with pytest.raises(PredicateError, match="partition_start_date"):
        plan(LAZY, sp, RunParams())


def test_replace_where_column_missing_from_stored_table() -> None:
    sp = spec(mode="replace_where", replace_predicate=col("d").ge(param("partition_start_date")))
    with pytest.raises(PredicateError) as ei:
        plan(LAZY, sp, WINDOW, types={"id": Int64(), "v": String()})
    assert "s.t" in str(ei.value) and "'d'" in str(ei.value)


# -- validators --------------------------------------------------------------------------------

def test_null_in_not_null_column_names_table_and_column() -> None:
    p = plan(EAGER, spec())
    with pytest.raises(DataValidationError) as ei:
        p.validate(pl.DataFrame({"id": [1, None], "d": [dt.date(2024, 1, 1)] * 2, "v": ["a", None]}))
    assert ei.value.table == "s.t" and ei.value.column == "id"
    assert "s.t.id" in str(ei.value)
    p.validate(pl.DataFrame({"id": [1, 2], "d": [dt.date(2024, 1, 1)] * 2, "v": ["a", None]}))  # nullable v is fine


def test_row_outside_run_partitions_is_refused() -> None:
    p = plan(LAZY, spec(mode="replace_partitions", partition_by=("d",)),
             RunParams(partition_keys=("2024-01-02",), partitions=({"d": "2024-01-02"},)))
    ok = pl.DataFrame({"id": [1], "d": [dt.date(2024, 1, 2)], "v": ["a"]})
    p.validate(ok)
    bad = pl.DataFrame({"id": [1, 2], "d": [dt.date(2024, 1, 2), dt.date(2024, 1, 5)], "v": ["a", "b"]})
    with pytest.raises(DataValidationError) as ei:
        p.validate(bad)
    assert ei.value.table == "s.t" and ei.value.column == "d"
    assert "1 row(s)" in str(ei.value)


def test_row_outside_replace_where_predicate_is_refused() -> None:
    p = plan(LAZY, spec(mode="replace_where", replace_predicate=col("d").window(
        param("partition_start_date"), param("partition_end_date"))), WINDOW)
    p.validate(pl.DataFrame({"id": [1], "d": [dt.date(2024, 1, 2)], "v": ["a"]}))
    bad = pl.DataFrame({"id": [1, 2, 3], "d": [dt.date(2024, 1, 2), dt.date(2024, 1, 3), dt.date(2024, 1, 1)],
                        "v": ["a", "b", "c"]})
    with pytest.raises(DataValidationError) as ei:
        p.validate(bad)
    assert ei.value.table == "s.t"
    assert "2 row(s) fall outside the replace predicate" in str(ei.value)


def test_duplicate_merge_keys_are_refused_naming_the_key() -> None:
    p = plan(LAZY, spec(mode="merge", merge_keys=("id",)))
    p.validate(pl.DataFrame({"id": [1, 2], "d": [dt.date(2024, 1, 1)] * 2, "v": ["a", "b"]}))
    with pytest.raises(DataValidationError) as ei:
        p.validate(pl.DataFrame({"id": [1, 1], "d": [dt.date(2024, 1, 1)] * 2, "v": ["a", "b"]}))
    assert ei.value.table == "s.t" and ei.value.column == "id"


def test_with_checks_appends_and_ignores_none() -> None:
    seen: list[int] = []
    base = plan(EAGER, spec())
    more = base.with_checks(None, lambda df: seen.append(df.height))
    assert len(more.checks) == len(base.checks) + 1
    more.validate(pl.DataFrame({"id": [1, 2], "d": [dt.date(2024, 1, 1)] * 2, "v": ["a", "b"]}))
    assert seen == [2]
    assert base.with_checks(None).checks == base.checks  # the original plan is unchanged


def test_app_id_is_stable_across_retries_and_absent_without_context() -> None:
    assert plan(EAGER, spec(), ctx=None).app_id is None
    first = WriteContext(run_id="r1", asset_key="s/t", partition_keys=("k",), attempt=1)
    retry = WriteContext(run_id="r1", asset_key="s/t", partition_keys=("k",), attempt=2)
    reexec = WriteContext(run_id="r2", asset_key="s/t", partition_keys=("k",), root_run_id="r1")
    other = WriteContext(run_id="r1", asset_key="s/t", partition_keys=("j",))
    ids = [plan(EAGER, spec(), ctx=c).app_id for c in (first, retry, reexec, other)]
    assert ids[0] is not None and ids[0].startswith("loom-")
    assert ids[0] == ids[1] == ids[2] != ids[3]


# -- frames ------------------------------------------------------------------------------------

def test_accepts_frame() -> None:
    sp = spec()
    accepts_frame(LAZY, sp)
    accepts_frame(EAGER, sp)
    accepts_frame(_Query(LAZY), sp)
    with pytest.raises(TypeError) as ei:
        accepts_frame({"id": [1]}, sp)
    assert "s.t" in str(ei.value) and "dict" in str(ei.value)


def test_to_frame() -> None:
    assert to_frame(LAZY) is LAZY and to_frame(EAGER) is EAGER
    q = _Query(LAZY)
    assert to_frame(q) is LAZY
    assert q.calls == [{"streaming": True}]  # a query in another store is streamed out of it
    with pytest.raises(TypeError, match="list"):
        to_frame([1, 2])


def test_date_type_check_is_by_type_not_name() -> None:
    # a Datetime run partition on a Date-typed stored column is typed as a date
    sp = spec(mode="replace_partitions", partition_by=("d",))
    params = RunParams(partition_keys=("2024-01-02-05:00",), partitions=({"d": "2024-01-02-05:00"},))
    assert plan(LAZY, sp, params, types={"d": Date()}).run_partitions == ({"d": dt.date(2024, 1, 2)},)
    assert plan(LAZY, sp, params, types={"d": Datetime("us")}).run_partitions == ({"d": dt.datetime(2024, 1, 2, 5)},)
