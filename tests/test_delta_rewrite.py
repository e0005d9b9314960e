"""Tests of loom_resources.delta._rewrite: the merge of plain tables by a Polars rewrite of the
files that hold changed keys, committed in one put-if-absent transaction.

Every result is read back from the table (deltalake's ``to_pyarrow_table`` and polars'
``scan_delta``) and compared with an upsert computed independently in Polars; which files a
merge removed is read from the Delta log itself.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import polars as pl
import pytest
from deltalake import DeltaTable, write_deltalake

from loom_resources.delta import DeltaResource, _files, _rewrite
from loom_resources.dtypes import ColumnSchema as C
from loom_resources.model import RunParams, TargetSpec

COLS = (C("id", "int64", nullable=False), C("day", "date", nullable=False), C("amount", "float64"))
S_COLS = (C("id", "string", nullable=False), C("day", "date", nullable=False), C("amount", "float64"))
D0 = dt.date(2024, 1, 1)
FILE_ROWS = 1000
FILES = 5


@pytest.fixture
def delta(tmp_path: Path) -> DeltaResource:
    root = tmp_path / "lake"
    root.mkdir()
    return DeltaResource(root=str(root))  # parquet_writer="polars": the rewrite path


def rows(ids: list[int] | range, bump: float = 0.0, *, days: int = 30) -> pl.DataFrame:
    ids = list(ids)
    return pl.DataFrame({"id": ids, "day": [D0 + dt.timedelta(days=i % days) for i in ids],
                         "amount": [i * 0.5 + bump for i in ids]},
                        schema={"id": pl.Int64, "day": pl.Date, "amount": pl.Float64})


def table(delta: DeltaResource, *, files: int = FILES, cols: tuple[C, ...] = COLS, partition_by: tuple[str, ...] = (),
          make: Callable[[range], pl.DataFrame] = rows) -> str:
    """A table of ``files`` appends, ids increasing across them."""
    ref = f"s_{uuid.uuid4().hex[:6]}.t"
    for k in range(files):
        delta.write(make(range(k * FILE_ROWS, (k + 1) * FILE_ROWS)),
                    TargetSpec(ref, "delta", cols, mode="append", partition_by=partition_by), RunParams())
    return ref


def spec(ref: str, *, keys: tuple[str, ...] = ("id",), cols: tuple[C, ...] = COLS, **kw: Any) -> TargetSpec:
    return TargetSpec(ref, "delta", cols, mode="merge", merge_keys=keys, **kw)


def read_both(delta: DeltaResource, ref: str, keys: list[str]) -> pl.DataFrame:
    """The table read back by deltalake and by polars (both must agree)."""
    uri = delta.table_uri(ref)
    by_deltalake = pl.from_arrow(DeltaTable(uri).to_pyarrow_table())
    assert isinstance(by_deltalake, pl.DataFrame)
    by_polars = pl.scan_delta(uri).collect()
    a = by_deltalake.select(by_polars.columns).sort(keys)
    b = by_polars.sort(keys)
    assert a.equals(b)
    return b


def upsert(before: pl.DataFrame, change: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    """The upsert computed independently in Polars."""
    return pl.concat([before.join(change, on=keys, how="anti"), change.select(before.columns)]).sort(keys)


def last_commit(delta: DeltaResource, ref: str) -> list[dict[str, Any]]:
    """The actions of the table's latest commit, read from its log file."""
    uri = delta.table_uri(ref)
    v = DeltaTable(uri).version()
    with open(os.path.join(uri, "_delta_log", f"{v:020d}.json")) as f:
        return [json.loads(line) for line in f if line.strip()]


def info(actions: list[dict[str, Any]]) -> dict[str, Any]:
    return next(a["commitInfo"] for a in actions if "commitInfo" in a)


def on_disk(delta: DeltaResource, ref: str) -> set[str]:
    root = Path(delta.table_uri(ref))
    return {str(p.relative_to(root)) for p in root.rglob("*.parquet") if "_delta_log" not in p.parts}


def live(delta: DeltaResource, ref: str) -> set[str]:
    acts = DeltaTable(delta.table_uri(ref)).get_add_actions(flatten=True)
    return {unquote(p) for p in acts.column("path").to_pylist()}


# -- the result equals an independent upsert ----------------------------------------------------------

N = FILES * FILE_ROWS
_rng = random.Random(7)
CASES: dict[str, Callable[[], pl.DataFrame]] = {
    "clustered": lambda: rows(list(range(N - 300, N + 300)), 1.0),
    "random": lambda: rows(sorted(_rng.sample(range(N), 400)) + list(range(N, N + 100)), 2.0),
    "all-inserts": lambda: rows(range(N + 10, N + 200), 3.0),
    "all-updates": lambda: rows(range(1500, 2600), 4.0),
}


