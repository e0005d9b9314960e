"""Turns table declarations into Dagster software-defined assets.

Each :class:`~loom_assets.declare.Table` becomes one ``@asset``: key ``[schema, table]``,
inputs from its sources (read by the Loom IO manager), ``kinds``, group per schema, a code
version from its body, ``BackfillPolicy.single_run()``; next to it, its checks
(:func:`loom_assets.checks.build_checks`: the blocking schema contract and its declared data
checks), which run after it in the same run and also on their own. The body runs the SQL (inside the store
when every source lives in one backend that runs SQL, else with Polars) or the Python
transform and returns the frame; the IO manager writes it.

What the IO manager needs travels on the asset itself (:mod:`loom_resources.binding`: on the
function of its op, not in the metadata the UI shows). This
module knows backends only through their resources' capabilities and ``expected_schema``.
"""


import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import dagster as dg
from dagster import AssetExecutionContext

from loom_assets.checks import build_checks
from loom_assets.declare import Table
from loom_assets.external import ExternalTable
from loom_assets.lineage import column_lineage
from loom_assets.signatures import signature_once
from loom_assets.sql_body import bind_sql, check_sql
from loom_assets.sql_cache import LINEAGE_CACHE, TABLES_CACHE
from loom_resources import Backend, SpecError, UnsupportedTypeError
from loom_resources.binding import AssetBinding, InputBinding, attach_binding
from loom_resources.errors import LoomError
from loom_resources.failures import loom_failure
from loom_resources.metadata import COLUMN_LINEAGE_METADATA, STARTED_AT_METADATA, column_schema_metadata
from loom_resources.model import SourceSpec
from loom_resources.run_params import run_params
from loom_resources.run_records import RUN_RECORDS_REF, RUN_RECORDS_SPEC, record_failure
from loom_resources.sql import PolarsSQLExecutor

Backends = Mapping[str, Any]


def _default(backends: Backends | None) -> Backends:
    if backends is not None:
        return backends
    from loom_resources.defaults import default_backends  # deferred: the backends' libraries load only when needed

    return default_backends()


def _backend(backends: Backends, table: Table) -> Any:
    name = table.target.backend.value
    if name not in backends:
        raise SpecError(f"table {table.ref}: no resource for backend {name!r} (have {sorted(backends)})")
    return backends[name]


def validate_tables(tables: Sequence[Table | ExternalTable], backends: Backends | None = None) -> None:
    """Fail with a message naming the table on duplicates, reserved names, unknown sources,
    cycles, modes or types the backend does not support, and SQL that reads something other
    than its sources. ``backends`` default to :func:`loom_resources.defaults.default_backends`."""
    backends = _default(backends)
    by_name: dict[str, Any] = {}
    for t in tables:
        if str(t.ref) in by_name:
            raise SpecError(f"table {t.ref} is declared twice")
        by_name[str(t.ref)] = t
        # any case: on a case-insensitive file system Loom.run_records is loom.run_records' directory
        if t.ref.schema.casefold() == RUN_RECORDS_REF.schema.casefold() and not isinstance(t, ExternalTable):
            raise SpecError(f"table {t.ref}: schema {t.ref.schema!r} is reserved for Loom's audit trail ({RUN_RECORDS_REF})")
    try:
        for t in tables:
            if isinstance(t, ExternalTable):
                continue
            for s in t.sources:
                if not s.asset and str(s.ref) not in by_name:  # type: ignore[union-attr]
                    raise SpecError(f"table {t.ref}: source {s.ref} is not a declared table "  # type: ignore[union-attr]
                                    "(for a plain Dagster asset, declare Source(..., asset=True))")
            resource = _backend(backends, t)
            resource.capabilities.check(t.target, t.target.backend.value)
            try:
                resource.expected_schema(t.target)
            except UnsupportedTypeError as exc:
                raise SpecError(f"table {t.ref}: {exc}") from exc
            if t.sql is not None:
                check_sql(t.sql, [s.name for s in t.sources], table=str(t.ref))  # type: ignore[union-attr]
    finally:
        TABLES_CACHE.save()  # the statements parsed by this load, for the next one
    _check_cycles(by_name)


