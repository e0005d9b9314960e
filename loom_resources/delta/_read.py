"""Delta reads: ``scan_delta`` with the projection and the bound predicate pushed down."""

from __future__ import annotations

import polars as pl
from deltalake import DeltaTable

from loom_resources.model import RunParams, SourceSpec
from loom_resources.reading import apply_source

__all__ = ["scan"]


def scan(table: DeltaTable, spec: SourceSpec, params: RunParams) -> pl.LazyFrame:
    """The table as a LazyFrame; partition predicates prune files, projections skip columns."""
    return apply_source(pl.scan_delta(table), spec, params, [f.name for f in table.schema().fields])
