"""ClickHouse as a server: several processes writing through clickhouse-connect's HTTP client
into one engine (the test endpoint ``ch_http``), as Dagster steps and runs do on a real server.

Each case ends compared with a clean single run, read back from the store: no row lost, none
duplicated, no staging table left. Writers are child processes (``ch_driver.py``); each case
has a database of its own on the session's one endpoint.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import uuid
from typing import Any

import pytest
from test_clickhouse_faults import DRIVER, clean, killed_write, read, wholly_old_or_new, write


@pytest.fixture
def db(monkeypatch: pytest.MonkeyPatch) -> str:
    """A database of this test on the shared endpoint (the driver reads it from the environment)."""
    name = "srv_" + uuid.uuid4().hex[:10]
    monkeypatch.setenv("CH_DRIVER_SCHEMA", name)
    return name


def fresh_db(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CH_DRIVER_SCHEMA", "srv_" + uuid.uuid4().hex[:10])


def spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, DRIVER, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(procs: list[subprocess.Popen[str]]) -> list[dict[str, Any]]:
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    return [json.loads(o[0].strip().splitlines()[-1]) for o in outs]


@pytest.mark.parametrize("mode", ["append", "overwrite"])
def test_same_write_from_two_processes_at_once_lands_once(mode: str, ch_http_url: str,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 24, defect 1: two processes run the same logical write (one write context) at the
    same time, as a retried step overlapping its first attempt would. It lands once; one of
    them reports it published, the other that it was skipped."""
    fresh_db(monkeypatch)
    reference, _ = clean(ch_http_url, mode)  # type: ignore[arg-type]
    for trial in range(1):  # one trial per mode keeps make test's budget; the old ledger failed every trial
        fresh_db(monkeypatch)
        if mode == "overwrite":
            write(ch_http_url, mode, 1, "seed")  # type: ignore[arg-type]
        results = finish([spawn("write", ch_http_url, mode, "2", "run-1", order, "0") for order in ("asc", "desc")])
        assert sorted(r["skipped"] for r in results) == [False, True], (trial, results)
        after = read(ch_http_url, mode)  # type: ignore[arg-type]
        assert after["groups"] == reference["after"]["groups"], (trial, after)
        assert after["staging_tables"] == 0


def test_two_processes_recover_one_interrupted_publication(ch_http_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A writer dies inside its publication; two processes start at once and both recover it:
    it is published exactly once."""
    for mode in ("append", "overwrite"):  # replace_partitions ran too (passes); left out for make test's time
        fresh_db(monkeypatch)
        reference, _ = clean(ch_http_url, mode)  # type: ignore[arg-type]
        fresh_db(monkeypatch)
        if mode != "append":
            write(ch_http_url, mode, 1, "seed")  # type: ignore[arg-type]
        assert finish([spawn("stage-only", ch_http_url, mode, "2", "run-1")]) == [{"died": True}]
        results = finish([spawn("read", ch_http_url, mode) for _ in range(2)])
        assert sorted(r["recovered"] for r in results) in ([0, 1], [1, 1]), results
        # the process that completed the publication reads it whole; the other may have read while the
        # publication was under way (ClickHouse moves an append's partitions one by one), so the
        # store is read again once both are done
        assert all(r["groups"] == reference["after"]["groups"] for r in results if r["recovered"]), (mode, results)
        final = read(ch_http_url, mode)  # type: ignore[arg-type]
        assert final["groups"] == reference["after"]["groups"] and final["staging_tables"] == 0, (mode, final)
        # the rerun of the step finds it published and skips it
        again = write(ch_http_url, mode, 2, "run-1", order="desc", then_read=True)  # type: ignore[arg-type]
        assert again["skipped"] is True and again["groups"] == reference["after"]["groups"]
        assert again["staging_tables"] == 0


def test_two_runs_write_different_partitions_of_one_table_at_once(db: str, ch_http_url: str) -> None:
    """Four processes replace four different days of one table at the same time (on a server they
    really run at once); every day ends up replaced, the fifth untouched."""
    before = write(ch_http_url, "replace_partitions", 1, "seed", then_read=True)  # type: ignore[arg-type]
    finish([spawn("day", ch_http_url, str(i)) for i in range(4)])
    after = read(ch_http_url, "replace_partitions")  # type: ignore[arg-type]
    old = {g[0]: g for g in before["groups"]}
    expected = [[d, 2, *old[d][2:]] if i < 4 else old[d] for i, d in enumerate(sorted(old))]
    assert after["groups"] == expected and after["staging_tables"] == 0


# every mode passes (2 trials each, about 80 s); make test runs the two publication kinds
# (parts moved: append; tables swapped: overwrite), one trial each, eager then streaming
@pytest.mark.parametrize(("mode", "streaming"), [("append", False), ("overwrite", True)])
def test_kill_at_a_random_point_then_retry_over_http(mode: str, streaming: bool, ch_http_url: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The reliability suite's kill-and-retry over HTTP: a writer SIGKILLed at a random point;
    right after, every partition is wholly old or new; the retry (rows in another order) ends
    exactly as a clean run."""
    fresh_db(monkeypatch)
    reference, seconds = clean(ch_http_url, mode)  # type: ignore[arg-type]
    rng = random.Random(f"loom-http-{mode}")
    for trial in range(1):
        fresh_db(monkeypatch)
        if mode != "append":
            write(ch_http_url, mode, 1, "seed")  # type: ignore[arg-type]
        killed_write(ch_http_url, mode, rng.uniform(0.05, seconds * 1.1), streaming)  # type: ignore[arg-type]
        after_kill = read(ch_http_url, mode)  # type: ignore[arg-type]
        if mode != "append":
            assert wholly_old_or_new(after_kill, reference), (trial, after_kill)
        final = write(ch_http_url, mode, 2, "run-1", order="desc", streaming=streaming, then_read=True)  # type: ignore[arg-type]
        assert final["groups"] == reference["after"]["groups"], (trial, final)
        assert final["staging_tables"] == 0
