"""What the Dagster UI shows and launches, read over the webserver's GraphQL API (the UI's own
API): checks of a partitioned table executed without a partition, their status after a range
run, Loom's message as a failed run's error, no internals in the metadata, described external
tables, jobs and schedules.

One ``dagster-webserver`` (no daemon: runs launch directly) serves the sample platform from a
temporary ``LOOM_HOME``; runs are launched as the UI launches them (``launchRun``) and every
answer is checked against the stores or the event log.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from deltalake import DeltaTable

from tests.test_webserver import free_port

ROOT = Path(__file__).resolve().parents[1]
REPO = {"repositoryLocationName": "sample_platform", "repositoryName": "__repository__"}
RANGE = {"dagster/asset_partition_range_start": "2026-11-15", "dagster/asset_partition_range_end": "2026-11-17"}
ROWS_PER_DAY = 50

pytestmark = pytest.mark.timeout(600)


class Web:
    """A running webserver and its GraphQL endpoint."""

    def __init__(self, port: int, home: Path) -> None:
        self.port, self.home = port, home

    def gql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/graphql", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            out: dict[str, Any] = json.loads(resp.read())
        assert "errors" not in out, out
        return out["data"]

    def launch(self, *, assets: list[list[str]], checks: list[tuple[list[str], str]] | None = None,
               tags: dict[str, str] | None = None) -> dict[str, Any]:
        """Launch a run of the implicit asset job as the UI does; the finished run."""
        selector: dict[str, Any] = {**REPO, "jobName": "__ASSET_JOB", "assetSelection": [{"path": p} for p in assets]}
        if checks is not None:
            selector["assetCheckSelection"] = [{"assetKey": {"path": p}, "name": n} for p, n in checks]
        params = {"selector": selector, "runConfigData": {},
                  "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in (tags or {}).items()]}}
        launched = self.gql(LAUNCH, {"params": params})["launchRun"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        run_id = launched["run"]["runId"]
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            run = self.gql(RUN, {"id": run_id})["runOrError"]
            if run["status"] in ("SUCCESS", "FAILURE", "CANCELED"):
                return dict(run)
            time.sleep(1)
        raise AssertionError(f"run {run_id} did not finish in 240 s")


LAUNCH = """mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
  ... on InvalidSubsetError { message } ... on RunConfigValidationInvalid { errors { message } } } }"""

RUN = """query($id: ID!) { runOrError(runId: $id) { ... on Run { runId status
  eventConnection(afterCursor: null) { events { __typename
    ... on MessageEvent { message }
    ... on RunFailureEvent { error { message className } }
    ... on ExecutionStepFailureEvent { stepKey error { message className }
      failureMetadata { metadataEntries { label ... on TextMetadataEntry { text } ... on MarkdownMetadataEntry { mdStr } } } }
  } } } } }"""

CHECKS = """query($path: [String!]!) { assetNodeOrError(assetKey: {path: $path}) { ... on AssetNode {
  metadataEntries { label } kinds
  assetChecksOrError { ... on AssetChecks { checks { name canExecuteIndividually
    partitionStatuses { __typename ... on AssetCheckTimePartitionStatuses { ranges { startKey endKey status } } }
    executionForLatestMaterialization { runId status evaluation { partition
      metadataEntries { label ... on TextMetadataEntry { text } } } } } } } } } }"""

CHECK_EXECS = """query($path: [String!]!, $name: String!) { assetCheckExecutions(assetKey: {path: $path},
  checkName: $name, limit: 5) { runId status evaluation { metadataEntries { label ... on TextMetadataEntry { text } } } } }"""


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Web]:
    home = tmp_path_factory.mktemp("ui_graphql")
    (home / "dagster").mkdir()
    # no daemon in this test: runs launch directly instead of waiting in the queue
    (home / "dagster" / "dagster.yaml").write_text(
        "run_coordinator:\n  module: dagster.core.run_coordinator\n  class: DefaultRunCoordinator\n"
        "telemetry:\n  enabled: false\n")
    env = {**os.environ, "LOOM_HOME": str(home), "DAGSTER_HOME": str(home / "dagster"),
           "LOOM_DEMO_ROWS_PER_DAY": str(ROWS_PER_DAY)}
    env.pop("LOOM_CLICKHOUSE_URL", None)
    env.pop("LOOM_DELTA_ROOT", None)
    port = free_port()
    log = open(home / "webserver.log", "wb")  # noqa: SIM115 - closed in the finally below
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1",
         "-p", str(port)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2)
                break
            except OSError:
                assert proc.poll() is None, (home / "webserver.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "webserver did not start"
                time.sleep(1)
        yield Web(port, home)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def checks_of(web: Web, path: list[str]) -> dict[str, Any]:
    node = web.gql(CHECKS, {"path": path})["assetNodeOrError"]
    return {c["name"]: c for c in node["assetChecksOrError"]["checks"]}


def ui_status(check: dict[str, Any]) -> str:
    """The check's status as the UI's Checks tab and lineage draw it (``getAggregateCheckIconType``
    in Dagster's UI): a partitioned check aggregates its partitions' statuses, so one partition
    without a result of its own is "SKIPPED"; an unpartitioned one shows its latest execution."""
    parts = check["partitionStatuses"]
    if parts is not None:
        statuses = {r["status"] for r in parts.get("ranges", [])}
        for status in ("FAILED", "EXECUTION_FAILED", "IN_PROGRESS", "SKIPPED", "SUCCEEDED"):
            if status in statuses:
                return status
        return "NOT_EVALUATED"
    latest = check["executionForLatestMaterialization"]
    return latest["status"] if latest else "NOT_EVALUATED"


def entries(evaluation: dict[str, Any]) -> dict[str, str | None]:
    return {e["label"]: e.get("text") for e in evaluation["metadataEntries"]}


def test_partitioned_checks_from_the_ui(web: Web) -> None:
    # a range run (what a single-run backfill launches): the checks run after the table
    ranged = web.launch(assets=[["raw", "orders"]], tags=RANGE)
    assert ranged["status"] == "SUCCESS"
    checks = checks_of(web, ["raw", "orders"])
    assert set(checks) >= {"schema_matches_declaration", "unique_order_id", "not_null_order_id"}
    for name, c in checks.items():
        # the Checks tab's status: this run's result, not "Skipped" (no execution for the latest one)
        latest = c["executionForLatestMaterialization"]
        assert latest and latest["runId"] == ranged["runId"] and latest["status"] == "SUCCEEDED", (name, latest)
        assert ui_status(c) == "SUCCEEDED", (name, c["partitionStatuses"])
        assert c["canExecuteIndividually"] == "CAN_EXECUTE", (name, c)
    assert entries(checks["unique_order_id"]["executionForLatestMaterialization"]["evaluation"])["checked"] == (
        "3 partitions, 2026-11-15 to 2026-11-17")

    # "Execute all" on the Checks tab: the checks alone, launched without a partition
    alone = web.launch(assets=[], checks=[(["raw", "orders"], n) for n in checks])
    assert alone["status"] == "SUCCESS", [e for e in alone["eventConnection"]["events"] if "error" in e]
    for name in checks:
        execs = [e for e in web.gql(CHECK_EXECS, {"path": ["raw", "orders"], "name": name})["assetCheckExecutions"]
                 if e["runId"] == alone["runId"]]
        assert execs and execs[0]["status"] == "SUCCEEDED", (name, execs)
    unique = next(e for e in web.gql(CHECK_EXECS, {"path": ["raw", "orders"], "name": "unique_order_id"})[
        "assetCheckExecutions"] if e["runId"] == alone["runId"])
    assert entries(unique["evaluation"])["checked"] == "the whole stored table"
    stored = DeltaTable(str(web.home / "delta" / "raw" / "orders")).to_pyarrow_dataset().count_rows()
    assert stored == 3 * ROWS_PER_DAY  # what the checks looked at: every stored row, nothing written


def test_a_failed_write_shows_looms_message(web: Web) -> None:
    # raw.customers changed by hand outside Dagster: `segment` becomes a number
    first = web.launch(assets=[["raw", "customers"]])
    assert first["status"] == "SUCCESS"
    uri = str(web.home / "delta" / "raw" / "customers")
    changed = pl.read_delta(uri).with_columns(segment=pl.lit(7, pl.Int64))
    changed.write_delta(uri, mode="overwrite", delta_write_options={"schema_mode": "overwrite"})
    target = web.home / "delta" / "staging" / "customers"
    failed = web.launch(assets=[["staging", "customers"]])
    assert failed["status"] == "FAILURE"
    events = failed["eventConnection"]["events"]
    run_failure = next(e for e in events if e["__typename"] == "RunFailureEvent")
    step_failure = next(e for e in events if e["__typename"] == "ExecutionStepFailureEvent")
    for error in (run_failure["error"], step_failure["error"]):  # the run's header, the step's (and asset's) event
        assert error["message"].startswith("dagster._core.definitions.events.Failure: Schema mismatch for table "
                                           "staging.customers; nothing was written"), error
        assert "'segment'" in error["message"] and "DagsterExecutionHandleOutputError" not in error["message"]
    md = {e["label"]: e.get("text") or e.get("mdStr") for e in step_failure["failureMetadata"]["metadataEntries"]}
    assert md["loom/table"] == "staging.customers" and md["loom/error"] == "SchemaMismatchError"
    assert "'segment'" in (md["loom/problems"] or "")
    assert not target.exists()  # nothing was written


def test_no_internals_and_described_sources_jobs_schedules(web: Web) -> None:
    node = web.gql(CHECKS, {"path": ["raw", "orders"]})["assetNodeOrError"]
    labels = [e["label"] for e in node["metadataEntries"]]
    assert sorted(labels) == ["dagster/column_schema", "dagster/table_name", "loom/partition_columns"], labels
    op_tags = web.gql("""{ assetNodeOrError(assetKey: {path: ["raw", "orders"]}) { ... on AssetNode {
        opTags { key } } } }""")["assetNodeOrError"]["opTags"]
    assert op_tags == [], op_tags  # "Compute details" on the asset's page lists them
    for path, kind in ((["feeds", "fx_rates"], "clickhouse"), (["landing", "web_events"], "delta")):
        assert kind in web.gql(CHECKS, {"path": path})["assetNodeOrError"]["kinds"], path
    schedules = web.gql("""query($r: RepositorySelector!) { schedulesOrError(repositorySelector: $r) {
        ... on Schedules { results { name description } } } }""", {"r": REPO})["schedulesOrError"]["results"]
    assert {s["name"] for s in schedules} >= {"loom_observe_external_0", "loom_weekly_maintenance"}
    assert all(s["description"] for s in schedules), schedules
    job = web.gql("""query($s: PipelineSelector!) { pipelineOrError(params: $s) { ... on Pipeline { description } } }""",
                  {"s": {**REPO, "pipelineName": "loom_observe_external"}})["pipelineOrError"]
    assert job["description"] and "feeds.fx_rates" in job["description"]
