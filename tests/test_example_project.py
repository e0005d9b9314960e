"""The sample platform is a ``dg`` project: ``dg check yaml``, ``dg check defs``, ``dg list defs``
and ``dg dev`` (what ``make ui`` runs) work on it as on a user's own project."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_webserver import gql
from ui_server import poll, serving

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "sample_platform"
DG = str(Path(sys.executable).parent / "dg")

pytestmark = pytest.mark.timeout(300)


def dg_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "LOOM_CLICKHOUSE_URL"}
    env.update(LOOM_HOME=str(tmp_path), DAGSTER_HOME=str(tmp_path / "dagster"), PYTHONWARNINGS="ignore")
    (tmp_path / "dagster").mkdir(exist_ok=True)
    return env


def dg(args: list[str], env: dict[str, str]) -> str:
    out = subprocess.run([DG, *args], cwd=EXAMPLE, env=env, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    return out.stdout + out.stderr


def test_dg_checks_and_lists_the_sample_platform(tmp_path: Path) -> None:
    env = dg_env(tmp_path)
    assert "All definitions loaded successfully" in dg(["check", "defs"], env)
    text = dg(["list", "defs", "--json"], env)
    listed = json.loads(text[text.index("{"):text.rindex("}") + 1])
    assets = {a["asset_key"] for a in listed["assets"]}
    assert {"raw/orders", "staging/orders", "marts/customer_lifetime_value", "feeds/fx_rates"} <= assets
    assert any(c["key"].startswith("raw/orders:") for c in listed["asset_checks"])
    assert {s["name"] for s in listed["schedules"]} >= {"loom_daily_schedule"}


def test_dg_dev_serves_the_sample_platform(tmp_path: Path) -> None:
    with serving([DG, "dev"], EXAMPLE, dg_env(tmp_path)) as (proc, port):
        nodes = poll(proc, lambda: gql(port, "{ assetNodes { assetKey { path } } }")["assetNodes"] or None,
                     "dg dev to serve the sample platform")
        keys = {"/".join(n["assetKey"]["path"]) for n in nodes}
        assert {"raw/orders", "staging/orders", "exports/category_revenue"} <= keys
        locations = gql(port, "{ workspaceOrError { ... on Workspace { locationEntries { name } } } }")
        assert [e["name"] for e in locations["workspaceOrError"]["locationEntries"]] == ["sample_platform"]
