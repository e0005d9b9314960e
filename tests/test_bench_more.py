"""The benchmark runner at tiny sizes, second half: the case groups of ``bench_tiny.GROUPS_B``
(load time, merges, file layout), with the checks of tests/test_bench.py (which runs the others)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from bench_tiny import GROUPS_B, run_tiny
from test_bench import check_every_case_ran_and_every_table_reads_back, check_results_page_and_chart


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], str]:
    return run_tiny(tmp_path_factory.mktemp("bench_tiny_more"), GROUPS_B)


@pytest.mark.timeout(900)
def test_every_case_ran_and_every_table_reads_back(tiny_run: tuple[Path, dict[str, Any], str]) -> None:
    _, data, stdout = tiny_run
    check_every_case_ran_and_every_table_reads_back(data, stdout, GROUPS_B)


@pytest.mark.timeout(900)
def test_load_time_counts_the_validated_locations_assets(tiny_run: tuple[Path, dict[str, Any], str]) -> None:
    _, data, _ = tiny_run
    loads = {r["case"]["name"]: r["extra"]["assets"] for r in data["summary"].values() if r["case"]["group"] == "6 load time"}
    assert loads == {"load_cli_bare": 20, "load_cli_loom": 20}  # the validated locations' assets, counted afterwards


@pytest.mark.timeout(900)
def test_results_page_and_chart(tiny_run: tuple[Path, dict[str, Any], str]) -> None:
    out, data, _ = tiny_run
    check_results_page_and_chart(out, data)


@pytest.mark.timeout(900)
def test_file_layout_cases_report_what_is_on_disk(tiny_run: tuple[Path, dict[str, Any], str]) -> None:
    _, data, _ = tiny_run
    rows = {r["case"]["name"]: r["extra"] for r in data["summary"].values() if r["case"]["group"] == "10 file layout"}
    for name in ("files_raw", "files_loom", "files_copy_raw", "files_copy_loom"):
        assert rows[name]["bytes"] > 0 and rows[name]["files"] >= 1 and rows[name]["orphans"] == 0, name
    assert rows["files_loom"]["codec"] == "ZSTD" and rows["files_raw"]["codec"] == "SNAPPY"
    reads = rows["files_reads"]
    assert reads["rows_selected"] > 0
    assert {"polars_filtered_ratio", "deltalake_filtered_ratio", "polars_whole_ratio"} <= set(reads)
    targets = {t["target"] for t in data["targets"]}
    assert any(t.startswith("Files: bytes") for t in targets)
