"""Dagster's column-schema-change checks on every declared table (loom_assets/definitions.py
``schema_change_checks_of``): each table has one, and no op carries more than
``SCHEMA_CHANGE_CHUNK`` tables (one op for all made Dagster's job building quadratic in the number
of tables)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from loom_assets import Table, build_definitions
from loom_assets.definitions import SCHEMA_CHANGE_CHUNK
from loom_resources import ClickHouseResource, ColumnSchema, DeltaResource


def test_every_table_has_a_schema_change_check_in_ops_of_bounded_size(tmp_path: Path) -> None:
    n = SCHEMA_CHANGE_CHUNK * 2 + 7
    tables = [Table(f"s{i % 3}.t{i}", backend="delta" if i % 2 else "clickhouse",
                    columns=[ColumnSchema("id", "int64", False)], mode="overwrite",
                    sources=[f"s{(i - 1) % 3}.t{i - 1}"] if i else [],
                    sql=f"SELECT id FROM t{i - 1}" if i else None,
                    transform=None if i else (lambda context: None))
              for i in range(n)]
    backends = {"delta": DeltaResource(root=str(tmp_path / "delta")),
                "clickhouse": ClickHouseResource(url=f"chdb://{tmp_path / 'ch'}")}
    defs = build_definitions(tables, backends=backends, freeze_gc=False)
    graph = defs.resolve_asset_graph()
    declared = {t.asset_key for t in tables}
    change = {k for k in graph.asset_check_keys if k.name == "column_schema_change"}
    assert {k.asset_key for k in change} == declared and len(change) == n
    ops = [c for c in defs.asset_checks or [] if isinstance(c, dg.AssetChecksDefinition)
           and any(k.name == "column_schema_change" for k in c.check_keys)]
    assert sorted(len(op.check_keys) for op in ops) == [7, SCHEMA_CHANGE_CHUNK, SCHEMA_CHANGE_CHUNK]
    # the checks still run with the assets: Dagster's implicit job builds and holds all of them
    job = defs.resolve_implicit_global_asset_job_def()
    assert {k for k in job.asset_layer.asset_graph.asset_check_keys if k.name == "column_schema_change"} == change
