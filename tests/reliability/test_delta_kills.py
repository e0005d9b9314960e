"""SIGKILL a Delta write at random points, rerun it, compare with a clean run's result.

For append, overwrite, multi-partition replace_partitions (streaming and eager) and merge: a
writer process is killed after a deterministic random delay spread over its whole duration
(before, during and after its commit), then the same logical write (same write context) runs
again. The table read back must equal the clean run's result: 0 rows lost, 0 duplicated. The
killed attempts' orphaned files are then swept: a sweep with the default safe age removes
nothing (they are young), one with age 0 removes them all and the table still reads the same.
"""

from __future__ import annotations

import json
import os
import shutil
import zlib
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from delta_harness import Zygote, delays, lost_and_duplicated, read, run_job, zygote_fixture  # noqa: F401
from deltalake import DeltaTable

from loom_resources.delta import DeltaResource
from loom_resources.model import TableRef

N = 250_000
TRIALS = 3
WRITES: dict[str, dict[str, Any]] = {
    "append": {"mode": "append", "n": N, "offset": 10 * N},
    "overwrite": {"mode": "overwrite", "n": N, "factor": 2.0},
    "replace_partitions": {"mode": "replace_partitions", "n": N, "factor": 2.0, "only_days": [1, 2]},
    "merge": {"mode": "merge", "n": N, "offset": N // 2, "factor": 3.0},
}
CASES = [(m, s) for m in WRITES for s in (True, False) if not (m == "merge" and s)]
FIGURES: dict[str, dict[str, int]] = {}


def _seed(root: Path, template: Path | None = None) -> str:
    """The seeded table under ``root`` (a copy of ``template``'s when given)."""
    if template is not None:
        shutil.copytree(template, root)
    else:
        run_job({"root": str(root), "ref": "s.t", "mode": "append", "n": N, "run_id": "seed"})
    return str(root / "s" / "t")


@pytest.mark.parametrize(("mode", "streaming"), CASES, ids=[f"{m}-{'streaming' if s else 'eager'}" for m, s in CASES])
def test_killed_write_then_rerun_loses_and_duplicates_nothing(zygote: Zygote, tmp_path: Path, mode: str,
                                                              streaming: bool) -> None:
    job = {**WRITES[mode], "ref": "s.t", "run_id": f"run-{mode}", "streaming": streaming}
    seeded = tmp_path / "seeded"
    _seed(seeded)
    clean = tmp_path / "clean"
    _seed(clean, seeded)
    # a clean run in a writer process: the expected table, and how long a write takes
    pid, marker = zygote.start({**job, "root": str(clean)})
    assert zygote.wait(pid, marker)["ok"]
    expected = read(str(clean / "s" / "t"))
    span = json.loads(marker.read_text())["total"] * 1.15  # the last stratum falls after the commit

    stats = {"trials": 0, "killed": 0, "killed_after_commit": 0, "lost": 0, "duplicated": 0,
             "orphans": 0, "leftovers_after_sweep": 0}
    for trial, delay in enumerate(delays(zlib.crc32(f"{mode}-{streaming}".encode()), TRIALS, span)):
        root = tmp_path / f"t{trial}"
        uri = _seed(root, seeded)
        pid, marker = zygote.start({**job, "root": str(root)})
        killed = zygote.kill_after(pid, delay)
        stats["trials"] += 1
        stats["killed"] += killed
        stats["killed_after_commit"] += killed and DeltaTable(uri).version() == 1
        run_job({**job, "root": str(root)})  # the rerun of the same logical write
        lost, dup = lost_and_duplicated(read(uri), expected)
        stats["lost"] += lost
        stats["duplicated"] += dup
        delta = DeltaResource(root=str(root))
        assert delta.sweep_orphan_files("s.t") == []  # killed attempts' files are young: kept
        orphans = delta.sweep_orphan_files("s.t", min_age_hours=0)
        stats["orphans"] += len(orphans)
        stats["leftovers_after_sweep"] += len(delta.sweep_orphan_files("s.t", min_age_hours=0, dry_run=True))
        assert lost_and_duplicated(read(uri), expected) == (0, 0)
    FIGURES[f"{mode}-{'streaming' if streaming else 'eager'}"] = stats
    print(f"\nDELTA-KILL {mode} {'streaming' if streaming else 'eager'}: {stats}")
    assert stats["lost"] == 0 and stats["duplicated"] == 0 and stats["leftovers_after_sweep"] == 0, stats


def test_reader_never_sees_an_empty_or_mixed_table(zygote: Zygote, tmp_path: Path) -> None:
    """A reader polling during an overwrite and a multi-partition replace sees the old table or
    the new one, whole."""
    for mode in ("overwrite", "replace_partitions"):
        root = tmp_path / mode
        uri = _seed(root)
        old = read(uri).sort("id")
        clean = tmp_path / f"{mode}-clean"
        _seed(clean)
        job = {**WRITES[mode], "ref": "s.t", "run_id": f"r-{mode}", "streaming": True}
        run_job({**job, "root": str(clean)})
        new = read(str(clean / "s" / "t")).sort("id")
        pid, marker = zygote.start({**job, "root": str(root)})
        seen = {"old": 0, "new": 0}
        while True:
            running = zygote.alive(pid)
            got = read(uri).sort("id")
            if got.equals(old):
                seen["old"] += 1
            else:
                assert got.equals(new), f"{mode}: a reader saw {got.height} rows, neither old nor new"
                seen["new"] += 1
            if not running:
                break
        assert zygote.wait(pid, marker)["ok"]
        assert seen["new"] >= 1
        print(f"\nDELTA-READER {mode}: {seen}")


def test_sweep_keeps_young_files_and_referenced_ones(tmp_path: Path) -> None:
    """The sweep removes only old files no log version references (multipart parts included)."""
    root = tmp_path / "r"
    uri = _seed(root)
    delta = DeltaResource(root=str(root))
    part = Path(uri) / "day=2024-01-02"
    stale = [part / "part-00001-dead.snappy.parquet", part / "part-00002-dead.snappy.parquet#1", Path(uri) / "x.parquet"]
    young = part / "part-00003-live.snappy.parquet"
    for f in [*stale, young]:
        f.write_bytes(b"PAR1")
    old = 10 * 3600.0
    for f in stale:
        os.utime(f, (f.stat().st_atime - old, f.stat().st_mtime - old))
    referenced = {Path(u.removeprefix("file://")) for u in DeltaTable(uri).file_uris()}
    for f in referenced:  # referenced files are kept however old they are
        os.utime(f, (f.stat().st_atime - old, f.stat().st_mtime - old))
    before = read(uri)
    assert delta.sweep_orphan_files("s.t", dry_run=True) == sorted(str(f.relative_to(uri)) for f in stale)
    assert all(f.exists() for f in stale)
    removed = delta.sweep_orphan_files("s.t")
    assert sorted(removed) == sorted(str(f.relative_to(uri)) for f in stale)
    assert not any(f.exists() for f in stale) and young.exists()
    assert all(f.exists() for f in referenced)
    assert lost_and_duplicated(read(uri), before) == (0, 0)
    assert "sweep removed 0 orphaned files" in delta.maintain(TableRef.parse("s.t"))
    assert young.exists()
    with pytest.raises(ValueError, match="min_age_hours"):
        delta.sweep_orphan_files("s.t", min_age_hours=-1)
    assert pl.read_delta(uri).height == before.height
