"""One table, one code location: claims in a shared directory (unit) and two real code locations
served by the Dagster webserver from one workspace file (end to end)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from test_webserver import gql
from ui_server import poll, serving

from loom_assets.claims import claim_tables, code_server_location
from loom_resources import SpecError


def test_a_second_location_is_refused_naming_the_table_and_both_locations(tmp_path: Path) -> None:
    claim_tables(["s.a", "s.b"], location="first", directory=tmp_path)
    with pytest.raises(SpecError) as err:
        # another live process (the test runner's parent) holds the claim of another location
        (tmp_path / "s.b").write_text(json.dumps({"location": "first", "pid": os.getppid(), "host": os.uname().nodename}))
        claim_tables(["s.b", "s.c"], location="second", directory=tmp_path)
    assert "table s.b is declared by code location 'first'" in str(err.value) and "'second'" in str(err.value)
    assert "s.a" not in str(err.value)


def test_the_same_location_reloading_and_a_dead_claimant_are_not_conflicts(tmp_path: Path) -> None:
    claim_tables(["s.a"], location="first", directory=tmp_path)
    claim_tables(["s.a"], location="first", directory=tmp_path)  # a reload of the same location
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / "s.a").write_text(json.dumps({"location": "gone", "pid": int(dead.stdout), "host": os.uname().nodename}))
    claim_tables(["s.a"], location="second", directory=tmp_path)
    assert json.loads((tmp_path / "s.a").read_text())["location"] == "second"


def test_only_code_servers_claim() -> None:
    assert code_server_location(["dagster", "api", "grpc", "--location-name", "shop", "-p", "1"]) == "shop"
    assert code_server_location(["dagster", "code-server", "start", "--location-name=shop"]) == "shop"
    assert code_server_location(["dagster", "asset", "materialize", "-m", "shop"]) is None
    assert code_server_location(["pytest", "tests"]) is None


LOCATIONS = """
query {
  workspaceOrError { ... on Workspace { locationEntries {
    name
    locationOrLoadError { __typename ... on PythonError { message causes { message } } }
  } } }
}"""


def test_two_code_locations_declaring_one_table_get_looms_error(tmp_path: Path) -> None:
    for name in ("shop_a", "shop_b"):
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(f"""
            from loom_assets import Table, build_definitions
            from loom_resources import ColumnSchema as C
            defs = build_definitions([
                Table("shared.orders", backend="delta", columns=[C("id", "int64")], sql="SELECT 1 AS id"),
                Table("{name}.own", backend="delta", columns=[C("id", "int64")], sql="SELECT 1 AS id"),
            ])
        """))
    (tmp_path / "workspace.yaml").write_text(
        "load_from:\n" + "".join(
            f"  - python_module:\n      module_name: {n}\n      location_name: {n}\n      working_directory: {tmp_path}\n"
            for n in ("shop_a", "shop_b")))
    home = tmp_path / "home"
    (home / "dagster").mkdir(parents=True)
    env = {**os.environ, "LOOM_HOME": str(home), "DAGSTER_HOME": str(home / "dagster")}
    webserver = [str(Path(sys.executable).parent / "dagster-webserver"), "-w", "workspace.yaml"]

    def loaded(port: int) -> dict[str, dict[str, object]] | None:
        entries = gql(port, LOCATIONS)["workspaceOrError"]["locationEntries"]
        states = {e["name"]: e["locationOrLoadError"] for e in entries}
        return states if len(states) == 2 and all(v is not None for v in states.values()) else None

    with serving(webserver, tmp_path, env) as (proc, port):
        states = poll(proc, lambda: loaded(port), "the webserver to load both locations", timeout=120)
    # the UI shows the load error with its causes; Loom's message is the cause
    errors = {n: str(s["message"]) + "".join(c["message"] for c in s["causes"])  # type: ignore[attr-defined]
              for n, s in states.items() if s["__typename"] == "PythonError"}
    assert len(errors) == 1, states  # the first to claim serves; the other one names the conflict
    (failed, message), = errors.items()
    other = "shop_a" if failed == "shop_b" else "shop_b"
    assert f"table shared.orders is declared by code location '{other}'" in message, message
    assert f"and by '{failed}'" in message
    assert states[other]["__typename"] == "RepositoryLocation"
