"""Asset checks of declared tables: the schema contract and declared data checks.

Each table gets one ``@multi_asset_check`` (:func:`build_checks`) holding its schema contract
(blocking) and its declared data checks, each with a description. Dagster runs it right after
the asset in every run that materializes the table, so a failing schema contract stops
downstream assets in that run; and because it reads only the stored table (never the asset's
inputs) and can be subset, each check also runs on its own, from the UI or a job, scoped to the
run's partition or range. The checks themselves are unpartitioned even on a partitioned table:
"Execute all" in the UI launches them without a partition, and they then look at the whole
stored table (Dagster's partitioned checks, a preview in 1.13, fail such a run and record a
range run's results under no partition, which the UI shows as "Skipped"). The expected schema comes from the backend resource
(``expected_schema``), so this module knows no backend.
"""


from typing import TYPE_CHECKING, Any

import dagster as dg
from dagster import AssetCheckExecutionContext

from loom_assets.declare import DataCheck, Table
from loom_assets.signatures import signature_once
from loom_resources import RunParams, SchemaMode, SourceSpec
from loom_resources._lazy import lazy_import
from loom_resources.dtypes import Schema, schema_diff
from loom_resources.partitions import slice_predicate
from loom_resources.predicates import Predicate
from loom_resources.run_params import check_run_params

if TYPE_CHECKING:
    import polars as pl
else:
    pl = lazy_import("polars")  # imported when data moves, not when the code location loads

__all__ = ["SCHEMA_CHECK", "build_checks", "data_check", "schema_check"]

SCHEMA_CHECK = "schema_matches_declaration"


def checks_name(table: Table) -> str:
    """The op name of a table's checks."""
    return f"{table.ref.schema}__{table.ref.table}__checks"


def build_checks(table: Table, expected: Schema, *, pool: str | None = None) -> dg.AssetChecksDefinition:
    """The checks of one declared table: the schema contract (blocking) and its data checks.

    Args:
        table: The declaration.
        expected: The storage schema the backend derives from the declaration.
        pool: Dagster concurrency pool (the one of the table's asset).
    """
    spec = table.target
    specs = [dg.AssetCheckSpec(
        SCHEMA_CHECK, asset=table.asset_key, blocking=True,
        description=f"The stored schema of {spec.ref} matches the declaration: column names, types, "
                    "nullability and order. Blocks downstream tables when it fails.",
    )]
    specs += [dg.AssetCheckSpec(c.name, asset=table.asset_key, blocking=c.blocking,
                                description=c.description) for c in table.checks]

    @dg.multi_asset_check(
        name=checks_name(table), specs=specs, can_subset=True, required_resource_keys={spec.backend.value},
        pool=pool, description=f"Checks of {spec.ref}, run against the stored table.",
    )
    @signature_once
    def _checks(context: AssetCheckExecutionContext) -> Any:
        backend = getattr(context.resources, spec.backend.value)
        selected = {k.name for k in context.selected_asset_check_keys}
        stored = backend.schema(spec.ref)
        if SCHEMA_CHECK in selected:
            yield schema_check(table, expected, stored)
        wanted = [c for c in table.checks if c.name in selected]
        if wanted and stored is None:
            for chk in wanted:
                yield dg.AssetCheckResult(check_name=chk.name, passed=False, severity=_severity(chk),
                                          metadata={"problems": f"table {spec.ref} does not exist"})
            return
        # the run's partitions of a partitioned table, else (an unpartitioned table, or checks
        # launched without a partition: "Execute all" in the UI) the whole stored table
        params = check_run_params(context, table.partitions, table.partition_columns)
        scope = slice_predicate(spec, table.partition_columns, params)
        for chk in wanted:
            yield data_check(chk, backend, table, scope, checked=_scope_text(params))

    return _checks


def _scope_text(params: RunParams) -> str:
    """What a data check looked at, in words (shown with its result)."""
    keys = params.partition_keys
    if not keys:
        return "the whole stored table"
    return f"partition {keys[0]}" if len(keys) == 1 else f"{len(keys)} partitions, {keys[0]} to {keys[-1]}"


def _severity(check: DataCheck) -> dg.AssetCheckSeverity:
    return dg.AssetCheckSeverity.ERROR if check.blocking else dg.AssetCheckSeverity.WARN


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


def data_check(check: DataCheck, reader: Any, table: Table, scope: Predicate | None,
               *, checked: str | None = None) -> dg.AssetCheckResult:
    """Run one declared data check as a query over the stored table (the run's partitions
    only, when ``scope`` is given); ``checked`` says which rows, in words, in the result's metadata."""
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
    if checked is not None:
        md["checked"] = checked
    return dg.AssetCheckResult(
        check_name=check.name,
        passed=bool(passed),
        severity=_severity(check),
        metadata=md,
    )
