"""Applying a source spec to a Polars scan: the bound predicate, then the projection, with the
same errors on every backend that reads through Polars (Delta, in-memory tables)."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from loom_resources.errors import SchemaMismatchError
from loom_resources.model import RunParams, SourceSpec
from loom_resources.polars_types import to_expr
from loom_resources.predicates import check_columns

__all__ = ["apply_source"]


def apply_source(lf: pl.LazyFrame, spec: SourceSpec, params: RunParams, known: Sequence[str]) -> pl.LazyFrame:
    """``lf`` filtered by ``spec``'s bound predicate and narrowed to its projection.

    Raises:
        PredicateError: the predicate names a column not in ``known`` or an unbound parameter.
        SchemaMismatchError: the projection names a column not in ``known``.
    """
    if spec.predicate is not None:
        check_columns(spec.predicate, known, table=str(spec.ref))
        lf = lf.filter(to_expr(spec.predicate.bind(params.bindings())))
    if spec.columns is not None:
        unknown = sorted(set(spec.columns) - set(known))
        if unknown:
            raise SchemaMismatchError(str(spec.ref), [f"projected column(s) {unknown} do not exist"])
        lf = lf.select(list(spec.columns))
    return lf
