"""Your own project, as the README's "Your own project" section says, step by step: the library's
wheel installed into a fresh virtual environment, a new project made by ``create-dagster``, tables
declared in YAML (the LoomTables component) and in Python, ``dg`` checking, listing and
launching them, the tables read back from the stores, and ``dg dev`` serving them.

The fresh environment gets the wheel by ``pip install --no-deps``; its dependencies (Dagster,
Polars, deltalake, chdb... ~150 packages) come from the test environment's site-packages through a
``.pth`` line rather than a second install of each, which would add a minute or more to every
run. The project's own code and the wheel's copy of ``loom_assets``/``loom_resources`` are what
run: the test checks that ``loom_assets`` is imported from the fresh environment and that the
sample platform is not importable there.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest
from deltalake import DeltaTable
from test_webserver import gql
from ui_server import poll, serving

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent / "own_project"
PIP = [sys.executable, "-m", "pip"]

pytestmark = pytest.mark.timeout(600)


def run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: int = 300) -> str:
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-5000:]}"
    return out.stdout + out.stderr


@dataclass
class Fresh:
    """A fresh virtual environment with the library's wheel installed."""

    venv: Path
    wheel: Path

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def env(self, home: Path) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LOOM_", "DAGSTER_", "VIRTUAL_ENV"))}
        env.update(PATH=f"{self.venv / 'bin'}:{env['PATH']}", VIRTUAL_ENV=str(self.venv), LOOM_HOME=str(home),
                   DAGSTER_HOME=str(home / "dagster"), PYTHONWARNINGS="ignore")
        (home / "dagster").mkdir(parents=True, exist_ok=True)
        return env


def build_wheel(out: Path) -> Path:
    """The wheel of the repository's library, built from a copy (a build leaves files behind)."""
    src = out / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for pkg in ("loom_assets", "loom_resources"):
        shutil.copytree(ROOT / pkg, src / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([*PIP, "wheel", "-q", "--no-deps", "-w", str(out / "dist"), str(src)], check=True, timeout=300,
                   capture_output=True)
    (wheel,) = (out / "dist").glob("loom_dagster-*.whl")
    return wheel


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fresh]:
    tmp = tmp_path_factory.mktemp("own")
    wheel = build_wheel(tmp)
    venv = tmp / "venv"
    subprocess.run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "_loom_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([*PIP, "--python", str(venv / "bin" / "python"), "install", "-q", "--no-deps", str(wheel)],
                   check=True, timeout=300, capture_output=True)
    # the console scripts of the dependencies the test environment provides
    for script, target in {"dg": "dagster_dg_cli.cli:main", "dagster": "dagster._cli:main",
                           "create-dagster": "create_dagster.cli:main"}.items():
        module, func = target.split(":")
        path = venv / "bin" / script
        path.write_text(f"#!{venv / 'bin' / 'python'}\nimport sys\nfrom {module} import {func}\nsys.exit({func}())\n")
        path.chmod(0o755)
    yield Fresh(venv, wheel)


def test_the_wheel_holds_the_library_and_its_dg_entry_point(fresh: Fresh) -> None:
    with zipfile.ZipFile(fresh.wheel) as z:
        names = z.namelist()
        entry_points = next(z.read(n).decode() for n in names if n.endswith("entry_points.txt"))
        metadata = next(z.read(n).decode() for n in names if n.endswith("METADATA"))
    tops = {n.split("/")[0] for n in names}
    assert tops == {"loom_assets", "loom_resources", fresh.wheel.name.split("-py3")[0] + ".dist-info"}, tops
    assert {"loom_assets/component.py", "loom_assets/yaml_tables.py", "loom_resources/delta/__init__.py",
            "loom_resources/clickhouse/__init__.py"} <= set(names)
    assert "[dagster_dg_cli.registry_modules]\nloom_assets = loom_assets" in entry_points
    for dep in ("dagster", "dagster-dg-cli", "polars", "deltalake", "clickhouse-connect", "chdb", "sqlglot"):
        assert f"Requires-Dist: {dep}" in metadata, dep


