"""Where the stores live, from the environment (used by the demo and its report).

The resources themselves are built by :mod:`loom_resources.defaults`; this module only names
the paths the demo prints and reads back.
"""

from __future__ import annotations

import os
from pathlib import Path

from loom_resources.defaults import default_resources

__all__ = ["clickhouse_url", "default_resources", "loom_home"]


def loom_home() -> Path:
    """``LOOM_HOME`` as an absolute path."""
    return Path(os.environ.get("LOOM_HOME") or ".loom").resolve()


def clickhouse_url() -> str:
    """The configured ClickHouse URL (embedded engine by default)."""
    return os.environ.get("LOOM_CLICKHOUSE_URL") or f"chdb://{loom_home() / 'clickhouse'}"
