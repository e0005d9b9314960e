"""Loom on Dagster code location: declared tables as software-defined assets.

``loom_assets.defs`` is the ``dagster.Definitions`` of the sample platform.
"""

import warnings

import dagster as dg

# the factory relies on beta APIs on purpose (single-run backfills, schema-change checks)
warnings.filterwarnings("ignore", category=dg.BetaWarning)

from loom_assets.declare import DataCheck, Source, Table, accepted_values, not_null, row_count, unique  # noqa: E402 (after the warnings filter)
from loom_assets.definitions import build_definitions  # noqa: E402 (after the warnings filter)
from loom_assets.factory import build_assets  # noqa: E402 (after the warnings filter)
from loom_assets.platform import TABLES  # noqa: E402 (after the warnings filter)

defs = build_definitions(TABLES)

__all__ = [
    "DataCheck", "Source", "Table", "accepted_values", "build_assets", "build_definitions", "defs", "not_null",
    "row_count", "unique",
]
