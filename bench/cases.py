"""Benchmark cases that run in the product's virtual environment: Loom assets through a real
``dagster.materialize`` and the bare library calls they are compared with.

One case per process: ``python -m bench.cases CASE ROWS WORKDIR OUT_JSON`` (the runner,
:mod:`bench.run_all`, starts it, measures its peak RSS from outside and reads every table it
names back in a separate process). The runner sets ``LOOM_HOME`` (and for the copy cases
``LOOM_CLICKHOUSE_URL``) per case, so each case has its own embedded ClickHouse path.

Loom is used only through its public API: ``Table``, ``Source``, ``build_definitions`` and the
``ColumnSchema`` type; the stores are found where docs/operations.md says (``$LOOM_HOME/delta/<schema>/<table>``,
``$LOOM_CLICKHOUSE_URL``).

Wall time is the write only: for Dagster cases the whole ``dagster.materialize()`` call, the first
one in its process, as in a Dagster run worker (each run gets a fresh process); the code
location is built and input frames are made before the clock starts. ``dagster_noop`` (an empty
asset, same conditions) is Dagster's fixed cost per run; ``dagster_noop_warm`` times a second
empty materialization in one process, for reference.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from typing import Any

from bench.cases_load import load_bare, load_loom
from bench.workload import (
    BASE_DAY,
    DAYS,
    child_main,
    day_window,
    eager_frame,
    lazy_frame,
    run_outcome,
    step_failures,
)

CH_DDL = "(`id` Int64, `day` Date32, `amount` Nullable(Float64), `sku` Nullable(String))"
INSERT_BATCH = 500_000
RANGE_TAGS = {"dagster/asset_partition_range_start": "2024-01-01", "dagster/asset_partition_range_end": "2024-01-30"}


# -- helpers ---------------------------------------------------------------------------------------


def _delta_root() -> str:
    return os.environ.get("LOOM_DELTA_ROOT") or os.path.join(os.environ["LOOM_HOME"], "delta")


def _ch_url() -> str:
    return os.environ.get("LOOM_CLICKHOUSE_URL") or f"chdb://{os.path.join(os.environ['LOOM_HOME'], 'clickhouse')}"


def _delta_table(uri: str, rows: int) -> dict[str, Any]:
    return {"kind": "delta", "uri": uri, "rows": rows}


def _ch_table(table: str, rows: int, url: str | None = None) -> dict[str, Any]:
    return {"kind": "clickhouse", "url": url or _ch_url(), "table": table, "rows": rows}


def _columns() -> list[Any]:
    from loom_resources import ColumnSchema as C

    return [C("id", "int64", False), C("day", "date", False), C("amount", "float64"), C("sku", "string")]


def _daily() -> Any:
    import dagster as dg

    return dg.DailyPartitionsDefinition(start_date=BASE_DAY.isoformat(),
                                        end_date=(BASE_DAY + dt.timedelta(days=DAYS)).isoformat())


def _preload(*modules: str) -> None:
    """Import the storage libraries a case uses before its clock starts (every path pays the same
    imports once per process; the timings compare writes, not imports)."""
    import importlib

    for m in modules:
        importlib.import_module(m)


DELTA_LIBS = ("polars", "pyarrow", "deltalake")
CH_LIBS = ("polars", "pyarrow", "clickhouse_connect", "chdb")




class Loom:
    """The declared tables of one case as a code location, and timed materializations of it."""

    def __init__(self, tables: list[Any], preload: tuple[str, ...] = DELTA_LIBS) -> None:
        import dagster as dg

        _preload(*preload)

        from loom_assets import build_definitions

        self.defs = build_definitions(tables)
        self.instance = dg.DagsterInstance.ephemeral()

    def run(self, *, selection: list[Any] | None = None, tags: dict[str, str] | None = None,
            partition_key: str | None = None) -> tuple[float, str | None]:
        import dagster as dg

        t0 = time.perf_counter()
        result = dg.materialize(
            list(self.defs.assets or []), selection=selection, resources=dict(self.defs.resources or {}),  # type: ignore[arg-type]
            instance=self.instance, tags=tags, partition_key=partition_key, raise_on_error=False,
        )
        seconds = time.perf_counter() - t0
        return seconds, None if result.success else step_failures(result)


def _delta_version(uri: str) -> int:
    from deltalake import DeltaTable

    return int(DeltaTable(uri).version())


# -- case 1: Delta eager ---------------------------------------------------------------------------


def raw_write_delta(n: int, wd: str) -> dict[str, Any]:
    _preload(*DELTA_LIBS)
    df = eager_frame(n)
    uri = os.path.join(wd, "raw")
    t0 = time.perf_counter()
    df.write_delta(uri)
    return {"seconds": time.perf_counter() - t0, "tables": [_delta_table(uri, n)]}


def _noop(warm: bool) -> dict[str, Any]:
    import dagster as dg

    @dg.asset
    def noop() -> None:
        return None

    inst = dg.DagsterInstance.ephemeral()
    if warm:
        dg.materialize([noop], instance=inst)
    t0 = time.perf_counter()
    result = dg.materialize([noop], instance=inst)
    assert result.success
    return {"seconds": time.perf_counter() - t0, "tables": []}


def dagster_noop(n: int, wd: str) -> dict[str, Any]:
    """An empty asset's materialization, the first in its process: Dagster's fixed cost per run."""
    return _noop(warm=False)


def dagster_noop_warm(n: int, wd: str) -> dict[str, Any]:
    """A second empty materialization in the same process (Dagster imports much of itself lazily)."""
    return _noop(warm=True)


def loom_delta_eager(n: int, wd: str) -> dict[str, Any]:
    from loom_assets import Table

    df = eager_frame(n)
    loom = Loom([Table("b.t", backend="delta", columns=_columns(), mode="overwrite", transform=lambda context: df)])
    seconds, error = loom.run()
    return run_outcome(seconds, error, [_delta_table(os.path.join(_delta_root(), "b", "t"), n)])


# -- case 2: Delta streaming -----------------------------------------------------------------------


def raw_sink_delta(n: int, wd: str) -> dict[str, Any]:
    _preload(*DELTA_LIBS)
    lf = lazy_frame(n)
    uri = os.path.join(wd, "raw")
    t0 = time.perf_counter()
    lf.sink_delta(uri)
    return {"seconds": time.perf_counter() - t0, "tables": [_delta_table(uri, n)]}


def loom_delta_streaming(n: int, wd: str) -> dict[str, Any]:
    from loom_assets import Table

    lf = lazy_frame(n)  # built before the clock, as raw_sink_delta does
    loom = Loom([Table("b.t", backend="delta", columns=_columns(), mode="overwrite", transform=lambda context: lf)])
    seconds, error = loom.run()
    return run_outcome(seconds, error, [_delta_table(os.path.join(_delta_root(), "b", "t"), n)])


# -- case 3: ClickHouse writes ---------------------------------------------------------------------


def raw_ch_insert(n: int, wd: str) -> dict[str, Any]:
    """Bare clickhouse-connect: connect, CREATE TABLE, ``insert_arrow`` in 500k-row batches (the
    frame's conversion to Arrow is timed too: Loom starts from the same Polars frame)."""
    import clickhouse_connect

    _preload(*CH_LIBS)
    df = eager_frame(n)
    t0 = time.perf_counter()
    client = clickhouse_connect.get_client(dsn=_ch_url())
    client.command("CREATE DATABASE IF NOT EXISTS b")
    client.command(f"CREATE TABLE b.raw {CH_DDL} ENGINE = MergeTree ORDER BY tuple()")
    table = df.to_arrow()
    for off in range(0, table.num_rows, INSERT_BATCH):
        client.insert_arrow("b.raw", table.slice(off, INSERT_BATCH))
    seconds = time.perf_counter() - t0
    client.close()
    return {"seconds": seconds, "tables": [_ch_table("b.raw", n)]}


def loom_ch_eager(n: int, wd: str) -> dict[str, Any]:
    from loom_assets import Table

    df = eager_frame(n)
    loom = Loom([Table("b.t", backend="clickhouse", columns=_columns(), mode="overwrite", transform=lambda context: df)],
                preload=CH_LIBS)
    seconds, error = loom.run()
    return run_outcome(seconds, error, [_ch_table("b.t", n)])


# -- case 4: ClickHouse -> Delta streaming copy ----------------------------------------------------


def ch_source(n: int, wd: str) -> dict[str, Any]:
    """Set-up (not timed): the N-row source table ``src.events`` in ClickHouse, made by SQL."""
    import clickhouse_connect

    client = clickhouse_connect.get_client(dsn=_ch_url())
    client.command("CREATE DATABASE IF NOT EXISTS src")
    client.command("DROP TABLE IF EXISTS src.events")
    client.command(f"CREATE TABLE src.events {CH_DDL} ENGINE = MergeTree ORDER BY id")
    t0 = time.perf_counter()
    client.command(
        f"INSERT INTO src.events SELECT number, toDate32('{BASE_DAY.isoformat()}') + number % {DAYS}, number * 0.5, "
        f"concat('sku-', toString(number % 1000)) FROM numbers({n})",
        settings={"max_insert_threads": 2},
    )
    seconds = time.perf_counter() - t0
    # Merge the inserted parts now: ClickHouse merges them in the background, and the embedded
    # engine's background merges run in whichever process opens the path next, i.e. inside the
    # measured copy (at 1B rows its peak RSS and CPU time were the merges', not the copy's).
    t1 = time.perf_counter()
    client.command("OPTIMIZE TABLE src.events FINAL")
    merge_seconds = time.perf_counter() - t1
    client.close()
    return {"seconds": seconds, "merge_seconds": merge_seconds, "tables": [_ch_table("src.events", n)]}


def raw_copy(n: int, wd: str) -> dict[str, Any]:
    """The hand-written pipeline: ``query_arrow_stream`` -> Arrow IPC file (lz4) -> ``scan_ipc().sink_delta``."""
    import clickhouse_connect
    import polars as pl
    import pyarrow.ipc as ipc

    _preload(*CH_LIBS, "deltalake")
    uri = os.path.join(wd, "copy")
    ipc_path = os.path.join(wd, "spool.arrow")
    t0 = time.perf_counter()
    client = clickhouse_connect.get_client(dsn=_ch_url())
    writer = None
    with client.query_arrow_stream("SELECT * FROM src.events") as stream:
        for batch in stream:
            if writer is None:
                writer = ipc.new_file(ipc_path, batch.schema, options=ipc.IpcWriteOptions(compression="lz4"))
            writer.write(batch)
    assert writer is not None
    writer.close()
    client.close()
    pl.scan_ipc(ipc_path).sink_delta(uri, mode="overwrite")
    seconds = time.perf_counter() - t0
    spool_bytes = os.path.getsize(ipc_path)
    os.remove(ipc_path)
    return {"seconds": seconds, "tables": [_delta_table(uri, n)], "spool_bytes": spool_bytes}


def _copy_tables(n: int) -> list[Any]:
    from loom_assets import Source, Table

    src = Table("src.events", backend="clickhouse", columns=_columns(), mode="overwrite",
                transform=lambda context: lazy_frame(n))
    dst = Table("copy.events", backend="delta", columns=_columns(), mode="overwrite",
                sources=[Source("src.events", streaming=True)], transform=lambda context, events: events)
    return [src, dst]


def loom_copy(n: int, wd: str) -> dict[str, Any]:
    """Two declared tables: the ClickHouse source (already there) and a Delta table whose body
    returns the streaming source; one materialization of the Delta table."""
    import dagster as dg

    loom = Loom(_copy_tables(n), preload=(*CH_LIBS, "deltalake"))
    seconds, error = loom.run(selection=[dg.AssetKey(["copy", "events"])])
    return run_outcome(seconds, error, [_delta_table(os.path.join(_delta_root(), "copy", "events"), n)])


# -- case 5: 30-day range backfill on an existing table --------------------------------------------


def raw_partitioned(n: int, wd: str) -> dict[str, Any]:
    _preload(*DELTA_LIBS)
    df = eager_frame(n)
    uri = os.path.join(wd, "raw")
    t0 = time.perf_counter()
    df.write_delta(uri, delta_write_options={"partition_by": ["day"]})
    return {"seconds": time.perf_counter() - t0, "tables": [_delta_table(uri, n)], "commits": 1}


def _daily_table(df: Any) -> Any:
    from loom_assets import Table

    def body(context: Any) -> Any:
        w = context.partition_time_window
        return day_window(df, w.start.date(), w.end.date())

    return Table("b.t", backend="delta", columns=_columns(), mode="replace_partitions", partitions=_daily(),
                 partition_column="day", transform=body)


def loom_range30(n: int, wd: str) -> dict[str, Any]:
    """One run over the 30-day range, replacing all 30 partitions of a table that already holds them."""
    df = eager_frame(n)
    loom = Loom([_daily_table(df)])
    uri = os.path.join(_delta_root(), "b", "t")
    _, error = loom.run(tags=RANGE_TAGS)  # the existing table (not timed)
    if error:
        return {"status": "failed", "error": f"set-up run: {error}", "tables": [_delta_table(uri, n)]}
    before = _delta_version(uri)
    seconds, error = loom.run(tags=RANGE_TAGS)
    return run_outcome(seconds, error, [_delta_table(uri, n)], runs=1, commits=_delta_version(uri) - before)


def loom_30runs(n: int, wd: str) -> dict[str, Any]:
    """The same 30 days as 30 single-partition runs (what a backfill without single-run policy does)."""
    df = eager_frame(n)
    loom = Loom([_daily_table(df)])
    uri = os.path.join(_delta_root(), "b", "t")
    total = 0.0
    for d in range(DAYS):
        seconds, error = loom.run(partition_key=(BASE_DAY + dt.timedelta(days=d)).isoformat())
        total += seconds
        if error:
            return {"status": "failed", "error": f"partition {d}: {error}", "tables": [_delta_table(uri, n)]}
    return {"seconds": total, "runs": DAYS, "commits": _delta_version(uri) + 1, "tables": [_delta_table(uri, n)]}


CASES = {f.__name__: f for f in (
    raw_write_delta, dagster_noop, dagster_noop_warm, loom_delta_eager, raw_sink_delta, loom_delta_streaming, raw_ch_insert, loom_ch_eager,
    ch_source, raw_copy, loom_copy, raw_partitioned, loom_range30, loom_30runs, load_loom, load_bare,
)}

if __name__ == "__main__":
    child_main(CASES)
