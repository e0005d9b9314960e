"""The benchmark page: a run's rounds summarized (medians), the targets' verdicts, and
``RESULTS.md`` (with ``results.png`` where matplotlib is installed). :mod:`bench.run_all` runs
the cases; this module only renders what they measured."""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.run_all import Case, Run


def summarize(cases: list[Case], runs: list[Run]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for c in cases:
        rs = [r for r in runs if r.key == c.key]
        ok = [r for r in rs if r.status == "ok" and r.seconds is not None]
        failed = [r for r in rs if r.status != "ok"]
        row: dict[str, Any] = {"case": asdict(c), "rounds": len(rs), "ok_rounds": len(ok),
                               "all_seconds": [round(r.seconds, 3) if r.seconds is not None else None for r in rs],
                               "read_back": [b.get("count") for r in rs for b in r.read_back],
                               "read_back_ok": all(b.get("ok") for r in rs if r.status == "ok" for b in r.read_back),
                               "status": "ok" if ok and not failed else ("failed" if failed and not ok else
                                                                          ("mixed" if ok else "error"))}
        if failed:
            row["error"] = failed[0].error
            row["failed_status"] = failed[0].status
            row["failed_read_back"] = failed[0].read_back
        # -- load (issue 27): the CPU seconds a case reports (the load case's CLI process), per round
        row["all_cpu_seconds"] = [r.extra.get("cpu_seconds") for r in rs]
        use = ok or rs
        row["seconds"] = statistics.median(r.seconds for r in ok if r.seconds is not None) if ok else None
        row["rss_mb"] = statistics.median(r.rss_mb for r in use) if use else None
        row["rows_per_s"] = (c.rows / row["seconds"]) if row["seconds"] and c.rows and c.group != "6 load time" else None
        extra = (ok or rs)[0].extra if (ok or rs) else {}
        row["extra"] = {k: v for k, v in extra.items() if k not in ("traceback", "self_rss_mb")}
        if c.module == "demo" and use and use[0].read_back:
            row["demo_tables"] = use[0].read_back[0].get("tables")
            orders = (row["demo_tables"] or {}).get("delta:raw.orders")
            # the demo's throughput: orders landed (raw.orders, read back) per second of the whole demo
            row["rows_per_s"] = orders / row["seconds"] if orders and row["seconds"] else None
        out[c.key] = row
    return out


def _get(s: dict[str, dict[str, Any]], key: str, field_: str = "seconds") -> float | None:
    row = s.get(key)
    return None if row is None else row.get(field_)


def targets(s: dict[str, dict[str, Any]], z: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, each with the measured value and whether it is met."""
    t: list[dict[str, Any]] = []

    def add(name: str, value: str, met: bool | None, note: str = "") -> None:
        t.append({"target": name, "measured": value, "met": met, "note": note})

    n = z["eager"]
    ours, raw, ddp, noop = (_get(s, f"loom_delta_eager@{n}"), _get(s, f"raw_write_delta@{n}"),
                            _get(s, f"ddp_eager@{n}"), _get(s, "dagster_noop@0"))
    pde = _get(s, f"polars_delta_eager@{n}")
    if ours and ddp:
        add("Delta eager: throughput >= 1.5x dagster-deltalake-polars", f"{ddp / ours:.2f}x", ddp / ours >= 1.5)
    if ours and pde:
        add("Delta eager: throughput vs dagster-polars (no target)", f"{pde / ours:.2f}x", None)
    if ours and raw and noop:
        over = ours - raw
        add("Delta eager: overhead over bare `write_delta` <= Dagster's fixed cost",
            f"{over:.2f} s over vs {noop:.2f} s fixed cost ({over / noop:.2f}x)", over <= noop)
    small, large = z["stream"]
    a, b = _get(s, f"loom_delta_streaming@{small}", "rss_mb"), _get(s, f"loom_delta_streaming@{large}", "rss_mb")
    ra, rb = _get(s, f"raw_sink_delta@{small}", "rss_mb"), _get(s, f"raw_sink_delta@{large}", "rss_mb")
    if a and b:
        add(f"Delta streaming: peak RSS flat, {large:,} / {small:,} rows (no target; ~1.0 is flat)",
            f"{b / a:.2f}x (bare sink_delta {rb / ra:.2f}x)" if ra and rb else f"{b / a:.2f}x", None)
    ot, rt = _get(s, f"loom_delta_streaming@{large}"), _get(s, f"raw_sink_delta@{large}")
    if ot and rt:
        add(f"Delta streaming: throughput vs bare `sink_delta` at {large:,} (no target)", f"{rt / ot:.2f}x", None)
    n = z["ch"]
    ours, raw = _get(s, f"loom_ch_eager@{n}"), _get(s, f"raw_ch_insert@{n}")
    if ours and raw:
        add(f"ClickHouse write: throughput vs bare `insert_arrow` at {n:,} (no target)", f"{raw / ours:.2f}x", None)
    n = z["rowwise"]
    ours, off = _get(s, f"loom_ch_eager@{n}"), _get(s, f"ch_rowwise@{n}")
    if ours and off:
        add("ClickHouse: >= 20x the official row-wise path", f"{off / ours:.1f}x", off / ours >= 20)
    lo, hi = z["copy"][0], z["copy"][-1]
    a, b = _get(s, f"loom_copy@{lo}", "rss_mb"), _get(s, f"loom_copy@{hi}", "rss_mb")
    ra, rb = _get(s, f"raw_copy@{lo}", "rss_mb"), _get(s, f"raw_copy@{hi}", "rss_mb")
    if a and b:
        add(f"Streaming copy: peak RSS at {hi:,} <= 1.25x RSS at {lo:,}",
            f"{b / a:.2f}x ({a:,.0f} -> {b:,.0f} MB; hand-written {ra:,.0f} -> {rb:,.0f} MB)" if ra and rb else f"{b / a:.2f}x",
            b / a <= 1.25)
    for n in z["copy"]:
        o, r = _get(s, f"loom_copy@{n}"), _get(s, f"raw_copy@{n}")
        if o and r:
            add(f"Streaming copy: throughput vs hand-written pipeline at {n:,} (no target)", f"{r / o:.2f}x", None)
    n = z["part"]
    rng, raw, noop = _get(s, f"loom_range30@{n}"), _get(s, f"raw_partitioned@{n}"), _get(s, "dagster_noop@0")
    row = s.get(f"loom_range30@{n}", {})
    ex = row.get("extra", {})
    if rng and raw:
        add("30-day backfill: 1 run and 1 commit", f"{ex.get('runs')} run, {ex.get('commits')} commit",
            ex.get("runs") == 1 and ex.get("commits") == 1)
        add("30-day backfill: <= 1.5x a raw partitioned write", f"{rng / raw:.2f}x ({rng:.2f} s vs {raw:.2f} s)",
            rng / raw <= 1.5, "the Loom time is a whole `dagster.materialize()`, Dagster's fixed cost included")
        if noop:
            add("30-day backfill: same, Dagster's fixed cost taken out (no target)",
                f"{(rng - noop) / raw:.2f}x", None)
    # -- load (issue 27): the median of the rounds' paired ratios (Loom / bare, run back to back)
    for n in z["load"]:
        ratio = load_ratio(s, n)
        lo_, ba = _get(s, f"load_cli_loom@{n}"), _get(s, f"load_cli_bare@{n}")
        cpu = load_ratio(s, n, "all_cpu_seconds")
        if ratio is not None and lo_ and ba:
            add(f"Load: {n:,} declared tables <= 1.2x {n:,} bare assets (`dagster definitions validate`, paired)",
                f"{ratio:.2f}x (medians {lo_:.2f} s vs {ba:.2f} s)" + (f"; CPU time {cpu:.2f}x" if cpu else ""),
                ratio <= 1.2)
    # -- merge (issue 27)
    if "merge" in z:
        n = z["merge"]
        # equal footing: both processes import polars, pyarrow and deltalake before their clock
        footing = ("the Loom time is a whole `dagster.materialize()`; both import polars, pyarrow and "
                          "deltalake before the clock")
        ours, raw = _get(s, f"loom_merge_clustered@{n}"), _get(s, f"raw_merge_clustered@{n}")
        om, rm = _get(s, f"loom_merge_clustered@{n}", "rss_mb"), _get(s, f"raw_merge_clustered@{n}", "rss_mb")
        if ours and raw and om and rm:
            add("Merge, clustered changes: <= 0.5x raw `DeltaTable.merge`'s time", f"{ours / raw:.2f}x ({ours:.2f} s vs "
                f"{raw:.2f} s)", ours / raw <= 0.5, footing)
            add("Merge, clustered changes: peak RSS <= raw's", f"{om / rm:.2f}x ({om:,.0f} vs {rm:,.0f} MB)", om <= rm)
        for kind, label in (("random", "random keys"), ("partitioned", "3 of 30 days, day predicate")):
            ours, raw = _get(s, f"loom_merge_{kind}@{n}"), _get(s, f"raw_merge_{kind}@{n}")
            if ours and raw:
                add(f"Merge, {label}: <= 1.0x raw", f"{ours / raw:.2f}x ({ours:.2f} s vs {raw:.2f} s)", ours / raw <= 1.0,
                    footing)
        ours, raw = _get(s, f"loom_history_scd2@{n}"), _get(s, f"raw_merge_clustered@{n}")
        if ours and raw:
            add("History (SCD2), clustered changes, vs raw merge of the same changes (no target)",
                f"{ours / raw:.2f}x ({ours:.2f} s vs {raw:.2f} s)", None)
    # -- ClickHouse merge (issue 27)
    if "chmerge" in z:
        n = z["chmerge"]
        for kind, label in (("clustered", "clustered changes"), ("random", "random keys"),
                            ("partitioned", "3 of 30 days, partitioned by day")):
            ours, raw = _get(s, f"loom_chmerge_{kind}@{n}"), _get(s, f"raw_chmerge_{kind}@{n}")
            if ours and raw:
                add(f"ClickHouse merge, {label}: <= 1.0x raw `INSERT ... SELECT` + `REPLACE PARTITION`",
                    f"{ours / raw:.2f}x ({ours:.2f} s vs {raw:.2f} s)", ours / raw <= 1.0,
                    "the Loom time is a whole `dagster.materialize()` (its ledger, moved-key check, run record "
                    "and version included); both import polars, pyarrow, clickhouse-connect and chDB before the clock")
            ro, rr = (s.get(f"{impl}_chmerge_{kind}@{n}", {}).get("extra", {}).get("read_s") for impl in ("loom", "raw"))
            if ro and rr:
                add(f"ClickHouse merge, {label}: a reader's count + sum afterwards, Loom (`FINAL`) vs raw (no target)",
                    f"{ro / rr:.2f}x ({ro:.2f} s vs {rr:.2f} s)", None)
    # -- files (issue 27)
    n = z.get("files")
    raw, ours, reads = (s.get(f"files_raw@{n}", {}).get("extra", {}), s.get(f"files_loom@{n}", {}).get("extra", {}),
                        s.get(f"files_reads@{n}", {}).get("extra", {}))
    if raw.get("bytes") and ours.get("bytes"):
        add("Files: bytes <= 1.05x delta-rs' writer for the same rows", f"{ours['bytes'] / raw['bytes']:.2f}x "
            f"({ours['bytes'] / 1e6:.1f} MB in {ours['files']} files of {ours['row_groups_per_file']} row groups, "
            f"{ours['codec']}; delta-rs {raw['bytes'] / 1e6:.1f} MB in {raw['files']} of {raw['row_groups_per_file']}, "
            f"{raw['codec']})", ours["bytes"] / raw["bytes"] <= 1.05)
    for reader, what in (("polars_filtered", "polars `scan_delta().filter().collect()`"),
                         ("deltalake_filtered", "deltalake `to_pyarrow_table(filters=...)`")):
        if reads.get(f"{reader}_ratio") is not None:
            r = reads[f"{reader}_ratio"]
            add(f"Files: filtered read (one day, 1% of ids) by {what} <= 1.0x the delta-rs-written copy",
                f"{r:.2f}x ({reads[f'{reader}_loom_s'] * 1000:.0f} ms vs {reads[f'{reader}_raw_s'] * 1000:.0f} ms)", r <= 1.0)
    if reads.get("polars_whole_ratio") is not None:
        add("Files: whole-table aggregate by polars vs the delta-rs-written copy (no target)",
            f"{reads['polars_whole_ratio']:.2f}x", None)
    n = z.get("files_copy")
    craw, cours = s.get(f"files_copy_raw@{n}", {}).get("extra", {}), s.get(f"files_copy_loom@{n}", {}).get("extra", {})
    if craw.get("bytes_per_row") and cours.get("bytes_per_row"):
        add("Files: ClickHouse -> Delta copy, bytes per row <= delta-rs' writer on the same batches",
            f"{cours['bytes_per_row']:.2f} vs {craw['bytes_per_row']:.2f} ({cours['bytes_per_row'] / craw['bytes_per_row']:.2f}x)",
            cours["bytes_per_row"] <= craw["bytes_per_row"])
    return t


def load_ratio(s: dict[str, dict[str, Any]], n: int, field: str = "all_seconds") -> float | None:
    """Median over the rounds of Loom's load time over the bare assets' in the same round
    (``field="all_cpu_seconds"``: of the CLI processes' CPU time)."""
    lo_, ba = s.get(f"load_cli_loom@{n}"), s.get(f"load_cli_bare@{n}")
    if not lo_ or not ba:
        return None
    pairs = [a / b for a, b in zip(lo_.get(field) or [], ba.get(field) or [], strict=False) if a and b]
    return statistics.median(pairs) if pairs else None


# -- output ----------------------------------------------------------------------------------------


def _fmt_s(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f}"


def _fmt_rate(v: float | None) -> str:
    if v is None:
        return "–"
    return f"{v / 1e6:.2f}M" if v >= 1e5 else f"{v:,.0f}"


def _n(n: int) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1000 and n % 1000 == 0:
        return f"{n // 1000}k"
    return f"{n:,}"


def render_md(meta: dict[str, Any], s: dict[str, dict[str, Any]], tg: list[dict[str, Any]]) -> str:
    L: list[str] = []
    mode = meta["mode"]
    L.append("# Benchmark results")
    L.append("")
    L.append(f"Generated by `{meta['command']}` on {meta['started']} UTC in {meta['elapsed_s'] / 60:.1f} min "
             f"({meta['rounds']} interleaved round(s), median reported; sizes: {mode}).")
    m = meta["machine"]
    L.append(f"Machine: {m['cores']} cores ({m['cpu'] or 'unknown CPU'}), {m['memory_gib']} GiB, {m['platform']}, "
             f"Python {m['python']}. Load average (1 min) at start {meta['load_start']:.2f}, "
             f"per round {', '.join(f'{x:.2f}' for x in meta['load_rounds'])}, at end {meta['load_end']:.2f}.")
    L.append("")
    pv = meta["versions"]["product"]
    L.append("Versions, Loom's venv: " + ", ".join(f"{k} {v}" for k, v in pv.items()) + ".")
    ov = meta["versions"].get("official")
    if ov:
        L.append("Versions, official integrations' own venv (`.venv-bench-official`): "
                 + ", ".join(f"{k} {v}" for k, v in ov.items()) + ".")
    else:
        L.append(f"Official integrations: not run ({meta.get('official_skipped')}).")
    L.append("")
    L.append("How to read this: each row is one process per round; **seconds** is the write only (Dagster rows: "
             "the whole `dagster.materialize()` call, the first in its process as in a Dagster run worker; code location "
             "built and input frames made before the clock); **peak RSS** is the whole process's peak as the kernel reports it to the runner; "
             "**read back** is the row count a separate process read from the store (count, distinct ids and sum of ids "
             "checked; ✓ = all rounds matched). Workload: `id` Int64, `day` Date (30 days), `amount` Float64, `sku` String.")
    L.append("")
    L.append("| case | path | N | seconds | rows/s | peak RSS MB | read back | runs (s) |")
    L.append("|---|---|---:|---:|---:|---:|---|---|")
    for row in s.values():
        c = row["case"]
        if c["group"] == "6 load time":
            continue
        back = row["read_back"]
        if c["module"] == "demo":
            tables = row.get("demo_tables") or {}
            shown = f"{len(tables)} tables, {sum(tables.values()):,} rows" if tables else "–"
        elif not back:
            shown = "–"
        else:
            shown = f"{back[0]:,}" if back[0] is not None else "missing"
        if c["module"] != "demo" and back:
            shown += " ✓" if row["read_back_ok"] and row["status"] == "ok" else ""
        elif c["module"] == "demo" and row["read_back_ok"] and row["status"] == "ok":
            shown += " ✓"
        if row["status"] in ("failed", "error"):
            secs = f"**{'fails' if row['status'] == 'failed' else 'error'}**"
            rate = "–"
        else:
            secs, rate = _fmt_s(row["seconds"]), _fmt_rate(row["rows_per_s"])
        runs = " / ".join("x" if v is None else f"{v:.2f}" for v in row["all_seconds"])
        n = "–" if c["name"].startswith("dagster_noop") else _n(c["rows"])
        if c["module"] == "demo":
            n = f"{_n(c['rows'])}/day"
        L.append(f"| {c['group']} | {c['label']} | {n} | {secs} | {rate} | {row['rss_mb']:,.0f} | {shown} | {runs} |")
    loads = [row for row in s.values() if row["case"]["group"] == "6 load time"]
    if loads:
        L.append("")
        # -- load (issue 27)
        L.append("Code-location load: `dagster definitions validate -f location.py` of a module of N tables, the whole "
                 "CLI process timed from outside (interpreter start, imports, building the location, Dagster resolving "
                 "its jobs and snapshotting it); bare and Loom run back to back in each round, and the ratio is the "
                 "median of the rounds' paired ratios (`bench/cases_load.py`):")
        L.append("")
        L.append("| tables | bare `@asset`s s | **Loom** declared tables s | Loom / bare (paired) | CPU time Loom / bare "
                 "(paired) | runs bare / Loom (s) |")
        L.append("|---:|---:|---:|---:|---:|---|")
        for n in sorted({r["case"]["rows"] for r in loads}):
            b, lo = s.get(f"load_cli_bare@{n}", {}), s.get(f"load_cli_loom@{n}", {})
            ratio, cpu = load_ratio(s, n), load_ratio(s, n, "all_cpu_seconds")
            if b.get("seconds") and lo.get("seconds") and ratio is not None:
                runs = " / ".join(" ".join(f"{v:.2f}" for v in r["all_seconds"] if v is not None) for r in (b, lo))
                L.append(f"| {n:,} | {b['seconds']:.2f} | {lo['seconds']:.2f} | {ratio:.2f}x | "
                         f"{'–' if cpu is None else f'{cpu:.2f}x'} | {runs} |")
    L.append("")
    L.append("## Targets (ratios measured in this run)")
    L.append("")
    if mode != "full":
        L.append(f"(`{mode}` sizes: the targets are stated for the full sizes; these ratios only show the machinery works.)")
        L.append("")
    L.append("| target | measured | met |")
    L.append("|---|---|---|")
    for t in tg:
        met = "–" if t["met"] is None else ("**yes**" if t["met"] else "**no**")
        note = f" ({t['note']})" if t["note"] else ""
        L.append(f"| {t['target']}{note} | {t['measured']} | {met} |")
    failures = [(k, r) for k, r in s.items() if r["status"] in ("failed", "error", "mixed")]
    if failures:
        L.append("")
        L.append("## Failures (recorded as results)")
        L.append("")
        for _, r in failures:
            fb = r.get("failed_read_back") or []
            after = ", ".join((f"{b.get('count'):,} rows" + (", ids and sum as written before" if b.get("ok") else ""))
                              if b.get("count") is not None else "no table" for b in fb)
            err = " ".join((r.get("error") or "").split("Preview of invalid data")[0].split())
            why = next((v for k, v in KNOWN_FAILURES.items() if k in err), "")
            L.append(f"- **{r['case']['label']}** (N={_n(r['case']['rows'])}): {r['status']} — `{err[:500]}`"
                     + (f" {why}" if why else "") + (f" Table afterwards (read back): {after}." if after else ""))
    L.append("")
    L.append("## Notes")
    L.append("")
    L.extend(f"- {n}" for n in NOTES)
    L.append("")
    return "\n".join(L)


KNOWN_FAILURES = {
    "rows failed validation check": "Why: dagster-deltalake builds the overwrite predicate of a single-run range from "
    "the range's first partition only, so delta-rs rejects the rows of the other 29 days (`replaceWhere` check) and "
    "the run fails; the existing table is left as it was.",
    "does not support persisting an output associated with multiple partitions": "Why: dagster-polars' `UPathIOManager` "
    "base rejects single-run range backfills (dagster issue 14332); nothing is written.",
}

NOTES = [
    "dagster-clickhouse-polars speaks only ClickHouse's native TCP protocol (clickhouse-driver), which the embedded "
    "engine (chdb) does not serve. Only its transport is shimmed (`bench/official.py`, `NativeClientShim`): the same "
    "statements are sent to chdb through clickhouse-connect; its type mapping, `ORDER BY tuple()` DDL, `TRUNCATE` and "
    "`INSERT ... VALUES` of `DataFrame.to_dicts()` rows run unchanged, the dict rows going through clickhouse-connect's "
    "row-wise insert (Python row-to-column conversion, as clickhouse-driver does).",
    "The official integrations run in their own venv, `.venv-bench-official`, made by `make bench`; the product's "
    "`.venv` never sees them.",
    "The hand-written ClickHouse -> Delta pipeline uses clickhouse-connect's `query_arrow_stream`, which on the chdb "
    "backend materializes the whole Arrow result first (Arrow is not one of its stream-safe formats), so its memory "
    "grows with N; Loom's streaming read pulls record batches from the engine itself.",
    "The ClickHouse -> Delta source tables are made once per size by SQL (`INSERT ... SELECT FROM numbers(N)`) before "
    "the rounds; each round's copy writes a fresh Delta table.",
    "The 30 single-partition runs are 30 `dagster.materialize()` calls in one process; their time is the sum.",
    "`make demo` rows: the demo is run as `python -m sample_platform.demo` with its own `LOOM_HOME`; seconds and peak "
    "RSS are the whole process (start-up, imports and the demo's own read-back report included); every Delta and "
    "ClickHouse table it wrote is then counted by the verifier.",
    "2 cores are shared by the writer, Dagster and the storage engines; other jobs on the machine show up in the "
    "load average above. Compare ratios of the same run rather than absolute times across runs.",
    # -- ClickHouse merge (issue 27)
    "ClickHouse merge: Loom's `merge` table is a ReplacingMergeTree: the write moves the 1M changes in and leaves "
    "replaced rows to ClickHouse's background merges and readers' `FINAL`; the raw merge rebuilds the affected "
    "partitions (`INSERT ... SELECT` + `REPLACE PARTITION`). Both tables are read back as readers see them (`FINAL` "
    "for Loom's); what a reader's count and sum costs right after the merge is a target row of its own (no target). "
    "See docs/performance.md, 'ClickHouse merge at scale'.",
]


def write_pages(meta: dict[str, Any], summary: dict[str, dict[str, Any]], tg: list[dict[str, Any]], md_path: Path,
                png_path: Path) -> None:
    """RESULTS.md and, where matplotlib is installed (the dev extra), results.png."""
    md = render_md(meta, summary, tg)
    try:
        from bench.chart import draw

        draw(summary, png_path, title=f"Loom on Dagster vs alternatives ({meta['mode']} sizes, median of {meta['rounds']})")
        md = md.replace("# Benchmark results\n", f"# Benchmark results\n\n![throughput and peak RSS per case]({png_path.name})\n", 1)
    except ImportError as exc:
        print(f"chart skipped: {exc} (pip install -e '.[dev]' brings matplotlib)", flush=True)
    md_path.write_text(md)


def render_saved(json_path: Path, out_dir: Path | None) -> int:
    """Re-render the pages of a finished run from its run_all.json (no case is run again)."""
    from bench.run_all import BENCH, Case, Run

    data = json.loads(json_path.read_text())
    meta = data["meta"]
    cases = [Case(**row["case"]) for row in data["summary"].values()]
    runs = [Run(**r) for r in data["runs"]]
    summary = summarize(cases, runs)
    tg = targets(summary, meta["sizes"])
    if out_dir is None:
        out_dir = BENCH if meta["mode"] == "full" else json_path.parent
    write_pages(meta, summary, tg, out_dir / "RESULTS.md", out_dir / "results.png")
    json_path.write_text(json.dumps({**data, "summary": summary, "targets": tg}, indent=1, default=str))
    print(f"re-rendered {out_dir / 'RESULTS.md'} and {out_dir / 'results.png'}")
    return 0
