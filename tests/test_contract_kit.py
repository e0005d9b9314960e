"""The contract kit (:mod:`loom_resources.testing.kit`) run against every Loom backend:
in-memory tables, Delta on a local root, Delta on S3 (moto server), and embedded ClickHouse.

Each class only says how to build a fresh store; every case comes from :class:`ContractKit`.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from loom_resources.clickhouse import ClickHouseResource
from loom_resources.delta import DeltaResource
from loom_resources.model import Backend
from loom_resources.testing import ContractKit, InMemoryTables

_CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for(endpoint: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(endpoint + "/moto-api/", timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("moto server did not start") from None
            time.sleep(0.1)


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server on 127.0.0.1 in a child process (delta-rs calls may hold the GIL while
    they wait for the server, so an in-process threaded server could deadlock them)."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        _wait_for(endpoint, proc)
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(timeout=10)


class TestInMemoryContract(ContractKit):
    backend = Backend.DELTA  # InMemoryTables accepts any backend in the spec

    @pytest.fixture
    def contract_store(self) -> InMemoryTables:
        return InMemoryTables()


class TestDeltaLocalContract(ContractKit):
    backend = Backend.DELTA

    @pytest.fixture
    def contract_store(self, tmp_path: Path) -> DeltaResource:
        return DeltaResource(root=str(tmp_path))


class TestDeltaS3Contract(ContractKit):
    backend = Backend.DELTA

    @pytest.fixture
    def contract_store(self, s3_endpoint: str) -> DeltaResource:
        bucket = "kit-" + uuid.uuid4().hex[:8]
        boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                     aws_access_key_id="testing", aws_secret_access_key="testing").create_bucket(Bucket=bucket)
        return DeltaResource(
            root=f"s3://{bucket}/loom",
            storage_options={**_CREDS, "AWS_ENDPOINT_URL": s3_endpoint, "AWS_ALLOW_HTTP": "true", "conditional_put": "etag"},
        )


class TestClickHouseContract(ContractKit):
    backend = Backend.CLICKHOUSE

    @pytest.fixture
    def contract_store(self, chdb_url: str) -> Iterator[ClickHouseResource]:
        # one embedded engine path per process: always the session's chdb_url; tests are isolated
        # by schema (= database) name, and the client is closed after each test
        store = ClickHouseResource(url=chdb_url)
        yield store
        store.close()
