"""Dagster's multiprocess executor running parallel steps into one ClickHouse server (the HTTP
endpoint): the code location picks the multiprocess executor for an http:// URL, the steps run
in separate processes at the same time, and the tables end exactly as the data says (read back)."""

from __future__ import annotations

import uuid
from pathlib import Path

import dagster as dg
import mp_platform
import pytest

from loom_resources import TableRef
from loom_resources.clickhouse import ClickHouseResource


def test_parallel_steps_into_one_server(ch_http_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    schema = "mp_" + uuid.uuid4().hex[:8]
    monkeypatch.setenv("LOOM_CLICKHOUSE_URL", ch_http_url)
    monkeypatch.setenv("LOOM_MP_SCHEMA", schema)
    monkeypatch.setenv("LOOM_HOME", str(tmp_path))
    assert isinstance(mp_platform.defs().executor, dg.ExecutorDefinition)
    assert mp_platform.defs().executor.name == "multiprocess"  # an http:// URL: full parallelism
    (tmp_path / "dagster").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        from dagster._core.definitions.reconstruct import ReconstructableJob

        # by file: the step processes import tests/mp_platform.py, which is not on their sys.path
        recon = ReconstructableJob.for_file(mp_platform.__file__, "job")
        result = dg.execute_job(recon, instance=instance,
                                run_config={"execution": {"config": {"max_concurrent": 4}}})
        assert result.success
        starts = [e for e in result.all_events if e.event_type_value == "STEP_START"]
        assets = [e for e in starts if "check" not in str(e.step_key)]
        assert len(assets) == mp_platform.PARALLEL + 1
        assert len({e.pid for e in starts}) == len(starts)  # every step in a process of its own
    res = ClickHouseResource(url=ch_http_url)
    n = mp_platform.ROWS_PER_DAY * mp_platform.DAYS
    for i in range(mp_platform.PARALLEL):
        rows = res.query_rows(f"SELECT count(), uniqExact(order_id) FROM {TableRef(schema, f'orders_{i}')}")
        assert rows == [(n, n)]
    joined = res.query_rows(f"SELECT sum(n), count() FROM {schema}.joined")
    assert joined == [(2 * n, mp_platform.DAYS + 1)]  # orders_1 starts a day later
    assert res.pending_publications() == [] or all(not e.target.startswith(schema) for e in res.pending_publications())
    res.close()