@pytest.mark.parametrize("case", list(CASES))
def test_result_equals_an_independent_upsert(delta: DeltaResource, case: str) -> None:
    ref = table(delta)
    before = read_both(delta, ref, ["id"])
    change = CASES[case]()
    res = delta.write(change, spec(ref), RunParams())
    assert info(last_commit(delta, ref))["loomOperation"] == _rewrite.OPERATION
    out = read_both(delta, ref, ["id"])
    assert out.equals(upsert(before, change, ["id"]))
    assert out["id"].is_unique().all()
    updated = change.join(before, on="id", how="semi").height
    assert res.merge_metrics["num_target_rows_updated"] == updated
    assert res.merge_metrics["num_target_rows_inserted"] == change.height - updated
    assert res.version == DeltaTable(delta.table_uri(ref)).version()


def test_partitioned_merge_rewrites_only_the_run_partitions(delta: DeltaResource) -> None:
    ref = table(delta, partition_by=("day",))
    before = read_both(delta, ref, ["id"])
    # changes in 3 of 30 days: updates across the whole id range and new ids
    change = rows([i for i in range(0, N + 300) if i % 30 in (2, 5, 11)], 5.0)
    days = set(change["day"].to_list())
    delta.write(change, spec(ref, partition_by=("day",)), RunParams())
    commit = last_commit(delta, ref)
    assert info(commit)["loomOperation"] == _rewrite.OPERATION
    removed_days = {a["remove"]["partitionValues"]["day"] for a in commit if "remove" in a}
    assert removed_days == {d.isoformat() for d in days}
    assert read_both(delta, ref, ["id"]).equals(upsert(before, change, ["id"]))


def test_empty_target(delta: DeltaResource) -> None:
    ref = f"s_{uuid.uuid4().hex[:6]}.t"
    delta.write(rows([]), TargetSpec(ref, "delta", COLS, mode="append"), RunParams())
    assert DeltaTable(delta.table_uri(ref)).version() >= 0
    change = rows(range(50), 1.0)
    delta.write(change, spec(ref), RunParams())
    assert read_both(delta, ref, ["id"]).equals(change.sort("id"))


def test_string_keys(delta: DeltaResource) -> None:
    def srows(ids: range | list[int], bump: float = 0.0) -> pl.DataFrame:
        return rows(ids, bump).with_columns(pl.format("k{}", pl.col("id")).alias("id"))

    ref = table(delta, cols=S_COLS, make=srows)
    before = read_both(delta, ref, ["id"])
    change = srows(list(range(10, 20)) + list(range(4990, 5010)), 6.0)
    delta.write(change, spec(ref, cols=S_COLS), RunParams())
    assert info(last_commit(delta, ref))["loomOperation"] == _rewrite.OPERATION
    assert read_both(delta, ref, ["id"]).equals(upsert(before, change, ["id"]))


def test_composite_keys(delta: DeltaResource) -> None:
    ref = table(delta)
    before = read_both(delta, ref, ["id", "day"])
    # same ids, some with their own day (updates) and some with another day (new rows)
    change = pl.concat([rows(range(100, 110), 7.0),
                        rows(range(200, 210), 7.0).with_columns(pl.col("day") + dt.timedelta(days=100))])
    delta.write(change, spec(ref, keys=("id", "day")), RunParams())
    out = read_both(delta, ref, ["id", "day"])
    assert out.equals(upsert(before, change, ["id", "day"]))
    assert out.height == before.height + 10


def test_rerun_changes_nothing(delta: DeltaResource) -> None:
    ref = table(delta, files=3)
    change = rows(list(range(2900, 3100)), 1.0)
    delta.write(change, spec(ref), RunParams())
    once = read_both(delta, ref, ["id"])
    res = delta.write(change, spec(ref), RunParams())
    assert read_both(delta, ref, ["id"]).equals(once)
    assert res.merge_metrics["num_target_rows_inserted"] == 0


# -- only the files holding changed keys are removed ---------------------------------------------------


def test_only_files_holding_changed_keys_are_removed(delta: DeltaResource) -> None:
    ref = table(delta)
    uri = delta.table_uri(ref)
    files_before = live(delta, ref)
    change = rows([5, 2500, 2501, N + 7], 8.0)  # keys in files 0 and 2, one insert
    # the files holding a changed key, found by reading each file
    holding = {p for p in files_before
               if pl.read_parquet(os.path.join(uri, p)).join(change, on="id", how="semi").height}
    assert len(holding) == 2
    delta.write(change, spec(ref), RunParams())
    removed = {unquote(a["remove"]["path"]) for a in last_commit(delta, ref) if "remove" in a}
    assert removed == holding
    assert files_before - holding <= live(delta, ref)  # untouched files keep their paths


def test_a_file_whose_bounds_cover_a_key_it_lacks_is_not_rewritten(delta: DeltaResource) -> None:
    ref = f"s_{uuid.uuid4().hex[:6]}.t"
    delta.write(rows(range(0, 100, 2)), TargetSpec(ref, "delta", COLS, mode="append"), RunParams())  # even ids
    files_before = live(delta, ref)
    change = rows([51], 1.0)  # inside the file's [0, 98], yet not in it
    res = delta.write(change, spec(ref), RunParams())
    assert not [a for a in last_commit(delta, ref) if "remove" in a]
    assert files_before <= live(delta, ref)
    assert res.merge_metrics["num_target_files_scanned"] == 1
    assert res.merge_metrics["num_target_rows_inserted"] == 1


