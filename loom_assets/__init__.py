"""Loom on Dagster code location: declared tables as software-defined assets.

A library: importing it builds nothing and imports no project. A project declares its tables in
Python (:class:`Table`, :func:`build_definitions`) or in YAML (the ``LoomTables`` component,
:mod:`loom_assets.component`); the sample platform in ``examples/sample_platform`` is one.
"""

import warnings

import dagster as dg

# the factory relies on beta and preview APIs on purpose (single-run backfills, schema-change checks,
# observable source assets)
warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)

from loom_assets.automation import eager_every_partition  # noqa: E402 (after the warnings filter)
from loom_assets.component import LoomTables  # noqa: E402 (after the warnings filter)
from loom_assets.declare import DataCheck, Source, Table, accepted_values, not_null, row_count, unique  # noqa: E402 (after the warnings filter)
from loom_assets.definitions import build_definitions  # noqa: E402 (after the warnings filter)
from loom_assets.external import ExternalTable  # noqa: E402 (after the warnings filter)
from loom_assets.factory import build_assets  # noqa: E402 (after the warnings filter)

__all__ = [
    "DataCheck", "ExternalTable", "LoomTables", "Source", "Table", "accepted_values", "build_assets", "build_definitions",
    "eager_every_partition", "not_null",
    "row_count", "unique",
]
