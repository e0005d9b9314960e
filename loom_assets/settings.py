"""Where the stores live and how runs execute, from the environment.

``LOOM_HOME`` (default ``.loom``), ``LOOM_DELTA_ROOT`` (default ``$LOOM_HOME/delta``) and
``LOOM_CLICKHOUSE_URL`` (default ``chdb://$LOOM_HOME/clickhouse``, the embedded engine).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import dagster as dg

from loom_resources.clickhouse import ClickHouseResource
from loom_resources.delta import DeltaResource
from loom_resources.io_manager import LoomIOManager

#: Concurrency pool of every asset when ClickHouse is the embedded engine: one data path
#: can be open in one process only, so runs touching it must not overlap.
EMBEDDED_POOL = "loom_embedded_clickhouse"


def loom_home() -> Path:
    """``LOOM_HOME`` as an absolute path."""
    return Path(os.environ.get("LOOM_HOME") or ".loom").resolve()


def clickhouse_url() -> str:
    """The configured ClickHouse URL (embedded engine by default)."""
    return os.environ.get("LOOM_CLICKHOUSE_URL") or f"chdb://{loom_home() / 'clickhouse'}"


def embedded_clickhouse() -> bool:
    """Whether ClickHouse is the embedded engine (one process per data path)."""
    return clickhouse_url().startswith("chdb://")


def default_resources() -> dict[str, Any]:
    """The resources of the code location; each reads its settings from the environment
    when it is first used, so loading the code location opens nothing."""
    delta = DeltaResource()
    clickhouse = ClickHouseResource()
    return {
        "delta": delta,
        "clickhouse": clickhouse,
        "io_manager": LoomIOManager(delta=delta, clickhouse=clickhouse),
    }


def default_executor() -> dg.ExecutorDefinition:
    """In-process execution against the embedded engine (one data path per process),
    multiprocess against a ClickHouse server."""
    return dg.in_process_executor if embedded_clickhouse() else dg.multiprocess_executor
