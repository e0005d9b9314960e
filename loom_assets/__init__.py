"""Loom on Dagster code location: declared tables as software-defined assets.

Importing the declaration API builds nothing. ``loom_assets.defs`` — the ``dagster.Definitions``
of the sample platform — is built on first access (Dagster's module loader reads it through
``dir()``/``getattr``, so ``dagster ... -m loom_assets`` and ``workspace.yaml`` still find it).
"""

import os
import warnings
from typing import Any

import dagster as dg

# the factory relies on beta and preview APIs on purpose (single-run backfills, schema-change checks,
# observable source assets)
warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)

from loom_assets.automation import eager_every_partition  # noqa: E402 (after the warnings filter)
from loom_assets.declare import DataCheck, Source, Table, accepted_values, not_null, row_count, unique  # noqa: E402 (after the warnings filter)
from loom_assets.definitions import build_definitions  # noqa: E402 (after the warnings filter)
from loom_assets.external import ExternalTable  # noqa: E402 (after the warnings filter)
from loom_assets.factory import build_assets  # noqa: E402 (after the warnings filter)

__all__ = [
    "DataCheck", "ExternalTable", "Source", "Table", "accepted_values", "build_assets", "build_definitions", "defs",
    "eager_every_partition", "not_null",
    "row_count", "unique",
]

_built: dict[str, dg.Definitions] = {}  # a dict, so Dagster's module scan sees one Definitions: ``defs``


def __getattr__(name: str) -> Any:
    """Build the sample platform's ``defs`` on first access."""
    if name != "defs":
        raise AttributeError(f"module 'loom_assets' has no attribute {name!r}")
    if name not in _built:
        from loom_assets.platform import ASSETS, TABLES
        from loom_assets.settings import ensure_dagster_home

        if os.environ.get("DAGSTER_HOME"):
            # `dagster dev` / `dagster asset ...` started without make: give the instance its
            # dagster.yaml (pool limits) when missing; processes started from now on read it
            ensure_dagster_home(create=False)

        _built[name] = build_definitions(TABLES, assets=ASSETS)
    return _built[name]


def __dir__() -> list[str]:
    return sorted(set(globals()) | {"defs"})
