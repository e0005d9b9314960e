"""The ``history`` (SCD2) write mode for Delta tables.

One write is one commit: the current versions and the versions opened or closed at the effective
time are read, recomputed in Polars and written back with an overwrite predicate covering exactly
those rows (``is_current OR valid_to = T OR valid_from = T``). Older history is never rewritten.
A change log narrows the current versions to its keys' ranges in the files that can hold them
(``_merge.key_ranges``): the other keys' versions cannot change, so they are neither read nor
rewritten.
Re-running the same effective time first undoes that time's changes (drops versions opened at T,
reopens versions closed at T), so it replaces them instead of stacking new versions.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl

from loom_resources.conform import check_unique_keys
from loom_resources.delta._batches import as_arrow, storable_exprs
from loom_resources.delta._commit import render, with_retries
from loom_resources.delta._location import DeltaLocation
from loom_resources.delta._merge import collect_change_set, key_ranges
from loom_resources.delta._write import DeltaWrite, Outcome, prepare_write
from loom_resources.errors import DataValidationError, LoomError, SchemaMismatchError
from loom_resources.model import RunParams, TargetSpec, WriteContext
from loom_resources.polars_types import to_expr
from loom_resources.predicates import And, Compare, Or, Predicate

__all__ = ["write_history"]

_OPS = ("upsert", "delete")


def _split_changelog(df: pl.DataFrame, spec: TargetSpec) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    h = spec.history
    assert h is not None
    if h.input != "changelog":
        return df, None
    if h.op_column not in df.columns:
        raise SchemaMismatchError(str(spec.ref), [f"change-log input needs the operation column {h.op_column!r}"])
    bad = df.filter(~pl.col(h.op_column).is_in(_OPS) | pl.col(h.op_column).is_null())
    if bad.height:
        raise DataValidationError(
            str(spec.ref), h.op_column, f"{bad.height} row(s) have an operation other than {list(_OPS)}"
        )
    keys = list(spec.merge_keys)
    deletes = df.filter(pl.col(h.op_column) == "delete").select(keys)
    return df.filter(pl.col(h.op_column) == "upsert").drop(h.op_column), deletes


def write_history(
    frame: pl.LazyFrame | pl.DataFrame,
    spec: TargetSpec,
    loc: DeltaLocation,
    params: RunParams,
    write_ctx: WriteContext | None,
    *,
    resource_audit: bool = False,
) -> tuple[DeltaWrite, Outcome]:
    """Apply a snapshot or change log at the effective time in one commit."""
    h = spec.history
    assert h is not None
    # History compares the whole incoming state with the current versions, so it is eager; a
    # change set over the memory limit is refused before anything is read or written
    df = collect_change_set(frame, table=str(spec.ref), limit_bytes=loc.merge_max_change_set_bytes,
                            setting="DeltaResource.merge_max_change_set_mb")
    upserts, deletes = _split_changelog(df, spec)
    w = prepare_write(upserts, spec, params, write_ctx, loc, requested_streaming=False, resource_audit=resource_audit)
    spec = w.spec
    up = w.frame.collect() if isinstance(w.frame, pl.LazyFrame) else w.frame
    keys = list(spec.merge_keys)
    check_unique_keys(pl.concat([up.select(keys), deletes]) if deletes is not None else up, spec)
    w.plan.validate(up)
    up = up.select(storable_exprs(tuple(c for c in w.columns if c.name in up.columns)))
    if deletes is not None:
        deletes = deletes.select(storable_exprs(tuple(c for c in w.columns if c.name in keys)))
    when = effective_timestamp(spec, params, write_ctx)
    ts = pl.lit(when, pl.Datetime("us"))
    vf, vt, cur, deleted = h.valid_from, h.valid_to, h.current_column, h.deleted_column
    soft = h.delete_policy == "soft_delete"

    def opened(rows: pl.DataFrame, *, is_deleted: bool = False) -> pl.DataFrame:
        cols = [ts.alias(vf), pl.lit(None, pl.Datetime("us")).alias(vt), pl.lit(True).alias(cur)]
        if soft:
            cols.append(pl.lit(is_deleted).alias(deleted))
        return rows.with_columns(cols)

    def closed(rows: pl.DataFrame) -> pl.DataFrame:
        return rows.with_columns(ts.alias(vt), pl.lit(False).alias(cur))

    if w.table is None:
        out = opened(up)
        predicate = None
    else:
        current_pred: Predicate = Compare(cur, "=", True)
        if deletes is not None:
            # a change log touches only its own keys: the current versions of other keys stay as
            # they are, so only the files that can hold its keys are read and rewritten (the
            # ranges hold every logged key that has a version in the table: see _merge.key_ranges)
            assert w.table is not None
            ranges = key_ranges(w.table, pl.concat([up.select(keys), deletes]), tuple(keys))
            if ranges is not None:
                current_pred = And((current_pred, ranges))
        affected_pred = Or((current_pred, Compare(vt, "=", when), Compare(vf, "=", when)))
        scan = pl.scan_delta(loc.uri, storage_options=loc.storage_options or None)
        latest = scan.select(pl.col(vf).max(), pl.col(vt).max()).collect().row(0)
        if any(x is not None and x > when for x in latest):
            raise LoomError(
                f"table {spec.ref} already has history after the effective time {when.isoformat()} "
                f"(latest change {max(x for x in latest if x is not None).isoformat()}); history only moves forward"
            )
        affected = scan.filter(to_expr(affected_pred)).collect()
        # undo an earlier run at the same effective time
        current = affected.filter(pl.col(vf) != ts).with_columns(
            pl.when(pl.col(vt) == ts).then(pl.lit(None, pl.Datetime("us"))).otherwise(pl.col(vt)).alias(vt),
            pl.lit(True).alias(cur),
        )
        out = _apply(current, up, deletes, spec, opened, closed)
        predicate = render(affected_pred, spec.ref)
    names = [c.name for c in w.columns]
    out = out.select([pl.col(n) if n in out.columns else pl.lit(None).alias(n) for n in names])

    def attempt() -> int:
        return w.commit(as_arrow(out, w.schema), mode="overwrite" if predicate else "append", predicate=predicate,
                        schema_mode="merge" if w.new_columns else None)

    version = with_retries(spec.ref, w.loc, attempt)
    return w, Outcome(rows=up.height + (deletes.height if deletes is not None else 0), version=version)


def _apply(current: pl.DataFrame, up: pl.DataFrame, deletes: pl.DataFrame | None, spec: TargetSpec,
           opened: Any, closed: Any) -> pl.DataFrame:
    h = spec.history
    assert h is not None
    keys = list(spec.merge_keys)
    soft = h.delete_policy == "soft_delete"
    tracked = [c for c in spec.tracked_columns if c in up.columns]
    matched = current.join(up.select(keys + tracked), on=keys, how="inner", suffix="__new")
    diff = [~pl.col(c).eq_missing(pl.col(f"{c}__new")) for c in tracked]
    if soft:
        diff.append(pl.col(h.deleted_column))
    changed_expr = pl.any_horizontal(diff) if diff else pl.lit(False)
    changed = matched.filter(changed_expr).select(current.columns)
    same = matched.filter(~changed_expr).select(keys + [h.valid_from])
    parts = [
        closed(changed),
        opened(up.join(same.select(keys), on=keys, how="anti")),
        # unchanged tracked columns: keep the version, refresh the other columns in place
        _refresh(up, same, keys, h.valid_from, opened),
    ]
    if deletes is None:
        missing = current.join(up.select(keys), on=keys, how="anti")
        untouched = current.clear()
    else:
        missing = current.join(deletes, on=keys, how="semi")
        untouched = current.join(pl.concat([up.select(keys), deletes]), on=keys, how="anti")
    parts.append(untouched)
    if h.delete_policy == "ignore":
        parts.append(missing)
    elif h.delete_policy == "close":
        parts.append(closed(missing))
    else:
        gone = missing.filter(pl.col(h.deleted_column))
        to_delete = missing.filter(~pl.col(h.deleted_column))
        tomb = opened(to_delete.drop(h.valid_from, h.valid_to, h.current_column, h.deleted_column), is_deleted=True)
        parts += [gone, closed(to_delete), tomb]
    return pl.concat(parts, how="diagonal_relaxed")


def _refresh(up: pl.DataFrame, same: pl.DataFrame, keys: list[str], valid_from: str, opened: Any) -> pl.DataFrame:
    rows = opened(up.join(same.select(keys), on=keys, how="semi"))
    return rows.drop(valid_from).join(same, on=keys, how="inner")


def effective_timestamp(spec: TargetSpec, params: RunParams, write_ctx: WriteContext | None) -> dt.datetime:
    """History: the effective time of the change as a naive UTC timestamp (microseconds)."""
    assert spec.history is not None
    value = params.bindings().get(spec.history.effective_param)
    if value is None:
        value = write_ctx.timestamp if write_ctx is not None else dt.datetime.now(dt.UTC)
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day)
    if not isinstance(value, dt.datetime):
        raise LoomError(f"table {spec.ref}: effective time {value!r} is not a date or datetime")
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value
