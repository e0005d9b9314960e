"""The one translation of a Dagster execution context into Loom :class:`RunParams`.

Asset bodies, the IO manager's outputs and the IO manager's inputs all call
:func:`run_params`; it is the only place that asks Dagster for partition keys and windows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import dagster as dg

from loom_resources.model import RunParams

__all__ = ["check_run_params", "run_params", "run_params_by_partition", "run_params_for", "time_dimensions"]


def _partition_map(key: str | dg.MultiPartitionKey, columns: Mapping[str, str]) -> dict[str, str]:
    if isinstance(key, dg.MultiPartitionKey):
        return {columns[d]: k for d, k in key.keys_by_dimension.items() if d in columns}
    return {columns[""]: key} if "" in columns else {}


def run_params_for(
    keys: list[str], window: dg.TimeWindow | None, columns: Mapping[str, str], values: Mapping[str, Any] | None = None,
    timezone: str | None = None,
) -> RunParams:
    """Run parameters for partition ``keys`` (and their time window) of a table whose
    partition dimensions map to ``columns``; ``timezone`` is the partitions definition's."""
    parts = tuple(_partition_map(k, columns) for k in keys)
    return RunParams(
        partition_keys=tuple(str(k) for k in keys),
        partitions=tuple(p for p in parts if p),
        window_start=window.start if window else None,
        window_end=window.end if window else None,
        values=dict(values or {}),
        timezone=timezone,
    )


def _window(get: Callable[[], dg.TimeWindow | None]) -> dg.TimeWindow | None:
    try:
        return get()
    except Exception:  # Dagster raises (rather than returning None) when the partitions have no time window
        return None


def time_dimensions(pdef: Any) -> list[tuple[dg.TimeWindowPartitionsDefinition, str]]:
    """The time-window partitionings of ``pdef`` with their dimension names: ``[(pdef, "")]`` for
    a time-window partitions definition, a multi-partition's time dimensions, none otherwise
    (static or dynamic partitions have no time)."""
    if isinstance(pdef, dg.TimeWindowPartitionsDefinition):
        return [(pdef, "")]
    if isinstance(pdef, dg.MultiPartitionsDefinition):
        return [(d.partitions_def, d.name) for d in pdef.partitions_defs
                if isinstance(d.partitions_def, dg.TimeWindowPartitionsDefinition)]
    return []


def _timezone(pdef: Any) -> str | None:
    """The time zone of a time-window partitions definition (or of a multi-partition's time dimension)."""
    dims = time_dimensions(pdef)
    return str(dims[0][0].timezone) if dims else None


def _partitions_def(context: Any) -> Any:
    if isinstance(context, (dg.OutputContext, dg.InputContext)):
        return context.asset_partitions_def if context.has_asset_partitions else None
    if isinstance(context, dg.AssetExecutionContext):
        return context.assets_def.partitions_def
    if isinstance(context, dg.AssetCheckExecutionContext):
        return context.op_execution_context._step_execution_context.run_partitions_def  # noqa: SLF001 - no public accessor
    return getattr(context, "run_partitions_def", None) if context.has_partitions else None


def _keys_and_window(context: Any) -> tuple[list[str], dg.TimeWindow | None]:
    if isinstance(context, (dg.OutputContext, dg.InputContext)):
        if not context.has_asset_partitions:
            return [], None
        return list(context.asset_partition_keys), _window(lambda: context.asset_partitions_time_window)
    if isinstance(context, (dg.AssetExecutionContext, dg.AssetCheckExecutionContext)):
        if not (context.has_partition_key or context.has_partition_key_range):
            return [], None
        return list(context.partition_keys), _window(lambda: context.partition_time_window)
    # a StepExecutionContext: the step's own partitions (an input's consumer)
    if not context.has_partitions:
        return [], None
    if context.has_partition_key_range:
        keys = list(context.run_partitions_def.get_partition_keys_in_range(context.partition_key_range))
    else:
        keys = [context.partition_key]
    return keys, _window(lambda: context.partition_time_window)


def run_params(context: Any, columns: Mapping[str, str]) -> RunParams:
    """Run parameters of ``context``: an ``AssetExecutionContext`` (or an asset check's), an ``OutputContext`` or
    ``InputContext`` (the partitions of that asset in this run), or a step context.

    Args:
        context: The Dagster context.
        columns: Partition dimension -> table column of the table the context is about.
    """
    keys, window = _keys_and_window(context)
    return run_params_for(keys, window, columns, timezone=_timezone(_partitions_def(context)) if keys else None)


def check_run_params(context: dg.AssetCheckExecutionContext, partitions_def: Any, columns: Mapping[str, str]) -> RunParams:
    """Run parameters of an unpartitioned check of a table partitioned by ``partitions_def``:
    the run's partition or range when the run has one (a materialization of some partitions, or
    checks launched for them), else none (the whole stored table).

    Dagster knows no partitions for the check's step (the check has none, so "Execute all" in
    the UI needs no partition), so the keys come from the run's partition tags, read by the step
    context, and are resolved against the table's own partitions definition."""
    step = context.op_execution_context._step_execution_context  # noqa: SLF001 - no public accessor for the run's tags as keys
    if partitions_def is None or not step.has_partitions:
        return RunParams()
    rng = step.partition_key_range  # from the run's tags; a single key is a range of one
    if isinstance(partitions_def, dg.MultiPartitionsDefinition):
        rng = dg.PartitionKeyRange(partitions_def.get_partition_key_from_str(rng.start),
                                   partitions_def.get_partition_key_from_str(rng.end))
    with dg.partition_loading_context(dynamic_partitions_store=context.instance):
        keys = list(partitions_def.get_partition_keys_in_range(rng))
    window = None
    if isinstance(partitions_def, dg.TimeWindowPartitionsDefinition) and keys:
        window = dg.TimeWindow(partitions_def.time_window_for_partition_key(keys[0]).start,
                               partitions_def.time_window_for_partition_key(keys[-1]).end)
    return run_params_for(keys, window, columns, timezone=_timezone(partitions_def) if keys else None)


def run_params_by_partition(context: dg.OutputContext, columns: Mapping[str, str]) -> dict[str, RunParams]:
    """Partition key -> the run parameters of that one partition, for each partition of the
    output in this run (``{}`` when unpartitioned)."""
    if not context.has_asset_partitions:
        return {}
    pdef = context.asset_partitions_def
    out = {}
    for key in context.asset_partition_keys:
        window = pdef.time_window_for_partition_key(key) if isinstance(pdef, dg.TimeWindowPartitionsDefinition) else None
        out[str(key)] = run_params_for([key], window, columns, timezone=_timezone(pdef))
    return out
