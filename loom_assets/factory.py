"""Turns table declarations into Dagster software-defined assets.

Each :class:`~loom_assets.declare.Table` becomes one ``@asset``: key ``[schema, table]``,
inputs from its sources (read by the Loom IO manager), ``kinds``, group per schema, a code
version from its body, ``BackfillPolicy.single_run()`` when partitioned, a blocking
schema-contract check and its declared data checks. The body runs the SQL (inside
ClickHouse when every source lives there, else with Polars) or the Python transform and
returns the frame; the IO manager writes it.
"""


import datetime as dt
from collections.abc import Iterator, Sequence
from typing import Any

import dagster as dg
from dagster import AssetExecutionContext

from loom_assets.checks import SCHEMA_CHECK, data_check, expected_stored_schema, schema_check
from loom_assets.declare import Table
from loom_assets.sql_body import bind_sql, check_sql
from loom_resources import Backend, SourceSpec, SpecError, UnsupportedTypeError
from loom_resources.io_manager import SQL_ENGINE_METADATA, STARTED_AT_METADATA, run_params_for, slice_predicate
from loom_resources.registry import REGISTRY, AssetBinding, InputBinding
from loom_resources.run_records import RunRecord, append_record
from loom_resources.sql import PolarsSQLExecutor


def validate_tables(tables: Sequence[Table]) -> None:
    """Fail with a message naming the table on duplicates, unknown sources, cycles and SQL
    that reads something other than its sources."""
    by_name: dict[str, Table] = {}
    for t in tables:
        if str(t.ref) in by_name:
            raise SpecError(f"table {t.ref} is declared twice")
        by_name[str(t.ref)] = t
    for t in tables:
        for s in t.sources:
            if str(s.ref) not in by_name:  # type: ignore[union-attr]
                raise SpecError(f"table {t.ref}: source {s.ref} is not a declared table")  # type: ignore[union-attr]
        try:
            expected_stored_schema(t)
        except UnsupportedTypeError as exc:
            raise SpecError(f"table {t.ref}: {exc}") from exc
        if t.sql is not None:
            check_sql(t.sql, [s.name for s in t.sources], table=str(t.ref))  # type: ignore[union-attr]
    # depth-first search for cycles, reporting the path
    state: dict[str, int] = {}

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = path[path.index(name):] + [name]
            raise SpecError(f"table {name}: sources form a cycle {' -> '.join(cycle)}")
        state[name] = 1
        for s in by_name[name].sources:
            visit(str(s.ref), path + [name])  # type: ignore[union-attr]
        state[name] = 2

    for name in by_name:
        visit(name, [])


def _pushdown(table: Table, by_name: dict[str, Table]) -> bool:
    """SQL runs inside ClickHouse when every source lives there."""
    if table.sql is None or not table.sources:
        return False
    return all(Backend(by_name[str(s.ref)].backend) is Backend.CLICKHOUSE for s in table.sources)  # type: ignore[union-attr]


def register(table: Table, by_name: dict[str, Table]) -> None:
    """Tell the IO manager about the table's target and how its inputs are read."""
    push = _pushdown(table, by_name)
    inputs = {
        s.name: InputBinding(SourceSpec(s.ref, s.columns, s.predicate), streaming=s.streaming, relation=push)  # type: ignore[union-attr]
        for s in table.sources
    }
    REGISTRY.register(
        tuple(table.asset_key.path),
        AssetBinding(target=table.target, partition_columns=table.partition_columns, inputs=inputs),
    )


