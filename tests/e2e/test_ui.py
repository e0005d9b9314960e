"""The Dagster UI in a real browser (Debian's chromium driven by Playwright).

``dagster dev`` (webserver + daemon) runs on a free port in a temporary ``LOOM_HOME`` and
``DAGSTER_HOME`` (started by :func:`start_ui`, the one place that knows how). The test opens the
lineage graph, materializes ``raw/products`` from its asset page, launches a 3-day backfill of
``raw/orders`` from the partition dialog, executes ``raw/products``'s and ``raw/orders``'s checks
on their own from their Checks tabs (the partitioned table's without a partition), sees
``staging/orders`` launched by the automation sensor for those days, reads Loom's message on the
page of a run that failed on a schema mismatch, observes ``feeds/fx_rates`` and sees its columns,
and finds no ``loom/binding`` entry in a table's metadata. Every step is verified through GraphQL
(and the stores) too. ``LOOM_E2E_SCREENSHOT=1`` also saves the screens to ``docs/`` (``lineage.png``
and ``ui-*.png``). When no browser can be installed, the test is skipped with the reason.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
BIN = Path(sys.executable).parent
LOCATION = "sample_platform"
BACKFILL_RANGE = "[2026-11-15...2026-11-17]"
BACKFILL_DAYS = ["2026-11-15", "2026-11-16", "2026-11-17"]
ROWS_PER_DAY = 200

pytestmark = pytest.mark.timeout(600)


# ---------------------------------------------------------------------------------------------
# browser and server


def ensure_chromium() -> str | None:
    """Install Debian's chromium when missing; the reason it is unavailable, or None."""
    if os.path.exists(CHROMIUM):
        return None
    if shutil.which("apt-get") is None:
        return "chromium is not installed and apt-get is not available"
    if os.geteuid() != 0:
        return "chromium is not installed and installing it needs root (apt-get install -y chromium)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
            if out.returncode != 0:
                return f"{' '.join(cmd)} failed: {out.stderr.strip()[-500:]}"
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"installing chromium failed: {e}"
    return None if os.path.exists(CHROMIUM) else f"apt-get installed chromium but {CHROMIUM} is missing"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _default_signals() -> None:
    # `dagster dev` started from a non-interactive shell inherits SIGINT/SIGTERM ignored
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@dataclass
class Server:
    port: int
    home: Path
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def gql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        req = urllib.request.Request(f"{self.url}/graphql", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            out: dict[str, Any] = json.loads(resp.read())
        assert "errors" not in out, f"GraphQL errors: {out['errors']}"
        return out["data"]

    def log_tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""


def start_ui(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    """Start the UI with its daemon on ``port``, its output in ``log``: ``dg dev`` in the example
    project's directory, as ``make ui`` does."""
    with open(log, "wb") as out:
        return subprocess.Popen(
            [str(BIN / "dg"), "dev", "-h", "127.0.0.1", "-p", str(port)],
            cwd=ROOT / "examples" / "sample_platform", env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            preexec_fn=_default_signals, start_new_session=True,
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("e2e_home")
    env = {**os.environ, "LOOM_HOME": str(home), "DAGSTER_HOME": str(home / "dagster"),
           "LOOM_DEMO_ROWS_PER_DAY": str(ROWS_PER_DAY)}
    env.pop("LOOM_CLICKHOUSE_URL", None)
    env.pop("LOOM_DELTA_ROOT", None)
    py = str(BIN / "python")
    # the project's instance (dagster.yaml with the run queue and pool limits), then the external
    # tables the platform reads, before the server: the embedded ClickHouse path is one process's
    subprocess.run([py, "-m", "loom_assets.settings"], cwd=ROOT, env=env, check=True, capture_output=True, timeout=120)
    land = ("import datetime as d; from sample_platform.external import land_external; "
            "land_external(d.date(2026, 11, 1), d.date(2026, 11, 20))")
    subprocess.run([py, "-c", land], cwd=ROOT, env=env, check=True, capture_output=True, timeout=300)

    port = free_port()
    log = home / "dagster_dev.log"
    proc = start_ui(env, port, log)
    srv = Server(port, home, log)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(f"{srv.url}/server_info", timeout=5)
                break
            except OSError:
                assert proc.poll() is None, f"dagster dev exited ({proc.returncode}):\n{srv.log_tail()}"
                assert time.monotonic() < deadline, f"dagster dev did not answer in 180 s:\n{srv.log_tail()}"
                time.sleep(1)
        _wait(lambda: _location_loaded(srv), 180, "the code location to load", srv)
        srv.gql("mutation { setNuxSeen }")  # no community pop-up over the pages
        _stop_automation(srv)
        yield srv
    finally:
        _stop(proc)
        assert proc.poll() is not None, "dagster dev is still running"


def _location_loaded(srv: Server) -> bool:
    data = srv.gql("{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus "
                   "locationOrLoadError { __typename } } } } }")
    entries = data["workspaceOrError"]["locationEntries"]
    for e in entries:
        if e["name"] == LOCATION and e["locationOrLoadError"] and e["locationOrLoadError"]["__typename"] == "PythonError":
            raise AssertionError(f"code location failed to load:\n{srv.log_tail()}")
    return any(e["name"] == LOCATION and e["loadStatus"] == "LOADED"
               and e["locationOrLoadError"]["__typename"] == "RepositoryLocation" for e in entries)


SENSOR = {"repositoryLocationName": LOCATION, "repositoryName": "__repository__", "sensorName": "loom_automation"}


def _start_automation(srv: Server) -> None:
    """Turn the automation sensor on (as its toggle in the UI does)."""
    out = srv.gql("mutation($s: SensorSelector!) { startSensor(sensorSelector: $s) { __typename "
                  "... on PythonError { message } } }", {"s": SENSOR})["startSensor"]
    assert out["__typename"] == "Sensor", out


def _stop_automation(srv: Server) -> None:
    """Stop the automation sensor so that only the test's runs use the one-run queue."""
    data = srv.gql("""query($s: SensorSelector!) { sensorOrError(sensorSelector: $s) {
        ... on Sensor { jobOriginId sensorState { selectorId } } } }""", {"s": SENSOR})
    sensor = data["sensorOrError"]
    if sensor and sensor.get("jobOriginId"):
        srv.gql("mutation($o: String, $s: String) { stopSensor(jobOriginId: $o, jobSelectorId: $s) { __typename } }",
                {"o": sensor["jobOriginId"], "s": sensor["sensorState"]["selectorId"]})


def _scroll_to(locator: Any, attempts: int = 5) -> None:
    """Scroll ``locator`` into view; the UI re-renders a page as its queries return, which can
    detach the element between finding and scrolling it (seen under load), so find it again."""
    from playwright.sync_api import Error as PlaywrightError

    for attempt in range(attempts):
        try:
            locator.scroll_into_view_if_needed(timeout=30_000)
            return
        except PlaywrightError:
            if attempt == attempts - 1:
                raise
            time.sleep(1)


def _wait(pred: Callable[[], Any], timeout: float, what: str, srv: Server | None = None) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})"
                         + (f"\n{srv.log_tail()}" if srv else ""))


