"""The sample retail analytics platform that ``make demo`` builds: declared tables, and the
external tables (written by other systems) some of them read."""

from loom_assets.declare import Table
from loom_assets.external import ExternalTable
from loom_assets.platform import external, tables
from loom_assets.platform.tables import DEMO_END, DEMO_START, daily

TABLES: list[Table | ExternalTable] = [*tables.TABLES, *external.TABLES, *external.EXTERNAL]

__all__ = ["DEMO_END", "DEMO_START", "TABLES", "daily"]
