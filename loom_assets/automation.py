"""Automation conditions for declared tables, where Dagster's built-ins do not fit them.

Dagster's ``AutomationCondition.eager()`` considers only the latest time window of a
time-partitioned table, so a table that follows its upstream "eagerly" ignores every
backfilled or corrected day (the sample platform, run weeks after its demo window, launched
nothing). :func:`eager_every_partition` is the same condition over every partition.
"""

from __future__ import annotations

import dagster as dg

__all__ = ["eager_every_partition"]


def eager_every_partition() -> dg.AutomationCondition:
    """Materialize a partition of a table when a partition it reads is updated (or when it
    becomes missing), on every partition, not only the latest time window: Dagster's
    ``eager()`` without its ``in_latest_time_window()`` term. Like ``eager()``, it waits while
    an upstream partition is missing or in progress, and while the table itself is in progress.

    Example::

        Table("staging.orders", ..., partitions=daily, automation_condition=eager_every_partition())
    """
    # eager() is an AND of public conditions: ``without`` drops its latest-time-window term
    return dg.AutomationCondition.eager().without(dg.AutomationCondition.in_latest_time_window()).with_label("eager (every partition)")