def _check_cycles(by_name: dict[str, Any]) -> None:
    """Depth-first search for cycles, reporting the path (declaring table first, each arrow to a
    source).

    Iterative, the path being the stack itself: a chain of thousands of tables declared
    downstream first must not hit Python's recursion limit (~1,000 frames), nor copy the path
    at every table (quadratic in the chain's length)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def sources(name: str) -> Iterator[str]:
        # plain Dagster assets are outside the declared graph
        return (str(s.ref) for s in by_name[name].sources if str(s.ref) in by_name)

    for root in by_name:
        if state.get(root):
            continue
        state[root] = 1
        path, todo = [root], [sources(root)]
        while todo:
            name = next(todo[-1], None)
            if name is None:
                state[path.pop()] = 2
                todo.pop()
            elif state.get(name) == 1:
                cycle = path[path.index(name):] + [name]
                raise SpecError(f"table {name}: sources form a cycle {' -> '.join(cycle)}")
            elif state.get(name) != 2:
                state[name] = 1
                path.append(name)
                todo.append(sources(name))


def sql_pushdown(table: Table, by_name: dict[str, Any], backends: Backends) -> tuple[str, str] | None:
    """The one decision of where a SQL body runs: inside the store, as ``(backend, dialect)``,
    when every source lives in one backend that runs SQL; else ``None`` (Polars)."""
    if table.sql is None or not table.sources:
        return None
    if any(s.asset for s in table.sources):  # type: ignore[union-attr]
        return None  # a plain asset arrives as a polars frame
    names = {Backend(by_name[str(s.ref)].backend).value for s in table.sources}  # type: ignore[union-attr]
    if len(names) != 1:
        return None
    name = names.pop()
    dialect = backends[name].capabilities.sql_dialect
    return (name, dialect) if dialect is not None else None


def _upstream(source: Any) -> Any:
    """How an input's upstream is read: a declared table's binding, or an external table's."""
    if isinstance(source, ExternalTable):
        return source.source()
    return AssetBinding(target=source.target, partition_columns=source.partition_columns).source()


def _asset_in(source: Any, table: Table, by_name: dict[str, Any], relation: bool) -> dg.AssetIn:
    """The input of one source: a Loom table read by the Loom IO manager (with its binding), or a
    plain Dagster asset loaded by its own IO manager."""
    if source.asset:
        return dg.AssetIn(key=dg.AssetKey([source.ref.schema, source.ref.table]), partition_mapping=source.partition_mapping)
    return dg.AssetIn(
        key=by_name[str(source.ref)].asset_key,
        metadata=InputBinding(
            SourceSpec(source.ref, source.columns, source.predicate), streaming=source.streaming, relation=relation,
            consumer_partition_columns=table.partition_columns, upstream=_upstream(by_name[str(source.ref)]),
        ).metadata(),
        partition_mapping=source.partition_mapping,
    )


def attach_binding_of(binding: AssetBinding) -> Any:
    """Decorator form of :func:`loom_resources.binding.attach_binding`."""
    return lambda fn: attach_binding(fn, binding)


