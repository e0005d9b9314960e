"""One billion rows: a ClickHouse table streamed into a Delta table through one materialization of
a declared table, on the embedded engines (``make bench-billion``; not part of ``make bench``).

``python -m bench.billion [--rows 1000000000] [--tmp DIR] [--keep]``

1. Set-up (timed separately): ``src.events`` with N rows made by SQL in the embedded ClickHouse.
2. The measured step, in its own process: ``dagster.materialize`` of the declared Delta table
   ``copy.events`` whose source is ``Source("src.events", streaming=True)`` (``bench.cases.loom_copy``).
   While it runs, the runner samples once a second the process's RSS, the bytes under its temporary
   directory (``TMPDIR``: where a spool would go; the default direct streaming writes none) and under the Delta table.
   Peak RSS is the kernel's figure for the whole process (``os.wait4``).
3. Read-back in a separate process: the Delta table's count, sum, min and max of ``id``,
   checked against the ClickHouse source's.

Writes ``bench/results/billion.md`` and ``bench/results/billion.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.run_all import ROOT, Verifier, _clean_env, _product_versions, machine

OUT_MD = ROOT / "bench" / "results" / "billion.md"
OUT_JSON = ROOT / "bench" / "results" / "billion.json"
BYTES_PER_ROW_NEEDED = 30  # source MergeTree + Delta Parquet, with margin (streaming reads no longer spool)


def tree_bytes(path: str) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass  # a spool file removed while we looked
    return total


def rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class Sampler(threading.Thread):
    """Samples the child's RSS, its temporary directory and the Delta table once a second."""

    def __init__(self, pid: int, tmp: str, delta: str, fs: str) -> None:
        super().__init__(daemon=True)
        self.pid, self.tmp, self.delta, self.fs = pid, tmp, delta, fs
        self.samples: list[dict[str, float]] = []
        self.stop = threading.Event()
        self.t0 = time.perf_counter()
        st = os.statvfs(fs)
        self.used0 = (st.f_blocks - st.f_bfree) * st.f_frsize

    def run(self) -> None:
        while not self.stop.is_set():
            st = os.statvfs(self.fs)
            self.samples.append({
                "t": round(time.perf_counter() - self.t0, 1), "rss_mb": round(rss_mb(self.pid), 1),
                "tmp_bytes": tree_bytes(self.tmp), "delta_bytes": tree_bytes(self.delta),
                "fs_used_delta_bytes": (st.f_blocks - st.f_bfree) * st.f_frsize - self.used0,
            })
            self.stop.wait(1.0)


