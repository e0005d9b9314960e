"""The ``merge`` (upsert) of a plain Delta table by rewriting the files that hold changed keys.

delta-rs' merge joins the target with the change set in DataFusion and writes with its
single-threaded Parquet writer; this path does the same upsert with Polars, file by file:

1. candidates: the snapshot's files in the run's partitions whose ``[min, max]`` of each integer
   or date merge key holds some change key (a file without bounds is a candidate);
2. each candidate is read (one at a time: memory stays about one file plus the change set) and
   anti-joined with the change set's keys; a file holding no changed key is left as it is, else
   its surviving rows are written as new files with Loom's encoder (``_files.ParquetFiles``) and
   the file is removed;
3. the whole change set is written as new files;
4. ONE commit of the removes and adds, through the snapshot it read, with delta-rs' internal
   retries off: the commit is put-if-absent at the snapshot's version + 1, so any concurrent
   commit (a blind append included, which delta-rs' own conflict checker lets through) fails
   ours, and :func:`~loom_resources.delta._commit.with_retries` runs the attempt again from a
   fresh snapshot (the files written are deleted). No row is lost or duplicated by a concurrent
   writer.

Only tables ``_files.supported`` covers take this path (local or S3, no change data feed,
constraints, column mapping or deletion vectors, no schema evolution) and not
``delete_unmatched`` (which must see every target row of the written partitions): see
:func:`applies`. Everything else keeps delta-rs' merge (``_merge``), whose writer maintains those
features.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Generator
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import polars as pl

from loom_resources.delta._commit import commit_properties, is_conflict
from loom_resources.delta._files import ParquetFiles, partition_value, supported
from loom_resources.delta._sweep import StoreFiles
from loom_resources.delta._types import storable_columns
from loom_resources.partitions import PartitionValues

if TYPE_CHECKING:
    from deltalake import DeltaTable

    from loom_resources.delta._write import DeltaWrite

__all__ = ["OPERATION", "RewriteResult", "applies", "rewrite_merge"]

#: The commitInfo ``loomOperation`` of a merge committed by this path (delta-rs records "WRITE").
OPERATION = "merge (rewrite)"
# Key types whose file bounds both Parquet writers record exactly (as ``_merge._RANGE_TYPES``).
_RANGE_TYPES = (pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt16, pl.UInt32, pl.UInt64, pl.Date)


def applies(w: DeltaWrite, table: DeltaTable) -> bool:
    """Whether the merge of ``w`` into ``table`` can be done by this module (see the docstring)."""
    spec = w.spec
    if spec.delete_unmatched or w.new_columns:
        return False
    return supported(w.loc, table, storable_columns(w.columns), spec.partition_by, mode="append", predicate=None,
                     partitions=(), schema_mode=None)


class RewriteResult:
    """What one committed rewrite did: the version and delta-rs-shaped merge metrics."""

    def __init__(self, version: int, metrics: dict[str, int]) -> None:
        self.version, self.metrics = version, metrics


class _Plan:
    """The files of one snapshot that may hold a changed key, and their rewrite."""

    def __init__(self, w: DeltaWrite, table: DeltaTable, data: pl.DataFrame, partitions: PartitionValues) -> None:
        self.w, self.table, self.data = w, table, data
        self.keys = list(w.spec.merge_keys)
        self.part_cols = list(table.metadata().partition_columns)
        self.actions = pl.DataFrame(table.get_add_actions(flatten=True))
        self.removed: list[tuple[str, int, dict[str, str | None]]] = []  # path, size, partition values
        self.rows_removed = 0
        self.rows_copied = 0
        self.scanned = 0
        self.candidates = self._candidates(partitions)

    def _candidates(self, partitions: PartitionValues) -> pl.DataFrame:
        """The add actions of files that can hold a change key."""
        acts = self.actions
        if acts.height == 0:
            return acts
        mask = pl.Series([True] * acts.height)
        if self.part_cols:
            # the merge is scoped to the run's partitions, as delta-rs' merge condition is
            wanted = {tuple(partition_value(p.get(c)) for c in self.part_cols) for p in partitions}
            have = acts.select([pl.col(f"partition.{c}") for c in self.part_cols]).rows()
            mask &= pl.Series([tuple(partition_value(v) for v in row) in wanted for row in have])
        for key in self.keys:
            lo, hi = f"min.{key}", f"max.{key}"
            if self.data.schema[key] not in _RANGE_TYPES or lo not in acts.columns or hi not in acts.columns:
                continue  # no exact bounds: every file can hold the key
            values = self.data.get_column(key).drop_nulls().unique().sort()
            lows, highs = acts[lo].cast(values.dtype), acts[hi].cast(values.dtype)
            inside = values.search_sorted(highs, side="right") - values.search_sorted(lows, side="left") > 0
            # a file without bounds for the key stays a candidate
            mask &= (inside | lows.is_null() | highs.is_null()).fill_null(True)
        return acts.filter(mask)

    def frames(self) -> Generator[pl.DataFrame, None, None]:
        """The rows to write: each touched candidate's survivors, then the change set."""
        store = StoreFiles(self.w.loc)
        keys = self.data.select(self.keys)
        for act in self.candidates.iter_rows(named=True):
            rel = unquote(act["path"])  # the log's path is URL-encoded; the file's name is not
            part = {c: act[f"partition.{c}"] for c in self.part_cols}
            df = self._read(store, rel, part)
            self.scanned += 1
            survivors = df.filter(~self._changed(keys, act))
            if survivors.height == df.height:
                continue  # holds no changed key: the file stays as it is
            self.removed.append((rel, int(act["size_bytes"]), {c: partition_value(v) for c, v in part.items()}))
            self.rows_removed += df.height - survivors.height
            self.rows_copied += survivors.height
            del df  # not held while the survivors are encoded: memory stays about one file
            if survivors.height:
                yield survivors
        yield self.data

    def _changed(self, keys: pl.DataFrame, act: dict[str, Any]) -> pl.Expr:
        """Whether a row of the file ``act`` has a change set's key (never for a null key, as
        ``t.k = s.k`` in delta-rs' condition). The keys outside the file's bounds are left out."""
        if len(self.keys) > 1:
            # several key columns: a struct membership test (rows of the keys as one value)
            struct = pl.struct(self.keys)
            wanted = keys.select(pl.struct(self.keys).alias("k")).to_series()
            return struct.is_in(wanted.implode()).fill_null(False) & pl.all_horizontal(
                [pl.col(k).is_not_null() for k in self.keys])
        key = self.keys[0]
        values = keys.get_column(key).drop_nulls()
        lo, hi = act.get(f"min.{key}"), act.get(f"max.{key}")
        if values.dtype in _RANGE_TYPES and lo is not None and hi is not None:
            values = values.filter(values.is_between(lo, hi))
        # a hash set of the keys, not an anti-join: ~20x faster on 4M rows against 1M keys
        # (measured with polars 2.1; the join builds and probes a hash table of both sides)
        return pl.col(key).is_in(values.implode()).fill_null(False)

    def _read(self, store: StoreFiles, rel: str, part: dict[str, Any]) -> pl.DataFrame:
        """One data file in the change set's columns and types (partition values from the log,
        columns the file predates as nulls)."""
        import io

        if store.local:
            df = pl.read_parquet(os.path.join(self.w.loc.uri, rel), hive_partitioning=False)
        else:
            df = pl.read_parquet(io.BytesIO(store.read(rel)), hive_partitioning=False)
        schema = self.data.schema
        exprs = []
        for name, dtype in schema.items():
            if name in part:
                exprs.append(pl.lit(part[name], dtype).alias(name))
            elif name in df.columns:
                exprs.append(pl.col(name).cast(dtype))
            else:
                exprs.append(pl.lit(None, dtype).alias(name))
        return df.select(exprs)


