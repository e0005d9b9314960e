"""SQL bodies: checking the tables a statement names and binding run parameters safely.

Parameters are written ``{name}`` in the SQL text and replaced by typed, escaped literals
(``DATE '2024-01-31'``, quoted strings), never by pasting the raw value. The tables a
statement reads are found with sqlglot's parser, and remembered across loads
(:mod:`loom_assets.sql_cache`): a code location whose SQL bodies did not change loads without
importing or running the parser.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from loom_assets.sql_cache import TABLES_CACHE
from loom_resources import SpecError
from loom_resources.predicates import sql_literal

SQLDialect = Literal["polars", "clickhouse"]
_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")

#: Parameters every run can bind (time-window ones only in time-partitioned runs).
RUN_PARAMETERS = frozenset(
    {"partition_key", "partition_start", "partition_end", "partition_start_date", "partition_end_date"}
)


def parameters(sql: str) -> set[str]:
    """Names of the ``{name}`` parameters in ``sql``."""
    return set(_PARAM.findall(sql))


def neutral_sql(sql: str) -> str:
    """``sql`` with each ``{name}`` parameter read as ``NULL``, so the parser sees plain SQL."""
    return _PARAM.sub("NULL", sql)


def referenced_tables(sql: str, *, table: str) -> set[str]:
    """Names of the tables ``sql`` reads, without CTE names.

    Raises:
        SpecError: naming the table when the SQL cannot be parsed.
    """
    neutral = neutral_sql(sql)
    known = TABLES_CACHE.get(neutral)
    if known is not None:
        return known
    found = _parse_tables(neutral, table=table)
    TABLES_CACHE.put(neutral, found)
    return found


def _parse_tables(neutral: str, *, table: str) -> set[str]:
    import sqlglot  # here, not at load: a location whose SQL is cached never needs it (~0.09 s)
    from sqlglot import exp

    try:
        tree = sqlglot.parse_one(neutral, read="clickhouse")
    except sqlglot.errors.ParseError as exc:
        raise SpecError(f"table {table}: SQL body does not parse: {exc}") from exc
    ctes = {c.alias_or_name for c in tree.find_all(exp.CTE)}
    return {t.name for t in tree.find_all(exp.Table) if t.name and t.name not in ctes}


def check_sql(sql: str, aliases: Iterable[str], *, table: str, extra_params: Iterable[str] = ()) -> None:
    """Fail at declaration when the SQL names a table that is not a source or an unknown parameter."""
    known = set(aliases)
    unknown = sorted(referenced_tables(sql, table=table) - known)
    if unknown:
        raise SpecError(f"table {table}: SQL reads {unknown}, which are not declared sources (sources: {sorted(known)})")
    bad = sorted(parameters(sql) - RUN_PARAMETERS - set(extra_params))
    if bad:
        raise SpecError(f"table {table}: SQL uses unknown parameter(s) {bad}; known: {sorted(RUN_PARAMETERS)}")


def _literal(value: Any, dialect: SQLDialect) -> str:
    if isinstance(value, dt.datetime) and dialect == "polars":
        naive = value.astimezone(dt.UTC).replace(tzinfo=None) if value.tzinfo else value
        return f"CAST('{naive.isoformat()}' AS TIMESTAMP)"
    return sql_literal(value, "clickhouse" if dialect == "clickhouse" else "datafusion")


def bind_sql(sql: str, values: Mapping[str, Any], dialect: SQLDialect, *, table: str) -> str:
    """Replace each ``{name}`` with a typed literal of ``values[name]`` in ``dialect``.

    Raises:
        SpecError: naming the table and parameter when the run has no value for it.
    """

    def repl(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in values:
            raise SpecError(
                f"table {table}: SQL parameter {{{name}}} has no value in this run "
                f"(is the run partitioned? available: {sorted(values)})"
            )
        return _literal(values[name], dialect)

    return _PARAM.sub(repl, sql)
