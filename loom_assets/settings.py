"""Where the stores and the Dagster instance live, from the environment.

The resources themselves are built by :mod:`loom_resources.defaults`; this module names the
paths the demo prints and reads back, and sets up the one Dagster instance every entry point
shares (``make demo``, ``make ui``, ``dagster dev``, ``dagster asset materialize``):
``$DAGSTER_HOME`` (default ``$LOOM_HOME/dagster``) with a ``dagster.yaml`` holding the run and
pool limits the embedded ClickHouse engine needs. ``python -m loom_assets.settings`` writes it
when missing and prints the ``export`` line for the shell.
"""

from __future__ import annotations

import os
from pathlib import Path

from loom_resources.defaults import default_resources

__all__ = ["INSTANCE_YAML", "clickhouse_url", "default_resources", "ensure_dagster_home", "loom_home"]

INSTANCE_YAML = """\
# written by Loom (loom_assets.settings) when missing: the embedded ClickHouse engine allows one
# process per data path, so runs are queued one at a time and every Loom asset shares one pool slot.
concurrency:
  runs:
    max_concurrent_runs: 1
  pools:
    default_limit: 1
telemetry:
  enabled: false
"""


def loom_home() -> Path:
    """``LOOM_HOME`` as an absolute path."""
    return Path(os.environ.get("LOOM_HOME") or ".loom").resolve()


def clickhouse_url() -> str:
    """The configured ClickHouse URL (embedded engine by default)."""
    return os.environ.get("LOOM_CLICKHOUSE_URL") or f"chdb://{loom_home() / 'clickhouse'}"


def ensure_dagster_home(*, create: bool = True) -> Path:
    """``$DAGSTER_HOME`` (set to ``$LOOM_HOME/dagster`` when unset), with :data:`INSTANCE_YAML`
    written as its ``dagster.yaml`` when that file is missing (an existing one is never changed).

    Args:
        create: Create the directory when missing (else only an existing one gets the file).
    """
    home = loom_home()
    os.environ.setdefault("LOOM_HOME", str(home))
    dagster_home = Path(os.environ.get("DAGSTER_HOME") or home / "dagster").resolve()
    os.environ["DAGSTER_HOME"] = str(dagster_home)
    if create:
        dagster_home.mkdir(parents=True, exist_ok=True)
    cfg = dagster_home / "dagster.yaml"
    if dagster_home.is_dir() and not cfg.exists():
        cfg.write_text(INSTANCE_YAML)
    return dagster_home


if __name__ == "__main__":
    print(f"export DAGSTER_HOME={ensure_dagster_home()}")
