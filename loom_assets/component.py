"""``LoomTables``: declared tables as a Dagster Component, written in a project's ``defs.yaml``.

::

    # src/my_project/defs/tables/defs.yaml  (dg scaffold defs loom_assets.LoomTables tables)
    type: loom_assets.LoomTables
    attributes:
      tables:
        - name: raw.orders
          backend: delta
          columns:
            - {name: order_id, type: int64, nullable: false}
            - {name: order_date, type: date, nullable: false}
          mode: replace_partitions
          partitions: {daily: {start_date: "2026-11-01"}}
          partition_column: order_date
          transform: my_project.bodies:land_orders
          checks:
            - not_null: [order_id]
      python: [my_project.tables]        # Python declarations in the same build (TABLES of the module)

The YAML forms of every ``Table(...)`` argument are in :mod:`loom_assets.yaml_tables`. A YAML table
becomes the same :class:`~loom_assets.Table` a Python declaration builds, so it gets the same
validation when the code location loads, and an error names the file, the line and the table.
YAML and Python tables read each other when the component builds them together (``python:``).
"""


import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import dagster as dg
from dagster.components.resolved.errors import ResolutionException
from pydantic import Field

from loom_assets.declare import Table
from loom_assets.definitions import build_definitions
from loom_assets.external import ExternalTable
from loom_assets.yaml_tables import ExternalTableModel, TableModel, load_object, to_external, to_table
from loom_resources import SpecError

__all__ = ["LoomTables", "LoomTablesScaffolder"]


def _where(context: dg.ResolutionContext, index: int, message: str) -> str:
    """``file:line`` of item ``index`` of the list being resolved, when the YAML's positions are known."""
    tree = context.source_position_tree
    if tree is None:
        return ""
    try:
        err = tree.source_error(yaml_path=[*context.path, index], inline_error_message=message, value_error=True)
    except Exception:  # a position is a nicety: never hide the declaration error behind a lookup error
        return ""
    return f"{err.file_name}:{err.start_line_no}: "


# table name -> "file:line: " of its YAML declaration, for errors found once all tables are built
_POSITIONS: dict[str, str] = {}


def _resolve_each(context: dg.ResolutionContext, models: Sequence[Any], convert: Any, what: str) -> list[Any]:
    out = []
    for i, m in enumerate(models):
        try:
            out.append(convert(m))
            _POSITIONS[m.name] = _where(context, i, f"{what} {m.name}")
        except (SpecError, ValueError, TypeError) as e:
            name = getattr(m, "name", "?")
            message = str(e) if name in str(e) else f"{what} {name}: {e}"
            raise ResolutionException(f"{_where(context, i, str(e))}{message}") from e
    return out


def _resolve_tables(context: dg.ResolutionContext, models: Sequence[TableModel]) -> list[Table]:
    return _resolve_each(context, models, to_table, "table")


def _resolve_external(context: dg.ResolutionContext, models: Sequence[ExternalTableModel]) -> list[ExternalTable]:
    return _resolve_each(context, models, to_external, "external table")


class LoomTablesModel(dg.Model):
    """The attributes of a ``LoomTables`` component: the JSON schema ``dg check yaml`` validates.

    Dagster would derive this model from the component's fields, making each field also accept a
    template string; a template where a list of tables belongs makes every mistake inside a table
    an "is not valid under any of the given schemas" on the whole list. Declared here without
    that alternative, a mistake is reported at its own line, inside its own table.
    """

    tables: list[TableModel] = Field(default_factory=list, description="Declared tables (loom_assets.Table).")
    external: list[ExternalTableModel] = Field(
        default_factory=list, description="Tables other systems write, read as sources (loom_assets.ExternalTable).")
    python: list[str] = Field(default_factory=list, description="Modules (module or module:ATTR, default TABLES) "
                                                                 "whose Python declarations are built with these.")
    assets: list[str] = Field(default_factory=list, description="Plain Dagster assets (module:ATTR) built alongside.")


