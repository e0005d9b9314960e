"""The asset-level overhead benchmark (``bench.overhead``) at tiny sizes, so it cannot rot.

Runs ``python -m bench.overhead --tiny`` (1/1000 sizes, 20 tables, one round, no official
integration: it lives in a venv only ``make bench-overhead`` makes) and checks that every case ran,
every table was read back by the runner's separate process with the rows written, and the page
shows a line per issue-12 case. Nothing asserts on wall-clock time.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(900)
def test_overhead_benchmark_runs_every_case_and_reads_every_table_back(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "bench.overhead", "--tiny", "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=880)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    data = json.loads((tmp_path / "overhead.json").read_text())
    summary = data["summary"]
    names = {k.split("@")[0] for k in summary}
    assert {"dagster_noop", "raw_write_delta", "loom_delta_eager", "loom_delta_eager_norecords", "raw_sink_delta",
            "loom_delta_streaming", "raw_replace30", "dagster_noop_range30", "loom_range30", "raw_ch_insert",
            "loom_ch_eager", "validate_cli_bare", "validate_cli_loom", "load_bare", "load_loom",
            "loom_copy_disk"} <= names
    for key, row in summary.items():
        assert row["status"] == "ok", (key, row.get("error"))
        assert row["read_back_ok"], (key, row["read_back"])
        if row["case"]["rows"] and row["case"]["group"] != "load 200 tables":
            # counted in the store by another process, once per run (the paired groups run twice)
            assert row["read_back"] == [row["case"]["rows"]] * row["rounds"], key
    copy = summary[next(k for k in summary if k.startswith("loom_copy_disk"))]
    assert copy["extra"]["temp_disk_mb"] == 0  # streaming reads no longer spool
    runs = {k.split("@")[0]: row["rounds"] for k, row in summary.items()}
    assert runs["loom_ch_eager"] == runs["raw_ch_insert"] == 2 and runs["validate_cli_loom"] == 3
    assert runs["loom_delta_eager"] == 1
    paired = {r["group"]: r.get("paired") for r in data["ratios"]}
    assert len(paired["ClickHouse write"]) == 2 and len(paired["load 200 tables"]) == 3
    groups = [r["group"] for r in data["ratios"]]
    assert len(groups) == 6
    page = (tmp_path / "overhead.md").read_text()
    assert all(g in page for g in groups)
    assert "Dagster's fixed cost" in proc.stdout


def test_paired_groups_alternate_loom_and_its_reference_within_a_round() -> None:
    from bench.overhead import GROUPS, paired_ratios, plan, run_round
    from bench.run_all import Run

    _, cases = plan(1000, 10, official=False)
    order: list[str] = []

    class Recorder:  # stands in for the process runner: this test is about the order only
        def run(self, case, round_):  # type: ignore[no-untyped-def]
            order.append(case.name)
            return Run(case.key, round_, "ok", 2.0 if case.name.startswith(("loom", "validate_cli_loom")) else 1.0,
                       0.0, 0.0, 0)

    runs = run_round(Recorder(), cases, 1, 2)  # type: ignore[arg-type]
    ch = [n for n in order if n in ("raw_ch_insert", "loom_ch_eager")]
    assert ch == ["raw_ch_insert", "loom_ch_eager"] * 2
    assert order.count("validate_cli_loom") == 3 and "loom_copy_disk" not in order  # copy: last round only
    assert paired_ratios(cases, runs, GROUPS[3]) == [2.0, 2.0]
    order.clear()
    run_round(Recorder(), cases, 2, 2)  # type: ignore[arg-type]
    assert order.count("loom_copy_disk") == 1
