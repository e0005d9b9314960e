"""One benchmark run: Loom assets against the bare libraries and the official Dagster integrations.

``python -m bench.run_all [--quick | --tiny] [--official-python PATH] [--rounds N] [--out DIR]``
(``make bench``, ``make bench-quick``; ``tests/test_bench.py`` runs ``--tiny``).

* Each case runs in its own process; its peak RSS is the whole process's ``ru_maxrss`` as the
  kernel reports it to the runner (``os.wait4``), so nothing inside the case can misreport it.
* Rounds are interleaved (every case once per round), and the median of the rounds is reported;
  every ratio compares cases of the same run.
* Every table a case names is read back by a separate verifier process (:mod:`bench.verify`)
  and checked: row count, distinct ids and sum of ids against the rows written.
* Versions, cores, memory and the load average are recorded with the results.

Sizes: full (8M-row eager writes, 5M/20M streaming, 10M/40M/100M copies), ``--quick`` (1/10, one
round), ``--tiny`` (1/1000, one round, no official integrations: for the test suite).
Writes ``RESULTS.md``, ``results.png`` and ``run_all.json`` (full run: ``bench/RESULTS.md``,
``bench/results.png``, ``bench/results/run_all.json``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.page import render_saved, summarize, targets, write_pages

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
PRODUCT_PACKAGES = ("dagster", "polars", "deltalake", "pyarrow", "clickhouse-connect", "chdb", "loom-dagster")


@dataclass
class Case:
    """One benchmarked path at one size."""

    group: str  # which of the cases it belongs to
    key: str  # unique id in this run
    label: str  # what is measured, for the tables
    impl: str  # ours | raw | official | dagster
    module: str  # bench.cases | bench.official | demo
    name: str  # case function (or rows per day for the demo)
    rows: int  # N written (tables for load cases)
    env: dict[str, str] = field(default_factory=dict)
    shared: str | None = None  # set-up case whose ClickHouse path this case reads


@dataclass
class Run:
    """One process of one case."""

    key: str
    round: int
    status: str  # ok | failed (the integration failed: a result) | error (the benchmark broke)
    seconds: float | None
    wall_s: float
    rss_mb: float
    exit_code: int
    error: str | None = None
    read_back: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


# -- plan ------------------------------------------------------------------------------------------


def sizes(mode: str) -> dict[str, Any]:
    div = {"full": 1, "quick": 10, "tiny": 1000}[mode]
    return {
        "eager": 8_000_000 // div,
        "stream": (5_000_000 // div, 20_000_000 // div),
        "ch": 8_000_000 // div,
        "rowwise": 2_000_000 // div,
        "copy": (10_000_000 // div, 40_000_000 // div, 100_000_000 // div),
        "part": 2_000_000 // div,
        # -- load (issue 27): tables per code location; quick/tiny keep one size, whose cost is mostly
        # fixed (start-up, Dagster)
        "load": {"full": (20, 200, 1000), "quick": (200,), "tiny": (20,)}[mode],
        # quick leaves out `make demo` (about 20 s whatever the size: that is what `make demo` is for)
        "demo": {"full": (100_000, 1_000_000), "quick": (), "tiny": (200,)}[mode],
        # -- merge (issue 27): the Delta merge target's rows (the change set is 1/20 of it)
        "merge": 20_000_000 // div,
        # -- ClickHouse merge (issue 27): the merge target's rows (the change set is 1/20 of it)
        "chmerge": 20_000_000 // div,
        # -- files (issue 27)
        "files": 8_000_000 // div,
        "files_copy": 10_000_000 // div,  # one of the "copy" sizes: its ch_source set-up is shared
    }


def plan(mode: str, official: bool) -> tuple[list[Case], list[Case]]:
    """(set-up cases run once before the rounds, cases run every round)."""
    s = sizes(mode)
    cases: list[Case] = []
    setup: list[Case] = []

    def add(group: str, label: str, impl: str, module: str, name: str, rows: int, **kw: Any) -> None:
        if impl == "official" and not official:
            return
        cases.append(Case(group, f"{name}@{rows}", label, impl, module, name, rows, **kw))

    n = s["eager"]
    add("1 Delta eager", "bare polars `DataFrame.write_delta`", "raw", "bench.cases", "raw_write_delta", n)
    add("1 Delta eager", "empty `dagster.materialize` (Dagster's fixed cost per run)", "dagster", "bench.cases", "dagster_noop", 0)
    add("1 Delta eager", "empty `dagster.materialize`, 2nd in the process (reference)", "dagster", "bench.cases",
        "dagster_noop_warm", 0)
    add("1 Delta eager", "**Loom** Delta table (DataFrame body, overwrite)", "ours", "bench.cases", "loom_delta_eager", n)
    add("1 Delta eager", "dagster-deltalake-polars `DeltaLakePolarsIOManager`", "official", "bench.official", "ddp_eager", n)
    add("1 Delta eager", "dagster-polars `PolarsDeltaIOManager`", "official", "bench.official", "polars_delta_eager", n)
    for n in s["stream"]:
        add("2 Delta streaming", "bare polars `LazyFrame.sink_delta`", "raw", "bench.cases", "raw_sink_delta", n)
        add("2 Delta streaming", "**Loom** Delta table (LazyFrame body, streaming)", "ours", "bench.cases", "loom_delta_streaming", n)
    n = s["ch"]
    add("3 ClickHouse write", "bare clickhouse-connect `insert_arrow`, 500k batches", "raw", "bench.cases", "raw_ch_insert", n)
    add("3 ClickHouse write", "**Loom** ClickHouse table (DataFrame body, overwrite)", "ours", "bench.cases", "loom_ch_eager", n)
    n = s["rowwise"]
    add("3 ClickHouse write", "**Loom** ClickHouse table (DataFrame body, overwrite)", "ours", "bench.cases", "loom_ch_eager", n)
    add("3 ClickHouse write", "dagster-clickhouse-polars `ClickhousePolarsIOManager` (row-wise; transport shimmed)",
        "official", "bench.official", "ch_rowwise", n)
    for n in s["copy"]:
        src = Case("4 ClickHouse to Delta", f"ch_source@{n}", "source table made by SQL (set-up)", "setup",
                   "bench.cases", "ch_source", n)
        setup.append(src)
        add("4 ClickHouse to Delta", "hand-written `query_arrow_stream` -> IPC -> `sink_delta`", "raw", "bench.cases",
            "raw_copy", n, shared=src.key)
        add("4 ClickHouse to Delta", "**Loom** two declared tables, streaming source", "ours", "bench.cases", "loom_copy", n,
            shared=src.key)
    n = s["part"]
    add("5 30-day range", "bare polars `write_delta(partition_by=day)`, new table", "raw", "bench.cases", "raw_partitioned", n)
    add("5 30-day range", "**Loom** one run over the range, existing table", "ours", "bench.cases", "loom_range30", n)
    add("5 30-day range", "**Loom** 30 single-partition runs", "ours", "bench.cases", "loom_30runs", n)
    add("5 30-day range", "dagster-deltalake-polars one run over the range, new table", "official", "bench.official",
        "ddp_range_new", n)
    add("5 30-day range", "dagster-deltalake-polars one run over the range, existing table", "official", "bench.official",
        "ddp_range_existing", n)
    add("5 30-day range", "dagster-deltalake-polars 30 single-partition runs", "official", "bench.official", "ddp_30runs", n)
    add("5 30-day range", "dagster-polars `PolarsDeltaIOManager` one run over the range", "official", "bench.official",
        "polars_delta_range", n)
    # -- load (issue 27): `dagster definitions validate` as a user runs it, bare then Loom back to back
    # in every round (one paired ratio per round; bench/cases_load.py)
    for n in s["load"]:
        add("6 load time", "bare `@asset`s, same graph: `dagster definitions validate`", "raw", "bench.cases_load",
            "load_cli_bare", n)
        add("6 load time", "**Loom** declared tables: `dagster definitions validate`", "ours", "bench.cases_load",
            "load_cli_loom", n)
    for n in s["demo"]:
        add("7 make demo", f"`make demo`, {n:,} orders/day", "ours", "demo", str(n), n)
    # -- merge (issue 27)
    n = s["merge"]
    tgt = Case("8 Delta merge", f"merge_targets@{n}", "merge targets written by Loom (set-up)", "setup",
               "bench.cases_merge", "merge_targets", n)
    setup.append(tgt)
    for kind, what in (("clustered", "clustered changes (recent ids), unpartitioned"),
                       ("random", "random keys, unpartitioned"), ("partitioned", "3 of 30 days, partitioned by day")):
        add("8 Delta merge", f"raw `DeltaTable.merge`, {what}", "raw", "bench.cases_merge", f"raw_merge_{kind}", n,
            shared=tgt.key)
        add("8 Delta merge", f"**Loom** `merge` mode, {what}", "ours", "bench.cases_merge", f"loom_merge_{kind}", n,
            shared=tgt.key)
    if mode != "tiny":  # a reference row, not a path of Loom's: the test suite's tiny run leaves it out
        add("8 Delta merge", "raw `DeltaTable.merge(streamed_exec=False)`, clustered (reference)", "raw",
            "bench.cases_merge", "raw_merge_clustered_nostream", n, shared=tgt.key)
    add("8 Delta merge", "**Loom** `history` (SCD2, change log), clustered changes", "ours", "bench.cases_merge",
        "loom_history_scd2", n, shared=tgt.key)
    # -- ClickHouse merge (issue 27)
    n = s["chmerge"]
    stores: dict[str, str] = {}
    for impl in ("raw", "loom"):
        for layout in ("flat", "daily"):
            st = Case("9 ClickHouse merge", f"chmerge_setup_{impl}_{layout}@{n}", f"{impl} {layout} merge target (set-up)",
                      "setup", "bench.cases_chmerge", f"chmerge_setup_{impl}_{layout}", n)
            setup.append(st)
            stores[f"{impl}_{layout}"] = st.key
    for kind, layout, what in (("clustered", "flat", "clustered changes (recent ids), unpartitioned"),
                               ("random", "flat", "random keys, unpartitioned"),
                               ("partitioned", "daily", "3 of 30 days, partitioned by day")):
        add("9 ClickHouse merge", f"raw `INSERT ... SELECT` + `REPLACE PARTITION`, {what}", "raw", "bench.cases_chmerge",
            f"raw_chmerge_{kind}", n, shared=stores[f"raw_{layout}"])
        add("9 ClickHouse merge", f"**Loom** `merge` mode, {what}", "ours", "bench.cases_chmerge", f"loom_chmerge_{kind}", n,
            shared=stores[f"loom_{layout}"])
    # -- files (issue 27)
    n = s["files"]
    add("10 file layout", "bare deltalake `write_deltalake` (delta-rs' writer), new table", "raw", "bench.cases_files",
        "files_raw", n)
    add("10 file layout", "**Loom** Delta table (DataFrame body, overwrite): Polars-encoded files", "ours",
        "bench.cases_files", "files_loom", n)
    add("10 file layout", "filtered read (polars `scan_delta`), **Loom**'s table (both tables read, alternating)", "ours",
        "bench.cases_files", "files_reads", n)
    n = s["files_copy"]
    src_key = f"ch_source@{n}"
    assert any(c.key == src_key for c in setup), src_key
    add("10 file layout", "ClickHouse -> Delta: the engine's Arrow batches into `write_deltalake`", "raw",
        "bench.cases_files", "files_copy_raw", n, shared=src_key)
    add("10 file layout", "ClickHouse -> Delta: **Loom** two declared tables, streaming source", "ours",
        "bench.cases_files", "files_copy_loom", n, shared=src_key)
    return setup, cases


# -- running ---------------------------------------------------------------------------------------


class Verifier:
    """The long-lived read-back process (:mod:`bench.verify`)."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.verify"], cwd=ROOT, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=_clean_env())

    def ask(self, req: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:  # it died: start a new one and report this request as failed
            self.close()
            self.proc = Verifier().proc
            return {"ok": False, "error": "verifier process died"}
        return dict(json.loads(line))

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=60)


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LOOM_", "DAGSTER_")) and k not in ("PYTEST_CURRENT_TEST", "VIRTUAL_ENV")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Runner:
    def __init__(self, mode: str, official_python: str | None, tmp_root: str, log: Any) -> None:
        self.mode = mode
        self.official_python = official_python
        self.tmp_root = tmp_root
        self.log = log
        self.shared: dict[str, str] = {}
        self.verifier = Verifier()

    def _python(self, case: Case) -> str:
        return self.official_python if case.module == "bench.official" and self.official_python else sys.executable

    def run(self, case: Case, round_: int, keep: bool = False) -> Run:
        wd = tempfile.mkdtemp(prefix=f"{case.name}-", dir=self.tmp_root)
        env = _clean_env()
        for sub in ("loom", "dagster", "tmp"):
            os.makedirs(os.path.join(wd, sub))
        env.update(LOOM_HOME=os.path.join(wd, "loom"), DAGSTER_HOME=os.path.join(wd, "dagster"), TMPDIR=os.path.join(wd, "tmp"))
        if case.shared:
            env["LOOM_CLICKHOUSE_URL"] = f"chdb://{self.shared[case.shared]}"
            env["LOOM_BENCH_SHARED"] = self.shared[case.shared]  # set-up files other than ClickHouse's (merge)
        elif case.module == "bench.cases" and case.name == "ch_source":
            env["LOOM_CLICKHOUSE_URL"] = f"chdb://{os.path.join(wd, 'clickhouse')}"
        env.update(case.env)
        out = os.path.join(wd, "result.json")
        if case.module == "demo":
            env["LOOM_DEMO_ROWS_PER_DAY"] = case.name
            argv = [sys.executable, "-m", "sample_platform.demo"]
        else:
            argv = [self._python(case), "-m", case.module, case.name, str(case.rows), wd, out]
        logf = open(os.path.join(wd, "log.txt"), "w")
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=logf, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        logf.close()
        rss = usage.ru_maxrss / 1024
        log_tail = Path(wd, "log.txt").read_text(errors="replace")[-1500:]
        if case.module == "demo":
            result: dict[str, Any] = {"seconds": wall, "status": "ok" if proc.returncode == 0 else "error",
                                      "tables": [{"kind": "stores", "delta_root": os.path.join(env["LOOM_HOME"], "delta"),
                                                  "url": f"chdb://{os.path.join(env['LOOM_HOME'], 'clickhouse')}"}]}
            if proc.returncode != 0:
                result["error"] = f"exit code {proc.returncode}: {log_tail}"
        elif os.path.exists(out):
            result = json.loads(Path(out).read_text())
        else:
            result = {"status": "error", "error": f"no result (exit code {proc.returncode}): {log_tail}", "tables": []}
        run = Run(case.key, round_, result.get("status", "ok"), result.get("seconds"), wall, rss, proc.returncode,
                  result.get("error"), extra={k: v for k, v in result.items()
                                              if k not in ("status", "seconds", "error", "tables", "traceback")})
        if result.get("traceback"):
            run.extra["traceback"] = result["traceback"]
        for t in result.get("tables", []):
            req = {k: v for k, v in t.items() if k not in ("rows", "expect")}
            req["ids"] = t.get("kind") != "stores"
            got = self.verifier.ask(req)
            got["expected_rows"] = t.get("rows")
            got["table"] = t.get("uri") or t.get("table") or "stores"
            got["ok"] = _read_back_ok(case, t, got)
            run.read_back.append(got)
        if keep:
            self.shared[case.key] = os.path.join(wd, "clickhouse")
        else:
            shutil.rmtree(wd, ignore_errors=True)
        self._report(case, run)
        return run

    def _report(self, case: Case, r: Run) -> None:
        back = ", ".join(f"{b.get('count')}{'' if b.get('ok') else ' (!)'}" for b in r.read_back) or "-"
        sec = f"{r.seconds:7.2f}s" if r.seconds is not None else "      -"
        msg = (f"  round {r.round}: {case.key:<28} {r.status:<6} {sec} {r.rss_mb:7.0f} MB  read back {back}"
               + (f"  [{(r.error or '')[:150]}]" if r.error else ""))
        print(msg, file=self.log, flush=True)

    def close(self) -> None:
        self.verifier.close()


