"""Tables declared in YAML: the models of the ``LoomTables`` component's attributes, and their
conversion into the same :class:`~loom_assets.Table` and :class:`~loom_assets.ExternalTable` a
Python declaration builds (so YAML tables get exactly the validation of Python ones).

The models are pydantic models: they *are* the JSON schema ``dg check yaml`` validates against
and editors complete from (``dg utils generate-component-schema``). Every field of ``Table``
has a YAML form:

==========================  ===============================================================
``Table(...)``               YAML
==========================  ===============================================================
``columns``                  ``- {name: id, type: int64, nullable: false}``
``sql`` / ``transform``      ``sql: SELECT ...`` / ``transform: my_project.bodies:land``
``sources``                  ``- raw.orders`` or ``- {table: raw.orders, alias: o, ...}``
``predicate`` (sources),     a SQL condition: ``"day >= {partition_start} AND region = 'EU'"``
``replace_predicate``        (``{name}`` is the run parameter ``name``)
``partitions``               ``{daily: {start_date: "2026-11-01"}}``, ``hourly``, ``weekly``,
                             ``monthly``, ``{static: [a, b]}`` or ``{multi: {dim: {...}}}``
``checks``                   ``- not_null: [id]``, ``- unique: [id]``, ``- accepted_values:
                             {column: c, values: [..]}``, ``- row_count: {min_rows: 1}``
``automation_condition``     ``eager``, ``on_missing`` or ``{on_cron: "0 2 * * *"}``
``fresh_within``             ``26h``, ``90m``, ``2d`` or seconds
``history`` / ``clickhouse``  the fields of ``HistoryOptions`` / ``ClickHouseTableOptions``
``column_lineage``           ``{amount: [raw.orders.quantity, [products, unit_price]]}``
==========================  ===============================================================
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib
import re
from collections.abc import Callable, Mapping
from typing import Any, Literal

import dagster as dg
from pydantic import Field

from loom_assets.declare import DataCheck, Source, Table, accepted_values, not_null, row_count, unique
from loom_assets.external import ExternalTable
from loom_resources import ClickHouseTableOptions, ColumnSchema, HistoryOptions, SpecError
from loom_resources.predicates import And, Compare, In, IsNull, Not, Or, Param, Predicate

__all__ = [
    "CheckModel", "ColumnModel", "ExternalTableModel", "PartitionsModel", "SourceModel", "TableModel", "load_object",
    "predicate_from_sql",
]


class ColumnModel(dg.Model):
    """One declared column."""

    name: str = Field(description="Column name.")
    type: str = Field(description="Loom type: int8..int64, uint8..uint64, float32, float64, bool, string, binary, "
                                  "date, timestamp[us], timestamp[us, UTC], decimal(p,s), list<T>, struct<...>.")
    nullable: bool = Field(True, description="Whether the column may hold nulls.")


class SourceModel(dg.Model):
    """One input of a table (``Source(...)``)."""

    table: str = Field(description="The upstream table, schema.table (declared, external or a plain asset).")
    columns: list[str] | None = Field(None, description="Read only these columns.")
    predicate: str | None = Field(None, description="A SQL condition on the source; {name} is a run parameter.")
    alias: str | None = Field(None, description="Name in SQL and the transform's argument (default: the table name).")
    streaming: bool = Field(False, description="Read through the streaming reader (bounded memory).")
    asset: bool = Field(False, description="The source is a plain Dagster asset loaded by its own IO manager.")
    partition_mapping: Literal["all", "identity", "last_partition"] | dict[str, int] | None = Field(
        None, description="all, identity, last_partition, or {start_offset: -6, end_offset: 0} (time windows).")


class TimePartitionsModel(dg.Model):
    """A time partitioning (Dagster's Daily/Hourly/Weekly/MonthlyPartitionsDefinition)."""

    start_date: str = Field(description="First partition, e.g. 2026-11-01.")
    end_offset: int = Field(0, description="Partitions after the current one's start (0: up to the last complete one).")
    timezone: str | None = Field(None, description="IANA time zone (default UTC).")


class PartitionsModel(dg.Model):
    """Exactly one of daily, hourly, weekly, monthly, static or multi."""

    daily: TimePartitionsModel | None = None
    hourly: TimePartitionsModel | None = None
    weekly: TimePartitionsModel | None = None
    monthly: TimePartitionsModel | None = None
    static: list[str] | None = Field(None, description="A fixed list of partition keys.")
    multi: dict[str, PartitionsModel] | None = Field(None, description="Two dimensions by name (Dagster multi-partitions).")


class AcceptedValuesModel(dg.Model):
    """``accepted_values(column, values)``."""

    column: str
    values: list[Any]


class RowCountModel(dg.Model):
    """``row_count(min_rows=, max_rows=)``."""

    min_rows: int | None = None
    max_rows: int | None = None


class CheckModel(dg.Model):
    """One data check: exactly one of not_null, unique, accepted_values, row_count."""

    not_null: list[str] | str | None = Field(None, description="Columns that hold no nulls.")
    unique: list[str] | str | None = Field(None, description="Columns whose combination is unique.")
    accepted_values: AcceptedValuesModel | None = None
    row_count: RowCountModel | None = None
    blocking: bool = Field(False, description="A failure stops the run's downstream steps.")


class TableModel(dg.Model):
    """A declared table: everything ``loom_assets.Table(...)`` takes."""

    name: str = Field(description="schema.table; the asset key is [schema, table].")
    backend: Literal["delta", "clickhouse"]
    columns: list[ColumnModel] = Field(description="The declared columns (the contract).")
    sql: str | None = Field(None, description="SQL body; source aliases are tables; {partition_start} etc. are bound.")
    transform: str | None = Field(None, description="Python body by path, module:function or module.function; "
                                                    "fn(context, **sources) -> LazyFrame | DataFrame.")
    sources: list[SourceModel | str] = Field(default_factory=list)
    mode: Literal["append", "overwrite", "replace_partitions", "replace_where", "merge", "history"] = "append"
    schema_mode: Literal["strict", "evolve", "overwrite"] | None = None
    merge_keys: list[str] = Field(default_factory=list)
    partition_by: list[str] = Field(default_factory=list)
    replace_predicate: str | None = Field(None, description="replace_where: a SQL condition; {name} is a run parameter.")
    delete_unmatched: bool = False
    history: dict[str, Any] | None = Field(None, description="HistoryOptions fields (SCD2 mode).")
    audit_columns: bool = False
    streaming: bool | None = None
    clickhouse: dict[str, Any] | None = Field(None, description="ClickHouseTableOptions fields (engine, order_by, ...).")
    partitions: PartitionsModel | None = None
    partition_column: str | dict[str, str] | None = None
    checks: list[CheckModel] = Field(default_factory=list)
    automation_condition: Literal["eager", "on_missing"] | dict[str, str] | None = Field(
        None, description="eager, on_missing or {on_cron: '0 2 * * *'}.")
    fresh_within: str | int | None = Field(None, description="Stale after this long: 26h, 90m, 2d or seconds.")
    column_lineage: dict[str, list[str | list[str]]] | None = Field(
        None, description="Output column -> its source columns, schema.table.column or [source, column] "
                          "(derived from SQL bodies; declare it for Python ones).")
    description: str | None = None
    owners: list[str] = Field(default_factory=list)
    tags: dict[str, str] = Field(default_factory=dict)


class ExternalTableModel(dg.Model):
    """A table another system writes (``loom_assets.ExternalTable(...)``)."""

    name: str
    backend: Literal["delta", "clickhouse"]
    columns: list[ColumnModel] | None = Field(None, description="Relied-on columns; omit to discover them.")
    partition_column: str | None = None
    description: str | None = None
    observe_cron: str | None = None


def load_object(path: str, *, what: str) -> Any:
    """Import ``module:attr`` or ``module.attr``; an error says what could not be found."""
    module_name, sep, attr = path.partition(":")
    if not sep:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise SpecError(f"{what} {path!r}: name it as module:attribute (e.g. my_project.bodies:land_orders)")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise SpecError(f"{what} {path!r}: cannot import module {module_name!r}: {e}") from e
    try:
        return getattr(module, attr)
    except AttributeError:
        raise SpecError(f"{what} {path!r}: module {module_name!r} has no attribute {attr!r}") from None


_PARAM = re.compile(r"\{(\w+)\}")
_PARAM_PREFIX = "__loom_param__"


def predicate_from_sql(text: str) -> Predicate:
    """Parse a SQL condition into a Loom predicate: comparisons, ``IN``, ``BETWEEN``, ``IS [NOT]
    NULL``, ``AND``/``OR``/``NOT``, literals, and ``{name}`` run parameters.

    Written by hand over sqlglot's tree because the predicate must stay Loom's backend-neutral
    tree (rendered for Polars, ClickHouse and delta-rs), which sqlglot does not produce.
    """
    import sqlglot
    from sqlglot import exp

    try:
        tree = sqlglot.parse_one(_PARAM.sub(lambda m: _PARAM_PREFIX + m.group(1), text))
    except sqlglot.errors.ParseError as e:
        raise SpecError(f"cannot parse the condition {text!r}: {e}") from e

    def column(node: Any) -> str:
        if isinstance(node, exp.Column) and not node.name.startswith(_PARAM_PREFIX):
            return node.name
        raise SpecError(f"condition {text!r}: expected a column, got {node.sql()!r}")

    def value(node: Any) -> Any:
        if isinstance(node, exp.Column) and node.name.startswith(_PARAM_PREFIX):
            return Param(node.name[len(_PARAM_PREFIX):])
        if isinstance(node, exp.Neg):
            return -value(node.this)
        if isinstance(node, exp.Boolean):
            return node.this
        if isinstance(node, exp.Literal):
            if node.is_string:
                return node.this
            return int(node.this) if re.fullmatch(r"-?\d+", node.this) else float(node.this)
        if isinstance(node, exp.Cast) and isinstance(node.this, exp.Literal):
            kind = node.to.this
            if kind == exp.DataType.Type.DATE:
                return dt.date.fromisoformat(node.this.this)
            if kind in (exp.DataType.Type.TIMESTAMP, exp.DataType.Type.DATETIME):
                return dt.datetime.fromisoformat(node.this.this)
        raise SpecError(f"condition {text!r}: expected a literal or {{parameter}}, got {node.sql()!r}")

    ops: dict[type, Any] = {exp.EQ: "=", exp.NEQ: "!=", exp.LT: "<", exp.LTE: "<=", exp.GT: ">", exp.GTE: ">="}

    def build(node: Any) -> Predicate:
        if isinstance(node, exp.Paren):
            return build(node.this)
        if isinstance(node, exp.And):
            return And((build(node.left), build(node.right)))
        if isinstance(node, exp.Or):
            return Or((build(node.left), build(node.right)))
        if isinstance(node, exp.Not):
            if isinstance(node.this, exp.Is):
                return IsNull(column(node.this.this), negate=True)
            return Not(build(node.this))
        if isinstance(node, exp.Is) and isinstance(node.expression, exp.Null):
            return IsNull(column(node.this))
        if type(node) in ops:
            return Compare(column(node.this), ops[type(node)], value(node.expression))
        if isinstance(node, exp.In):
            return In(column(node.this), tuple(value(v) for v in node.expressions))
        if isinstance(node, exp.Between):
            c = column(node.this)
            return And((Compare(c, ">=", value(node.args["low"])), Compare(c, "<=", value(node.args["high"]))))
        raise SpecError(f"condition {text!r}: {node.sql()!r} is not supported (use =, !=, <, <=, >, >=, IN, BETWEEN, "
                        "IS [NOT] NULL, AND, OR, NOT)")

    return build(tree)


def _partitions(m: PartitionsModel) -> dg.PartitionsDefinition:
    kinds = {k: v for k, v in m if v is not None}
    if len(kinds) != 1:
        raise SpecError(f"partitions: give exactly one of daily, hourly, weekly, monthly, static, multi (got {sorted(kinds)})")
    (kind, spec), = kinds.items()
    if kind == "static":
        return dg.StaticPartitionsDefinition(list(spec))
    if kind == "multi":
        if len(spec) != 2:
            raise SpecError(f"partitions.multi: Dagster multi-partitions have exactly two dimensions, got {sorted(spec)}")
        return dg.MultiPartitionsDefinition({name: _partitions(sub) for name, sub in spec.items()})
    cls = {"daily": dg.DailyPartitionsDefinition, "hourly": dg.HourlyPartitionsDefinition,
           "weekly": dg.WeeklyPartitionsDefinition, "monthly": dg.MonthlyPartitionsDefinition}[kind]
    extra = {"timezone": spec.timezone} if spec.timezone else {}
    return cls(start_date=spec.start_date, end_offset=spec.end_offset, **extra)


def _mapping(m: Any) -> dg.PartitionMapping | None:
    if m is None:
        return None
    if m == "all":
        return dg.AllPartitionMapping()
    if m == "identity":
        return dg.IdentityPartitionMapping()
    if m == "last_partition":
        return dg.LastPartitionMapping()
    unknown = set(m) - {"start_offset", "end_offset"}
    if unknown:
        raise SpecError(f"partition_mapping: unknown keys {sorted(unknown)}; use start_offset and end_offset")
    return dg.TimeWindowPartitionMapping(start_offset=m.get("start_offset", 0), end_offset=m.get("end_offset", 0))


def _source(s: SourceModel | str) -> Source | str:
    if isinstance(s, str):
        return s
    return Source(
        s.table, columns=tuple(s.columns) if s.columns is not None else None,
        predicate=predicate_from_sql(s.predicate) if s.predicate else None, alias=s.alias,
        partition_mapping=_mapping(s.partition_mapping), streaming=s.streaming, asset=s.asset,
    )


def _columns(names: list[str] | str) -> tuple[str, ...]:
    return (names,) if isinstance(names, str) else tuple(names)


def _check(m: CheckModel) -> DataCheck:
    given = [k for k in ("not_null", "unique", "accepted_values", "row_count") if getattr(m, k) is not None]
    if len(given) != 1:
        raise SpecError(f"a check names exactly one of not_null, unique, accepted_values, row_count (got {given})")
    if m.not_null is not None:
        return not_null(*_columns(m.not_null), blocking=m.blocking)
    if m.unique is not None:
        return unique(*_columns(m.unique), blocking=m.blocking)
    if m.accepted_values is not None:
        return accepted_values(m.accepted_values.column, m.accepted_values.values, blocking=m.blocking)
    assert m.row_count is not None
    return row_count(min_rows=m.row_count.min_rows, max_rows=m.row_count.max_rows, blocking=m.blocking)


def _automation(m: Any) -> dg.AutomationCondition | None:
    if m is None:
        return None
    if m == "eager":
        return dg.AutomationCondition.eager()
    if m == "on_missing":
        return dg.AutomationCondition.on_missing()
    if set(m) == {"on_cron"}:
        return dg.AutomationCondition.on_cron(m["on_cron"])
    raise SpecError(f"automation_condition: use eager, on_missing or {{on_cron: '<cron>'}}, got {m!r}")


_DURATION = re.compile(r"(\d+)\s*([smhd])")


def _duration(m: str | int | None) -> dt.timedelta | None:
    if m is None:
        return None
    if isinstance(m, int):
        return dt.timedelta(seconds=m)
    match = _DURATION.fullmatch(m.strip())
    if not match:
        raise SpecError(f"fresh_within: use a number and a unit s, m, h or d (e.g. 26h), got {m!r}")
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[match.group(2)]
    return dt.timedelta(**{unit: int(match.group(1))})


def _options(cls: type, given: Mapping[str, Any] | None, what: str) -> Any:
    if given is None:
        return None
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(given) - names
    if unknown:
        raise SpecError(f"{what}: unknown options {sorted(unknown)}; known: {sorted(names)}")
    # YAML lists become the tuples the frozen options hold
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in given.items()})


