"""The ``merge`` (upsert) mode on Delta: one commit on the merge keys.

Plain tables Loom's Polars encoder covers are merged by rewriting the files that hold changed
keys (``_rewrite``: faster than delta-rs' merge, and stricter against concurrent writers); the
rest (change data feed, constraints, column mapping, deletion vectors, schema evolution,
``delete_unmatched``, ``parquet_writer="delta-rs"``) by delta-rs' ``MERGE``, as below.

The frame is collected: duplicate keys must be found across the whole frame before anything
is written, and delta-rs joins the table with the whole change set. A change set larger than
the resource's ``merge_max_change_set_mb`` is refused before anything is written (see
:func:`collect_change_set`).

Pruning: delta-rs reads (and rewrites) only the target files its merge condition cannot rule
out from their statistics. deltalake's streamed merge (its default) derives nothing from the
source, and its in-memory merge (used here) only the change set's single ``[min, max]``, so the
condition carries literals that prune further (:func:`key_ranges`):

* the run's partition values (``t.day IN (...)``) on a partitioned table;
* for each integer or date merge key, the ranges of the change set's keys that fall inside some
  file's ``[min, max]`` (from the add actions), merged to at most :data:`MAX_KEY_RANGES`.

A key outside every file's range matches no target row (it is an insert), so leaving it out of
the ranges loses no match; when any file has no bounds for the key, the range is the change
set's whole ``[min, max]``, which holds every key. Either way every key that can match a target
row satisfies the literal, so the merge's result is the same as without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import polars as pl

from loom_resources.conform import frame_partitions
from loom_resources.delta._batches import as_arrow
from loom_resources.delta._commit import commit_properties, render, with_retries
from loom_resources.delta._rewrite import applies, rewrite_merge
from loom_resources.delta._stats import file_bounds
from loom_resources.delta._write import DeltaWrite, Outcome, merge_metric_counts
from loom_resources.errors import ChangeSetTooLargeError
from loom_resources.partitions import partition_predicate
from loom_resources.predicates import And, Compare, Or, Predicate, quote_identifier

if TYPE_CHECKING:
    from deltalake import DeltaTable

__all__ = ["MAX_KEY_RANGES", "collect_change_set", "key_ranges", "merge_table"]

#: Most key ranges one merge condition carries per key column (nearest ranges are joined beyond).
MAX_KEY_RANGES = 32
# Key types whose file bounds both Parquet writers record exactly (``_stats.stats_columns``):
# a range on them prunes safely. Strings and timestamps can carry truncated bounds.
_RANGE_TYPES = (pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt16, pl.UInt32, pl.UInt64, pl.Date)


def collect_change_set(frame: pl.LazyFrame | pl.DataFrame, *, table: str, limit_bytes: int, setting: str
                       ) -> pl.DataFrame:
    """The change set in memory, or :class:`ChangeSetTooLargeError` once it exceeds ``limit_bytes``.

    A lazy frame is pulled in batches by Polars' streaming engine and the collection stops as
    soon as the batches held pass the limit, so a change set larger than memory is refused with
    about ``limit_bytes`` held, before anything is written. ``limit_bytes <= 0``: no limit.
    """
    if isinstance(frame, pl.DataFrame):
        if 0 < limit_bytes < frame.estimated_size():
            raise _too_large(table, frame.height, int(frame.estimated_size()), limit_bytes, setting, complete=True)
        return frame
    if limit_bytes <= 0:
        return frame.collect()
    held: list[pl.DataFrame] = []
    size = rows = 0
    for batch in frame.collect_batches(engine="streaming"):
        held.append(batch)
        size += int(batch.estimated_size())
        rows += batch.height
        if size > limit_bytes:
            raise _too_large(table, rows, size, limit_bytes, setting, complete=False)
    return pl.concat(held) if held else frame.collect()


def _too_large(table: str, rows: int, size: int, limit: int, setting: str, *, complete: bool) -> ChangeSetTooLargeError:
    mib = 2**20
    count = f"{rows:,} rows, {size / mib:,.0f} MiB" if complete else f"more than {rows:,} rows, over {size / mib:,.0f} MiB"
    return ChangeSetTooLargeError(
        f"table {table}: the change set ({count} in memory) is larger than {setting} = {limit / mib:,.0f} MiB; "
        f"nothing was written. A merge or history write holds its whole change set in memory (its keys are checked "
        f"for duplicates, and the table is joined with it), and the merge needs several times its size at the peak. Split the change set into smaller "
        f"runs (a partitioned asset merges one partition's changes per run; or merge a key range per run), or raise "
        f"{setting} if the machine has the memory."
    )


def key_ranges(table: DeltaTable, df: pl.DataFrame, keys: tuple[str, ...]) -> Predicate | None:
    """A literal condition on the target's merge keys that every change-set key able to match a
    target row satisfies (see the module docstring); ``None`` when no key column has a type it
    can bound."""
    parts: list[Predicate] = []
    for key in keys:
        if df.schema[key] not in _RANGE_TYPES:
            continue
        values = df.get_column(key).drop_nulls().unique().sort()
        if values.is_empty():
            continue
        ranges = _covered(values, file_bounds(table, key))
        parts.append(Or(tuple(And((Compare(key, ">=", lo), Compare(key, "<=", hi))) for lo, hi in ranges)))
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else And(tuple(parts))


def _covered(values: pl.Series, bounds: pl.DataFrame | None) -> list[tuple[Any, Any]]:
    """Ranges of the sorted ``values`` that fall inside some file's ``[min, max]`` (``bounds``;
    ``None``: unknown, so the whole range of ``values``)."""
    whole = [(values[0], values[-1])]
    if bounds is None:
        return whole
    lows = bounds["min"].cast(values.dtype)
    highs = bounds["max"].cast(values.dtype)
    first = values.search_sorted(lows, side="left")
    last = values.search_sorted(highs, side="right")
    hits = pl.DataFrame({"a": first, "b": last}).filter(pl.col("b") > pl.col("a")).sort("a")
    if hits.height == 0:
        # no key falls in any file: all are inserts and no file needs reading; one key as the
        # range (in no file's bounds) lets delta-rs skip every file
        return [(values[0], values[0])]
    # merge overlapping ranges of key positions (files whose bounds overlap)
    merged: list[list[int]] = []
    for a, b in hits.iter_rows():
        if merged and a < merged[-1][1]:  # half-open positions: [a, b) share a key only if a < b
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    while len(merged) > MAX_KEY_RANGES:
        # join the two neighbours with the smallest gap in key positions (fewest keys between)
        i = min(range(len(merged) - 1), key=lambda j: merged[j + 1][0] - merged[j][1])
        merged[i:i + 2] = [[merged[i][0], merged[i + 1][1]]]
    return [(values[a], values[b - 1]) for a, b in merged]


def merge_table(w: DeltaWrite) -> Outcome:
    """Merge on the spec's keys in one commit."""
    spec = w.spec
    df = collect_change_set(w.frame, table=str(spec.ref), limit_bytes=w.loc.merge_max_change_set_bytes,
                            setting="DeltaResource.merge_max_change_set_mb")
    source = w.source(df, streaming=False)
    data = source.prepare(df)  # validates the whole frame, merge keys included
    if w.table is not None and df.height == 0 and not spec.delete_unmatched:
        return Outcome(rows=0, noop=True)
    q = lambda n: quote_identifier(n, "datafusion")  # noqa: E731
    conds = [f"t.{q(k)} = s.{q(k)}" for k in spec.merge_keys]
    target_parts: str | None = None
    values = frame_partitions(df, spec)
    if spec.partition_by:
        target_parts = render(partition_predicate(values), spec.ref, qualifier="t")
        conds.append(target_parts)
    snapshot = w.snapshots()

    used: list[DeltaTable] = []  # the table object the merge committed through (moved to its version)
    version: list[int] = []  # the version a rewrite committed (its table object stays at the snapshot)

    def attempt() -> dict[str, int] | None:
        # a merge is idempotent on its keys: a retry (or a concurrent attempt of the same write)
        # merges the same rows again and changes nothing
        table = snapshot()
        if table is None:  # the first write creates the table; a concurrent creator makes it a merge
            w.commit(as_arrow(data, w.schema), mode="append", create=True)
            return None
        predicate = " AND ".join(conds)
        if applies(w, table):
            # Polars rewrites the files holding changed keys (faster than delta-rs' merge; see _rewrite)
            done = rewrite_merge(w, table, data, values, predicate)
            used[:] = [table]
            version[:] = [done.version]
            return done.metrics
        # delete_unmatched must see every target row of the written partitions (delta-rs then
        # scans them whole anyway), so its condition is not narrowed by key ranges
        ranges = None if spec.delete_unmatched else key_ranges(table, data, spec.merge_keys)
        if ranges is not None:  # recomputed on each attempt: a retry reads a newer set of files
            predicate += " AND " + render(ranges, spec.ref, qualifier="t")
        merger = (
            table.merge(
                as_arrow(data, w.schema), predicate, source_alias="s", target_alias="t",
                merge_schema=bool(w.new_columns), commit_properties=commit_properties(w.loc, w.plan.app_id),
                # the change set is in memory already (collected above, within the limit): delta-rs'
                # in-memory source joins faster than its streamed one (1M random keys into 20M
                # rows: ~0.6x the time, paired runs in docs/performance.md) at the cost of one copy
                streamed_exec=False,
            )
            .when_matched_update_all()
            .when_not_matched_insert_all()
        )
        if spec.delete_unmatched:
            merger = merger.when_not_matched_by_source_delete(target_parts)
        metrics = merge_metric_counts(dict(merger.execute()))
        used[:], version[:] = [table], []
        return metrics

    metrics = with_retries(spec.ref, w.loc, attempt, source)
    if metrics is None:  # the write created the table: version 0
        return Outcome(rows=df.height, version=0)
    return Outcome(rows=df.height, partitions=values, merge_metrics=metrics, table=used[0],
                   version=version[0] if version else None)
