"""The empty string and the null partition's marker in partition columns (issue 23, defects 2-3).

Delta serializes an empty partition value like a null, and ``__HIVE_DEFAULT_PARTITION__`` is the
null partition's directory: both read back as null, and replacing the ``''`` partition matched
no file (its old rows stayed). Both writers and ``InMemoryTables`` refuse them, naming the
table, the column and the value, and leave the table as it was.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from loom_resources import ColumnSchema, DataValidationError, DeltaResource, RunParams, TableRef, TargetSpec
from loom_resources.model import Backend, WriteMode
from loom_resources.testing import InMemoryTables

MARKER = "__HIVE_DEFAULT_PARTITION__"


def _spec(mode: WriteMode = WriteMode.APPEND) -> TargetSpec:
    return TargetSpec(ref=TableRef("s", "parts"), backend=Backend.DELTA, mode=mode, partition_by=("k",),
                      columns=(ColumnSchema("id", "int64", False), ColumnSchema("k", "string")))


def _frame(ids: list[int], ks: list[str | None]) -> pl.DataFrame:
    return pl.DataFrame({"id": ids, "k": ks}, schema={"id": pl.Int64, "k": pl.String})


@pytest.fixture(params=["polars", "delta-rs", "memory"])
def store(tmp_path: Path, request: pytest.FixtureRequest) -> Any:
    if request.param == "memory":
        return InMemoryTables()
    return DeltaResource(root=str(tmp_path), parquet_writer=request.param)


def _rows(store: Any) -> list[tuple[int, str | None]]:
    from loom_resources import SourceSpec

    df = store.read(SourceSpec(_spec().ref), RunParams()).collect()
    return sorted(df.select("id", "k").iter_rows(), key=lambda r: r[0])


@pytest.mark.parametrize("value", ["", MARKER])
@pytest.mark.parametrize("mode", [WriteMode.APPEND, WriteMode.REPLACE_PARTITIONS, WriteMode.OVERWRITE])
@pytest.mark.parametrize("streaming", [False, True])
def test_the_value_is_refused_and_the_table_left_as_it_was(store: Any, value: str, mode: WriteMode,
                                                          streaming: bool) -> None:
    store.write(_frame([1, 2], ["a", None]), _spec(), RunParams())
    before = _rows(store)
    bad = _frame([10, 11, 12], [value, value, "b"])
    with pytest.raises(DataValidationError) as exc:
        store.write(bad.lazy() if streaming else bad, _spec(mode), RunParams(), streaming=streaming)
    msg = str(exc.value)
    assert "s.parts.k" in msg and repr(value) in msg and "null" in msg and "replace('', None)" in msg, msg
    assert _rows(store) == before


def test_replacing_the_empty_partition_cannot_keep_its_old_rows(store: Any) -> None:
    """The issue's sequence: append k=['', '', 'a'], then replace the '' partition. Before the
    fix the table held [1, 2, 3, 10] (expected [3, 10]); now the first write is refused."""
    with pytest.raises(DataValidationError, match="''"):
        store.write(_frame([1, 2, 3], ["", "", "a"]), _spec(), RunParams())
    store.write(_frame([3], ["a"]), _spec(), RunParams())
    with pytest.raises(DataValidationError, match="''"):
        store.write(_frame([10], [""]), _spec(WriteMode.REPLACE_PARTITIONS), RunParams())
    assert _rows(store) == [(3, "a")]


def test_null_partitions_still_round_trip(store: Any) -> None:
    store.write(_frame([1, 2, 3], [None, "a", " "]), _spec(), RunParams())
    assert _rows(store) == [(1, None), (2, "a"), (3, " ")]


@pytest.mark.parametrize("streaming", [False, True])
def test_replacing_the_null_partition_replaces_exactly_it(store: Any, streaming: bool) -> None:
    """Found by the conformance suite: the replace predicate said ``k IN (NULL)``, which matches
    nothing (delta-rs refused the commit: "validation check failed with value Boolean(NULL)")."""
    store.write(_frame([1, 2, 3], [None, None, "a"]), _spec(), RunParams())
    new = _frame([10], [None])
    store.write(new.lazy() if streaming else new, _spec(WriteMode.REPLACE_PARTITIONS), RunParams(), streaming=streaming)
    assert _rows(store) == [(3, "a"), (10, None)]
    both = _frame([11, 12], [None, "a"])
    store.write(both.lazy() if streaming else both, _spec(WriteMode.REPLACE_PARTITIONS), RunParams(), streaming=streaming)
    assert _rows(store) == [(11, None), (12, "a")]


def test_replacing_one_of_several_partition_columns_keeps_rows_null_in_another(store: Any) -> None:
    """Found by the conformance suite: InMemoryTables dropped the stored row (None, 7) when the
    partition ('a', 7) was replaced (``pk_s = 'a'`` is null on it, and ``~null`` filtered it out)."""
    spec = TargetSpec(ref=TableRef("s", "two"), backend=Backend.DELTA, partition_by=("k", "j"),
                      columns=(ColumnSchema("id", "int64", False), ColumnSchema("k", "string"), ColumnSchema("j", "int32")))
    schema = {"id": pl.Int64, "k": pl.String, "j": pl.Int32}
    store.write(pl.DataFrame({"id": [1, 2, 3], "k": ["a", None, None], "j": [7, 7, None]}, schema=schema), spec, RunParams())
    replace = dataclasses.replace(spec, mode=WriteMode.REPLACE_PARTITIONS)
    store.write(pl.DataFrame({"id": [10, 11], "k": ["a", None], "j": [7, None]}, schema=schema), replace, RunParams())
    from loom_resources import SourceSpec

    got = store.read(SourceSpec(spec.ref), RunParams()).collect().sort("id")
    assert got.select("id", "k", "j").rows() == [(2, None, 7), (10, "a", 7), (11, None, None)]
