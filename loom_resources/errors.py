"""Errors raised by the Loom runtime.

Every error names the table (and where it applies the column and the expectation) so a
data engineer can act on it from the Dagster run log alone.
"""

from __future__ import annotations


class LoomError(Exception):
    """Base class of every error raised by Loom."""


class SpecError(LoomError, ValueError):
    """A table declaration or spec is inconsistent (raised when it is declared)."""


class SchemaMismatchError(LoomError):
    """A frame does not match the target table's schema; nothing was written.

    Attributes:
        table: The target table (``schema.table``).
        problems: One human-readable line per violation (missing, extra, mistyped columns).
    """

    def __init__(self, table: str, problems: list[str]) -> None:
        self.table = table
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"Schema mismatch for table {table}; nothing was written:\n{lines}")


class DataValidationError(LoomError):
    """The frame's data violates the declaration (nulls, duplicate keys, partition values)."""

    def __init__(self, table: str, column: str | None, message: str) -> None:
        self.table = table
        self.column = column
        where = f"{table}.{column}" if column else table
        super().__init__(f"Invalid data for {where}: {message}; nothing was written")


class PredicateError(LoomError, ValueError):
    """A predicate cannot be built or references an unknown column."""


class UnsupportedTypeError(LoomError, TypeError):
    """A data type has no exact representation in a backend."""


class BackendUnavailableError(LoomError):
    """A store cannot be reached or opened (bad root, unreachable server, busy engine)."""


class TableNotFoundError(BackendUnavailableError):
    """A table that must exist (a source being read, a table whose schema is updated) does not.

    Every backend raises this same class for this fault, so callers can tell "the table is
    missing" from "the store is unreachable" without knowing the backend.

    Attributes:
        table: The missing table (``schema.table``).
    """

    def __init__(self, table: str, where: str | None = None) -> None:
        self.table = table
        location = f" at {where}" if where else ""
        super().__init__(f"table {table} does not exist{location}")


class ChangeSetTooLargeError(LoomError):
    """A merge's (or history's) change set is larger than the configured memory limit; it was
    refused before anything was written (the message names the table and the setting)."""


class StoreFullError(LoomError):
    """A store ran out of disk (or quota) during a write; nothing was published."""
