"""ClickHouse backend benchmarks, each case in its own process on its own embedded-engine path,
side by side with the raw library in the same run.

1. Writing N rows through ``ClickHouseResource.write`` (append) vs a bare batched
   ``client.insert_arrow`` of the same Arrow data (500k-row batches). Target: >= 0.9x.
2. Streaming ClickHouse -> Delta copy through ``read_streaming`` and ``DeltaResource.write``
   (streaming) vs a hand-written ``query_arrow_stream -> IPC -> sink_delta`` pipeline, at 10M and
   40M rows. Targets: peak RSS at 40M <= 1.25x the peak at 10M; throughput >= 0.8x raw.
3. The official dagster-clickhouse-polars IO manager's write path (``CREATE TABLE ... ORDER BY
   tuple()`` then ``INSERT ... VALUES`` of ``DataFrame.to_dicts()``), at 2M rows. That package
   speaks only ClickHouse's native TCP protocol (clickhouse-driver), which the embedded engine
   does not serve, so its path is reproduced here with clickhouse-connect's row-wise insert of
   the same ``to_dicts()`` rows.

Every table is read back and checked (count, distinct ids, sum of ids).
Run: .venv/bin/python -m bench.bench_clickhouse [--quick]   (writes bench/results/clickhouse.txt)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "clickhouse.txt"
DDL_COLS = "(`id` Int64, `day` Date32, `amount` Nullable(Float64), `sku` Nullable(String))"


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _frame(n: int) -> Any:
    import datetime as dt

    import polars as pl

    ids = pl.int_range(0, n, dtype=pl.Int64, eager=True)
    return pl.select(
        id=ids,
        day=pl.lit(dt.date(2024, 1, 1), pl.Date) + pl.duration(days=ids % 30),
        amount=ids.cast(pl.Float64) * 0.5,
        sku=pl.lit("sku") + (ids % 1000).cast(pl.String),
    )


def _spec(schema: str, table: str, backend: str, mode: str = "append") -> Any:
    from loom_resources.dtypes import ColumnSchema
    from loom_resources.model import TableRef, TargetSpec

    cols = (ColumnSchema("id", "int64", False), ColumnSchema("day", "date", False),
            ColumnSchema("amount", "float64"), ColumnSchema("sku", "string"))
    return TargetSpec(ref=TableRef(schema, table), backend=backend, columns=cols, mode=mode)


def _check_ch(client: Any, table: str, n: int) -> dict[str, int]:
    count, distinct, total = client.query(f"SELECT count(), uniqExact(id), sum(id) FROM {table}").result_rows[0]
    ok = count == n and distinct == n and total == n * (n - 1) // 2
    if not ok:
        raise SystemExit(f"check failed for {table}: {count=} {distinct=} {total=}")
    return {"count": int(count)}


def _check_delta(uri: str, n: int) -> dict[str, int]:
    import polars as pl

    row = pl.scan_delta(uri).select(pl.len(), pl.col("id").n_unique().alias("distinct"), pl.col("id").sum().alias("total")).collect().row(0)
    if row != (n, n, n * (n - 1) // 2):
        raise SystemExit(f"check failed for {uri}: {row}")
    return {"count": int(row[0])}


# -- cases (run in a child process) -------------------------------------------------------------


def case_write_raw(path: str, n: int) -> dict[str, Any]:
    import clickhouse_connect

    df = _frame(n)
    table = df.to_arrow()
    del df
    client = clickhouse_connect.get_client(dsn=f"chdb://{path}")
    client.command("CREATE DATABASE IF NOT EXISTS bench")
    client.command(f"CREATE TABLE bench.raw {DDL_COLS} ENGINE = MergeTree ORDER BY tuple()")
    start = time.perf_counter()
    for off in range(0, table.num_rows, 500_000):
        client.insert_arrow("bench.raw", table.slice(off, 500_000))
    seconds = time.perf_counter() - start
    rss = _peak_rss_mb()  # before the read-back check, which has its own memory needs
    check = _check_ch(client, "bench.raw", n)
    client.close()
    return {"seconds": seconds, "rss_mb": rss, **check}


def case_write_raw_from_polars(path: str, n: int) -> dict[str, Any]:
    import clickhouse_connect

    df = _frame(n)
    client = clickhouse_connect.get_client(dsn=f"chdb://{path}")
    client.command("CREATE DATABASE IF NOT EXISTS bench")
    client.command(f"CREATE TABLE bench.raw {DDL_COLS} ENGINE = MergeTree ORDER BY tuple()")
    start = time.perf_counter()
    table = df.to_arrow()  # the resource starts from the Polars frame too
    for off in range(0, table.num_rows, 500_000):
        client.insert_arrow("bench.raw", table.slice(off, 500_000))
    seconds = time.perf_counter() - start
    rss = _peak_rss_mb()
    check = _check_ch(client, "bench.raw", n)
    client.close()
    return {"seconds": seconds, "rss_mb": rss, **check}


def case_write_resource(path: str, n: int) -> dict[str, Any]:
    from loom_resources.clickhouse import ClickHouseResource
    from loom_resources.model import RunParams, WriteContext

    df = _frame(n)
    res = ClickHouseResource(url=f"chdb://{path}", insert_batch_rows=500_000)
    res.command("SELECT 1")  # connect before timing, like the raw client
    start = time.perf_counter()
    res.write(df, _spec("bench", "loom", "clickhouse"), RunParams(), write_ctx=WriteContext(run_id="b", asset_key="bench/loom"))
    seconds = time.perf_counter() - start
    rss = _peak_rss_mb()  # before the read-back check, which has its own memory needs
    check = _check_ch(res.client(), "bench.loom", n)
    res.close()
    return {"seconds": seconds, "rss_mb": rss, **check}


def case_write_rowwise(path: str, n: int) -> dict[str, Any]:
    import clickhouse_connect

    df = _frame(n)
    client = clickhouse_connect.get_client(dsn=f"chdb://{path}")
    client.command("CREATE DATABASE IF NOT EXISTS bench")
    start = time.perf_counter()
    # dagster-clickhouse-polars: its type mapping, ORDER BY tuple(), then INSERT ... VALUES of to_dicts()
    client.command("CREATE TABLE IF NOT EXISTS bench.rowwise (`id` Int64, `day` Date, `amount` Float64, `sku` String) "
                   "ENGINE = MergeTree() ORDER BY tuple()")
    data = df.to_dicts()
    client.insert("bench.rowwise", [tuple(d.values()) for d in data], column_names=list(df.columns))
    seconds = time.perf_counter() - start
    rss = _peak_rss_mb()  # before the read-back check, which has its own memory needs
    check = _check_ch(client, "bench.rowwise", n)
    client.close()
    return {"seconds": seconds, "rss_mb": rss, **check}


def case_setup_source(path: str, n: int) -> dict[str, Any]:
    import clickhouse_connect

    client = clickhouse_connect.get_client(dsn=f"chdb://{path}")
    client.command("CREATE DATABASE IF NOT EXISTS bench")
    client.command(f"CREATE TABLE bench.src {DDL_COLS} ENGINE = MergeTree ORDER BY tuple()")
    client.command(
        f"INSERT INTO bench.src SELECT number, toDate32('2024-01-01') + number % 30, number * 0.5, "
        f"concat('sku', toString(number % 1000)) FROM numbers({n})"
    )
    check = _check_ch(client, "bench.src", n)
    client.close()
    return {"seconds": 0.0, "rss_mb": _peak_rss_mb(), **check}


def case_copy_resource(path: str, n: int) -> dict[str, Any]:
    from loom_resources.clickhouse import ClickHouseResource
    from loom_resources.delta import DeltaResource
    from loom_resources.model import RunParams, SourceSpec, TableRef

    root = tempfile.mkdtemp(prefix="bench-delta-")
    ch = ClickHouseResource(url=f"chdb://{path}")
    delta = DeltaResource(root=root)
    ch.command("SELECT 1")
    start = time.perf_counter()
    lf = ch.read_streaming(SourceSpec(TableRef("bench", "src")), RunParams())
    delta.write(lf, _spec("bench", "copy", "delta", "overwrite"), RunParams(), streaming=True)
    seconds = time.perf_counter() - start
    rss = _peak_rss_mb()  # before the read-back check, which has its own memory needs
    ch.close()
    check = _check_delta(os.path.join(root, "bench", "copy"), n)
    shutil.rmtree(root, ignore_errors=True)
    return {"seconds": seconds, "rss_mb": rss, **check}


def case_copy_raw(path: str, n: int) -> dict[str, Any]:
    import clickhouse_connect
    import polars as pl
    import pyarrow.ipc as ipc

    root = tempfile.mkdtemp(prefix="bench-delta-")
    spool = tempfile.mkdtemp(prefix="bench-spool-")
    client = clickhouse_connect.get_client(dsn=f"chdb://{path}")
    start = time.perf_counter()
    ipc_path = os.path.join(spool, "data.arrow")
    writer = None
    with client.query_arrow_stream("SELECT * FROM bench.src") as stream:
        for batch in stream:
            if writer is None:
                writer = ipc.new_file(ipc_path, batch.schema, options=ipc.IpcWriteOptions(compression="lz4"))
            writer.write(batch)
    assert writer is not None
    writer.close()
    uri = os.path.join(root, "copy")
    pl.scan_ipc(ipc_path).sink_delta(uri, mode="overwrite")
    seconds = time.perf_counter() - start
    rss = _peak_rss_mb()  # before the read-back check, which has its own memory needs
    client.close()
    shutil.rmtree(spool, ignore_errors=True)
    check = _check_delta(uri, n)
    shutil.rmtree(root, ignore_errors=True)
    return {"seconds": seconds, "rss_mb": rss, **check}


CASES = {f.__name__[5:]: f for f in (case_write_raw, case_write_raw_from_polars, case_write_resource, case_write_rowwise, case_setup_source,
                                     case_copy_resource, case_copy_raw)}


# -- driver ---------------------------------------------------------------------------------------


def run_case(name: str, n: int, path: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.bench_clickhouse", "--case", name, "--n", str(n), "--path", path],
        capture_output=True, text=True, cwd=ROOT,
    )
    if proc.returncode != 0:
        raise SystemExit(f"case {name} n={n} failed:\n{proc.stdout}\n{proc.stderr[-4000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def fresh_case(name: str, n: int) -> dict[str, Any]:
    path = tempfile.mkdtemp(prefix="bench-chdb-")
    try:
        return run_case(name, n, path)
    finally:
        shutil.rmtree(path, ignore_errors=True)


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    secs = [r["seconds"] for r in runs]
    return {"seconds": statistics.median(secs), "best": min(secs), "all": secs,
            "rss": statistics.median(r["rss_mb"] for r in runs), "runs": len(runs)}


def fmt(label: str, n: int, m: dict[str, Any]) -> str:
    runs = " / ".join(f"{x:.2f}" for x in m["all"])
    return (f"| {label} | {n / 1e6:g}M | {m['seconds']:.2f} | {m['best']:.2f} | {n / m['seconds'] / 1e6:.2f}M | "
            f"{m['rss']:,.0f} | {runs} |")


def ratio(raw: dict[str, Any], ours: dict[str, Any]) -> str:
    """Throughput ratio ours/raw, by median and by best run (the best run is least disturbed by other load)."""
    return f"{raw['seconds'] / ours['seconds']:.2f}x by median, {raw['best'] / ours['best']:.2f}x by best run"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--case")
    parser.add_argument("--n", type=int, default=0)
    parser.add_argument("--path")
    parser.add_argument("--quick", action="store_true", help="small sizes, one run each (smoke test)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if args.case:
        out = CASES[args.case](args.path, args.n)
        print(json.dumps(out))
        return

    scale = 100 if args.quick else 1
    repeat = 1 if args.quick else args.repeat
    n_write, n_small, n_big, n_rowwise = 8_000_000 // scale, 10_000_000 // scale, 40_000_000 // scale, 2_000_000 // scale
    load = os.getloadavg()[0]
    lines = [f"# ClickHouse backend benchmarks (load average at start {load:.1f}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
             f"{os.cpu_count()} cores, other jobs may share the machine; median of {repeat} run(s) unless noted)", "",
             "| path | N | median s | best s | rows/s (median) | peak RSS MB (median) | all runs (s) |",
             "|---|---:|---:|---:|---:|---:|---|"]
    ratios: list[str] = []

    raw, raw_pl, loom = [], [], []
    for _ in range(repeat):  # interleaved so background load hits all alike
        raw.append(fresh_case("write_raw", n_write))
        raw_pl.append(fresh_case("write_raw_from_polars", n_write))
        loom.append(fresh_case("write_resource", n_write))
    m_raw, m_raw_pl, m_loom = median_of(raw), median_of(raw_pl), median_of(loom)
    lines += [fmt("raw `client.insert_arrow`, 500k batches, embedded chDB (Arrow table given)", n_write, m_raw),
              fmt("raw, same but timing `DataFrame.to_arrow()` too (Polars frame given)", n_write, m_raw_pl),
              fmt("`ClickHouseResource.write` (append, eager Polars DataFrame)", n_write, m_loom)]
    ratios.append(f"write throughput resource/raw (Arrow table given) at {n_write / 1e6:g}M: {ratio(m_raw, m_loom)} (target >= 0.9x)")
    ratios.append(f"write throughput resource/raw (Polars frame given) at {n_write / 1e6:g}M: {ratio(m_raw_pl, m_loom)}")

    copy: dict[tuple[str, int], dict[str, Any]] = {}
    for n in (n_small, n_big):
        path = tempfile.mkdtemp(prefix="bench-chdb-")
        try:
            run_case("setup_source", n, path)
            runs: dict[str, list[dict[str, Any]]] = {"copy_resource": [], "copy_raw": []}
            for _ in range(repeat if n == n_small else max(1, repeat - 1)):
                for name in runs:
                    runs[name].append(run_case(name, n, path))
            for name, rs in runs.items():
                copy[(name, n)] = median_of(rs)
        finally:
            shutil.rmtree(path, ignore_errors=True)
    for n in (n_small, n_big):
        lines.append(fmt("raw `query_arrow_stream` -> IPC -> `sink_delta`", n, copy[("copy_raw", n)]))
        lines.append(fmt("`read_streaming` -> `DeltaResource.write(streaming=True)`", n, copy[("copy_resource", n)]))
    big, small = copy[("copy_resource", n_big)], copy[("copy_resource", n_small)]
    ratios.append(f"streaming copy peak RSS {n_big / 1e6:g}M / {n_small / 1e6:g}M: {big['rss'] / small['rss']:.2f}x (target <= 1.25x)")
    for n in (n_small, n_big):
        r = ratio(copy[("copy_raw", n)], copy[("copy_resource", n)])
        ratios.append(f"streaming copy throughput resource/raw at {n / 1e6:g}M: {r} (target >= 0.8x)")

    rowwise = [fresh_case("write_rowwise", n_rowwise) for _ in range(max(1, repeat - 2))]
    loom2 = [fresh_case("write_resource", n_rowwise) for _ in range(repeat)]
    m_row, m_loom2 = median_of(rowwise), median_of(loom2)
    lines += [fmt("dagster-clickhouse-polars write path (`to_dicts()` row-wise insert, emulated)", n_rowwise, m_row),
              fmt("`ClickHouseResource.write` (append, eager DataFrame)", n_rowwise, m_loom2)]
    ratios.append(f"resource vs dagster-clickhouse-polars row-wise path at {n_rowwise / 1e6:g}M: "
                  f"{m_row['seconds'] / m_loom2['seconds']:.1f}x faster by median")

    text = "\n".join(lines + ["", "Ratios:"] + [f"- {r}" for r in ratios]) + "\n"
    print(text)
    if not args.quick:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(text)


if __name__ == "__main__":
    main()
