"""Routine maintenance of one Delta table: compaction or Z-order, vacuum within the retention
guard, and the sweep of orphaned data files (the resource's methods delegate here)."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from dagster import get_dagster_logger
from deltalake import DeltaTable

from loom_resources.delta._location import DeltaLocation
from loom_resources.delta._sweep import orphan_files, store_files
from loom_resources.errors import SchemaMismatchError
from loom_resources.model import TableRef

if TYPE_CHECKING:
    from loom_resources.delta import DeltaResource

__all__ = ["optimize", "retention_hours", "sweep", "sweep_once", "vacuum"]

_SWEPT: set[str] = set()  # tables this process has swept before its first write to them


def optimize(table: DeltaTable, ref: str, *, z_order: tuple[str, ...] | list[str] = (),
             target_size: int | None = None) -> dict[str, Any]:
    """Compact small files (or Z-order by ``z_order`` columns) in one commit; returns delta-rs metrics."""
    if z_order:
        _check_columns_exist(table, z_order, ref)
        return dict(table.optimize.z_order(list(z_order), target_size=target_size))
    return dict(table.optimize.compact(target_size=target_size))


def retention_hours(ref: str, requested: int | None, guard: int) -> int:
    """The vacuum retention: ``requested`` (default ``guard``), refused below ``guard``."""
    hours = guard if requested is None else requested
    if hours < guard:
        raise ValueError(
            f"vacuum of {ref} with retention {hours}h is below the guard of {guard}h; "
            "lower min_vacuum_retention_hours on the resource if you really mean it"
        )
    return hours


def vacuum(table: DeltaTable, *, hours: int, dry_run: bool) -> list[str]:
    """Delete files no version within ``hours`` still needs (the guard is checked by :func:`retention_hours`)."""
    return list(table.vacuum(retention_hours=hours, dry_run=dry_run, enforce_retention_duration=False))


def sweep(loc: DeltaLocation, ref: str, *, hours: float, dry_run: bool) -> list[str]:
    """Remove (or with ``dry_run`` list) the table's unreferenced data files older than ``hours`` (>= 0)."""
    files = store_files(loc)
    orphans = orphan_files(files, min_age=dt.timedelta(hours=hours))
    if not dry_run:
        for path in orphans:
            files.delete(path)
    if orphans:
        get_dagster_logger().info(
            f"{ref}: {'would remove' if dry_run else 'removed'} {len(orphans)} orphaned file(s) older than "
            f"{hours}h under {loc.display_uri}: {', '.join(orphans[:20])}{' ...' if len(orphans) > 20 else ''}"
        )
    return orphans


def _check_columns_exist(table: DeltaTable, names: tuple[str, ...] | list[str], ref: str) -> None:
    """Raise SchemaMismatchError when a named column is not in the table."""
    known = {f.name for f in table.schema().fields}
    unknown = sorted(set(names) - known)
    if unknown:
        raise SchemaMismatchError(ref, [f"column(s) {unknown} do not exist"])


def sweep_once(resource: DeltaResource, ref: TableRef) -> DeltaTable | None:
    """The orphan sweep of ``ref`` by ``resource``, the first time this process writes the
    table; never fails the write (maintenance retries it). Returns the table it opened to check
    that one exists (``None``: no table, or swept before), so the write need not load it again:
    the sweep commits nothing, so it is the write's snapshot as much as one opened after it."""
    if str(ref) in _SWEPT:
        return None
    table = resource._open(ref)
    if table is None:
        return None
    _SWEPT.add(str(ref))
    hours = resource.orphan_min_age_hours
    try:
        removed = sweep(resource._location(ref), str(ref), hours=hours, dry_run=False)
    except Exception as exc:  # noqa: BLE001 - a failed sweep must not fail the write; it is retried in maintenance
        get_dagster_logger().warning(f"{ref}: orphan sweep skipped: {exc}")
        return table
    if removed:
        get_dagster_logger().info(f"{ref}: removed {len(removed)} orphaned file(s) older than "
                                  f"{hours:g} h left by earlier failed writes")
    return table
