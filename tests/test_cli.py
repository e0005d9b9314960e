"""The code location through the ``dagster`` CLI, in subprocesses with their own LOOM_HOME
(so they never share the pytest process's embedded ClickHouse path)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import polars as pl
from deltalake import DeltaTable

ROOT = Path(__file__).resolve().parents[1]
DAGSTER = str(Path(sys.executable).parent / "dagster")


def run(args: list[str], home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    e = {**os.environ, "LOOM_HOME": str(home), "DAGSTER_HOME": str(home / "dagster"), **env}
    e.pop("LOOM_CLICKHOUSE_URL", None)
    e.pop("LOOM_DELTA_ROOT", None)
    (home / "dagster").mkdir(parents=True, exist_ok=True)
    return subprocess.run([DAGSTER, *args], cwd=ROOT, env=e, capture_output=True, text=True, timeout=240)


def test_asset_list_and_validate(tmp_path: Path) -> None:
    listed = run(["asset", "list", "-m", "sample_platform.definitions"], tmp_path)
    assert listed.returncode == 0, listed.stderr
    keys = set(listed.stdout.split())
    assert {"raw/orders", "staging/orders", "marts/daily_category_revenue", "exports/category_revenue"} <= keys
    valid = run(["definitions", "validate", "-w", "workspace.yaml"], tmp_path)
    assert valid.returncode == 0, valid.stdout + valid.stderr
    # loading the code location opens no store
    assert not (tmp_path / "clickhouse").exists() and not (tmp_path / "delta").exists()


def test_partition_range_backfill_is_one_run_one_commit_and_rerun_identical(tmp_path: Path) -> None:
    args = ["asset", "materialize", "-m", "sample_platform.definitions", "--select", "raw/orders",
            "--partition-range", "2026-11-02...2026-11-04"]
    first = run(args, tmp_path, LOOM_DEMO_ROWS_PER_DAY="300")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    uri = str(tmp_path / "delta" / "raw" / "orders")
    dt1 = DeltaTable(uri)
    df1 = pl.from_arrow(dt1.to_pyarrow_table()).sort("order_id")
    assert isinstance(df1, pl.DataFrame)
    assert df1.height == 900
    assert sorted(str(d) for d in df1["order_date"].unique()) == ["2026-11-02", "2026-11-03", "2026-11-04"]
    # commits that wrote data (the first one also created the table: WRITE or CREATE TABLE by Parquet writer)
    writes = [h for h in dt1.history() if h.get("operation") in ("WRITE", "CREATE TABLE")]
    assert len(writes) == 1, writes  # the whole range is one commit
    second = run(args, tmp_path, LOOM_DEMO_ROWS_PER_DAY="300")
    assert second.returncode == 0, second.stderr[-3000:]
    df2 = pl.from_arrow(DeltaTable(uri).to_pyarrow_table()).sort("order_id")
    assert isinstance(df2, pl.DataFrame)
    assert df2.equals(df1)
    # a neighbouring range leaves the first one's partitions as they were
    third = run(["asset", "materialize", "-m", "sample_platform.definitions", "--select", "raw/orders",
                 "--partition-range", "2026-11-05...2026-11-05"], tmp_path, LOOM_DEMO_ROWS_PER_DAY="300")
    assert third.returncode == 0, third.stderr[-3000:]
    df3 = pl.from_arrow(DeltaTable(uri).to_pyarrow_table())
    assert isinstance(df3, pl.DataFrame)
    assert df3.height == 1200
    assert df3.filter(pl.col("order_date") != pl.date(2026, 11, 5)).sort("order_id").equals(df1)


def test_fresh_instance_gets_its_config_and_everything_runs_over_a_range(tmp_path: Path) -> None:
    listed = run(["asset", "list", "-m", "sample_platform.definitions"], tmp_path)
    assert listed.returncode == 0, listed.stderr
    cfg = (tmp_path / "dagster" / "dagster.yaml").read_text()  # written on first load, when missing
    assert "max_concurrent_runs: 1" in cfg and "default_limit: 1" in cfg
    # the external tables are landed by their own systems first (the demo plays them)
    land = subprocess.run(
        [sys.executable, "-c", "import datetime as d; from sample_platform.external import land_external; "
         "land_external(d.date(2026, 11, 15), d.date(2026, 11, 18))"],
        cwd=ROOT, env={**os.environ, "LOOM_HOME": str(tmp_path)}, capture_output=True, text=True, timeout=120)
    assert land.returncode == 0, land.stderr[-2000:]
    # every asset, partitioned or not, over a partition range: one run
    everything = run(["asset", "materialize", "-m", "sample_platform.definitions", "--select", "*",
                      "--partition-range", "2026-11-15...2026-11-17"], tmp_path, LOOM_DEMO_ROWS_PER_DAY="20",
                     PYTHONWARNINGS="ignore::FutureWarning")
    out = everything.stdout + everything.stderr
    assert everything.returncode == 0, out[-3000:]
    assert out.count("RUN_SUCCESS") == 1
    for noise in ("Warning", "No dagster instance configuration", "Telemetry"):
        assert noise not in out, noise
    orders = pl.from_arrow(DeltaTable(str(tmp_path / "delta" / "raw" / "orders")).to_pyarrow_table())
    assert isinstance(orders, pl.DataFrame)
    assert sorted(str(d) for d in orders["order_date"].unique()) == ["2026-11-15", "2026-11-16", "2026-11-17"]
    exports = pl.from_arrow(DeltaTable(str(tmp_path / "delta" / "exports" / "category_revenue")).to_pyarrow_table())
    assert isinstance(exports, pl.DataFrame) and exports.height > 0


QUIET = '{"loggers": {"console": {"config": {"log_level": "WARNING"}}}}'


def test_the_quiet_cli_form_of_the_readme(tmp_path: Path) -> None:
    """The README's quiet form: the console logger at WARNING prints no event stream (Dagster's
    default is its whole DEBUG stream, one line per event), and the run still writes."""
    from loom_assets.settings import INSTANCE_YAML

    assert f"--config-json '{QUIET}'" in (ROOT / "README.md").read_text()
    (tmp_path / "dagster").mkdir()
    (tmp_path / "dagster" / "dagster.yaml").write_text(INSTANCE_YAML)  # as the README's set-up line writes it
    quiet = run(["asset", "materialize", "-m", "sample_platform.definitions", "--select", "raw/products", "--config-json", QUIET],
                tmp_path, PYTHONWARNINGS="ignore")
    out = quiet.stdout + quiet.stderr
    assert quiet.returncode == 0, out[-3000:]
    assert " - DEBUG - " not in out and " - INFO - " not in out and len(out.splitlines()) <= 3, out[-3000:]
    assert DeltaTable(str(tmp_path / "delta" / "raw" / "products")).to_pyarrow_dataset().count_rows() == 500