# ---------------------------------------------------------------------------------------------
# GraphQL views

RUNS = """{ runsOrError { ... on Runs { results { runId status jobName
  assetSelection { path } tags { key value } } } } }"""


def runs(srv: Server) -> list[dict[str, Any]]:
    return list(srv.gql(RUNS)["runsOrError"]["results"])


def wait_run(srv: Server, pred: Callable[[dict[str, Any]], bool], what: str, timeout: float = 240,
             expect: str = "SUCCESS") -> dict[str, Any]:
    """The run matching ``pred`` once it has finished; fails if it did not end ``expect``."""
    def done() -> dict[str, Any] | None:
        for r in runs(srv):
            if pred(r) and r["status"] in ("SUCCESS", "FAILURE", "CANCELED"):
                return r
        return None

    run = _wait(done, timeout, what, srv)
    assert run["status"] == expect, f"{what}: run {run['runId']} ended {run['status']}\n{srv.log_tail()}"
    return run


def tags(run: dict[str, Any]) -> dict[str, str]:
    return {t["key"]: t["value"] for t in run["tags"]}


MATS = """query($path: [String!]!) { assetOrError(assetKey: {path: $path}) { ... on Asset {
  assetMaterializations(limit: 50) { runId partition metadataEntries { label
    ... on IntMetadataEntry { intValue } } } } } }"""


def materializations(srv: Server, path: list[str]) -> list[dict[str, Any]]:
    asset = srv.gql(MATS, {"path": path})["assetOrError"]
    return list(asset.get("assetMaterializations") or [])


