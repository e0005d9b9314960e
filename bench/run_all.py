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
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.page import render_saved, summarize, targets, write_pages
from bench.plan import Case, Run, plan, sizes  # noqa: F401  (re-exported: bench.overhead, bench.page, tests)

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
PRODUCT_PACKAGES = ("dagster", "polars", "deltalake", "pyarrow", "clickhouse-connect", "chdb", "loom-dagster")


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
