"""SQL over Polars frames: the default :class:`~loom_resources.contracts.SQLExecutor`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from loom_resources._lazy import lazy_import
from loom_resources.errors import LoomError

if TYPE_CHECKING:
    import polars as pl
else:
    pl = lazy_import("polars")  # imported when data moves, not when the code location loads


class PolarsSQLExecutor:
    """Runs SQL over named frames with ``polars.SQLContext``; the result stays lazy.

    Example::

        executor = PolarsSQLExecutor()
        lf = executor.execute_sql({"orders": orders_lf}, "SELECT day, sum(amount) FROM orders GROUP BY day")
    """

    #: Where the SQL ran, reported in materialization metadata.
    engine_name = "polars"

    def execute_sql(self, frames: Mapping[str, Any], query: str, /) -> pl.LazyFrame:
        """Run ``query`` with each frame registered under its alias; return a LazyFrame."""
        ctx = pl.SQLContext()
        for alias, frame in frames.items():
            ctx.register(alias, frame.lazy() if isinstance(frame, pl.DataFrame) else frame)
        try:
            return ctx.execute(query, eager=False)
        except Exception as exc:  # polars raises several exception types for SQL errors
            raise LoomError(f"Polars SQL failed over tables {sorted(frames)}: {exc}") from exc
