"""Where one Delta table lives and how to reach it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from deltalake import DeltaTable

from loom_resources.errors import BackendUnavailableError, SpecError
from loom_resources.model import TableRef
from loom_resources.run_records import RUN_RECORDS_REF

__all__ = ["DeltaLocation", "check_writable_root", "display_uri", "refuse_case_variant_of_loom"]


def check_writable_root(root: Path, *, configured: bool) -> None:
    """Fail with BackendUnavailableError unless the local Delta root is a writable directory; the
    default root (not ``configured``) is created when missing."""
    if not root.exists():
        if configured:
            raise BackendUnavailableError(f"Delta root {root} does not exist; create it or fix the resource's root")
        root.mkdir(parents=True, exist_ok=True)
    if not root.is_dir():
        raise BackendUnavailableError(f"Delta root {root} is not a directory")
    if not os.access(root, os.W_OK | os.X_OK):
        raise BackendUnavailableError(f"Delta root {root} is not writable")


def display_uri(uri: str) -> str:
    """``uri`` without credentials."""
    parts = urlsplit(uri)
    if parts.scheme and "@" in parts.netloc:
        return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))
    return uri


@dataclass(frozen=True)
class DeltaLocation:
    """Where one table lives and how to reach it."""

    uri: str
    display_uri: str
    storage_options: dict[str, str]
    max_commit_retries: int
    #: ``delta.checkpointInterval`` of a table this location creates (0: delta-rs' default, 100).
    checkpoint_interval: int = 0
    #: Appends, overwrites and partition replaces write their Parquet files with Polars
    #: (``loom_resources.delta._files``) when the write allows it.
    polars_files: bool = False
    #: A merge or history write refuses a change set larger than this in memory (0: no limit).
    merge_max_change_set_bytes: int = 0

    def creation_config(self, stats_columns: str | None = None) -> dict[str, str | None] | None:
        """The table properties of a table this location creates (``None``: delta-rs' defaults).

        Args:
            stats_columns: ``delta.dataSkippingStatsColumns`` (see ``_stats.stats_columns``).
        """
        conf: dict[str, str | None] = {}
        if self.checkpoint_interval:
            conf["delta.checkpointInterval"] = str(self.checkpoint_interval)
        if stats_columns:
            conf["delta.dataSkippingStatsColumns"] = stats_columns
        elif stats_columns is not None:  # no column qualifies: statistics of none
            conf["delta.dataSkippingNumIndexedCols"] = "0"
        return conf or None

    def open(self) -> DeltaTable | None:
        """The table at its latest version, or ``None`` when there is none.

        Raises:
            BackendUnavailableError: when the store cannot be reached (missing bucket, bad
                credentials, unreachable endpoint).
        """
        if "://" not in self.uri and not os.path.isdir(os.path.join(self.uri, "_delta_log")):
            return None
        try:
            if not DeltaTable.is_deltatable(self.uri, storage_options=self.storage_options or None):
                return None
            return DeltaTable(self.uri, storage_options=self.storage_options or None)
        except OSError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise BackendUnavailableError(f"cannot reach the Delta table at {self.display_uri}: {first}") from exc


def refuse_case_variant_of_loom(ref: TableRef) -> None:
    """Refuse ``Loom.x``, ``LOOM.x``...: on a case-insensitive file system (macOS, Windows) they
    are the directory of Loom's own ``loom`` schema (the audit table). ``loom`` itself is written
    by this resource (``loom.run_records``); declaring a table there is refused at load."""
    schema = RUN_RECORDS_REF.schema
    if ref.schema != schema and ref.schema.casefold() == schema.casefold():
        raise SpecError(f"table {ref}: schema {ref.schema!r} is reserved (a case variant of Loom's own "
                        f"schema {schema!r}, the same directory on a case-insensitive file system); rename it")
