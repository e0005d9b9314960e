"""The ``merge`` (upsert) mode on Delta: one ``MERGE`` commit on the merge keys.

The frame is collected: duplicate keys must be found across the whole frame before anything
is written. With literal partition values in the condition delta-rs prunes target files
instead of scanning the table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import polars as pl

from loom_resources.conform import frame_partitions
from loom_resources.delta._batches import as_arrow
from loom_resources.delta._commit import commit_properties, render, with_retries
from loom_resources.delta._write import DeltaWrite, Outcome, merge_metric_counts
from loom_resources.partitions import partition_predicate
from loom_resources.predicates import quote_identifier

if TYPE_CHECKING:
    from deltalake import DeltaTable

__all__ = ["merge_table"]


def merge_table(w: DeltaWrite) -> Outcome:
    """Merge on the spec's keys in one commit."""
    spec = w.spec
    df = w.frame.collect() if isinstance(w.frame, pl.LazyFrame) else w.frame
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
    predicate = " AND ".join(conds)
    snapshot = w.snapshots()

    used: list[DeltaTable] = []  # the table object the merge committed through (moved to its version)

    def attempt() -> dict[str, int] | None:
        # a merge is idempotent on its keys: a retry (or a concurrent attempt of the same write)
        # merges the same rows again and changes nothing
        table = snapshot()
        if table is None:  # the first write creates the table; a concurrent creator makes it a merge
            w.commit(as_arrow(data, w.schema), mode="append", create=True)
            return None
        merger = (
            table.merge(
                as_arrow(data, w.schema), predicate, source_alias="s", target_alias="t",
                merge_schema=bool(w.new_columns), commit_properties=commit_properties(w.loc, w.plan.app_id),
            )
            .when_matched_update_all()
            .when_not_matched_insert_all()
        )
        if spec.delete_unmatched:
            merger = merger.when_not_matched_by_source_delete(target_parts)
        metrics = merge_metric_counts(dict(merger.execute()))
        used[:] = [table]
        return metrics

    metrics = with_retries(spec.ref, w.loc, attempt, source)
    if metrics is None:  # the write created the table: version 0
        return Outcome(rows=df.height, version=0)
    return Outcome(rows=df.height, partitions=values, merge_metrics=metrics, table=used[0])
