"""Tests of loom_resources.delta._merge at scale: target files pruned by the change set's key
ranges (only files that can hold a changed key are read and rewritten), correctness where
pruning must not apply (keys between or outside files, files without statistics), reruns, and
the change set larger than the memory limit refused before anything is written.

Every table is read back with polars / deltalake; scans are counted from the merge's own
operation metrics in the Delta log.
"""

from __future__ import annotations

import datetime as dt
import os
import time
import uuid
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from deltalake import DeltaTable
from deltalake.transaction import AddAction

from loom_resources.delta import DeltaResource
from loom_resources.dtypes import ColumnSchema as C
from loom_resources.errors import ChangeSetTooLargeError
from loom_resources.model import RunParams, TargetSpec

COLS = (C("id", "int64", nullable=False), C("day", "date", nullable=False), C("amount", "float64"))
D0 = dt.date(2024, 1, 1)
FILE_ROWS = 1000
FILES = 5


@pytest.fixture(params=["polars", "delta-rs"])
def delta(tmp_path: Path, request: pytest.FixtureRequest) -> DeltaResource:
    root = tmp_path / "lake"
    root.mkdir()
    return DeltaResource(root=str(root), parquet_writer=request.param)


def rows(ids: range | list[int], bump: float = 0.0) -> pl.DataFrame:
    ids = list(ids)
    return pl.DataFrame({"id": ids, "day": [D0 + dt.timedelta(days=i % 30) for i in ids],
                         "amount": [i * 0.5 + bump for i in ids]},
                        schema={"id": pl.Int64, "day": pl.Date, "amount": pl.Float64})


def merge_spec(ref: str, **kw: Any) -> TargetSpec:
    return TargetSpec(ref, "delta", COLS, mode="merge", merge_keys=kw.pop("merge_keys", ("id",)), **kw)


def files_table(delta: DeltaResource, *, files: int = FILES) -> str:
    """An unpartitioned table of ``files`` files, ids increasing across files (file k holds
    ids k*FILE_ROWS .. (k+1)*FILE_ROWS - 1), as a table grown by appends is."""
    ref = f"s_{uuid.uuid4().hex[:6]}.t"
    for k in range(files):
        delta.write(rows(range(k * FILE_ROWS, (k + 1) * FILE_ROWS)), TargetSpec(ref, "delta", COLS, mode="append"),
                    RunParams())
    assert len(DeltaTable(delta.table_uri(ref)).file_uris()) == files
    return ref


def read(delta: DeltaResource, ref: str) -> pl.DataFrame:
    return pl.read_delta(delta.table_uri(ref)).sort("id")


def last_metrics(delta: DeltaResource, ref: str) -> dict[str, Any]:
    return dict(DeltaTable(delta.table_uri(ref)).history(1)[0]["operationMetrics"])


def expected(before: pl.DataFrame, change: pl.DataFrame) -> pl.DataFrame:
    """The upsert computed independently in Polars."""
    return pl.concat([before.join(change, on="id", how="anti"), change]).sort("id")


# -- pruning -----------------------------------------------------------------------------------------


def test_clustered_changes_read_only_the_file_holding_their_keys(delta: DeltaResource) -> None:
    ref = files_table(delta)
    before = read(delta, ref)
    last = (FILES - 1) * FILE_ROWS
    change = rows(list(range(last + 500, last + FILE_ROWS)) + list(range(FILES * FILE_ROWS, FILES * FILE_ROWS + 500)),
                  bump=1.0)
    res = delta.write(change, merge_spec(ref), RunParams())
    m = last_metrics(delta, ref)
    assert m["num_target_files_scanned"] == 1  # only the last file can hold an updated id
    assert m["num_target_files_skipped_during_scan"] == FILES - 1
    assert res.merge_metrics["num_target_rows_updated"] == 500
    assert read(delta, ref).equals(expected(before, change))


def test_changes_in_first_and_last_files_skip_the_files_between(delta: DeltaResource) -> None:
    ref = files_table(delta)
    before = read(delta, ref)
    change = rows([3, 7, FILES * FILE_ROWS - 2, FILES * FILE_ROWS + 10], bump=2.0)
    delta.write(change, merge_spec(ref), RunParams())
    m = last_metrics(delta, ref)
    assert m["num_target_files_scanned"] == 2
    assert read(delta, ref).equals(expected(before, change))


