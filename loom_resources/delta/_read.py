"""Delta reads: ``scan_delta`` with the projection and the bound predicate pushed down."""

from __future__ import annotations

import polars as pl
from deltalake import DeltaTable

from loom_resources.errors import SchemaMismatchError
from loom_resources.model import RunParams, SourceSpec
from loom_resources.polars_types import to_expr
from loom_resources.predicates import check_columns

__all__ = ["scan"]


def scan(table: DeltaTable, spec: SourceSpec, params: RunParams) -> pl.LazyFrame:
    """The table as a LazyFrame; partition predicates prune files, projections skip columns."""
    known = [f.name for f in table.schema().fields]
    lf = pl.scan_delta(table)
    if spec.predicate is not None:
        check_columns(spec.predicate, known, table=str(spec.ref))
        lf = lf.filter(to_expr(spec.predicate.bind(params.bindings())))
    if spec.columns is not None:
        unknown = sorted(set(spec.columns) - set(known))
        if unknown:
            raise SchemaMismatchError(str(spec.ref), [f"projected column(s) {unknown} do not exist"])
        lf = lf.select(list(spec.columns))
    return lf
