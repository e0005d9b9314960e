"""Loom's errors as Dagster step failures, so the UI shows Loom's message where users look.

An exception raised in an IO manager or an asset body reaches the run log wrapped in Dagster's
generic ``DagsterExecutionHandleOutputError`` / ``DagsterExecutionStepExecutionError``; Loom's
own message (table, column, expectation, "nothing was written") is then only behind "View full
message". A :class:`dagster.Failure` is passed through unwrapped: its description becomes the
step's and the run's failure message (the run header, the asset's failed event) and its
metadata is shown as a table beside it.
"""

from __future__ import annotations

from typing import Any

import dagster as dg

from loom_resources.errors import DataValidationError, LoomError, SchemaMismatchError, TableNotFoundError

__all__ = ["failure_metadata", "loom_failure"]


def failure_metadata(exc: LoomError) -> dict[str, Any]:
    """The structured part of a Loom error: the table, the column, the problems, the error class."""
    md: dict[str, Any] = {"loom/error": type(exc).__name__}
    table = getattr(exc, "table", None)
    if table:
        md["loom/table"] = str(table)
    if isinstance(exc, DataValidationError) and exc.column:
        md["loom/column"] = exc.column
    # plain text: the run page shows it inline (Markdown hides behind a "Show Markdown" link)
    if isinstance(exc, SchemaMismatchError):
        md["loom/problems"] = dg.MetadataValue.text("\n".join(exc.problems))
    if isinstance(exc, TableNotFoundError):
        md["loom/problems"] = dg.MetadataValue.text(f"table {exc.table} does not exist")
    return md


def loom_failure(exc: LoomError) -> dg.Failure:
    """A :class:`dagster.Failure` carrying ``exc``'s message and :func:`failure_metadata`;
    raise it ``from exc`` so the stack trace keeps the cause. Retries are not allowed: bad
    input stays bad on a rerun."""
    return dg.Failure(description=str(exc), metadata=failure_metadata(exc), allow_retries=False)
