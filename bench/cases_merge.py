"""Benchmark cases of Delta ``merge`` and ``history`` (SCD2) at scale (issue 27): Loom's modes
through a real ``dagster.materialize`` against raw ``DeltaTable.merge`` on the same table.

One case per process: ``python -m bench.cases_merge CASE ROWS WORKDIR OUT_JSON`` (ROWS: the
target's rows; the change set is ROWS / 20). The target tables are made once per size by the
set-up case ``merge_targets`` (in its own process, not timed) and each case copies the one it
needs into its working directory before the clock starts, so the set-up's memory never counts in
a case's peak RSS. The runner passes the set-up's directory as ``LOOM_BENCH_SHARED``.

Workload (``bench.workload``'s rows: ``id`` 0..N-1, ``day`` = 2024-01-01 + id % 30, ``amount``,
``sku``), written by Loom's Delta writer (files of ~64 MiB, ids increasing across files):

* ``clustered``: the change-data pattern. C = N/20 changes: the most recent C/2 ids updated and
  C/2 new ids (N .. N + C/2) inserted, into the unpartitioned table.
* ``random``: C/2 updates spread over the whole key range (a seeded sample) + C/2 new ids.
* ``partitioned``: the table partitioned by ``day``; C/2 updates of ids in 3 of the 30 days and
  C/2 new ids in those 3 days. Raw's predicate carries the 3 days as literals, as Loom's does.
* ``scd2``: Loom's ``history`` mode (change-log input) on a 20M-row history table, the same
  changes as ``clustered``; measured against raw ``clustered`` (delta-rs has no SCD2 of its own).

Read back: every merged table must hold ids 0 .. N + C/2 - 1 once each (count, distinct, sum);
the SCD2 table holds N + C rows (each updated id twice: its closed and its new version).

``python -m bench.cases_merge large [--target 200000000] [--changes 50000000]``: the change set
larger than memory (not part of ``make bench``), see :func:`large_main`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.cases import DELTA_LIBS, Loom, _columns, _delta_root, _delta_table, _preload
from bench.workload import BASE_DAY, child_main, run_outcome

SEED = 27
HIST_D0 = dt.date(2024, 1, 1)  # the set-up's effective date of the history table


def n_changes(n: int) -> int:
    """The change set's size for a target of ``n`` rows (1M for 20M)."""
    return max(2, n // 20)


# -- frames ----------------------------------------------------------------------------------------


def _rows(ids: Any, *, amount_bump: float = 0.0, days: int = 30) -> Any:
    """The workload's columns for an id column (``amount`` changed by ``amount_bump``; ``day`` in
    the first ``days`` days)."""
    import polars as pl

    return [
        ids.alias("id"),
        (pl.lit(BASE_DAY) + pl.duration(days=ids % days)).cast(pl.Date).alias("day"),
        (ids.cast(pl.Float64) * 0.5 + amount_bump).alias("amount"),
        (pl.lit("sku-") + (ids % 1000).cast(pl.String)).alias("sku"),
    ]


def changes(kind: str, n: int) -> Any:
    """The change set of ``kind`` for an ``n``-row target (a DataFrame in the workload's schema)."""
    import polars as pl

    c = n_changes(n)
    half = c // 2
    new = pl.int_range(n, n + (c - half), eager=True, dtype=pl.Int64)
    if kind == "clustered":
        upd = pl.int_range(n - half, n, eager=True, dtype=pl.Int64)
    elif kind == "random":
        upd = pl.int_range(0, n, eager=True, dtype=pl.Int64).sample(half, seed=SEED).sort()
    elif kind == "partitioned":
        # ids of days 0..2 (id % 30 < 3), every k-th of them, and new ids put into those days
        step = max(1, (n // 10) // half)
        day_ids = pl.int_range(0, n, eager=True, dtype=pl.Int64).filter((pl.int_range(0, n, eager=True) % 30) < 3)
        upd = day_ids.gather_every(step).head(half)
        frame = pl.DataFrame({"i": upd}).select(_rows(pl.col("i"), amount_bump=1.0))
        ins = pl.DataFrame({"i": new}).select(_rows(pl.col("i"), days=3))
        return pl.concat([frame, ins]).sample(fraction=1.0, shuffle=True, seed=SEED)
    else:
        raise ValueError(kind)
    frame = pl.concat([pl.DataFrame({"i": upd}).select(_rows(pl.col("i"), amount_bump=1.0)),
                       pl.DataFrame({"i": new}).select(_rows(pl.col("i")))])
    return frame if kind == "clustered" else frame.sample(fraction=1.0, shuffle=True, seed=SEED)


def _merged(n: int) -> int:
    """Rows of a merged table: the target's plus the inserted ones."""
    c = n_changes(n)
    return n + (c - c // 2)


# -- set-up ----------------------------------------------------------------------------------------


def _shared() -> str:
    path = os.environ.get("LOOM_BENCH_SHARED")
    if not path:
        raise SystemExit("LOOM_BENCH_SHARED is not set: run the cases through bench.run_all (set-up merge_targets)")
    return path


def _history_spec(ref: str) -> Any:
    from loom_resources import ColumnSchema as C
    from loom_resources.model import HistoryOptions, TargetSpec

    cols = (C("id", "int64", False), C("day", "date", False), C("amount", "float64"), C("sku", "string"))
    return TargetSpec(ref, "delta", cols, mode="history", merge_keys=("id",),
                      history=HistoryOptions(input="changelog", tracked_columns=("amount",)))


def merge_targets(n: int, wd: str) -> dict[str, Any]:
    """Set-up (not timed): the unpartitioned, the day-partitioned and the history target of
    ``n`` rows, written by Loom's Delta writer under ``<wd>/clickhouse/merge`` (the directory the
    runner keeps for the cases that share this set-up)."""
    import polars as pl

    from bench.workload import eager_frame
    from loom_resources import ColumnSchema as C
    from loom_resources import DeltaResource, RunParams
    from loom_resources.model import TargetSpec

    root = os.path.join(wd, "clickhouse", "merge")
    os.makedirs(root, exist_ok=True)
    res = DeltaResource(root=root, merge_max_change_set_mb=0)  # the history set-up writes N rows at once
    cols = (C("id", "int64", False), C("day", "date", False), C("amount", "float64"), C("sku", "string"))
    t0 = time.perf_counter()
    df = eager_frame(n)
    res.write(df, TargetSpec("m.flat", "delta", cols, mode="overwrite"), RunParams())
    res.write(df, TargetSpec("m.daily", "delta", cols, mode="overwrite", partition_by=("day",)), RunParams())
    res.write(df.with_columns(op=pl.lit("upsert")), _history_spec("m.hist"), RunParams(values={"effective_date": HIST_D0}))
    return {"seconds": time.perf_counter() - t0, "tables": [
        _delta_table(os.path.join(root, "m", "flat"), n), _delta_table(os.path.join(root, "m", "daily"), n)]}


def _copy(table: str, dest: str) -> str:
    """Copy the set-up's ``table`` (flat, daily or hist) to ``dest``; returns its path."""
    shutil.copytree(os.path.join(_shared(), "merge", "m", table), dest)
    return dest


# -- raw -------------------------------------------------------------------------------------------


def _raw(kind: str, n: int, wd: str, *, streamed_exec: bool = True) -> dict[str, Any]:
    """Raw ``DeltaTable.merge`` (update all matched, insert all unmatched) with default options."""
    _preload(*DELTA_LIBS)
    from deltalake import DeltaTable

    uri = _copy("daily" if kind == "partitioned" else "flat", os.path.join(wd, "raw"))
    src = changes(kind, n)
    predicate = "t.id = s.id"
    if kind == "partitioned":
        days = sorted(src["day"].unique().to_list())
        predicate += " AND t.day IN (" + ", ".join(f"'{d.isoformat()}'" for d in days) + ")"
    t0 = time.perf_counter()
    table = DeltaTable(uri)
    metrics = (table.merge(src, predicate, source_alias="s", target_alias="t", streamed_exec=streamed_exec)
               .when_matched_update_all().when_not_matched_insert_all().execute())
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "tables": [_delta_table(uri, _merged(n))], **_scan_counts(metrics)}


def _scan_counts(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: metrics.get(k) for k in ("num_target_files_scanned", "num_target_files_skipped_during_scan",
                                        "num_target_rows_updated", "num_target_rows_inserted")}


def raw_merge_clustered(n: int, wd: str) -> dict[str, Any]:
    return _raw("clustered", n, wd)


def raw_merge_clustered_nostream(n: int, wd: str) -> dict[str, Any]:
    """Raw merge with ``streamed_exec=False``: delta-rs then derives the key range itself (reference)."""
    return _raw("clustered", n, wd, streamed_exec=False)


def raw_merge_random(n: int, wd: str) -> dict[str, Any]:
    return _raw("random", n, wd)


def raw_merge_partitioned(n: int, wd: str) -> dict[str, Any]:
    return _raw("partitioned", n, wd)


# -- Loom ------------------------------------------------------------------------------------------


def _loom(kind: str, n: int, wd: str) -> dict[str, Any]:
    from loom_assets import Table

    table = {"partitioned": "daily", "scd2": "hist"}.get(kind, "flat")
    uri = _copy(table, os.path.join(_delta_root(), "m", "t"))
    src = changes("clustered" if kind == "scd2" else kind, n)
    if kind == "scd2":
        import polars as pl

        from loom_resources.model import HistoryOptions

        src = src.with_columns(op=pl.lit("upsert"))
        decl = Table("m.t", backend="delta", columns=_columns(), mode="history", merge_keys=("id",),
                     history=HistoryOptions(input="changelog", tracked_columns=("amount",)),
                     transform=lambda context: src)
    else:
        decl = Table("m.t", backend="delta", columns=_columns(), mode="merge", merge_keys=("id",),
                     partition_by=("day",) if kind == "partitioned" else (), transform=lambda context: src)
    loom = Loom([decl])
    seconds, error = loom.run()
    extra: dict[str, Any] = {}
    if not error:
        from deltalake import DeltaTable

        extra = _scan_counts(DeltaTable(uri).history(1)[0].get("operationMetrics", {}))
    if kind != "scd2":
        return run_outcome(seconds, error, [_delta_table(uri, _merged(n))], **extra)
    c = n_changes(n)
    half = c // 2
    upd_sum = sum(range(n - half, n))
    total = _merged(n)
    expect = {"count": n + c, "distinct": total, "sum": total * (total - 1) // 2 + upd_sum}
    return run_outcome(seconds, error, [{**_delta_table(uri, n + c), "expect": expect}], **extra)


def loom_merge_clustered(n: int, wd: str) -> dict[str, Any]:
    return _loom("clustered", n, wd)


def loom_merge_random(n: int, wd: str) -> dict[str, Any]:
    return _loom("random", n, wd)


def loom_merge_partitioned(n: int, wd: str) -> dict[str, Any]:
    return _loom("partitioned", n, wd)


def loom_history_scd2(n: int, wd: str) -> dict[str, Any]:
    return _loom("scd2", n, wd)


CASES = {f.__name__: f for f in (
    merge_targets, raw_merge_clustered, raw_merge_clustered_nostream, raw_merge_random, raw_merge_partitioned,
    loom_merge_clustered, loom_merge_random, loom_merge_partitioned, loom_history_scd2,
)}


# -- the change set larger than memory (standalone) ---------------------------------------------

LARGE_MD = Path(__file__).resolve().parent / "results" / "merge_large.md"


def _lazy_changes(n: int, c: int) -> Any:
    """``c`` clustered changes for an ``n``-row target as a LazyFrame the streaming engine
    produces batch by batch (never whole): ids ``n - c/2 .. n + c/2 - 1``."""
    import polars as pl

    from bench.workload import BLOCK

    start = n - c // 2
    outer = pl.LazyFrame({"a": pl.int_range(0, max(1, -(-c // BLOCK)), eager=True, dtype=pl.Int64)})
    inner = pl.LazyFrame({"b": pl.int_range(0, BLOCK, eager=True, dtype=pl.Int64)})
    ids = pl.col("a") * BLOCK + pl.col("b")
    return outer.join(inner, how="cross").filter(ids < c).select(_rows(pl.lit(start) + ids, amount_bump=1.0))


def large_target(n: int, wd: str) -> dict[str, Any]:
    """Set-up of the large case: an ``n``-row unpartitioned table written by Loom's streaming
    Delta writer (files of ~64 MiB, ids increasing)."""
    from bench.workload import lazy_frame
    from loom_resources import ColumnSchema as C
    from loom_resources import DeltaResource, RunParams
    from loom_resources.model import TargetSpec

    cols = (C("id", "int64", False), C("day", "date", False), C("amount", "float64"), C("sku", "string"))
    t0 = time.perf_counter()
    DeltaResource().write(lazy_frame(n), TargetSpec("m.t", "delta", cols, mode="overwrite"), RunParams(), streaming=True)
    return {"seconds": time.perf_counter() - t0, "tables": [_delta_table(os.path.join(_delta_root(), "m", "t"), n)]}


def large_merge(n: int, wd: str) -> dict[str, Any]:
    """The measured step: ``dagster.materialize`` of a ``merge`` table whose body returns
    ``LOOM_LARGE_CHANGES`` clustered changes as a LazyFrame."""
    from loom_assets import Table

    c = int(os.environ["LOOM_LARGE_CHANGES"])
    lf = _lazy_changes(n, c)
    tables = [Table("m.t", backend="delta", columns=_columns(), mode="merge", merge_keys=("id",),
                    transform=lambda context: lf)]
    loom = Loom(tables)
    limit = os.environ.get("LOOM_LARGE_LIMIT_MB")
    if limit is not None:
        from loom_assets import build_definitions
        from loom_resources import DeltaResource, LoomIOManager

        io = loom.defs.resources["io_manager"]  # type: ignore[index]
        loom.defs = build_definitions(tables, resources={"io_manager": LoomIOManager(
            delta=DeltaResource(merge_max_change_set_mb=int(limit)), clickhouse=io.clickhouse)})
    seconds, error = loom.run()
    return run_outcome(seconds, error, [])


def large_main(argv: list[str]) -> int:
    """``python -m bench.cases_merge large [--target N] [--changes M] [--limit-mb MB] [--tmp DIR]``:
    M changes (default 50M) merged into an N-row table (default 200M) in one materialization, the
    resource at its default ``merge_max_change_set_mb`` unless ``--limit-mb`` is given. Set-up and
    merge run in processes of their own; the merge's peak RSS is the kernel's figure
    (``os.wait4``); the table is read back afterwards (version, count, sum of ids) to show whether
    it was left exactly as it was. Writes ``bench/results/merge_large.md``."""
    import argparse

    from bench.run_all import Verifier, _clean_env, machine

    ap = argparse.ArgumentParser(description=large_main.__doc__)
    ap.add_argument("--target", type=int, default=200_000_000)
    ap.add_argument("--changes", type=int, default=50_000_000)
    ap.add_argument("--limit-mb", type=int, help="DeltaResource.merge_max_change_set_mb (default: the resource's)")
    ap.add_argument("--tmp", help="working directory (default: the system temp dir)")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args(argv)
    import tempfile

    wd = tempfile.mkdtemp(prefix="merge-large-", dir=args.tmp)
    env = _clean_env()
    env.update(LOOM_HOME=os.path.join(wd, "loom"), DAGSTER_HOME=os.path.join(wd, "dagster"),
               LOOM_LARGE_CHANGES=str(args.changes))
    os.makedirs(env["DAGSTER_HOME"])
    if args.limit_mb is not None:
        env["LOOM_LARGE_LIMIT_MB"] = str(args.limit_mb)
    root = Path(__file__).resolve().parents[1]
    uri = os.path.join(wd, "loom", "delta", "m", "t")
    verifier = Verifier()
    out: dict[str, Any] = {"target": args.target, "changes": args.changes, "limit_mb": args.limit_mb,
                           "machine": machine(), "load_start": os.getloadavg()[0]}
    try:
        for step in ("large_target", "large_merge"):
            res_path = os.path.join(wd, f"{step}.json")
            t0 = time.perf_counter()
            with open(os.path.join(wd, f"{step}.log"), "w") as log:
                proc = subprocess.Popen([sys.executable, "-m", "bench.cases_merge", step, str(args.target), wd, res_path],
                                        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
                _, status, usage = os.wait4(proc.pid, 0)
            result = json.loads(Path(res_path).read_text()) if os.path.exists(res_path) else {"status": "no result"}
            out[step] = {"wall_s": round(time.perf_counter() - t0, 1), "peak_rss_mb": round(usage.ru_maxrss / 1024),
                         "exit": os.waitstatus_to_exitcode(status), "status": result.get("status"),
                         "seconds": result.get("seconds"), "error": (result.get("error") or "")[:1200]}
            out[step]["read_back"] = verifier.ask({"kind": "delta", "uri": uri, "ids": True})
            print(step, json.dumps(out[step], default=str), flush=True)
    finally:
        verifier.close()
        if not args.keep:
            shutil.rmtree(wd, ignore_errors=True)
    out["load_end"] = os.getloadavg()[0]
    before, after = out["large_target"]["read_back"], out["large_merge"]["read_back"]
    unchanged = all(before.get(k) == after.get(k) for k in ("version", "count", "sum"))
    m = out["large_merge"]
    lines = [
        "# Merge: a change set larger than memory", "",
        f"`python -m bench.cases_merge large --target {args.target} --changes {args.changes}"
        + (f" --limit-mb {args.limit_mb}" if args.limit_mb is not None else "") + "` on "
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; {out['machine']['cores']} cores, {out['machine']['memory_gib']} GiB; "
        f"load average {out['load_start']:.2f} at start, {out['load_end']:.2f} at end.", "",
        f"- set-up: {args.target:,}-row table written by Loom's streaming writer in {out['large_target']['wall_s']} s "
        f"(peak RSS {out['large_target']['peak_rss_mb']} MB); read back {before.get('count')} rows, version {before.get('version')}.",
        f"- merge of {args.changes:,} clustered changes (a LazyFrame) in one `dagster.materialize`: status "
        f"**{m['status']}**, {m['seconds'] or 0:.1f} s, peak RSS **{m['peak_rss_mb']} MB** (whole process, `os.wait4`).",
        f"- error: `{' '.join(m['error'].split())}`" if m["error"] else "- no error",
        f"- table afterwards: {after.get('count')} rows, version {after.get('version')} — "
        + ("**unchanged** (version, count and sum of ids as before)" if unchanged else "changed by the merge"), "",
    ]
    LARGE_MD.parent.mkdir(parents=True, exist_ok=True)
    LARGE_MD.write_text("\n".join(lines))
    LARGE_MD.with_suffix(".json").write_text(json.dumps(out, indent=1, default=str))
    print("\n".join(lines))
    return 0


CASES.update(large_target=large_target, large_merge=large_merge)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "large":
        sys.exit(large_main(sys.argv[2:]))
    child_main(CASES)