def build_asset(table: Table, by_name: dict[str, Any], backends: Backends, *, pool: str | None = None) -> dg.AssetsDefinition:
    """Build the asset of one declared table (call :func:`build_assets` for a whole set)."""
    spec = table.target
    pushdown = sql_pushdown(table, by_name, backends)
    ins = {s.name: _asset_in(s, table, by_name, pushdown is not None) for s in table.sources}  # type: ignore[union-attr]
    kinds = {spec.backend.value, "polars"} | ({"sql"} if table.sql is not None else set())
    description = table.description or f"{spec.mode.value} into {spec.backend.value} table {spec.ref}"
    binding = AssetBinding(target=spec, partition_columns=table.partition_columns)
    metadata = {
        "dagster/column_schema": column_schema_metadata(spec.stored_columns()),
        "dagster/table_name": str(spec.ref),
        **binding.metadata(),  # the partition columns, for plain assets reading the table
    }
    # derived once per load (remembered across loads); on the definition so the UI shows it before
    # the first run, and on every materialization since the UI reads it from the latest one
    lineage = column_lineage(table, by_name)
    output_metadata: dict[str, Any] = {}
    if lineage is not None:
        metadata[COLUMN_LINEAGE_METADATA] = output_metadata[COLUMN_LINEAGE_METADATA] = lineage
    needed = {spec.backend.value, RUN_RECORDS_SPEC.backend.value} | {
        Backend(by_name[str(s.ref)].backend).value for s in table.sources if not s.asset}  # type: ignore[union-attr]

    @dg.asset(
        key=table.asset_key,
        ins=ins,
        partitions_def=table.partitions,
        # unpartitioned tables too, so "everything over a partition range" is one run from the CLI
        backfill_policy=dg.BackfillPolicy.single_run(),
        kinds=kinds,
        description=description,
        owners=list(table.owners) or None,
        tags=dict(table.tags) or None,
        group_name=spec.ref.schema,
        code_version=table.code_version,
        automation_condition=table.automation_condition,
        freshness_policy=dg.FreshnessPolicy.time_window(fail_window=table.fresh_within) if table.fresh_within else None,
        required_resource_keys=needed,
        metadata=metadata,
        pool=pool,
    )
    @attach_binding_of(binding)  # what the IO manager needs, kept out of what the UI shows
    @signature_once
    def _asset(context: AssetExecutionContext, **inputs: Any) -> Iterator[Any]:
        started = dt.datetime.now(dt.UTC)
        params = run_params(context, table.partition_columns)
        try:
            out = _run_body(table, context, inputs, params, pushdown)
        except Exception as exc:
            record_failure(context.resources, context.run.run_id, table.asset_key.to_user_string(), spec, params,
                           exc, started)
            if isinstance(exc, LoomError):
                raise loom_failure(exc) from exc  # Loom's message as the run's failure, not Dagster's wrapper
            raise
        yield dg.Output(out, metadata={STARTED_AT_METADATA: started.isoformat(), **output_metadata})

    return _asset


def _run_body(table: Table, context: Any, inputs: dict[str, Any], params: Any, pushdown: tuple[str, str] | None) -> Any:
    """Run the table's body and return its frame (or a query result that stays in the store)."""
    name = str(table.target.ref)
    if table.sql is None:
        assert table.transform is not None
        return table.transform(context, **inputs)
    bindings = params.bindings()
    if pushdown is not None:
        backend, dialect = pushdown
        return getattr(context.resources, backend).execute_sql(inputs, bind_sql(table.sql, bindings, dialect, table=name))  # type: ignore[arg-type]
    return PolarsSQLExecutor().execute_sql(inputs, bind_sql(table.sql, bindings, "polars", table=name))


def build_assets(tables: Sequence[Table | ExternalTable], *, pool: str | None = None,
                 backends: Backends | None = None) -> list[dg.AssetsDefinition]:
    """Validate the declarations as a set and build one asset per declared table, each followed
    by the table's checks (an ``AssetChecksDefinition``; pass the whole list to ``dg.materialize``
    or ``Definitions(assets=...)``). External tables are sources only
    (:func:`loom_assets.external.build_external` observes them).

    Args:
        tables: The declared tables.
        pool: Dagster concurrency pool for every asset (the embedded ClickHouse engine uses
            one so runs against one data path never overlap).
        backends: Backend name -> resource; default :func:`loom_resources.defaults.default_backends`.
            Declarations the backend cannot serve are refused here, naming the table.
    """
    backends = _default(backends)
    validate_tables(tables, backends)
    by_name = {str(t.ref): t for t in tables}
    out: list[dg.AssetsDefinition] = []
    try:
        for t in tables:
            if not isinstance(t, Table):
                continue
            out.append(build_asset(t, by_name, backends, pool=pool))
            out.append(build_checks(t, _backend(backends, t).expected_schema(t.target), pool=pool))
    finally:
        LINEAGE_CACHE.save()  # the lineage derived by this load, for the next one
    return out
