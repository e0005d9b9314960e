"""The benchmark runner at tiny sizes, so the benchmark code cannot rot.

Runs ``python -m bench.run_all --tiny`` (the cases of ``make bench`` at 1/1000 size, one round,
each in its own process; the official integrations are left out because they live in a venv of
their own that only ``make bench`` makes, and so is ``make demo``, which ``tests/test_platform.py``
covers and which costs as much as all the other cases together) and checks what the runner read
back from the stores. This file runs the case groups of ``bench_tiny.GROUPS_A``;
tests/test_bench_more.py those of ``GROUPS_B`` (two files, so that make test's workers run the two
halves at once). Nothing here asserts on wall-clock time; the generous timeout only keeps a hung
engine from hanging the suite on a busy 2-core machine (about 20 processes each import Dagster).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from bench_tiny import GROUPS_A, GROUPS_B, all_cases, cases, run_tiny


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], str]:
    return run_tiny(tmp_path_factory.mktemp("bench_tiny"), GROUPS_A)


def test_the_two_shares_cover_every_group_of_the_plan() -> None:
    assert {c.group for c in all_cases()} == GROUPS_A | GROUPS_B
    assert GROUPS_A | GROUPS_B == {"1 Delta eager", "2 Delta streaming", "3 ClickHouse write", "4 ClickHouse to Delta",
                                   "5 30-day range", "6 load time", "8 Delta merge", "9 ClickHouse merge",
                                   "10 file layout"}
    assert not GROUPS_A & GROUPS_B


def check_every_case_ran_and_every_table_reads_back(data: dict[str, Any], stdout: str, groups: set[str]) -> None:
    """Every case of ``groups`` ran once, and every table it names was read back whole by another process."""
    assert "official integrations skipped" in stdout  # said clearly, not silently
    summary = data["summary"]
    wanted = cases(groups)
    assert set(summary) == {c.key for c in wanted}
    assert {c.group for c in wanted} == groups
    for key, row in summary.items():
        case = row["case"]
        assert row["status"] == "ok", (key, row.get("error"))
        assert row["seconds"] is not None and row["rss_mb"] > 0, key
        runs = [r for r in data["runs"] if r["key"] == key]
        assert len(runs) == 1
        for back in runs[0]["read_back"]:
            assert back["ok"], (key, back)
        if case["group"] in ("6 load time",) or case["name"].startswith("dagster_noop"):
            assert runs[0]["read_back"] == []
        elif case["group"] == "8 Delta merge":  # -- merge (issue 27): the target's ids plus the inserted ones
            from bench.cases_merge import n_changes

            (back,) = runs[0]["read_back"]
            n, c = case["rows"], n_changes(case["rows"])
            merged = n + c - c // 2
            # history keeps the closed version of each updated id as a row of its own
            assert (back["count"], back["distinct"]) == (n + c if "history" in case["name"] else merged, merged), key
        elif case["module"] == "demo":
            tables = runs[0]["read_back"][0]["tables"]
            assert tables["delta:raw.orders"] > 0 and tables["delta:raw.orders"] % case["rows"] == 0
            assert any(k.startswith("clickhouse:") and v > 0 for k, v in tables.items())
        else:
            # the table a writing case names was read back by another process with all N rows,
            # N distinct ids and the right sum of ids
            # (the filtered-read case names both tables it read: delta-rs' and Loom's)
            backs = runs[0]["read_back"]
            assert len(backs) == (2 if case["name"] == "files_reads" else 1), key
            n = case["rows"]
            if case["group"] == "9 ClickHouse merge":  # the target's ids plus the inserted ones, once each
                from bench.cases_chmerge import merged_rows

                n = merged_rows(n)
            for back in backs:
                assert (back["count"], back["distinct"], back["sum"]) == (n, n, n * (n - 1) // 2), key


def check_results_page_and_chart(out: Path, data: dict[str, Any]) -> None:
    """RESULTS.md has its table, the machine's load and a tick per case that read its table back; the chart is a PNG."""
    md = (out / "RESULTS.md").read_text()
    assert "| case | path | N | seconds | rows/s | peak RSS MB | read back | runs (s) |" in md
    assert "Load average" in md and "cores" in md and "polars" in md
    assert md.count("✓") >= sum(1 for r in data["summary"].values() if r["case"]["group"] not in ("6 load time",)
                                and not r["case"]["name"].startswith("dagster_noop"))
    png = out / "results.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


@pytest.mark.timeout(900)
def test_every_case_ran_and_every_table_reads_back(tiny_run: tuple[Path, dict[str, Any], str]) -> None:
    _, data, stdout = tiny_run
    check_every_case_ran_and_every_table_reads_back(data, stdout, GROUPS_A)


@pytest.mark.timeout(900)
def test_range_backfill_is_one_run_one_commit(tiny_run: tuple[Path, dict[str, Any], str]) -> None:
    _, data, _ = tiny_run
    rows = {r["case"]["name"]: r for r in data["summary"].values()}
    assert rows["loom_range30"]["extra"]["runs"] == 1
    assert rows["loom_range30"]["extra"]["commits"] == 1
    assert rows["loom_30runs"]["extra"]["runs"] == 30


@pytest.mark.timeout(900)
def test_results_page_and_chart(tiny_run: tuple[Path, dict[str, Any], str]) -> None:
    out, data, _ = tiny_run
    check_results_page_and_chart(out, data)
