"""The sample platform's code location: ``dg dev``, ``dagster ... -m sample_platform.definitions``
and the workspace files load ``defs`` from here."""

import os
from pathlib import Path

import dagster as dg

from loom_assets import build_definitions
from loom_assets.settings import ensure_dagster_home
from sample_platform.platform import ASSETS, TABLES

if os.environ.get("DAGSTER_HOME"):
    # `dg dev` / `dagster asset ...` started without make: give the instance its dagster.yaml
    # (pool limits) when missing; processes started from now on read it
    ensure_dagster_home(create=False)

defs: dg.Definitions = dg.Definitions.merge(
    build_definitions(TABLES, assets=ASSETS),
    dg.load_from_defs_folder(path_within_project=Path(__file__).parent),
)