def rewrite_merge(w: DeltaWrite, table: DeltaTable, data: pl.DataFrame, partitions: PartitionValues,
                  predicate: str) -> RewriteResult:
    """One attempt of the merge of ``data`` (validated, in storable types) into the snapshot
    ``table``: the files written and ONE commit at ``table.version() + 1``, or a conflict
    (``CommitFailedError``) when any writer committed after the snapshot, with the files written
    deleted. ``predicate``: the merge condition, recorded in the commit's ``operationParameters``."""
    from deltalake.transaction import RemoveAction

    started = time.monotonic()
    plan = _Plan(w, table, data, partitions)
    files = ParquetFiles(w.loc, plan, storable_columns(w.columns), plan.part_cols, w.schema)
    files.use_table_stats(table)
    try:
        adds = files.actions()
    except BaseException:
        files.discard()
        raise
    updated = plan.rows_removed
    metrics = {
        "num_source_rows": data.height,
        "num_target_rows_inserted": max(0, data.height - updated),
        "num_target_rows_updated": updated,
        "num_target_rows_deleted": 0,
        "num_target_rows_copied": plan.rows_copied,
        "num_output_rows": plan.rows_copied + data.height,
        "num_target_files_scanned": plan.scanned,
        "num_target_files_skipped_during_scan": plan.actions.height - plan.scanned,
        "num_target_files_added": len(adds),
        "num_target_files_removed": len(plan.removed),
        "num_added_files": len(adds),
        "num_removed_files": len(plan.removed),
    }
    now = int(time.time() * 1000)
    removes = [RemoveAction(rel, True, now, size, values) for rel, size, values in plan.removed]
    read_version = table.version()
    metrics["execution_time_ms"] = int((time.monotonic() - started) * 1000)
    props = commit_properties(w.loc, w.plan.app_id, internal_retries=False, predicate=predicate,
                              commit_id=uuid.uuid4().hex,
                              extra={"loomOperation": OPERATION, "operationMetrics": metrics})
    try:
        # put-if-absent at read_version + 1 (retries off): any concurrent commit fails this one
        table.create_write_transaction([*removes, *adds], "append", schema=table.schema(),
                                       partition_by=plan.part_cols or None, commit_properties=props)
    except BaseException as exc:
        # a conflict committed nothing: delete the files; any other failure may have committed,
        # so they stay for the orphan sweep (it deletes only what no version references)
        files.uncertain = not is_conflict(exc)
        files.discard()
        raise
    files.committed = True
    return RewriteResult(read_version + 1, metrics)
