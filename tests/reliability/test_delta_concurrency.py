"""Concurrent writers on one Delta table, each in its own process (see ``delta_harness``).

* attempts of the same logical append (same run, asset, partitions) commit exactly once;
* four writers replacing different partitions lose nothing;
* concurrent attempts of the same merge apply it once (a merge is idempotent on its keys).

Every case reads the table back with polars and compares it with a clean run's result.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest
from delta_harness import Zygote, lost_and_duplicated, read, rows, run_job, zygote_fixture  # noqa: F401
from deltalake import DeltaTable

N = 20_000


def _concurrent(z: Zygote, jobs: list[dict[str, Any]], go: Path) -> list[dict[str, Any]]:
    started = [z.start({**j, "go": str(go)}) for j in jobs]
    go.touch()
    return [z.wait(pid, marker) for pid, marker in started]


def _seed(root: Path, ref: str) -> str:
    run_job({"root": str(root), "ref": ref, "mode": "append", "n": N, "run_id": "seed"})
    return str(root / ref.replace(".", "/"))


@pytest.mark.parametrize("attempts", [2, 4])
@pytest.mark.parametrize("creating", [False, True], ids=["existing", "creating"])
def test_concurrent_attempts_of_one_append_commit_once(zygote: Zygote, tmp_path: Path, attempts: int,
                                                       creating: bool) -> None:
    trials, duplicated, lost = 4, 0, 0
    for trial in range(trials):
        root = tmp_path / f"t{trial}"
        ref = "s.same_write"
        uri = str(root / "s" / "same_write")
        expected: list[pl.DataFrame] = []
        if not creating:
            _seed(root, ref)
            expected.append(read(uri))
        job = {"root": str(root), "ref": ref, "mode": "append", "n": N, "offset": 10 * N, "run_id": "same-run"}
        outs = _concurrent(zygote, [job] * attempts, tmp_path / f"go{trial}")
        assert all(o["ok"] for o in outs), outs
        expected.append(rows(N, offset=10 * N).collect())
        lo, dup = lost_and_duplicated(read(uri), pl.concat(expected))
        lost, duplicated = lost + lo, duplicated + dup
        assert sum(not o["skipped"] for o in outs) == 1, outs  # exactly one attempt committed
        assert DeltaTable(uri).version() == (0 if creating else 1)
    assert (lost, duplicated) == (0, 0)


def test_four_concurrent_partition_writers_lose_nothing(zygote: Zygote, tmp_path: Path) -> None:
    for trial in range(3):
        root = tmp_path / f"t{trial}"
        uri = _seed(root, "s.parts")
        jobs = [{"root": str(root), "ref": "s.parts", "mode": "replace_partitions", "n": N, "factor": 2.0,
                 "only_days": [d], "run_id": f"writer-{d}"} for d in range(4)]
        outs = _concurrent(zygote, jobs, tmp_path / f"go{trial}")
        assert all(o["ok"] and not o["skipped"] for o in outs), outs
        assert lost_and_duplicated(read(uri), rows(N, factor=2.0).collect()) == (0, 0)
        assert DeltaTable(uri).version() == 4


@pytest.mark.parametrize("writer", ["polars", "delta-rs"])
def test_each_concurrent_writer_reports_the_version_it_committed(zygote: Zygote, tmp_path: Path, writer: str) -> None:
    """Issue 23: the polars path reported the latest version after its commit (another writer's):
    one writer committed version 9 per _delta_log and reported 11."""
    import json

    for trial in range(2):
        root = tmp_path / f"{writer}{trial}"
        uri = _seed(root, "s.parts")
        jobs = [{"root": str(root), "ref": "s.parts", "mode": "replace_partitions", "n": 2_000, "factor": 2.0,
                 "only_days": [d], "run_id": f"writer-{d}", "parquet_writer": writer} for d in range(4)]
        outs = _concurrent(zygote, jobs, tmp_path / f"go-{writer}{trial}")
        assert all(o["ok"] and not o["skipped"] for o in outs), outs
        for job, out in zip(jobs, outs, strict=True):
            # the commit file of the reported version adds the files of this writer's day only
            log = Path(uri) / "_delta_log" / f"{out['version']:020d}.json"
            days = {a["add"]["partitionValues"]["day"] for a in map(json.loads, log.read_text().splitlines())
                    if "add" in a}
            assert days == {f"2024-01-0{job['only_days'][0] + 1}"}, (job, out, days)
        assert sorted(o["version"] for o in outs) == [1, 2, 3, 4]


def test_concurrent_attempts_of_one_merge_apply_once(zygote: Zygote, tmp_path: Path) -> None:
    ref = "s.merged"
    clean = tmp_path / "clean"
    _seed(clean, ref)
    merge = {"ref": ref, "mode": "merge", "n": N, "offset": N // 2, "factor": 3.0, "run_id": "merge-run"}
    run_job({**merge, "root": str(clean)})
    expected = read(str(clean / "s" / "merged"))
    for trial in range(3):
        root = tmp_path / f"t{trial}"
        uri = _seed(root, ref)
        outs = _concurrent(zygote, [{**merge, "root": str(root)}] * 2, tmp_path / f"go{trial}")
        assert all(o["ok"] for o in outs), outs
        assert lost_and_duplicated(read(uri), expected) == (0, 0)