# -- concurrency and failures --------------------------------------------------------------------------


def test_a_commit_slipped_in_before_ours_makes_the_merge_retry(delta: DeltaResource,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    ref = table(delta, files=3)
    uri = delta.table_uri(ref)
    before = read_both(delta, ref, ["id"])
    change = rows(list(range(2990, 3010)), 9.0)
    # a concurrent writer's blind append: a key of the change set (must end up updated, once)
    # and a key outside it (must not be lost)
    slipped = rows([3005, 7777], 100.0)
    real = _files.ParquetFiles.actions
    calls: list[int] = []

    def actions(self: _files.ParquetFiles) -> Any:
        if not calls:
            write_deltalake(uri, slipped.to_arrow(), mode="append")
        calls.append(1)
        return real(self)

    monkeypatch.setattr(_files.ParquetFiles, "actions", actions)
    v = DeltaTable(uri).version()
    res = delta.write(change, spec(ref), RunParams())
    out = read_both(delta, ref, ["id"])
    assert out["id"].is_unique().all()
    assert out.equals(upsert(pl.concat([before, slipped]), change, ["id"]))
    assert len(calls) == 2  # the first attempt lost the commit and was run again
    assert res.version == v + 2
    assert on_disk(delta, ref) <= _referenced_ever(uri)  # the lost attempt's files were deleted


def _referenced_ever(uri: str) -> set[str]:
    refs: set[str] = set()
    for name in os.listdir(os.path.join(uri, "_delta_log")):
        if name.endswith(".json"):
            with open(os.path.join(uri, "_delta_log", name)) as f:
                for line in f:
                    a = json.loads(line)
                    for kind in ("add", "remove"):
                        if kind in a:
                            refs.add(unquote(a[kind]["path"]))
    return refs


def test_a_failure_mid_write_leaves_the_table_as_it_was(delta: DeltaResource, monkeypatch: pytest.MonkeyPatch) -> None:
    ref = table(delta)
    uri = delta.table_uri(ref)
    before, v, disk = read_both(delta, ref, ["id"]), DeltaTable(uri).version(), on_disk(delta, ref)
    monkeypatch.setattr(_files, "TARGET_FILE_BYTES", 8_000)  # many small files, so some exist at the failure
    real = _files.ParquetFiles._put
    puts: list[str] = []

    def put(self: _files.ParquetFiles, rel: str, df: pl.DataFrame) -> int:
        if len(puts) == 3:
            raise OSError("disk gone")
        puts.append(rel)
        return real(self, rel, df)

    monkeypatch.setattr(_files.ParquetFiles, "_put", put)
    with pytest.raises(OSError, match="disk gone"):
        delta.write(rows(range(0, N, 3), 1.0), spec(ref), RunParams())
    assert len(puts) == 3 and all(os.path.exists(os.path.join(uri, p)) is False for p in puts)
    assert DeltaTable(uri).version() == v
    assert read_both(delta, ref, ["id"]).equals(before)
    assert on_disk(delta, ref) == disk  # the files written before the failure were deleted


def test_partition_values_that_need_escaping(delta: DeltaResource) -> None:
    """Partition directories are URL-escaped in the log's paths: the files read and removed are
    the right ones."""
    cols = (C("id", "int64", nullable=False), C("region", "string", nullable=False), C("amount", "float64"))
    regions = ["north east", "a/b%", "plain"]

    def rrows(ids: range | list[int], bump: float = 0.0) -> pl.DataFrame:
        ids = list(ids)
        return pl.DataFrame({"id": ids, "region": [regions[i % 3] for i in ids], "amount": [i + bump for i in ids]},
                            schema={"id": pl.Int64, "region": pl.String, "amount": pl.Float64})

    ref = f"s_{uuid.uuid4().hex[:6]}.t"
    delta.write(rrows(range(300)), TargetSpec(ref, "delta", cols, mode="append", partition_by=("region",)), RunParams())
    before = read_both(delta, ref, ["id"])
    change = rrows([0, 1, 3, 4, 300, 301], 0.5)  # "north east" and "a/b%" only
    delta.write(change, spec(ref, cols=cols, partition_by=("region",)), RunParams())
    commit = last_commit(delta, ref)
    assert info(commit)["loomOperation"] == _rewrite.OPERATION
    assert {a["remove"]["partitionValues"]["region"] for a in commit if "remove" in a} == {"north east", "a/b%"}
    assert read_both(delta, ref, ["id"]).equals(upsert(before, change, ["id"]))
    assert on_disk(delta, ref) <= _referenced_ever(delta.table_uri(ref))
