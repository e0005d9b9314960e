"""How the ClickHouse resource executes a write plan.

Every mode loads a staging table with the target's structure first (eager: the whole frame is
validated before; streaming: each batch is validated before it is inserted), so a failure
before publication leaves the target unchanged. The staged rows are then published exactly
once (:mod:`._publish`):

- ``append`` / ``merge``: ``MOVE PARTITION ... TO TABLE`` per partition (``merge`` tables are
  ReplacingMergeTree on the merge keys and are read with FINAL);
- ``overwrite``: ``EXCHANGE TABLES`` (atomic for the whole table);
- ``replace_partitions``: ``REPLACE PARTITION ... FROM staging`` per partition, and a run
  partition without rows is dropped. No DELETE mutations.

A retried write that was already published is skipped; one that was staged but not fully
published completes the earlier publication. The staging table is dropped on success and on
failure before publication.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import polars as pl
from dagster import get_dagster_logger

from loom_resources.clickhouse._client import ClickHouseConnection
from loom_resources.clickhouse._cluster import staging_insert_settings
from loom_resources.clickhouse._ledger import DONE
from loom_resources.clickhouse._publish import await_published, complete, may_be_live, previous
from loom_resources.clickhouse._pushdown import ClickHouseQuery
from loom_resources.clickhouse._sql import lit, qi, qt, render
from loom_resources.clickhouse._stage import Stage
from loom_resources.clickhouse._types import storable
from loom_resources.conform import conform, with_audit_columns
from loom_resources.errors import DataValidationError, LoomError
from loom_resources.model import RunParams, TargetSpec, WriteContext, WriteMode, WriteResult
from loom_resources.partitions import partition_predicate
from loom_resources.plan import plan_write, to_frame
from loom_resources.polars_types import empty_frame

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["write_frame"]

_LOG_EVERY_BATCHES = 10  # progress in the log on long streaming writes


def arrow_level(conn: ClickHouseConnection) -> pl.CompatLevel:
    """The Arrow flavour batches are exported in: Polars' own (string and binary *views*,
    zero-copy) for the embedded engine, which reads them (tested: ``tests/test_clickhouse_types.py``
    round-trips every type through it); the classic one (strings copied into large strings) for a
    server, whose version may predate Arrow's view types. Views save the copy of every string
    (8M rows on this machine: ~20% faster inserted one batch after the other, ~8% in Loom's
    pipeline of two inserts in flight; ``docs/performance.md``, profile table)."""
    return pl.CompatLevel.newest() if conn.is_embedded() else pl.CompatLevel.oldest()


def _arrow_batches(df: pl.DataFrame, batch_rows: int, level: pl.CompatLevel) -> Iterator[pa.Table]:
    """Arrow slices of ``df``; the next slice converts on a worker thread while one is inserted."""
    if df.height <= batch_rows:
        yield df.to_arrow(compat_level=level)
        return
    convert = lambda off: df.slice(off, batch_rows).to_arrow(compat_level=level)  # noqa: E731
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = None
        for off in range(0, df.height, batch_rows):
            following = pool.submit(convert, off)
            if pending is not None:
                yield pending.result()
            pending = following
        if pending is not None:
            yield pending.result()


def write_frame(
    conn: ClickHouseConnection,
    frame: Any,
    spec: TargetSpec,
    params: RunParams,
    *,
    streaming: bool,
    write_ctx: WriteContext | None,
    resource_audit: bool,
    batch_rows: int,
) -> WriteResult:
    """Write ``frame`` to ``spec`` (see the module docstring for each mode)."""
    w = Stage(conn, spec)
    if isinstance(frame, ClickHouseQuery) and frame.conn.store() == conn.store():
        return _write_query(w, frame, params, write_ctx, resource_audit)
    frame = to_frame(frame)  # a query of another store is pulled through Polars
    types = {c.name: c.dtype for c in (w.stored or ())} | {c.name: storable(c.dtype) for c in spec.stored_columns()}
    plan = plan_write(frame, spec, params, write_ctx, requested_streaming=streaming, resource_audit=resource_audit,
                      column_types=types)
    w.spec, spec = plan.spec, plan.spec
    frame = with_audit_columns(frame, spec, write_ctx)
    conformed = conform(frame, spec, w.stored, storable=storable)
    target_cols = w.target_columns(conformed.new_columns)  # raises UnsupportedTypeError naming the column
    plan = plan.with_checks(w.nested_null_check(conformed.columns))
    w.plan = plan
    values = plan.run_partitions
    batch_rows = max(1, batch_rows)

    done = _earlier_attempt(w)
    if done is not None:
        return done
    parts = f", {len(params.partition_keys)} partitions" if params.partition_keys else ""
    get_dagster_logger().info(f"{spec.ref}: {spec.mode.value} write to ClickHouse at {conn.store()} "
                              f"({'streaming' if plan.streaming else 'eager'}{parts})")
    if not plan.streaming:
        # eager path: the whole frame is validated before the table is touched
        df = conformed.frame.collect() if isinstance(conformed.frame, pl.LazyFrame) else conformed.frame
        plan.validate(df)
        batches: Iterator[pl.DataFrame] = iter([df])
        if conn.inserts_in_place():
            # the frame is in memory already and the engine reads it in place, in its own blocks:
            # one insert (8M rows in fresh processes: 0.65-0.80 s against 0.88-1.04 s in 500k
            # slices; 40M: 2.7 s against 5.1 s, peak RSS 2.8 GB against 3.0 GB)
            batch_rows = max(batch_rows, df.height)
    else:
        batches = iter(conformed.frame.lazy().collect_batches(chunk_size=batch_rows, engine="streaming"))
    w.ensure_database()
    level = arrow_level(conn)
    try:
        w.create_staging(target_cols)
        assert w.staging is not None
        rows = 0
        log = get_dagster_logger()
        for i, df in enumerate(batches, start=1):
            if plan.streaming:
                plan.validate(df)
            rows += w.insert_batches(w.staging, _arrow_batches(df, batch_rows, level))
            if i % _LOG_EVERY_BATCHES == 0:
                log.info(f"{spec.ref}: {rows} rows in {i} batches so far")
        if plan.streaming and spec.mode is WriteMode.MERGE:
            _check_staged_keys(w)
        partitions = w.publish(conformed.new_columns, values, rows)
    finally:
        w.drop_staging()
    if not w.published_by_me:  # another attempt of this write claimed it first and published it
        return w.result(0, plan.streaming, (), skipped=True)
    return w.result(rows, plan.streaming, partitions)


def _earlier_attempt(w: Stage) -> WriteResult | None:
    """The result of an earlier attempt of this logical write: skipped when it was published,
    completed when it was staged but its publication was interrupted."""
    plan = w.plan
    token = plan.app_id if plan is not None else None
    if plan is None or token is None:
        return None
    entry = previous(w.res, w.ref, token)
    if entry is None:
        return None
    if entry.state not in DONE:
        # staged by an attempt that died (or is still publishing elsewhere: then this waits for it)
        if not may_be_live(w.res, entry, w.res.stale_after_s):
            mine = complete(w.res, entry)
            rows = entry.rows if mine else 0
        else:
            await_published(w.res, entry)
            rows, mine = 0, False
        return w.result(rows, plan.streaming, (), skipped=not mine)
    completed = w.res.completed_here(w.ref, token)
    if completed is not None:  # this resource's recovery published it just before this call
        return w.result(completed, plan.streaming, ())
    return w.result(0, plan.streaming, (), skipped=True)


def _check_staged_keys(w: Stage) -> None:
    assert w.staging is not None
    keys = ", ".join(qi(k) for k in w.spec.merge_keys)
    dupes = w.res.query_rows(
        f"SELECT {keys}, count() AS n FROM {qt(w.staging)} GROUP BY {keys} HAVING n > 1 LIMIT 3", what="check merge keys"
    )
    if dupes:
        raise DataValidationError(w.table, ",".join(w.spec.merge_keys), f"duplicate merge key(s) in the frame, e.g. {dupes}")


def _write_query(
    w: Stage, query: ClickHouseQuery, params: RunParams, ctx: WriteContext | None, resource_audit: bool
) -> WriteResult:
    """Write a pushed-down query with INSERT ... SELECT inside ClickHouse, through staging."""
    probe = empty_frame(query.loom_schema())
    types = {c.name: c.dtype for c in (w.stored or ())} | {c.name: storable(c.dtype) for c in w.spec.stored_columns()}
    plan = plan_write(query, w.spec, params, ctx, requested_streaming=True, resource_audit=resource_audit,
                      column_types=types)
    w.spec = spec = plan.spec
    w.plan = plan
    if spec.audit_columns:
        probe = with_audit_columns(probe, spec, ctx)  # type: ignore[assignment]
    conformed = conform(probe, spec, w.stored, storable=storable)
    values = plan.run_partitions
    done = _earlier_attempt(w)
    if done is not None:
        return done
    w.ensure_database()
    target_cols = w.target_columns(conformed.new_columns)
    select_cols = [c.name for c in conformed.columns]
    select_exprs = [qi(n) for n in select_cols]
    if spec.audit_columns:
        extra = {
            "_loom_run_id": lit(ctx.run_id) if ctx else "NULL",
            "_loom_asset_key": lit(ctx.asset_key) if ctx else "NULL",
            "_loom_partition_key": lit(ctx.partition_label) if ctx and ctx.partition_label else "NULL",
            "_loom_written_at": lit(ctx.timestamp) if ctx else "now64(6, 'UTC')",
        }
        for n, e in extra.items():
            select_cols.append(n)
            select_exprs.append(f"{e} AS {qi(n)}")
    try:
        w.create_staging(target_cols)
        assert w.staging is not None
        try:
            w.res.command(
                f"INSERT INTO {qt(w.staging)} ({', '.join(qi(n) for n in select_cols)}) "
                f"SELECT {', '.join(select_exprs)} FROM ({query.sql})",
                what=f"run the SQL of {w.table} inside ClickHouse",
                settings={"insert_null_as_default": 0, **staging_insert_settings(spec)},
            )
        except LoomError as exc:
            if "NULL" in str(exc) and ("Nullable" in str(exc) or "null" in str(exc).lower()):
                raise DataValidationError(w.table, None, f"NULL value(s) in a column declared not null ({exc})") from None
            raise
        rows = int(w.res.query_rows(f"SELECT count() FROM {qt(w.staging)}", what="count staged rows")[0][0])
        if values:
            bad = w.res.query_rows(
                f"SELECT count() FROM {qt(w.staging)} WHERE NOT {render(partition_predicate(values))}",
                what="check partitions",
            )[0][0]
            if bad:
                raise DataValidationError(
                    w.table, ",".join(spec.partition_by), f"{bad} row(s) have partition values outside the run's partitions"
                )
        if spec.mode is WriteMode.MERGE:
            _check_staged_keys(w)
        partitions = w.publish(conformed.new_columns, values, rows)
    finally:
        w.drop_staging()
    if not w.published_by_me:
        return w.result(0, True, (), sql_engine=ClickHouseQuery.engine_name, skipped=True)
    return w.result(rows, True, partitions, sql_engine=ClickHouseQuery.engine_name)
