"""Cluster-ready ClickHouse tables: ``ON CLUSTER`` DDL, ``Replicated*MergeTree`` engines with
their Keeper paths, an optional ``Distributed`` table, and per-insert settings.

Only rendered and golden-tested here (``tests/test_clickhouse_cluster.py``): the machines this
project is built on run one embedded engine, with no cluster and no Keeper.

Why the publication still holds on a replicated table: ``MOVE PARTITION ... TO TABLE`` and
``REPLACE PARTITION`` between two Replicated tables are replicated through Keeper (the staging
table is created ``ON CLUSTER`` with the same engine family, so every replica has it);
``EXCHANGE TABLES`` and ``RENAME TABLE`` are metadata operations of an Atomic or Replicated
database. Every insert into a replicated staging table carries its own
``insert_deduplication_token`` (staging table + batch number): Replicated tables deduplicate
identical blocks by default, which would silently drop a batch equal to an earlier one, while a
client's retry of the same batch is still deduplicated.
"""

from __future__ import annotations

import re
from typing import Any

from loom_resources.clickhouse._sql import lit, qi, qt
from loom_resources.errors import SpecError
from loom_resources.model import TableRef, TargetSpec

__all__ = ["distributed_sql", "insert_settings", "on_cluster", "replicated_engine"]

_ENGINE_RE = re.compile(r"^\s*([A-Za-z]*MergeTree)\s*(?:\((.*)\))?\s*$", re.DOTALL)


def on_cluster(spec: TargetSpec) -> str:
    """`` ON CLUSTER `name``` for the table's DDL, or ``""``."""
    return f" ON CLUSTER {qi(spec.clickhouse.cluster)}" if spec.clickhouse.cluster else ""


def replicated_engine(spec: TargetSpec, engine: str) -> str:
    """``engine`` as its Replicated variant when the table asks for one (its own arguments,
    e.g. a ReplacingMergeTree version column, after the Keeper path and replica)."""
    opts = spec.clickhouse
    if not opts.replicated or engine.strip().startswith("Replicated"):
        return engine
    m = _ENGINE_RE.match(engine)
    if m is None:
        raise SpecError(f"table {spec.ref}: replicated=True needs a *MergeTree engine, not {engine!r}")
    name, args = m.group(1), (m.group(2) or "").strip()
    keeper = f"{lit(opts.keeper_path)}, {lit(opts.replica)}"
    return f"Replicated{name}({keeper}{', ' + args if args else ''})"


def distributed_sql(spec: TargetSpec) -> str | None:
    """``CREATE TABLE IF NOT EXISTS`` of the table's Distributed table, or None."""
    opts = spec.clickhouse
    if not opts.distributed:
        return None
    if not opts.cluster:
        raise SpecError(f"table {spec.ref}: a Distributed table ({opts.distributed}) needs clickhouse cluster=...")
    if ";" in opts.sharding_key:
        raise SpecError(f"table {spec.ref}: sharding_key {opts.sharding_key!r} must not contain ';'")
    dist = TableRef(spec.ref.schema, opts.distributed)
    return (f"CREATE TABLE IF NOT EXISTS {qt(dist)}{on_cluster(spec)} AS {qt(spec.ref)} ENGINE = Distributed("
            f"{lit(opts.cluster)}, {lit(spec.ref.schema)}, {lit(spec.ref.table)}, {opts.sharding_key})")


def insert_settings(spec: TargetSpec, staging: TableRef, batch: int) -> dict[str, Any]:
    """Settings of insert ``batch`` into ``staging``: none for a plain table (the embedded
    engine then reads the batch in place), quorum and a per-batch deduplication token for a
    replicated one."""
    opts = spec.clickhouse
    settings: dict[str, Any] = {}
    if opts.insert_quorum:
        settings["insert_quorum"] = int(opts.insert_quorum)
    if opts.replicated:
        settings["insert_deduplication_token"] = f"{staging.table}#{batch}"
    return settings