def _read_back_ok(case: Case, t: dict[str, Any], got: dict[str, Any]) -> bool:
    if not got.get("ok"):
        return False
    if t.get("kind") == "stores":
        tables = got.get("tables", {})
        orders = tables.get("delta:raw.orders", 0)
        return bool(tables) and orders > 0 and orders % case.rows == 0 and all(v >= 0 for v in tables.values())
    if t.get("expect"):  # a table whose ids are not 0..N-1 once each (SCD2: versions of one id)
        return all(got.get(k) == v for k, v in t["expect"].items())
    n = int(t.get("rows") or 0)
    if got.get("count") != n:
        return False
    if "sum" in got and got["sum"] != n * (n - 1) // 2:
        return False
    return "distinct" not in got or got["distinct"] == n


# -- summary ---------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    mem_kb = 0
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    cpu = ""
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), "")
    except OSError:
        pass
    return {"platform": platform.platform(), "cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem_kb / 2**20, 1),
            "python": platform.python_version()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    size = ap.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="1/10 sizes, one round")
    size.add_argument("--tiny", action="store_true", help="1/1000 sizes, one round, no official integrations")
    ap.add_argument("--rounds", type=int, help="interleaved rounds (default 3; 1 for --quick/--tiny)")
    ap.add_argument("--official-python", help="python of the official integrations' venv (.venv-bench-official)")
    ap.add_argument("--out", help="directory for RESULTS.md, results.png and run_all.json")
    ap.add_argument("--only", help="comma-separated case-name prefixes to run (e.g. loom_delta,raw_write)")
    ap.add_argument("--tmp", help="directory for the cases' working directories (default: the system temp dir)")
    ap.add_argument("--render", help="only re-render RESULTS.md and results.png from this run_all.json")
    args = ap.parse_args(argv)
    if args.render:
        return render_saved(Path(args.render), Path(args.out) if args.out else None)
    mode = "quick" if args.quick else "tiny" if args.tiny else "full"
    rounds = args.rounds or (3 if mode == "full" else 1)
    if mode == "full" and not args.out:
        out_dir, md_path, png_path, json_path = BENCH, BENCH / "RESULTS.md", BENCH / "results.png", BENCH / "results" / "run_all.json"
    else:
        out_dir = Path(args.out) if args.out else BENCH / "results" / mode
        md_path, png_path, json_path = out_dir / "RESULTS.md", out_dir / "results.png", out_dir / "run_all.json"
    official = None
    skipped = None
    if mode == "tiny":
        skipped = "--tiny runs without the official integrations (they need their own venv; `make bench` makes it)"
    elif not args.official_python:
        skipped = "no --official-python given (`make bench` makes .venv-bench-official and passes it)"
    elif not os.access(args.official_python, os.X_OK):
        skipped = f"{args.official_python} not found"
    else:
        official = args.official_python
    if skipped:
        print(f"official integrations skipped: {skipped}", flush=True)

    setup, cases = plan(mode, official is not None)
    if args.only:
        prefixes = tuple(p.strip() for p in args.only.split(","))
        cases = [c for c in cases if c.name.startswith(prefixes) or (c.module == "demo" and "demo" in prefixes)]
        needed = {c.shared for c in cases}
        setup = [c for c in setup if c.key in needed]
    tmp_root = tempfile.mkdtemp(prefix="loom-bench-", dir=args.tmp)
    started = dt.datetime.now(dt.UTC)
    t_start = time.perf_counter()
    meta: dict[str, Any] = {
        "mode": mode, "rounds": rounds, "started": started.strftime("%Y-%m-%d %H:%M"),
        "command": "make bench" if mode == "full" else ("make bench-quick" if mode == "quick" else "python -m bench.run_all --tiny"),
        "machine": machine(), "load_start": os.getloadavg()[0], "load_rounds": [], "official_skipped": skipped,
        "versions": {"product": _product_versions()}, "sizes": sizes(mode),
    }
    runner = Runner(mode, official, tmp_root, sys.stdout)
    runs: list[Run] = []
    try:
        if official:
            r = runner.run(Case("-", "versions", "versions", "official", "bench.official", "versions_case", 0), 0)
            meta["versions"]["official"] = r.extra.get("versions")
        print(f"== set-up ({len(setup)} source tables)", flush=True)
        for c in setup:
            r = runner.run(c, 0, keep=True)
            if r.status != "ok" or not all(b.get("ok") for b in r.read_back):
                raise SystemExit(f"set-up {c.key} failed: {r.error} {r.read_back}")
        for round_ in range(1, rounds + 1):
            print(f"== round {round_}/{rounds} ({len(cases)} cases, load average {os.getloadavg()[0]:.2f})", flush=True)
            meta["load_rounds"].append(os.getloadavg()[0])
            for c in cases:
                runs.append(runner.run(c, round_))
    finally:
        runner.close()
        shutil.rmtree(tmp_root, ignore_errors=True)
    meta["load_end"] = os.getloadavg()[0]
    meta["elapsed_s"] = time.perf_counter() - t_start
    summary = summarize(cases, runs)
    tg = targets(summary, sizes(mode))
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps({"meta": meta, "summary": summary, "targets": tg, "runs": [asdict(r) for r in runs]},
                                    indent=1, default=str))
    write_pages(meta, summary, tg, md_path, png_path)
    print(f"\nwrote {md_path}, {png_path}, {json_path} in {meta['elapsed_s']:.0f} s", flush=True)
    # an official integration failing is a result; anything else failing means the benchmark (or Loom) broke
    broken = [k for k, r in summary.items() if r["status"] in ("error", "mixed") or not r["read_back_ok"] or
              (r["status"] == "failed" and r["case"]["impl"] != "official")]
    if broken:
        print(f"benchmark errors (not integration failures): {broken}", flush=True)
        return 1
    return 0


def _product_versions() -> dict[str, str]:
    from bench.workload import versions

    return {k: v for k, v in versions(*PRODUCT_PACKAGES).items()}


if __name__ == "__main__":
    sys.exit(main())