def build_asset(table: Table, by_name: dict[str, Table], *, pool: str | None = None) -> dg.AssetsDefinition:
    """Build the asset of one declared table (call :func:`build_assets` for a whole set)."""
    spec = table.target
    push = _pushdown(table, by_name)
    ins = {
        s.name: dg.AssetIn(  # type: ignore[union-attr]
            key=by_name[str(s.ref)].asset_key,  # type: ignore[union-attr]
            metadata={"loom/consumer": list(table.asset_key.path), "loom/alias": s.name},  # type: ignore[union-attr]
            partition_mapping=s.partition_mapping,  # type: ignore[union-attr]
        )
        for s in table.sources
    }
    kinds = {spec.backend.value, "polars"} | ({"sql"} if table.sql is not None else set())
    check_specs = [dg.AssetCheckSpec(SCHEMA_CHECK, asset=table.asset_key, blocking=True,
                                     description="stored schema matches the declaration")]
    check_specs += [dg.AssetCheckSpec(c.name, asset=table.asset_key, blocking=c.blocking) for c in table.checks]
    description = table.description or f"{spec.mode.value} into {spec.backend.value} table {spec.ref}"
    columns_md = {"dagster/column_schema": _declared_schema(table), "dagster/table_name": str(spec.ref)}

    @dg.asset(
        key=table.asset_key,
        ins=ins,
        partitions_def=table.partitions,
        backfill_policy=dg.BackfillPolicy.single_run() if table.partitions is not None else None,
        kinds=kinds,
        description=description,
        owners=list(table.owners) or None,
        tags=dict(table.tags) or None,
        group_name=spec.ref.schema,
        code_version=table.code_version,
        check_specs=check_specs,
        required_resource_keys={"delta", "clickhouse"},
        metadata=columns_md,
        pool=pool,
    )
    def _asset(context: AssetExecutionContext, **inputs: Any) -> Iterator[Any]:
        started = dt.datetime.now(dt.UTC)
        params = asset_run_params(context, table)
        try:
            out, engine = _run_body(table, context, inputs, params, push)
        except Exception as exc:
            append_record(context.resources.delta, RunRecord(
                run_id=context.run.run_id, asset=table.asset_key.to_user_string(), table_name=str(spec.ref),
                partition_keys=params.partition_keys, mode=spec.mode.value, rows=None, status="failed",
                error=f"{type(exc).__name__}: {exc}", started_at=started, finished_at=dt.datetime.now(dt.UTC),
            ))
            raise
        md: dict[str, Any] = {STARTED_AT_METADATA: started.isoformat()}
        if engine:
            md[SQL_ENGINE_METADATA] = engine
        yield dg.Output(out, metadata=md)
        backend = context.resources.delta if spec.backend is Backend.DELTA else context.resources.clickhouse
        yield schema_check(table, backend.schema(spec.ref))
        if table.checks:
            scope = None
            if table.partitions is not None and params.partition_keys:
                scope = slice_predicate(
                    REGISTRY.get(tuple(table.asset_key.path)), list(params.partition_keys),
                    _window(params),
                )
            for chk in table.checks:
                yield data_check(chk, backend, table, scope)

    return _asset


def _run_body(table: Table, context: Any, inputs: dict[str, Any], params: Any, push: bool) -> tuple[Any, str | None]:
    """Run the table's body; return the frame and where its SQL ran (None for Python)."""
    spec = table.target
    if table.sql is None:
        assert table.transform is not None
        return table.transform(context, **inputs), None
    bindings = params.bindings()
    if push:
        query = bind_sql(table.sql, bindings, "clickhouse", table=str(spec.ref))
        out = context.resources.clickhouse.execute_sql(inputs, query)
    else:
        query = bind_sql(table.sql, bindings, "polars", table=str(spec.ref))
        out = PolarsSQLExecutor().execute_sql(inputs, query)
    return out, getattr(out, "engine_name", None) or "polars"


def asset_run_params(context: dg.AssetExecutionContext, table: Table) -> Any:
    """Run parameters of the asset's step: partition keys of a key or range, and the window."""
    if not context.has_partition_key and not context.has_partition_key_range:
        return run_params_for([], None, {})
    try:
        window = context.partition_time_window
    except Exception:  # not a time-window partitioning: Dagster raises instead of returning None
        window = None
    return run_params_for(list(context.partition_keys), window, table.partition_columns)


def _window(params: Any) -> dg.TimeWindow | None:
    if params.window_start is None or params.window_end is None:
        return None
    return dg.TimeWindow(params.window_start, params.window_end)


def _declared_schema(table: Table) -> dg.TableSchema:
    from loom_resources.io_manager import column_schema_metadata

    return column_schema_metadata(table.target.stored_columns())


def build_assets(tables: Sequence[Table], *, pool: str | None = None) -> list[dg.AssetsDefinition]:
    """Validate the declarations as a set, register them with the IO manager and build
    one asset per table.

    Args:
        tables: The declared tables.
        pool: Dagster concurrency pool for every asset (the embedded ClickHouse engine uses
            one so runs against one data path never overlap).
    """
    validate_tables(tables)
    by_name = {str(t.ref): t for t in tables}
    for t in tables:
        register(t, by_name)
    return [build_asset(t, by_name, pool=pool) for t in tables]
