"""Cluster-ready ClickHouse tables: ``ON CLUSTER`` DDL, ``Replicated*MergeTree`` engines with
their Keeper paths, an optional ``Distributed`` table, and per-insert settings.

Only rendered and golden-tested here (``tests/test_clickhouse_cluster.py``): the machines this
project is built on run one embedded engine, with no cluster and no Keeper.

Which statements of a write, its publication, its recovery and the sweep carry ``ON CLUSTER``:
:func:`ddl_on_cluster` (table DDL: always on a cluster) and :func:`partition_on_cluster` (partition
and column ALTERs: only when the table is not Replicated); Loom's ledger never does (see
:mod:`._ledger`).

Why the publication still holds on a replicated table: ``MOVE PARTITION ... TO TABLE`` and
``REPLACE PARTITION`` between two Replicated tables are replicated through Keeper (the staging
table is created ``ON CLUSTER`` with the same engine family, so every replica has it);
``EXCHANGE TABLES`` and ``RENAME TABLE`` are metadata operations of an Atomic database, sent
``ON CLUSTER`` so that every node swaps or renames. Every insert into a replicated staging table carries its own
``insert_deduplication_token`` (staging table + batch number): Replicated tables deduplicate
identical blocks by default, which would silently drop a batch equal to an earlier one, while a
client's retry of the same batch is still deduplicated.
"""

from __future__ import annotations

import re
from typing import Any

from loom_resources.clickhouse._sql import lit, qi, qt
from loom_resources.errors import SpecError
from loom_resources.model import TableRef, TargetSpec, WriteMode

__all__ = ["ddl_on_cluster", "distributed_sql", "insert_settings", "on_cluster", "partition_on_cluster",
           "replicated_engine"]

_ENGINE_RE = re.compile(r"^\s*([A-Za-z]*MergeTree)\s*(?:\((.*)\))?\s*$", re.DOTALL)


def on_cluster(spec: TargetSpec) -> str:
    """`` ON CLUSTER `name``` for the table's DDL, or ``""``."""
    return f" ON CLUSTER {qi(spec.clickhouse.cluster)}" if spec.clickhouse.cluster else ""


def ddl_on_cluster(cluster: str) -> str:
    """`` ON CLUSTER `cluster``` for a table-level DDL statement of a write or its publication
    (``CREATE TABLE``, ``DROP TABLE``, ``RENAME TABLE``, ``EXCHANGE TABLES``), or ``""`` without a
    cluster. ClickHouse runs such a statement on the server that receives it only (in an Atomic or
    Ordinary database; a Replicated engine replicates data, never table DDL), so on a cluster it
    must be queued ``ON CLUSTER`` to reach every node. The distributed DDL queue also orders the
    statements: of two ``RENAME TABLE ... ON CLUSTER`` taking one staging table over, the first
    queued wins on every node, as a local ``RENAME`` does on one server.
    ``cluster`` comes from the table's options when writing, from the ledger entry when
    recovering."""
    return f" ON CLUSTER {qi(cluster)}" if cluster else ""


def partition_on_cluster(cluster: str, engine: str | None) -> str:
    """`` ON CLUSTER `cluster``` for a partition or column ``ALTER`` of a table whose engine is
    ``engine`` (``REPLACE PARTITION``, ``DROP PARTITION``, ``MOVE PARTITION ... TO TABLE``, ``ADD
    COLUMN``), or ``""``. On a ``Replicated*MergeTree`` table ClickHouse replicates these through
    Keeper to every replica of the shard by itself (``ON CLUSTER`` would only queue the same
    operation again on each replica), so they run without it, on the node that received the
    staged rows. On any other engine each node keeps its own parts, so the statement runs ``ON
    CLUSTER``: every node applies it to its own staging and target tables."""
    if not cluster or (engine or "").startswith("Replicated"):
        return ""
    return ddl_on_cluster(cluster)


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
    """Settings of insert ``batch`` into ``staging``: quorum and a per-batch deduplication token
    for a replicated table; for a ``merge`` table, :func:`staging_insert_settings`."""
    opts = spec.clickhouse
    settings: dict[str, Any] = staging_insert_settings(spec)
    if opts.insert_quorum:
        settings["insert_quorum"] = int(opts.insert_quorum)
    if opts.replicated:
        settings["insert_deduplication_token"] = f"{staging.table}#{batch}"
    return settings


def staging_insert_settings(spec: TargetSpec) -> dict[str, Any]:
    """Settings of every insert into the staging table of ``spec``. A ``merge`` table's staging is
    a ReplacingMergeTree, which by default collapses the rows of each inserted block that share a
    key (``optimize_on_insert``): that hid duplicate keys from the staged-keys check (one row of
    the two was kept silently) and cost more than the insert itself (1M rows: 0.55 s against
    0.26 s). The staging table holds no older rows to collapse against, so nothing is lost."""
    return {"optimize_on_insert": 0} if spec.mode is WriteMode.MERGE else {}
