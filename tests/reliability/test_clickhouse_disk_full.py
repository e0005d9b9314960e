"""A ClickHouse store on a tiny tmpfs: a write that fills the disk fails with an error naming the
table and what to do, and the table keeps exactly its previous rows."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import mounted_tmpfs


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    with mounted_tmpfs(tmp_path / "tiny", "48m") as mount:
        yield mount


CHILD = textwrap.dedent("""
    import json, os, sys
    import polars as pl
    from loom_resources import ColumnSchema, RunParams, TargetSpec, WriteContext
    from loom_resources.clickhouse import ClickHouseResource
    res = ClickHouseResource(url="chdb://" + sys.argv[1])
    spec = TargetSpec("full.t", "clickhouse", [ColumnSchema("id", "int64", False), ColumnSchema("s", "string", False)],
                      mode="overwrite")
    res.write(pl.DataFrame({"id": range(1000), "s": ["x"] * 1000}), spec, RunParams(),
              write_ctx=WriteContext(run_id="seed", asset_key="full/t"))
    big = pl.DataFrame({"id": pl.int_range(0, 4_000_000, eager=True)}).with_columns(
        (pl.col("id").cast(pl.String) + pl.lit("-" + "y" * 40) + pl.col("id").hash().cast(pl.String)).alias("s"))
    error = None
    try:
        res.write(big, spec, RunParams(), write_ctx=WriteContext(run_id="big", asset_key="full/t"))
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    rows = res.query_rows("SELECT count(), sum(id), any(s) FROM full.t")[0]
    print(json.dumps({"error": error, "rows": [int(rows[0]), int(rows[1]), rows[2]]}), flush=True)
    os._exit(0)
""")


def test_disk_full_names_the_table_and_keeps_it(tiny_disk: Path) -> None:
    done = subprocess.run([sys.executable, "-c", CHILD, str(tiny_disk / "ch")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["error"] is not None
    assert out["error"].startswith("StoreFullError") and "full" in out["error"] and "full.t" in out["error"]
    assert out["rows"] == [1000, sum(range(1000)), "x"]
