"""The public surface of loom_resources: every exported name resolves, and importing the table
model loads neither Dagster nor a backend library."""

from __future__ import annotations

import subprocess
import sys

import loom_resources


def test_every_exported_name_resolves() -> None:
    for name in loom_resources.__all__:
        assert getattr(loom_resources, name) is not None, name
    assert loom_resources.DeltaResource.__name__ == "DeltaResource"
    assert loom_resources.LoomIOManager.__name__ == "LoomIOManager"


def test_importing_the_model_is_cheap() -> None:
    code = (
        "import sys, loom_resources\n"
        "heavy = [m for m in ('dagster', 'deltalake', 'chdb', 'clickhouse_connect') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "from loom_resources import ClickHouseResource\n"
        "assert 'dagster' in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
