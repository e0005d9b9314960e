"""Asset checks of declared tables: the schema contract and declared data checks.

Both run inside the asset's own step right after the write, as real queries against the
stored table, so a failing blocking check stops downstream assets in the same run. The
expected schema comes from the backend resource (``expected_schema``), so this module knows
no backend.
"""

from __future__ import annotations

from typing import Any

import dagster as dg
import polars as pl

from loom_assets.declare import DataCheck, Table
from loom_resources import RunParams, SchemaMode, SourceSpec
from loom_resources.dtypes import Schema, schema_diff
from loom_resources.predicates import Predicate

SCHEMA_CHECK = "schema_matches_declaration"


def schema_check(table: Table, expected: Schema, stored: Schema | None) -> dg.AssetCheckResult:
    """Compare the stored schema with the declaration's ``expected`` storage schema (names,
    types, nullability, order)."""
    if stored is None:
        return dg.AssetCheckResult(
            check_name=SCHEMA_CHECK, passed=False, severity=dg.AssetCheckSeverity.ERROR,
            metadata={"problems": f"table {table.ref} does not exist after the write"},
        )
    if table.target.schema_mode is SchemaMode.EVOLVE:
        # evolved tables may carry columns added after the declaration
        declared = {c.name for c in expected}
        stored = tuple(c for c in stored if c.name in declared)
    problems = schema_diff(expected, stored)
    return dg.AssetCheckResult(
        check_name=SCHEMA_CHECK,
        passed=not problems,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "problems": "\n".join(problems) or "none",
            "declared": "\n".join(str(c) for c in expected),
            "stored": "\n".join(str(c) for c in stored),
        },
    )


def data_check(check: DataCheck, reader: Any, table: Table, scope: Predicate | None) -> dg.AssetCheckResult:
    """Run one declared data check as a query over the stored table (the run's partitions
    only, when ``scope`` is given)."""
    cols = list(check.columns) or [table.target.column_names[0]]
    lf: pl.LazyFrame = reader.read(SourceSpec(table.ref, tuple(cols), scope), RunParams())
    md: dict[str, Any] = {}
    if check.kind == "not_null":
        nulls = lf.select(pl.col(cols).null_count()).collect().row(0)
        md = {f"nulls_{c}": int(n) for c, n in zip(cols, nulls, strict=True)}
        passed = not any(nulls)
    elif check.kind == "unique":
        dupes = lf.group_by(cols).len().filter(pl.col("len") > 1).select(pl.len()).collect().item()
        md = {"duplicate_keys": int(dupes)}
        passed = dupes == 0
    elif check.kind == "accepted_values":
        c = cols[0]
        bad = lf.filter(pl.col(c).is_not_null() & ~pl.col(c).is_in(list(check.values))).select(pl.len()).collect().item()
        md = {"rows_with_other_values": int(bad), "accepted": ", ".join(map(str, check.values))}
        passed = bad == 0
    elif check.kind == "row_count":
        n = lf.select(pl.len()).collect().item()
        md = {"rows": int(n)}
        passed = (check.min_rows is None or n >= check.min_rows) and (check.max_rows is None or n <= check.max_rows)
    else:
        raise ValueError(f"table {table.ref}: unknown data check kind {check.kind!r}")
    return dg.AssetCheckResult(
        check_name=check.name,
        passed=bool(passed),
        severity=dg.AssetCheckSeverity.ERROR if check.blocking else dg.AssetCheckSeverity.WARN,
        metadata=md,
    )
