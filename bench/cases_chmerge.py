"""Benchmark cases of ClickHouse ``merge`` at scale (issue 27): Loom's ``merge`` mode through a
real ``dagster.materialize`` against a raw merge written by hand with clickhouse-connect on the
embedded engine (``INSERT ... SELECT`` into a new table + ``ALTER TABLE ... REPLACE PARTITION``).

One case per process: ``python -m bench.cases_chmerge CASE ROWS WORKDIR OUT_JSON`` (ROWS: the
target's rows; the change set is ROWS / 20). The targets are made once per size by the set-up
cases ``chmerge_setup_<impl>_<layout>`` (each in its own process, not timed) in their own
embedded-engine paths; each case copies the path it needs into its working directory before
the clock starts (the engine's files name each other by relative links, so a copy opens as a
store of its own), so the set-up's memory never counts in a case's peak RSS and every round
merges into the same table. The runner passes the set-up's path as ``LOOM_CLICKHOUSE_URL``.

Workload (``bench.workload``'s rows: ``id`` 0..N-1, ``day`` = 2024-01-01 + id % 30, ``amount``,
``sku``); the change sets are those of the Delta merge cases (``bench/cases_merge.py``):

* ``clustered``: C = N/20 changes: the most recent C/2 ids updated and C/2 new ids
  (N .. N + C/2) inserted, into the unpartitioned table;
* ``random``: C/2 updates spread over the whole key range (a seeded sample) + C/2 new ids;
* ``partitioned``: the table partitioned by ``day``; C/2 updates of ids in 3 of the 30 days and
  C/2 new ids in those 3 days.

Tables: raw's are ``MergeTree ORDER BY id`` (``PARTITION BY day`` for ``partitioned``); Loom's are
what Loom creates for a ``merge`` table (``ReplacingMergeTree ORDER BY id``, the same partitioning),
written by Loom's ClickHouse writer. Both are merged to one part per partition (``OPTIMIZE ...
FINAL``) in the set-up, as a table that has been in use for a while is.

Read back: every merged table must hold ids 0 .. N + C/2 - 1 once each (count, distinct, sum), as
its readers see it (``bench.verify`` reads tables of collapsing engines with ``FINAL``, as Loom's
reader does). Each case also reports, untimed, what a reader pays afterwards (``read_s``: count and
sum of ids, with ``FINAL`` on Loom's table) and the rows stored before merges collapse them.
"""

from __future__ import annotations

import os
import shutil
import time
from typing import Any

from bench.cases import CH_LIBS, Loom, _ch_table, _columns, _preload
from bench.cases_merge import changes, n_changes  # the Delta merge cases' change sets, row for row
from bench.workload import BASE_DAY, DAYS, child_main, run_outcome

KINDS = ("clustered", "random", "partitioned")
CH_COLUMNS = "(`id` Int64, `day` Date32, `amount` Nullable(Float64), `sku` Nullable(String))"