class LoomTablesScaffolder(dg.Scaffolder):
    """``dg scaffold defs loom_assets.LoomTables <path>``: a ``defs.yaml`` with a working Delta
    table and a ClickHouse table over it, to edit."""

    def scaffold(self, request: dg.ScaffoldRequest) -> None:
        """Write ``defs.yaml`` under the target path."""
        request.target_path.mkdir(parents=True, exist_ok=True)
        (request.target_path / "defs.yaml").write_text(TEMPLATE.replace("TYPE", request.type_name))


TEMPLATE = textwrap.dedent("""\
    # Loom tables: each entry becomes a Dagster asset (key [schema, table]) with its schema check.
    # The YAML forms of every Table(...) argument: loom_assets.yaml_tables; check with `dg check yaml`.
    type: TYPE
    attributes:
      tables:
        - name: example.greetings
          backend: delta
          description: A starter table; replace the SQL with your own.
          columns:
            - {name: id, type: int64, nullable: false}
            - {name: greeting, type: string}
          mode: overwrite
          sql: SELECT CAST(1 AS BIGINT) AS id, 'hello' AS greeting
          checks:
            - not_null: [id]
            - unique: [id]
        - name: example.greeting_counts
          backend: clickhouse
          columns:
            - {name: greeting, type: string}
            - {name: n, type: int64, nullable: false}
          mode: overwrite
          sources: [example.greetings]
          sql: SELECT greeting, CAST(count(*) AS BIGINT) AS n FROM greetings GROUP BY greeting
      # external: tables other systems write, read as sources (name, backend, columns)
      # python: [my_project.tables]   Python declarations (the module's TABLES) built together with these
    """)


@dg.scaffold_with(LoomTablesScaffolder)
@dataclass
class LoomTables(dg.Component, dg.Resolvable):
    """Loom tables declared in YAML: Delta Lake and ClickHouse tables as Dagster assets, with their
    write modes, partitions, checks and SQL or Python bodies.

    Scaffold with ``dg scaffold defs loom_assets.LoomTables <path>``.

    Attributes:
        tables: Declared tables (the arguments of ``loom_assets.Table``).
        external: Tables other systems write, read as sources (``loom_assets.ExternalTable``).
        python: Modules (``module`` or ``module:ATTR``; default attribute ``TABLES``) whose Python
            declarations are built together with the YAML ones, so they can read each other.
        assets: Plain Dagster assets (``module:ATTR``, an asset or a list of them) built alongside.
    """

    tables: Annotated[
        Sequence[Table], dg.Resolver(_resolve_tables, model_field_type=list[TableModel],
                                     description="Declared tables (loom_assets.Table).")
    ] = ()
    external: Annotated[
        Sequence[ExternalTable], dg.Resolver(_resolve_external, model_field_type=list[ExternalTableModel],
                                             description="Tables other systems write (loom_assets.ExternalTable).")
    ] = ()
    python: Sequence[str] = ()
    assets: Sequence[str] = ()

    @classmethod
    def get_model_cls(cls) -> type[LoomTablesModel]:
        """The YAML schema (:class:`LoomTablesModel`)."""
        return LoomTablesModel

    def python_tables(self) -> list[Table | ExternalTable]:
        """The declarations of the ``python`` modules."""
        out: list[Table | ExternalTable] = []
        for path in self.python:
            found = load_object(path if ":" in path else f"{path}:TABLES", what="python")
            for t in found if isinstance(found, (list, tuple)) else [found]:
                if not isinstance(t, (Table, ExternalTable)):
                    raise SpecError(f"python {path!r}: holds {type(t).__name__}, not a Table or ExternalTable")
                out.append(t)
        return out

    def plain_assets(self) -> list[Any]:
        """The plain Dagster assets of ``assets``."""
        out: list[Any] = []
        for path in self.assets:
            found = load_object(path, what="assets")
            out.extend(found if isinstance(found, (list, tuple)) else [found])
        return out

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        """The assets, checks, jobs, schedules and resources of the declared tables."""
        try:
            return build_definitions([*self.tables, *self.external, *self.python_tables()], assets=self.plain_assets())
        except SpecError as e:
            # errors across tables (an unknown source, a cycle) name the table: add where it is declared
            named = [t.name for t in self.tables if t.name in str(e) and _POSITIONS.get(t.name)]
            if named:
                raise SpecError(f"{_POSITIONS[named[0]]}{e}") from e
            raise
