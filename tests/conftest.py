"""Shared fixtures.

The embedded ClickHouse engine holds one data path per process, so the whole pytest process
shares one ``chdb://`` path (``chdb_url``) and tests isolate themselves by database name.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from loom_resources.clickhouse import ClickHouseResource
    from loom_resources.delta import DeltaResource
    from loom_resources.testing.ch_http import ServerProcess


# SQL-check cache (loom_assets.sql_cache) of this test session only, shared with its subprocesses
os.environ.setdefault("LOOM_CACHE_DIR", tempfile.mkdtemp(prefix="loom-cache-"))


# The slowest files (seconds of one `make test`, 3 workers, loaded 2-core machine), longest first.
# make test hands whole files to its workers (--dist loadfile) in collection order (pyproject's
# --no-loadscope-reorder; xdist's default sorts files by their number of tests, which sent these
# few-test, many-minute files out last, so one worker ran them alone at the end). Listed files go
# first; every other file follows in pytest's own order.
SLOW_FILES = [
    "tests/e2e/test_ui.py",  # 329 s, one test: a browser over `dg dev`
    "tests/test_bench.py",  # 337 s when it ran every benchmark case at tiny size; now half of them
    "tests/test_bench_more.py",  # the other half
    "tests/reliability/test_clickhouse_faults.py",  # 422
    "tests/reliability/test_clickhouse_server.py",  # 276
    "tests/conformance/test_delta_conformance.py",  # 190
    "tests/test_cli.py",  # 180
    "tests/test_own_project.py",  # 157
    "tests/reliability/test_delta_kills.py",  # 139
    "tests/test_contract_kit.py",  # 129
    "tests/test_clickhouse_multiprocess.py",  # 128
    "tests/test_bench_overhead.py",  # 120
    "tests/test_delta_s3.py",  # 115
    "tests/test_checks_standalone.py",  # 110
    "tests/test_example_project.py",  # 107
    "tests/test_ui_graphql.py",  # 90
    "tests/test_webserver.py",  # 83
    "tests/test_clickhouse.py",  # 82
    "tests/reliability/test_delta_concurrency.py",  # 78
    "tests/test_assets_e2e.py",  # 74
    "tests/test_clickhouse_stream.py",  # 69
    "tests/test_io_manager.py",  # 61
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put the slowest files first (in SLOW_FILES' order), keeping each file's tests in order."""
    rank = {name: i for i, name in enumerate(SLOW_FILES)}
    # a node id starts with the file's path relative to the rootdir (the repository)
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(SLOW_FILES)))  # stable: the rest keep pytest's order


@pytest.fixture(scope="session")
def loom_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A LOOM_HOME for the whole test session (Delta root, ClickHouse path, Dagster home)."""
    home = tmp_path_factory.mktemp("loom_home")
    (home / "dagster").mkdir()
    old = {k: os.environ.get(k) for k in ("LOOM_HOME", "DAGSTER_HOME")}
    os.environ["LOOM_HOME"] = str(home)
    os.environ["DAGSTER_HOME"] = str(home / "dagster")
    yield home
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def chdb_url(loom_home: Path) -> str:
    """The one embedded ClickHouse path of this pytest process."""
    return f"chdb://{loom_home / 'clickhouse'}"


@pytest.fixture
def unique_schema() -> str:
    """A schema (database) name unique to the test, for isolation in shared stores."""
    return "t_" + uuid.uuid4().hex[:10]


_S3_CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1"}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server on 127.0.0.1 for the session, in a child process: some delta-rs calls
    hold the GIL while they wait for the server, so an in-process threaded server would
    deadlock them until they time out."""
    import subprocess
    import sys
    import time
    import urllib.request

    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(endpoint + "/moto-api/", timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.1)
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def s3_delta_resource(endpoint: str, prefix: str = "lake", parquet_writer: str = "polars") -> DeltaResource:
    """A DeltaResource rooted in a fresh bucket of the moto server at ``endpoint``."""
    import boto3

    from loom_resources.delta import DeltaResource

    bucket = f"{prefix}-" + uuid.uuid4().hex[:8]
    boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
    ).create_bucket(Bucket=bucket)
    return DeltaResource(
        root=f"s3://{bucket}/loom",
        storage_options={**_S3_CREDS, "AWS_ENDPOINT_URL": endpoint, "AWS_ALLOW_HTTP": "true", "conditional_put": "etag"},
        parquet_writer=parquet_writer,  # type: ignore[arg-type]
    )


@contextlib.contextmanager
def mounted_tmpfs(mount: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (e.g. ``"4m"``) at ``mount`` for full-disk tests; skips the test where
    mounting is not permitted (it needs root)."""
    import subprocess

    mount.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


@pytest.fixture(scope="session")
def ch_http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One ClickHouse HTTP endpoint (``loom_resources.testing.ch_http``: clickhouse-connect's HTTP
    client against a real engine in a child process) for the whole session; tests isolate
    themselves by database name, as on a shared server."""
    from loom_resources.testing.ch_http import start_process

    path = tmp_path_factory.mktemp("ch_http")
    server = start_process(str(path / "data"), log=str(path / "server.log"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def ch_http_url(ch_http: ServerProcess) -> str:
    """The URL of the session's ClickHouse HTTP endpoint (database ``default``)."""
    return ch_http.url()


@pytest.fixture(params=["chdb", "http"])
def ch_url(request: pytest.FixtureRequest) -> str:
    """A ClickHouse URL of each kind: the session's embedded engine, then the HTTP endpoint."""
    return str(request.getfixturevalue("chdb_url" if request.param == "chdb" else "ch_http_url"))


# -- a ClickHouse resource and a plain client on the same store (modules that write through Loom and
# read back with a client, on the embedded engine and over HTTP; a module may define its own ``res``)


@pytest.fixture
def res(ch_url: str) -> Iterator[ClickHouseResource]:
    """Loom's ClickHouse resource on the embedded engine, then over HTTP (``ch_url``)."""
    from loom_resources.clickhouse import ClickHouseResource

    r = ClickHouseResource(url=ch_url, insert_batch_rows=1000)
    yield r
    r.close()


@pytest.fixture
def raw(ch_url: str) -> Iterator[Any]:
    """A plain clickhouse-connect client on the same store, to read back what Loom wrote."""
    from urllib.parse import urlsplit

    import clickhouse_connect

    if ch_url.startswith("chdb"):
        client = clickhouse_connect.get_client(dsn=ch_url)
    else:
        u = urlsplit(ch_url)
        client = clickhouse_connect.get_client(host=u.hostname, port=u.port, username="default", password="",
                                               autogenerate_session_id=False)
    yield client
    client.close()
