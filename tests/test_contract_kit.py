"""The contract kit (:mod:`loom_resources.testing.kit`) run against every Loom backend:
in-memory tables, Delta on a local root, Delta on S3 (moto server), embedded ClickHouse, and
ClickHouse over HTTP (the test endpoint over a real engine).

Each class only says how to build a fresh store; every case comes from :class:`ContractKit`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import s3_delta_resource

from loom_resources.clickhouse import ClickHouseResource
from loom_resources.delta import DeltaResource
from loom_resources.model import Backend
from loom_resources.testing import ContractKit, InMemoryTables


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
        return s3_delta_resource(s3_endpoint, prefix="kit")


class TestClickHouseContract(ContractKit):
    backend = Backend.CLICKHOUSE

    @pytest.fixture
    def contract_store(self, chdb_url: str) -> Iterator[ClickHouseResource]:
        # one embedded engine path per process: always the session's chdb_url; tests are isolated
        # by schema (= database) name, and the client is closed after each test
        store = ClickHouseResource(url=chdb_url)
        yield store
        store.close()


class TestClickHouseHTTPContract(ContractKit):
    """The same kit through clickhouse-connect's HTTP client, against the session's HTTP
    endpoint over a real engine (``ch_http`` in conftest): the path a ClickHouse server takes."""

    backend = Backend.CLICKHOUSE

    @pytest.fixture
    def contract_store(self, ch_http_url: str) -> Iterator[ClickHouseResource]:
        store = ClickHouseResource(url=ch_http_url)
        yield store
        store.close()
