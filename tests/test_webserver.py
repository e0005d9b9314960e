"""The code location served by the Dagster webserver: assets and schedules listed over GraphQL
and a run launched through it (as the UI does), written to the store and read back."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from deltalake import DeltaTable

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def gql(port: int, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        out: dict[str, Any] = json.loads(resp.read())
    assert "errors" not in out, out
    return out["data"]


LAUNCH = """
mutation($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on InvalidSubsetError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}"""


SCHEDULES = """
{ schedulesOrError(repositorySelector: {repositoryLocationName: "sample_platform", repositoryName: "__repository__"}) {
    ... on Schedules { results { name cronSchedule pipelineName description } }
    ... on PythonError { message } } }"""


COLUMN_LINEAGE = """
{ assetNodes(assetKeys: [{path: ["staging", "orders"]}]) { metadataEntries { label
    ... on TableColumnLineageMetadataEntry { lineage { columnName columnDeps { assetKey { path } columnName } } } } } }"""


def test_webserver_lists_assets_and_launches_a_run(tmp_path: Path) -> None:
    home = tmp_path
    (home / "dagster").mkdir()
    # no daemon in a test: runs launch directly instead of waiting in the queue
    (home / "dagster" / "dagster.yaml").write_text(
        "run_coordinator:\n  module: dagster.core.run_coordinator\n  class: DefaultRunCoordinator\n"
        "telemetry:\n  enabled: false\n"
    )
    env = {**os.environ, "LOOM_HOME": str(home), "DAGSTER_HOME": str(home / "dagster")}
    env.pop("LOOM_CLICKHOUSE_URL", None)
    port = free_port()
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2)
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
                assert time.monotonic() < deadline, "webserver did not start"
                time.sleep(1)
        nodes = gql(port, "{ assetNodes { assetKey { path } } }")["assetNodes"]
        keys = {"/".join(n["assetKey"]["path"]) for n in nodes}
        assert {"raw/products", "staging/orders", "marts/customer_lifetime_value"} <= keys
        # the UI's column lineage reads dagster/column_lineage; a SQL table's is there before any run
        lineage = gql(port, COLUMN_LINEAGE)["assetNodes"][0]["metadataEntries"]
        entry = next(e for e in lineage if e["label"] == "dagster/column_lineage")
        deps = {c["columnName"]: sorted(("/".join(d["assetKey"]["path"]), d["columnName"]) for d in c["columnDeps"])
                for c in entry["lineage"]}
        assert deps["amount"] == [("raw/orders", "quantity"), ("raw/products", "unit_price")]
        assert deps["category"] == [("raw/products", "category")]
        schedules = gql(port, SCHEDULES)["schedulesOrError"]["results"]
        daily = next(s for s in schedules if s["name"] == "loom_daily_schedule")
        assert daily["cronSchedule"] == "0 0 * * *" and daily["pipelineName"] == "__ASSET_JOB"
        assert "raw/orders" in daily["description"] and "raw/products" not in daily["description"]
        params = {
            "selector": {
                "repositoryLocationName": "sample_platform", "repositoryName": "__repository__",
                "jobName": "__ASSET_JOB", "assetSelection": [{"path": ["raw", "products"]}],
            },
            "runConfigData": {},
        }
        launched = gql(port, LAUNCH, {"params": params})["launchRun"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        run_id = launched["run"]["runId"]
        status = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            status = gql(port, "query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }", {"id": run_id})[
                "runOrError"]["status"]
            if status in ("SUCCESS", "FAILURE", "CANCELED"):
                break
            time.sleep(1)
        assert status == "SUCCESS"
        table = DeltaTable(str(home / "delta" / "raw" / "products"))
        assert table.to_pyarrow_dataset().count_rows() == 500
    finally:
        proc.terminate()
        proc.wait(timeout=30)