def row_count(mat: dict[str, Any]) -> int | None:
    for e in mat["metadataEntries"]:
        if e["label"] in ("dagster/row_count", "dagster/partition_row_count"):
            return e.get("intValue")
    return None


CHECKS = """query($path: [String!]!) { assetNodeOrError(assetKey: {path: $path}) { ... on AssetNode {
  assetChecksOrError { ... on AssetChecks { checks { name } } } } } }"""

CHECK_EXECS = """query($path: [String!]!, $name: String!) {
  assetCheckExecutions(assetKey: {path: $path}, checkName: $name, limit: 5) {
    runId status evaluation { success } } }"""


def check_names(srv: Server, path: list[str]) -> list[str]:
    node = srv.gql(CHECKS, {"path": path})["assetNodeOrError"]
    return [c["name"] for c in node["assetChecksOrError"]["checks"]]


def check_execs(srv: Server, path: list[str], name: str) -> list[dict[str, Any]]:
    return list(srv.gql(CHECK_EXECS, {"path": path, "name": name})["assetCheckExecutions"])


LAUNCH = """mutation($p: ExecutionParams!) { launchRun(executionParams: $p) { __typename
  ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }"""


def launch(srv: Server, path: list[str]) -> str:
    """Launch a run materializing one asset through GraphQL (set-up steps the UI is not tested on)."""
    selector = {"repositoryLocationName": LOCATION, "repositoryName": "__repository__", "jobName": "__ASSET_JOB",
                "assetSelection": [{"path": path}]}
    out = srv.gql(LAUNCH, {"p": {"selector": selector, "runConfigData": {}}})["launchRun"]
    assert out["__typename"] == "LaunchRunSuccess", out
    return str(out["run"]["runId"])


RUN_ERRORS = """query($id: ID!) { runOrError(runId: $id) { ... on Run { eventConnection(afterCursor: null) {
  events { __typename ... on RunFailureEvent { error { message } } } } } } }"""


def run_failure_message(srv: Server, run_id: str) -> str:
    events = srv.gql(RUN_ERRORS, {"id": run_id})["runOrError"]["eventConnection"]["events"]
    return str(next(e for e in events if e["__typename"] == "RunFailureEvent")["error"]["message"])


CHANGE_BY_HAND = """
import polars as pl, sys
uri = sys.argv[1]
df = pl.read_delta(uri).with_columns(segment=pl.lit(7, pl.Int64))
df.write_delta(uri, mode="overwrite", delta_write_options={"schema_mode": "overwrite"})
print("changed", flush=True)
"""


def change_by_hand(uri: Path) -> None:
    """Retype ``segment`` of a Delta table as someone outside Dagster would (in a subprocess: polars
    and deltalake in one process may abort at exit, the known upstream hazard; the marker says it
    got that far)."""
    out = subprocess.run([str(BIN / "python"), "-c", CHANGE_BY_HAND, str(uri)], capture_output=True, text=True,
                         timeout=120)
    assert "changed" in out.stdout and out.returncode in (0, 134), out.stderr[-2000:]


def shot(page: Any, tmp_path: Path, name: str) -> None:
    """Screenshot of a fixed screen; with ``LOOM_E2E_SCREENSHOT=1`` also ``docs/<name>.png``."""
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path))
    if os.environ.get("LOOM_E2E_SCREENSHOT"):
        (ROOT / "docs").mkdir(exist_ok=True)
        shutil.copy(path, ROOT / "docs" / f"{name}.png")


def paths(run: dict[str, Any]) -> list[list[str]]:
    return [a["path"] for a in run["assetSelection"] or []]


# ---------------------------------------------------------------------------------------------
# the test


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    reason = ensure_chromium()
    if reason:
        pytest.skip(f"no browser for the UI test: {reason}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as e:
        pytest.skip(f"playwright is not installed: {e}")
    with sync_playwright() as p:
        try:
            b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"],
                                  headless=True)
        except Exception as e:  # a chromium that cannot start is an environment problem, not the product's
            pytest.skip(f"chromium did not start: {e}")
        yield b
        b.close()


