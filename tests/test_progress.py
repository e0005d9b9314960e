"""The demo's progress line: a long streaming write reports rows as it goes, on the console."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from loom_assets import Table, build_definitions
from loom_assets.progress import write_progress
from loom_resources import ColumnSchema as C
from loom_resources.clickhouse import ClickHouseResource
from loom_resources.delta import DeltaResource


def test_a_long_streaming_write_shows_progress(tmp_path: Path, chdb_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    def body(context: object) -> pl.LazyFrame:  # 9M rows, produced lazily: written batch by batch
        a = pl.LazyFrame({"a": pl.int_range(0, 3000, eager=True)})
        return a.join(a.rename({"a": "b"}), how="cross").select((pl.col("a") * 3000 + pl.col("b")).alias("id"))

    (tmp_path / "delta").mkdir()
    t = Table("p.big", "delta", [C("id", "int64", False)], mode="overwrite", transform=body)
    defs = build_definitions([t], backends={"delta": DeltaResource(root=str(tmp_path / "delta")),
                                            "clickhouse": ClickHouseResource(url=chdb_url)})
    with write_progress():
        assert defs.resolve_implicit_global_asset_job_def().execute_in_process(
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}}).success
    out = capsys.readouterr().out  # captured: not a terminal
    lines = [ln for ln in out.splitlines() if ln.strip().startswith("writing p.big")]
    assert lines, "no progress line"
    # plain, complete lines: no carriage return, no bar frozen half-drawn in a log
    assert "\r" not in out and not any("[" in ln or "#" in ln for ln in lines), lines[:3]
    rows = [int(ln.split(":")[1].split("rows")[0].replace(",", "")) for ln in lines]
    assert rows == sorted(rows) and 0 < rows[-1] <= 9_000_000
