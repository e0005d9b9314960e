"""The sample retail analytics platform that ``make demo`` builds."""

from loom_assets.platform.tables import DEMO_END, DEMO_START, TABLES, daily

__all__ = ["DEMO_END", "DEMO_START", "TABLES", "daily"]