def _click_retry(page: Any, locator: Any, what: str, attempts: int = 3, timeout: float = 30_000) -> None:
    """Click ``locator``, reloading the page between attempts (the UI loads data lazily)."""
    for i in range(attempts):
        try:
            locator.click(timeout=timeout)
            return
        except Exception:
            if i == attempts - 1:
                page.screenshot(path=str(Path(os.environ.get("TMPDIR", "/tmp")) / "loom_e2e_failure.png"))
                raise AssertionError(f"could not click {what} on {page.url}") from None
            page.reload()


def _reload_until_visible(page: Any, locator: Any, what: str, attempts: int = 4, timeout: float = 20_000) -> None:
    """Reload until ``locator`` shows. The UI keeps each asset's definition in IndexedDB and, when that
    read resolves after the fresh fetch (a loaded machine), renders the stale copy until the next load;
    the fresh fetch has been written to the cache by then, so a further reload shows it."""
    from playwright.sync_api import expect
    for i in range(attempts):
        page.reload()
        try:
            expect(locator).to_be_visible(timeout=timeout)
            if i:
                print(f"{what}: shown after {i + 1} reloads")
            return
        except AssertionError:
            if i == attempts - 1:
                page.screenshot(path=str(Path(os.environ.get("TMPDIR", "/tmp")) / "loom_e2e_failure.png"))
                raise AssertionError(f"{what} not shown on {page.url} after {attempts} reloads") from None