def test_keys_outside_and_between_file_ranges_are_inserted(delta: DeltaResource) -> None:
    ref = f"s_{uuid.uuid4().hex[:6]}.t"
    # two files with a gap of ids between them: 0..99 and 1000..1099
    for ids in (range(100), range(1000, 1100)):
        delta.write(rows(ids), TargetSpec(ref, "delta", COLS, mode="append"), RunParams())
    before = read(delta, ref)
    change = rows([-5, 50, 500, 1050, 5000], bump=3.0)  # below, in, between, in, above the files
    delta.write(change, merge_spec(ref), RunParams())
    out = read(delta, ref)
    assert out.equals(expected(before, change))
    assert out["id"].is_unique().all()


def test_only_inserts_read_no_file(delta: DeltaResource) -> None:
    ref = files_table(delta, files=3)
    before = read(delta, ref)
    change = rows(range(10_000, 10_050))
    delta.write(change, merge_spec(ref), RunParams())
    assert last_metrics(delta, ref)["num_target_files_scanned"] == 0
    assert read(delta, ref).equals(expected(before, change))


def test_a_file_without_statistics_is_never_pruned(delta: DeltaResource, tmp_path: Path) -> None:
    """A foreign writer may leave a file without min/max: the merge must still find its keys."""
    ref = files_table(delta, files=2)
    uri = delta.table_uri(ref)
    name = f"part-nostats-{uuid.uuid4()}.parquet"
    rows(range(5000, 5010)).write_parquet(os.path.join(uri, name))
    table = DeltaTable(uri)
    add = AddAction(name, os.path.getsize(os.path.join(uri, name)), {}, int(time.time() * 1000), True,
                    '{"numRecords": 10}')
    table.create_write_transaction([add], "append", schema=table.schema())
    before = read(delta, ref)
    change = rows([5003, 1, 9999], bump=4.0)  # 5003 lives in the file without statistics
    delta.write(change, merge_spec(ref), RunParams())
    out = read(delta, ref)
    assert out.equals(expected(before, change))
    assert out.filter(pl.col("id") == 5003)["amount"].to_list() == [5003 * 0.5 + 4.0]


def test_two_key_columns_are_both_bounded(delta: DeltaResource) -> None:
    ref = files_table(delta)
    before = read(delta, ref)
    change = rows([FILES * FILE_ROWS - 1, FILES * FILE_ROWS + 1], bump=5.0)
    delta.write(change, merge_spec(ref, merge_keys=("id", "day")), RunParams())
    assert last_metrics(delta, ref)["num_target_files_scanned"] == 1
    assert read(delta, ref).equals(expected(before, change))


def test_rerun_of_the_same_change_set_changes_nothing(delta: DeltaResource) -> None:
    ref = files_table(delta, files=3)
    change = rows(list(range(2900, 3000)) + list(range(3000, 3100)), bump=1.0)
    delta.write(change, merge_spec(ref), RunParams())
    once = read(delta, ref)
    res = delta.write(change, merge_spec(ref), RunParams())
    assert read(delta, ref).equals(once)
    assert res.merge_metrics["num_target_rows_inserted"] == 0


def test_covered_ranges_are_capped_by_joining_the_closest() -> None:
    from loom_resources.delta._merge import MAX_KEY_RANGES, _covered

    values = pl.Series(list(range(0, 10_000, 10)), dtype=pl.Int64)  # 1000 keys
    bounds = pl.DataFrame({"min": [i * 100 for i in range(100)], "max": [i * 100 + 5 for i in range(100)]})
    ranges = _covered(values, bounds)
    assert len(ranges) == MAX_KEY_RANGES
    # every key inside some file's bounds is inside some range
    inside = [v for v in values.to_list() if any(lo <= v <= hi for lo, hi in bounds.iter_rows())]
    assert all(any(lo <= v <= hi for lo, hi in ranges) for v in inside)
    assert _covered(values, None) == [(0, 9990)]


# -- change sets larger than the limit -----------------------------------------------------------


@pytest.mark.parametrize("lazy", [True, False], ids=["lazy", "eager"])
def test_change_set_over_the_limit_is_refused_before_writing(tmp_path: Path, lazy: bool) -> None:
    delta = DeltaResource(root=str(tmp_path), merge_max_change_set_mb=1)
    ref = files_table(delta, files=2)
    before, v = read(delta, ref), DeltaTable(delta.table_uri(ref)).version()
    n = 200_000  # ~4.6 MB in memory
    big = pl.LazyFrame({"i": pl.int_range(0, n, eager=True, dtype=pl.Int64)}).select(
        pl.col("i").alias("id"), pl.lit(D0).alias("day"), (pl.col("i") * 0.5).alias("amount"))
    with pytest.raises(ChangeSetTooLargeError, match=rf"table {ref}:.*merge_max_change_set_mb = 1 MiB.*nothing was written"):
        delta.write(big if lazy else big.collect(), merge_spec(ref), RunParams())
    assert DeltaTable(delta.table_uri(ref)).version() == v
    assert read(delta, ref).equals(before)
    # under the limit (or without one) the same merge goes through
    DeltaResource(root=str(tmp_path), merge_max_change_set_mb=0).write(big, merge_spec(ref), RunParams())
    assert pl.read_delta(delta.table_uri(ref)).height == n + 2 * FILE_ROWS - 2 * FILE_ROWS  # ids 0..1999 updated