def run_child(case: str, rows: int, wd: str, env: dict[str, str], sample: tuple[str, str] | None) -> dict[str, Any]:
    out = os.path.join(wd, f"{case}.json")
    log = open(os.path.join(wd, f"{case}.log"), "w")
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "bench.cases", case, str(rows), wd, out], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    sampler = None
    if sample:
        sampler = Sampler(proc.pid, sample[0], sample[1], wd)
        sampler.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if sampler:
        sampler.stop.set()
        sampler.join()
    log.close()
    result = json.loads(Path(out).read_text()) if os.path.exists(out) else {
        "status": "error", "error": Path(wd, f"{case}.log").read_text()[-3000:]}
    result.update(wall_s=wall, rss_mb=usage.ru_maxrss / 1024, exit_code=os.waitstatus_to_exitcode(status),
                  cpu_s=usage.ru_utime + usage.ru_stime)  # both cores' work: a busy machine stretches wall time
    if sampler:
        result["samples"] = sampler.samples
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--rows", type=int, default=1_000_000_000)
    ap.add_argument("--tmp", help="working directory root (default: the system temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the tables afterwards")
    ap.add_argument("--out", help="write billion.md/json here instead of bench/results/")
    args = ap.parse_args(argv)
    n = args.rows
    wd = tempfile.mkdtemp(prefix="loom-billion-", dir=args.tmp)
    free = shutil.disk_usage(wd).free
    need = n * BYTES_PER_ROW_NEEDED
    print(f"working in {wd}: {free / 2**30:.0f} GiB free, about {need / 2**30:.0f} GiB needed for {n:,} rows", flush=True)
    if free < need:
        print("not enough free disk; use --tmp on a larger disk or fewer --rows", file=sys.stderr)
        return 2
    home = os.path.join(wd, "loom")
    tmp = os.path.join(wd, "tmp")
    for d in (home, tmp):
        os.makedirs(d)
    env = _clean_env()
    env.update(LOOM_HOME=home, DAGSTER_HOME=os.path.join(wd, "dagster"), TMPDIR=tmp,
               LOOM_CLICKHOUSE_URL=f"chdb://{os.path.join(wd, 'clickhouse')}")
    meta = {"started": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M"), "rows": n, "machine": machine(),
            "versions": _product_versions(), "load_start": os.getloadavg()[0], "disk_free_start_gib": round(free / 2**30, 1)}
    try:
        print(f"== set-up: {n:,} rows into ClickHouse src.events", flush=True)
        setup = run_child("ch_source", n, wd, env, None)
        if setup.get("status") != "ok":
            raise SystemExit(f"set-up failed: {setup.get('error')}")
        source_bytes = tree_bytes(os.path.join(wd, "clickhouse"))
        print(f"   {setup['seconds']:.0f} s (+ {setup.get('merge_seconds', 0):.0f} s merging its parts), "
              f"{source_bytes / 2**30:.1f} GiB on disk", flush=True)
        delta_uri = os.path.join(home, "delta", "copy", "events")
        print("== copy: one materialization of copy.events (Delta) from src.events (ClickHouse, streaming)", flush=True)
        copy = run_child("loom_copy", n, wd, env, (tmp, delta_uri))
        samples = copy.pop("samples", [])
        print(f"   {copy.get('status')} in {copy.get('seconds') or 0:.0f} s, peak RSS {copy['rss_mb']:,.0f} MB"
              + (f": {copy.get('error')}" if copy.get("error") else ""), flush=True)
        print("== read-back (separate process)", flush=True)
        verifier = Verifier()
        try:
            back = verifier.ask({"kind": "delta", "uri": delta_uri, "ids": True})
            src = verifier.ask({"kind": "clickhouse", "url": env["LOOM_CLICKHOUSE_URL"], "table": "src.events", "ids": True})
        finally:
            verifier.close()
        log_bytes = tree_bytes(os.path.join(delta_uri, "_delta_log")) if os.path.isdir(delta_uri) else 0
        delta_bytes = tree_bytes(delta_uri) if os.path.isdir(delta_uri) else 0
    finally:
        if not args.keep:
            shutil.rmtree(wd, ignore_errors=True)
    want = {"count": n, "sum": n * (n - 1) // 2, "min": 0, "max": n - 1}
    delta_ok = all(back.get(k) == v for k, v in want.items())
    source_ok = all(src.get(k) == v for k, v in want.items())
    ok = delta_ok and source_ok
    peak_tmp = max((s["tmp_bytes"] for s in samples), default=0)
    peak_fs = max((s["fs_used_delta_bytes"] for s in samples), default=0)
    peak_sampled_rss = max((s["rss_mb"] for s in samples), default=0)
    result = {"meta": meta, "setup": setup, "copy": copy, "read_back": back, "source": src, "ok": ok,
              "peak_tmp_bytes": peak_tmp, "peak_fs_growth_bytes": peak_fs, "source_bytes": source_bytes,
              "delta_bytes": delta_bytes, "delta_log_bytes": log_bytes, "samples": samples[::5]}
    meta["load_end"] = os.getloadavg()[0]
    secs = copy.get("seconds") or 0
    lines = [
        f"# One billion rows: ClickHouse -> Delta through one materialization ({meta['started']} UTC)",
        "",
        f"Machine: {meta['machine']['cores']} cores, {meta['machine']['memory_gib']} GiB; load average "
        f"{meta['load_start']:.2f} at start, {meta['load_end']:.2f} at end. "
        + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()) + ".",
        "",
        "| what | value |",
        "|---|---|",
        f"| rows | {n:,} |",
        f"| status | {copy.get('status')}{': ' + str(copy.get('error'))[:300] if copy.get('error') else ''} |",
        f"| wall time of the materialization | {secs:,.0f} s ({secs / 60:.1f} min; target < 180 s: "
        f"{'met' if 0 < secs < 180 else 'missed'}) |",
        f"| throughput | {n / secs / 1e6:.2f}M rows/s |" if secs else "| throughput | – |",
        f"| CPU time of the process (user + system, all threads; start-up included) | {copy.get('cpu_s', 0):,.0f} s |",
        f"| peak RSS of the process (kernel, whole process) | {copy['rss_mb']:,.0f} MB (target < 1 GB: "
        f"{'met' if copy['rss_mb'] < 1000 else 'missed'}) |",
        f"| peak temporary disk (anything under TMPDIR; a spool would go there) | {peak_tmp / 2**30:.1f} GiB ({peak_tmp / n:.1f} bytes/row) |",
        f"| peak growth of the whole file system during the run (spool + Delta; other jobs on the disk included) | {peak_fs / 2**30:.1f} GiB |",
        f"| final Delta table | {delta_bytes / 2**30:.1f} GiB, version {back.get('version')}, {back.get('files')} files, "
        f"log {log_bytes / 1024:,.0f} KiB |",
        f"| ClickHouse source on disk | {source_bytes / 2**30:.1f} GiB (set-up {setup.get('seconds', 0):.0f} s) |",
        f"| read back from Delta (separate process) | count {back.get('count')}, sum(id) {back.get('sum')}, "
        f"min {back.get('min')}, max {back.get('max')} |",
        f"| ClickHouse source (read back the same way) | count {src.get('count')}, sum(id) {src.get('sum')}"
        + (f" — check failed: {str(src.get('error'))[:200]}" if src.get("error") else "") + " |",
        f"| read-back matches ids 0..N-1 | Delta: {'yes' if delta_ok else 'NO'}; source: {'yes' if source_ok else 'NO'} |",
        "",
        f"RSS and disk over time (sampled every 5 s; peak RSS sampled {peak_sampled_rss:,.0f} MB):",
        "",
        "| t (s) | RSS MB | TMPDIR GiB | Delta GiB |",
        "|---:|---:|---:|---:|",
    ]
    lines += [f"| {s['t']:.0f} | {s['rss_mb']:,.0f} | {s['tmp_bytes'] / 2**30:.2f} | {s['delta_bytes'] / 2**30:.2f} |"
              for s in samples[::max(1, len(samples) // 40)]]
    text = "\n".join(lines) + "\n"
    out_md, out_json = (Path(args.out) / "billion.md", Path(args.out) / "billion.json") if args.out else (OUT_MD, OUT_JSON)
    out_md.parent.mkdir(parents=True, exist_ok=True)
    out_md.write_text(text)
    out_json.write_text(json.dumps(result, indent=1, default=str))
    print(text)
    return 0 if ok and copy.get("status") == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