def _transform(path: str | None) -> Callable[..., Any] | None:
    if path is None:
        return None
    fn = load_object(path, what="transform")
    if not callable(fn):
        raise SpecError(f"transform {path!r} is not a function")
    return fn  # type: ignore[no-any-return]


def _lineage(m: dict[str, list[str | list[str]]] | None) -> Any:
    # a YAML pair [source, column] is the (source, column) tuple Table(column_lineage=) takes
    return {k: [tuple(v) if isinstance(v, list) else v for v in refs] for k, refs in m.items()} if m else None


def to_table(m: TableModel) -> Table:
    """The :class:`Table` a YAML declaration says (validated as a Python one is)."""
    extra: dict[str, Any] = {}
    if m.schema_mode is not None:
        extra["schema_mode"] = m.schema_mode
    if m.clickhouse is not None:
        extra["clickhouse"] = _options(ClickHouseTableOptions, m.clickhouse, "clickhouse")
    return Table(
        m.name, backend=m.backend, columns=[ColumnSchema(c.name, c.type, c.nullable) for c in m.columns],
        sql=m.sql, transform=_transform(m.transform), sources=[_source(s) for s in m.sources], mode=m.mode,
        merge_keys=m.merge_keys, partition_by=m.partition_by,
        replace_predicate=predicate_from_sql(m.replace_predicate) if m.replace_predicate else None,
        delete_unmatched=m.delete_unmatched, history=_options(HistoryOptions, m.history, "history"),
        audit_columns=m.audit_columns, streaming=m.streaming,
        partitions=_partitions(m.partitions) if m.partitions is not None else None,
        partition_column=m.partition_column, checks=[_check(c) for c in m.checks],
        automation_condition=_automation(m.automation_condition), fresh_within=_duration(m.fresh_within),
        description=m.description, owners=m.owners, tags=m.tags,
        column_lineage=_lineage(m.column_lineage), **extra,
    )


def to_external(m: ExternalTableModel) -> ExternalTable:
    """The :class:`ExternalTable` a YAML declaration says."""
    return ExternalTable(
        m.name, backend=m.backend,
        columns=[ColumnSchema(c.name, c.type, c.nullable) for c in m.columns] if m.columns is not None else None,
        partition_column=m.partition_column, description=m.description, observe_cron=m.observe_cron,
    )
