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
            assert row["read_back"] == [row["case"]["rows"]], key  # counted in the store by another process
    copy = summary[next(k for k in summary if k.startswith("loom_copy_disk"))]
    assert copy["extra"]["temp_disk_mb"] == 0  # streaming reads no longer spool
    groups = [r["group"] for r in data["ratios"]]
    assert len(groups) == 6
    page = (tmp_path / "overhead.md").read_text()
    assert all(g in page for g in groups)
    assert "Dagster's fixed cost" in proc.stdout