def test_ui_lineage_materialize_backfill_checks(server: Server, browser: Any, tmp_path: Path) -> None:
    started = time.monotonic()
    page = browser.new_page(viewport={"width": 1800, "height": 1000})
    page.set_default_timeout(30_000)
    from playwright.sync_api import expect

    # 1. the lineage graph: every group of the platform is drawn
    page.goto(f"{server.url}/asset-groups")
    for group in ("raw", "staging", "warehouse", "marts", "exports"):
        expect(page.get_by_text(group, exact=True).first).to_be_visible(timeout=60_000)
    page.screenshot(path=str(tmp_path / "lineage_global.png"))
    keys = {"/".join(n["assetKey"]["path"]) for n in server.gql("{ assetNodes { assetKey { path } } }")["assetNodes"]}
    assert {"raw/orders", "raw/products", "staging/orders", "exports/category_revenue"} <= keys, keys

    # 2. a table's page: Materialize raw/products (unpartitioned) and see the run succeed
    page.goto(f"{server.url}/assets/raw/products")
    expect(page.get_by_text("products", exact=True).first).to_be_visible(timeout=60_000)
    _click_retry(page, page.locator("button", has_text=re.compile(r"^Materialize$")).first, "Materialize")
    run = wait_run(server, lambda r: r["jobName"] == "__ASSET_JOB" and (r["assetSelection"] or [])
                   == [{"path": ["raw", "products"]}], "the raw/products run")
    mats = [m for m in materializations(server, ["raw", "products"]) if m["runId"] == run["runId"]]
    assert len(mats) == 1 and (row_count(mats[0]) or 0) > 0, mats
    page.reload()
    expect(page.get_by_text(re.compile(r"^Materialized")).first.or_(
        page.get_by_text("Latest materialization").first)).to_be_visible(timeout=60_000)
    customers_run = launch(server, ["raw", "customers"])  # for step 7; runs while the browser goes on

    # 3. a 3-day backfill of raw/orders from the partition dialog: one run of three partitions
    page.goto(f"{server.url}/assets/raw/orders")
    _click_retry(page, page.locator("button", has_text=re.compile(r"^Materialize")).first, "Materialize…")
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_text("Partition selection")).to_be_visible(timeout=60_000)
    box = dialog.locator("input[type=text]").first
    box.fill(BACKFILL_RANGE)
    box.press("Enter")
    expect(dialog.get_by_text("3 partitions", exact=True)).to_be_visible(timeout=30_000)
    dialog.get_by_role("button", name=re.compile(r"^Launch")).click()
    expect(dialog).to_be_hidden(timeout=60_000)
    backfills = _wait(lambda: server.gql("{ partitionBackfillsOrError { ... on PartitionBackfills { results {"
                                         " id partitionNames } } } }")["partitionBackfillsOrError"]["results"],
                      60, "the backfill to be recorded", server)
    assert len(backfills) == 1 and sorted(backfills[0]["partitionNames"]) == BACKFILL_DAYS, backfills
    bf_id = backfills[0]["id"]
    run = wait_run(server, lambda r: tags(r).get("dagster/backfill") == bf_id, "the backfill run")
    bf_runs = [r for r in runs(server) if tags(r).get("dagster/backfill") == bf_id]
    assert len(bf_runs) == 1, f"a single-run backfill should make one run: {bf_runs}"
    assert (tags(run)["dagster/asset_partition_range_start"], tags(run)["dagster/asset_partition_range_end"]) == (
        BACKFILL_DAYS[0], BACKFILL_DAYS[-1])
    mats = [m for m in materializations(server, ["raw", "orders"]) if m["runId"] == run["runId"]]
    assert sorted(m["partition"] for m in mats) == BACKFILL_DAYS, mats
    assert [row_count(m) for m in mats] == [ROWS_PER_DAY] * 3, [(m["partition"], row_count(m)) for m in mats]
    stats = server.gql("""{ assetNodeOrError(assetKey: {path: ["raw", "orders"]}) { ... on AssetNode {
        partitionStats { numMaterialized } } } }""")["assetNodeOrError"]["partitionStats"]
    assert stats["numMaterialized"] == 3, stats

    # 4. the checks alone: raw/products's Checks tab, "Execute all"; every check passes
    names = check_names(server, ["raw", "products"])
    assert "unique_product_id" in names, names
    before = {n: {e["runId"] for e in check_execs(server, ["raw", "products"], n)} for n in names}
    page.goto(f"{server.url}/assets/raw/products?view=checks")
    _click_retry(page, page.get_by_role("button", name="Execute all"), "Execute all")
    run = wait_run(server, lambda r: not r["assetSelection"] and r["runId"] not in set().union(*before.values())
                   and r["jobName"] == "__ASSET_JOB" and tags(r).get("dagster/backfill") is None
                   and r["status"] in ("SUCCESS", "FAILURE", "CANCELED"), "the checks run")
    for n in names:
        execs = [e for e in check_execs(server, ["raw", "products"], n) if e["runId"] == run["runId"]]
        assert execs and execs[0]["status"] == "SUCCEEDED", f"check {n}: {execs}"
    assert [m for m in materializations(server, ["raw", "products"]) if m["runId"] == run["runId"]] == [], \
        "executing the checks alone materialized the table"
    page.reload()
    expect(page.get_by_text("Passed").first).to_be_visible(timeout=60_000)

    # 5. raw/orders' Checks tab after the range run: every check shows its result, none "Skipped"
    page.goto(f"{server.url}/assets/raw/orders?view=checks")
    expect(page.get_by_text("unique_order_id").first).to_be_visible(timeout=60_000)
    expect(page.get_by_text("Passed").or_(page.get_by_text("Succeeded")).first).to_be_visible(timeout=60_000)
    assert page.get_by_text("Skipped", exact=True).count() == 0, "a check of the range run shows Skipped"
    shot(page, tmp_path, "ui-checks-after-range")

    # 6. "Execute all" on the partitioned table's checks: launched without a partition, over the stored table
    orders_checks = check_names(server, ["raw", "orders"])
    seen = {r["runId"] for r in runs(server)}
    _click_retry(page, page.get_by_role("button", name="Execute all"), "Execute all (raw/orders)")
    run = wait_run(server, lambda r: r["runId"] not in seen and not r["assetSelection"]
                   and r["jobName"] == "__ASSET_JOB" and "dagster/partition" not in tags(r), "raw/orders' checks run")
    for n in orders_checks:
        execs = [e for e in check_execs(server, ["raw", "orders"], n) if e["runId"] == run["runId"]]
        assert execs and execs[0]["status"] == "SUCCEEDED", f"check {n}: {execs}"
    page.reload()
    expect(page.get_by_text("unique_order_id").first).to_be_visible(timeout=60_000)
    shot(page, tmp_path, "ui-checks-execute-all")

    # 7. automation: with the daemon running, the sensor launches staging/orders for the landed days
    _start_automation(server)
    try:
        auto = wait_run(server, lambda r: ["staging", "orders"] in paths(r), "staging/orders launched by the sensor",
                        timeout=300)
    finally:
        _stop_automation(server)
    assert tags(auto).get("dagster/sensor_name") == "loom_automation" or tags(auto).get("dagster/backfill"), tags(auto)
    mats = [m for m in materializations(server, ["staging", "orders"]) if m["runId"] == auto["runId"]]
    assert sorted(m["partition"] for m in mats) == BACKFILL_DAYS, mats
    assert all((row_count(m) or 0) > 0 for m in mats), mats
    page.goto(f"{server.url}/assets/staging/orders")
    expect(page.get_by_text("Latest materialization").or_(
        page.get_by_text(re.compile(r"^Materialized"))).first).to_be_visible(timeout=60_000)
    shot(page, tmp_path, "ui-automation")

    # 8. a write that fails on a schema mismatch: Loom's message on the run's page
    wait_run(server, lambda r: r["runId"] == customers_run, "the raw/customers run")
    change_by_hand(server.home / "delta" / "raw" / "customers")
    page.goto(f"{server.url}/assets/staging/customers")
    seen = {r["runId"] for r in runs(server)}
    _click_retry(page, page.locator("button", has_text=re.compile(r"^Materialize$")).first, "Materialize")
    failed = wait_run(server, lambda r: r["runId"] not in seen and paths(r) == [["staging", "customers"]],
                      "the staging/customers run", expect="FAILURE")
    message = run_failure_message(server, failed["runId"])
    assert "Schema mismatch for table staging.customers; nothing was written" in message, message
    assert "'segment'" in message and "DagsterExecutionHandleOutputError" not in message, message
    page.goto(f"{server.url}/runs/{failed['runId']}")
    expect(page.get_by_text(re.compile(r"Schema mismatch for table staging\.customers")).first).to_be_visible(
        timeout=60_000)
    page.wait_for_timeout(1000)
    shot(page, tmp_path, "ui-run-error")

    # 9. Observe an external source whose columns are discovered: its Columns section once reloaded
    page.goto(f"{server.url}/assets/feeds/fx_rates")
    _click_retry(page, page.locator("button", has_text=re.compile(r"^Observe$")).first, "Observe")
    wait_run(server, lambda r: paths(r) == [["feeds", "fx_rates"]], "the fx_rates observation")
    reload = server.gql("""mutation { reloadRepositoryLocation(repositoryLocationName: "sample_platform") {
        __typename } }""")["reloadRepositoryLocation"]
    assert reload["__typename"] == "WorkspaceLocationEntry", reload
    _wait(lambda: _location_loaded(server), 120, "the code location to reload", server)
    node = server.gql("""{ assetNodeOrError(assetKey: {path: ["feeds", "fx_rates"]}) { ... on AssetNode { kinds
        metadataEntries { label ... on TableSchemaMetadataEntry { schema { columns { name type } } } } } } }""")[
        "assetNodeOrError"]
    assert "clickhouse" in node["kinds"], node
    schema = next(e for e in node["metadataEntries"] if e["label"] == "dagster/column_schema")["schema"]
    assert [c["name"] for c in schema["columns"]] == ["currency", "rate"], schema
    _reload_until_visible(page, page.get_by_text("currency", exact=True).first, "fx_rates' Columns")
    expect(page.get_by_text("Columns", exact=True).first).to_be_visible(timeout=30_000)
    shot(page, tmp_path, "ui-external-columns")

    # 10. a declared table's metadata: the UI's entries, no loom/binding blob
    page.goto(f"{server.url}/assets/raw/orders")
    expect(page.get_by_text("Columns", exact=True).first).to_be_visible(timeout=60_000)
    expect(page.get_by_text("order_id", exact=True).first).to_be_visible(timeout=30_000)
    expect(page.get_by_text("loom/partition_columns").first).to_be_visible(timeout=30_000)
    _scroll_to(page.get_by_text("loom/partition_columns").first)  # the metadata table in view
    page.wait_for_timeout(1000)
    assert "loom/binding" not in page.content()
    shot(page, tmp_path, "ui-metadata")
    page.get_by_text("Compute details", exact=True).first.click()  # the op's tags would be listed there
    expect(page.get_by_text("Computed by", exact=True).first).to_be_visible(timeout=30_000)
    assert "loom/binding" not in page.content() and "loom_binding" not in page.content()

    # 11. the lineage of the export, with the landed tables: the README's screenshot
    page.goto(f"{server.url}/assets/exports/category_revenue?view=lineage&lineageScope=upstream&lineageDepth=6")
    expect(page.get_by_text("daily_category_revenue").first).to_be_visible(timeout=60_000)
    page.wait_for_timeout(3000)
    shot(page, tmp_path, "lineage")
    page.close()
    print(f"UI flow took {time.monotonic() - started:.0f} s")