def merged_rows(n: int) -> int:
    """Rows of a merged table: the target's plus the inserted ones (ids 0 .. that - 1)."""
    c = n_changes(n)
    return n + (c - c // 2)


def _layout(kind: str) -> str:
    return "daily" if kind == "partitioned" else "flat"


# -- set-up ----------------------------------------------------------------------------------------


def _workload_sql(n: int) -> str:
    """The workload's N rows as a SELECT (the same values as ``bench.workload.eager_frame``)."""
    return (f"SELECT number AS id, toDate32('{BASE_DAY.isoformat()}') + number % {DAYS} AS day, number * 0.5 AS amount, "
            f"concat('sku-', toString(number % 1000)) AS sku FROM numbers({n})")


def _setup_raw(layout: str, n: int, wd: str) -> dict[str, Any]:
    """Set-up (not timed): raw's target ``r.t``, a plain MergeTree filled by SQL."""
    import clickhouse_connect

    url = f"chdb://{os.path.join(wd, 'clickhouse')}"
    client = clickhouse_connect.get_client(dsn=url)
    t0 = time.perf_counter()
    part = " PARTITION BY day" if layout == "daily" else ""
    client.command("CREATE DATABASE IF NOT EXISTS r")
    client.command(f"CREATE TABLE r.t {CH_COLUMNS} ENGINE = MergeTree{part} ORDER BY id")
    client.command(f"INSERT INTO r.t {_workload_sql(n)}", settings={"max_insert_threads": 2})
    client.command("OPTIMIZE TABLE r.t FINAL")
    seconds = time.perf_counter() - t0
    client.close()
    return {"seconds": seconds, "tables": [_ch_table("r.t", n, url)]}


def _loom_table(layout: str, df: Any) -> Any:
    """Loom's declared ``merge`` table ``m.t`` (its body returns ``df``)."""
    from loom_assets import Table

    return Table("m.t", backend="clickhouse", columns=_columns(), mode="merge", merge_keys=["id"],
                 partition_by=["day"] if layout == "daily" else [], transform=lambda context: df)


def _setup_loom(layout: str, n: int, wd: str) -> dict[str, Any]:
    """Set-up (not timed): Loom's target ``m.t``, written by a materialization of the declared
    ``merge`` table (Loom's DDL and writer)."""
    import clickhouse_connect

    from bench.workload import eager_frame

    url = f"chdb://{os.path.join(wd, 'clickhouse')}"
    os.environ["LOOM_CLICKHOUSE_URL"] = url
    loom = Loom([_loom_table(layout, eager_frame(n))], preload=CH_LIBS)
    seconds, error = loom.run()
    if error:
        return {"status": "error", "error": f"set-up run: {error}", "tables": []}
    client = clickhouse_connect.get_client(dsn=url)
    client.command("OPTIMIZE TABLE m.t FINAL")
    client.close()
    return {"seconds": seconds, "tables": [_ch_table("m.t", n, url)]}


def chmerge_setup_raw_flat(n: int, wd: str) -> dict[str, Any]:
    return _setup_raw("flat", n, wd)


def chmerge_setup_raw_daily(n: int, wd: str) -> dict[str, Any]:
    return _setup_raw("daily", n, wd)


def chmerge_setup_loom_flat(n: int, wd: str) -> dict[str, Any]:
    return _setup_loom("flat", n, wd)


def chmerge_setup_loom_daily(n: int, wd: str) -> dict[str, Any]:
    return _setup_loom("daily", n, wd)


def _copy_store(wd: str) -> str:
    """Copy the set-up's engine path (``$LOOM_CLICKHOUSE_URL``) into ``wd``; returns its URL."""
    shared = os.environ["LOOM_CLICKHOUSE_URL"].removeprefix("chdb://")
    dest = os.path.join(wd, "ch")
    shutil.copytree(shared, dest, symlinks=True)  # the engine's links are relative: they stay in the copy
    return f"chdb://{dest}"


def _after(url: str, table: str, final: bool) -> dict[str, Any]:
    """Untimed, after the merge: what a reader of the table pays (count and sum of ids), the rows
    stored (before background merges collapse replaced ones) and the active parts."""
    import clickhouse_connect

    client = clickhouse_connect.get_client(dsn=url)
    try:
        t0 = time.perf_counter()
        client.query(f"SELECT count(), sum(id) FROM {table}{' FINAL' if final else ''}")
        read_s = time.perf_counter() - t0
        db, name = table.split(".")
        stored, parts = client.query(
            f"SELECT sum(rows), count() FROM system.parts WHERE database = '{db}' AND table = '{name}' AND active"
        ).result_rows[0]
        return {"read_s": round(read_s, 3), "stored_rows": int(stored), "parts": int(parts)}
    finally:
        client.close()


# -- raw -------------------------------------------------------------------------------------------


def _raw(kind: str, n: int, wd: str) -> dict[str, Any]:
    """The hand-written merge: the changes inserted into a table of their own, the affected
    partitions rebuilt into a new table (their rows whose ids are not changed, then the changes)
    by ``INSERT ... SELECT``, and swapped in with ``ALTER TABLE ... REPLACE PARTITION``."""
    import clickhouse_connect

    _preload(*CH_LIBS)
    url = _copy_store(wd)
    df = changes(kind, n)
    t0 = time.perf_counter()
    client = clickhouse_connect.get_client(dsn=url)
    client.command(f"CREATE TABLE r.chg {CH_COLUMNS} ENGINE = MergeTree ORDER BY id")
    client.insert_arrow("r.chg", df.to_arrow())
    client.command("CREATE TABLE r.new AS r.t")
    where = "id NOT IN (SELECT id FROM r.chg)"
    if kind == "partitioned":  # only the changes' days are rebuilt (the partition predicate)
        where = f"day IN (SELECT DISTINCT day FROM r.chg) AND {where}"
    client.command(f"INSERT INTO r.new SELECT * FROM r.t WHERE {where}", settings={"max_insert_threads": 2})
    client.command("INSERT INTO r.new SELECT * FROM r.chg")
    pids = [r[0] for r in client.query("SELECT DISTINCT _partition_id FROM r.new").result_rows]
    for pid in pids:
        client.command(f"ALTER TABLE r.t REPLACE PARTITION ID '{pid}' FROM r.new")
    client.command("DROP TABLE r.new SYNC")
    client.command("DROP TABLE r.chg SYNC")
    seconds = time.perf_counter() - t0
    client.close()
    return {"seconds": seconds, "tables": [_ch_table("r.t", merged_rows(n), url)], "partitions_rebuilt": len(pids),
            **_after(url, "r.t", final=False)}


def raw_chmerge_clustered(n: int, wd: str) -> dict[str, Any]:
    return _raw("clustered", n, wd)


def raw_chmerge_random(n: int, wd: str) -> dict[str, Any]:
    return _raw("random", n, wd)


def raw_chmerge_partitioned(n: int, wd: str) -> dict[str, Any]:
    return _raw("partitioned", n, wd)


# -- Loom ------------------------------------------------------------------------------------------


def _loom(kind: str, n: int, wd: str) -> dict[str, Any]:
    """Loom's ``merge`` mode: one materialization of the declared table, whose body returns the
    change set (made before the clock, as raw's is)."""
    url = _copy_store(wd)
    os.environ["LOOM_CLICKHOUSE_URL"] = url
    loom = Loom([_loom_table(_layout(kind), changes(kind, n))], preload=CH_LIBS)
    seconds, error = loom.run()
    return run_outcome(seconds, error, [_ch_table("m.t", merged_rows(n), url)], **_after(url, "m.t", final=True))


def loom_chmerge_clustered(n: int, wd: str) -> dict[str, Any]:
    return _loom("clustered", n, wd)


def loom_chmerge_random(n: int, wd: str) -> dict[str, Any]:
    return _loom("random", n, wd)


def loom_chmerge_partitioned(n: int, wd: str) -> dict[str, Any]:
    return _loom("partitioned", n, wd)


CASES = {f.__name__: f for f in (
    chmerge_setup_raw_flat, chmerge_setup_raw_daily, chmerge_setup_loom_flat, chmerge_setup_loom_daily,
    raw_chmerge_clustered, raw_chmerge_random, raw_chmerge_partitioned,
    loom_chmerge_clustered, loom_chmerge_random, loom_chmerge_partitioned,
)}

if __name__ == "__main__":
    child_main(CASES)