def test_importing_the_installed_library_builds_and_imports_no_project(fresh: Fresh, tmp_path: Path) -> None:
    out = run([str(fresh.python), "-c",
               "import sys, loom_assets; print(loom_assets.__file__); print(any(m.startswith('sample_platform') for m in sys.modules));"
               "import importlib.util as u; print(u.find_spec('sample_platform') is None)"], tmp_path, fresh.env(tmp_path))
    file, imported, missing = out.split()
    assert file.startswith(str(fresh.venv)) and imported == "False" and missing == "True"


def test_your_own_project(fresh: Fresh, tmp_path: Path) -> None:
    """The README's "Your own project", command for command."""
    home = tmp_path / "home"
    env = fresh.env(home)
    run(["create-dagster", "project", "my_shop", "--no-uv-sync"], tmp_path, env)
    project = tmp_path / "my_shop"
    run([*PIP, "--python", str(fresh.python), "install", "-q", "--no-deps", "-e", "."], project, env)

    components = run(["dg", "list", "components"], project, env)
    assert "loom_assets.LoomTables" in components
    run(["dg", "scaffold", "defs", "loom_assets.LoomTables", "tables"], project, env)
    defs_yaml = project / "src" / "my_shop" / "defs" / "tables" / "defs.yaml"
    assert "type: loom_assets.LoomTables" in defs_yaml.read_text()
    shutil.copy(HERE / "defs.yaml", defs_yaml)
    shutil.copy(HERE / "bodies.py", project / "src" / "my_shop" / "bodies.py")
    shutil.copy(HERE / "tables.py", project / "src" / "my_shop" / "tables.py")

    assert "All component YAML validated successfully" in run(["dg", "check", "yaml"], project, env)
    assert "All definitions loaded successfully" in run(["dg", "check", "defs"], project, env)
    text = run(["dg", "list", "defs", "--json"], project, env)
    listed = json.loads(text[text.index("{"):text.rindex("}") + 1])  # Dagster's warnings may come around it
    assets = {a["asset_key"] for a in listed["assets"]}
    assert {"raw/orders", "marts/daily_revenue", "marts/big_orders"} <= assets
    checks = {c["key"] for c in listed["asset_checks"]}
    assert {"raw/orders:not_null_order_id", "marts/big_orders:row_count"} <= checks, checks

    run(["dg", "launch", "--assets", "raw/orders,marts/daily_revenue", "--partition-range", "2026-11-01...2026-11-03"],
        project, env)
    run(["dg", "launch", "--assets", "marts/big_orders"], project, env)

    orders = pl.from_arrow(DeltaTable(str(home / "delta" / "raw" / "orders")).to_pyarrow_table())
    assert isinstance(orders, pl.DataFrame)
    assert orders.height == 300 and orders["order_id"].n_unique() == 300
    assert sorted(orders["order_date"].unique().to_list()) == [dt.date(2026, 11, d) for d in (1, 2, 3)]
    big = pl.from_arrow(DeltaTable(str(home / "delta" / "marts" / "big_orders")).to_pyarrow_table())
    assert isinstance(big, pl.DataFrame)
    assert big.height == 33 and big["amount"].min() >= 90  # 90.00..100.00 on each of 3 days
    # ClickHouse is read by a client of its own in a process of its own (one embedded path per process)
    revenue = run([sys.executable, "-c",
                   "import clickhouse_connect as cc, json; c = cc.get_client(dsn='chdb://" + str(home / "clickhouse") + "');"
                   "print(json.dumps([[str(v) for v in r] for r in c.query("
                   "'SELECT order_date, revenue, orders FROM marts.daily_revenue ORDER BY order_date').result_rows]))"],
                  tmp_path, env)
    assert json.loads(revenue.strip().splitlines()[-1]) == [[f"2026-11-0{d}", "5050.00", "100"] for d in (1, 2, 3)]

    # dg dev serves the project: its tables in the UI's GraphQL
    wanted = {"raw/orders", "marts/daily_revenue", "marts/big_orders"}

    def served(port: int) -> set[str] | None:
        keys = {"/".join(n["assetKey"]["path"]) for n in gql(port, "{ assetNodes { assetKey { path } } }")["assetNodes"]}
        return keys if wanted <= keys else None

    with serving(["dg", "dev"], project, env) as (proc, port):
        poll(proc, lambda: served(port), "dg dev to serve the project's tables")
