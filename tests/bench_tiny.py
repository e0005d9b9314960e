"""The benchmark runner at tiny sizes (``python -m bench.run_all --tiny``) for a share of its case
groups: tests/test_bench.py and tests/test_bench_more.py each run one share, so that make test's
workers run the two halves at once instead of one worker running all cases in a row."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

# the two shares of make bench's case groups (their union is checked against the plan in test_bench.py)
GROUPS_A = {"1 Delta eager", "2 Delta streaming", "3 ClickHouse write", "4 ClickHouse to Delta", "5 30-day range"}
GROUPS_B = {"6 load time", "8 Delta merge", "9 ClickHouse merge", "10 file layout"}


def all_cases() -> list[Any]:
    """make bench's cases at tiny size, without ``make demo`` (tests/test_platform.py covers it)."""
    from bench.run_all import plan

    return [c for c in plan("tiny", official=False)[1] if c.module != "demo"]


def cases(groups: set[str]) -> list[Any]:
    """The cases of ``groups``."""
    return [c for c in all_cases() if c.group in groups]


def run_tiny(out: Path, groups: set[str]) -> tuple[Path, dict[str, Any], str]:
    """Run the cases of ``groups`` once each, in processes of their own; the output directory,
    run_all.json's data and the runner's stdout."""
    only = ",".join(sorted({c.name for c in cases(groups)}))
    proc = subprocess.run([sys.executable, "-m", "bench.run_all", "--tiny", "--only", only, "--out", str(out), "--tmp", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=880)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return out, json.loads((out / "run_all.json").read_text()), proc.stdout
