"""The sample retail analytics platform that ``make demo`` builds: declared tables, and the
external tables (written by other systems) some of them read."""

from loom_assets.declare import Table
from loom_assets.external import ExternalTable
from sample_platform import external, features, tables
from sample_platform.tables import DEMO_END, DEMO_START, daily

TABLES: list[Table | ExternalTable] = [*tables.TABLES, *external.TABLES, *features.TABLES, *external.EXTERNAL]
#: Plain Dagster assets (dagster-polars) that the declared tables read or that read them.
ASSETS = list(features.ASSETS)

__all__ = ["ASSETS", "DEMO_END", "DEMO_START", "TABLES", "daily"]