def test_history_change_set_over_the_limit_is_refused_before_writing(tmp_path: Path) -> None:
    from loom_resources.model import HistoryOptions

    delta = DeltaResource(root=str(tmp_path), merge_max_change_set_mb=1)
    ref = f"s_{uuid.uuid4().hex[:6]}.h"
    s = TargetSpec(ref, "delta", COLS, mode="history", merge_keys=("id",), history=HistoryOptions(input="changelog"))
    delta.write(rows(range(10)).with_columns(op=pl.lit("upsert")), s, RunParams(values={"effective_date": D0}))
    before, v = read(delta, ref), DeltaTable(delta.table_uri(ref)).version()
    big = rows(range(100_000)).with_columns(op=pl.lit("upsert")).lazy()
    with pytest.raises(ChangeSetTooLargeError, match=rf"table {ref}:.*nothing was written"):
        delta.write(big, s, RunParams(values={"effective_date": D0 + dt.timedelta(days=1)}))
    assert DeltaTable(delta.table_uri(ref)).version() == v
    assert read(delta, ref).equals(before)


# -- history (SCD2) with a change log: only the files that can hold its keys ---------------------


def test_history_change_log_rewrites_only_files_holding_its_keys(delta: DeltaResource) -> None:
    from loom_resources.model import HistoryOptions

    ref = f"s_{uuid.uuid4().hex[:6]}.h"
    s = TargetSpec(ref, "delta", COLS, mode="history", merge_keys=("id",), history=HistoryOptions(input="changelog"))

    def log(ids: range | list[int], day: int, bump: float = 0.0, deleted: tuple[int, ...] = ()) -> None:
        frame = rows(ids, bump).with_columns(op=pl.lit("upsert"))
        if deleted:
            frame = pl.concat([frame, rows(list(deleted)).with_columns(op=pl.lit("delete"))])
        delta.write(frame, s, RunParams(values={"effective_date": D0 + dt.timedelta(days=day)}))

    log(range(100), 0)  # creates the table: ids 0..99 current since D0
    uri = delta.table_uri(ref)
    first = pl.read_delta(uri)
    for k in range(1, 4):  # three more files of current versions (ids 100..399), appended as they are
        more = rows(range(k * 100, (k + 1) * 100)).join(first.drop("id", "day", "amount").head(1), how="cross")
        more.select(first.columns).write_delta(uri, mode="append")
    assert len(DeltaTable(uri).file_uris()) == 4
    files_before = len(DeltaTable(uri).file_uris())
    before = pl.read_delta(uri)
    # day 4: ids 390..399 change, 400..404 are new, 395 is deleted
    log(list(range(390, 395)) + list(range(396, 400)) + list(range(400, 405)), 4, bump=1.0, deleted=(395,))
    m = dict(DeltaTable(uri).history(1)[0]["operationMetrics"])
    assert m["num_removed_files"] == 1  # only the last day's file held current versions of the keys
    assert len(DeltaTable(uri).file_uris()) == files_before - m["num_removed_files"] + m["num_added_files"]
    out = pl.read_delta(uri)
    t4 = dt.datetime(2024, 1, 5)
    assert before.filter(pl.col("is_current")).height == 400
    cur = out.filter(pl.col("is_current")).sort("id")
    # every untouched key keeps its one current version, unchanged
    untouched = before.filter(pl.col("is_current") & ~pl.col("id").is_between(390, 404)).sort("id")
    assert cur.filter(~pl.col("id").is_between(390, 404)).equals(untouched)
    assert cur.filter(pl.col("id").is_between(390, 404))["id"].to_list() == [*range(390, 395), *range(396, 405)]
    assert cur.filter(pl.col("id").is_between(390, 404))["valid_from"].unique().to_list() == [t4]
    closed = out.filter(pl.col("valid_to") == t4).sort("id")
    assert closed["id"].to_list() == list(range(390, 400))  # 395 deleted: closed, no new version
    assert out.height == before.height + 9 + 5  # new versions of 9 keys, 5 new keys; 395 only closed
