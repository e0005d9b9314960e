"""The default resources of a Loom code location, configured from the environment.

``LOOM_HOME`` (default ``.loom``), ``LOOM_DELTA_ROOT`` (default ``$LOOM_HOME/delta``) and
``LOOM_CLICKHOUSE_URL`` (default ``chdb://$LOOM_HOME/clickhouse``, the embedded engine) are read
when a resource is first used, so loading the code location opens nothing. A new backend is
one more entry in :func:`default_backends` (and a field on the IO manager).
"""

from __future__ import annotations

from typing import Any

import dagster as dg

from loom_resources.clickhouse import ClickHouseResource
from loom_resources.delta import DeltaResource
from loom_resources.io_manager import LoomIOManager

__all__ = ["SINGLE_PROCESS_POOL", "default_backends", "default_executor", "default_resources", "single_process"]

#: Concurrency pool of every asset when a backend allows one process at a time (the embedded
#: ClickHouse engine: one data path can be open in one process only).
SINGLE_PROCESS_POOL = "loom_embedded_clickhouse"


def default_backends() -> dict[str, Any]:
    """Backend name -> resource, the resource key of each backend being its name."""
    return {"delta": DeltaResource(), "clickhouse": ClickHouseResource()}


def default_resources(backends: dict[str, Any] | None = None) -> dict[str, Any]:
    """The backends plus the Loom IO manager over them."""
    backends = backends or default_backends()
    return {**backends, "io_manager": LoomIOManager(**backends)}


def single_process(backends: dict[str, Any]) -> bool:
    """Whether a backend only works from one process at a time (the embedded engine)."""
    return any(getattr(r, "single_process", lambda: False)() for r in backends.values())


def default_executor(backends: dict[str, Any]) -> dg.ExecutorDefinition:
    """In-process execution when a backend needs a single process, multiprocess otherwise."""
    return dg.in_process_executor if single_process(backends) else dg.multiprocess_executor
