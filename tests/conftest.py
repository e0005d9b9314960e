"""Shared fixtures.

The embedded ClickHouse engine holds one data path per process, so the whole pytest process
shares one ``chdb://`` path (``chdb_url``) and tests isolate themselves by database name.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest


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
