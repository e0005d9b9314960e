"""Store faults on Delta writes and reads give errors naming the table, where it lives and what to
do, and leave the table exactly as it was.

* disk full: a 1 MB tmpfs under the Delta root (needs ``mount``; skipped with the reason otherwise);
  the write runs in a writer process (delta-rs may panic in a background thread after ENOSPC);
* permission: the table directory made immutable with ``chattr +i`` (root ignores mode bits;
  skipped with the reason when chattr is not available);
* unreachable: a root below a regular file (ENOTDIR), and the same fault on a read.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import mounted_tmpfs
from delta_harness import Zygote, lost_and_duplicated, read, run_job, zygote_fixture  # noqa: F401

from loom_resources.delta import DeltaResource
from loom_resources.delta._faults import DeltaPermissionError, DeltaStoreUnreachableError
from loom_resources.errors import BackendUnavailableError
from loom_resources.model import RunParams, SourceSpec, TableRef


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    with mounted_tmpfs(tmp_path / "tiny", "1m") as mount:  # 2M rows of zstd Parquet no longer fill 4 MB
        yield mount


def test_disk_full_names_the_table_and_keeps_it(zygote: Zygote, tiny_disk: Path) -> None:
    root = tiny_disk / "delta"
    run_job({"root": str(root), "ref": "s.full", "mode": "append", "n": 1_000, "run_id": "seed"})
    uri = str(root / "s" / "full")
    before = read(uri)
    for streaming in (False, True):
        pid, marker = zygote.start({"root": str(root), "ref": "s.full", "mode": "append", "n": 2_000_000,
                                    "offset": 10_000, "run_id": f"big-{streaming}", "streaming": streaming})
        out = zygote.wait(pid, marker)
        assert not out["ok"]
        assert out["error"].startswith("DeltaStoreFullError"), out
        assert "s.full" in out["error"] and uri in out["error"] and "free space" in out["error"], out
        assert lost_and_duplicated(read(uri), before) == (0, 0)
    # whatever the failed attempts left (delta-rs usually aborts its partial uploads) is swept
    delta = DeltaResource(root=str(root))
    delta.sweep_orphan_files("s.full", min_age_hours=0)
    assert delta.sweep_orphan_files("s.full", min_age_hours=0, dry_run=True) == []
    assert lost_and_duplicated(read(uri), before) == (0, 0)


@pytest.fixture
def immutable(tmp_path: Path) -> Iterator[Path]:
    table = tmp_path / "root" / "s" / "locked"
    run_job({"root": str(tmp_path / "root"), "ref": "s.locked", "mode": "append", "n": 1_000, "run_id": "seed"})
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not available to make a directory unwritable for root")
    dirs = [table, *[p for p in table.iterdir() if p.is_dir() and p.name != "_delta_log"]]
    done = subprocess.run(["chattr", "+i", *map(str, dirs)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"chattr +i is not permitted here: {done.stderr.strip()}")
    try:
        yield table
    finally:
        subprocess.run(["chattr", "-i", *map(str, dirs)], capture_output=True)


def test_permission_denied_names_the_table_and_what_to_check(immutable: Path) -> None:
    root = immutable.parents[1]
    before = read(str(immutable))
    with pytest.raises(DeltaPermissionError) as err:
        run_job({"root": str(root), "ref": "s.locked", "mode": "append", "n": 1_000, "offset": 5_000, "run_id": "w"})
    text = str(err.value)
    assert "s.locked" in text and str(immutable) in text and "check permissions of" in text
    assert isinstance(err.value, BackendUnavailableError)
    assert lost_and_duplicated(read(str(immutable)), before) == (0, 0)


def test_unreachable_store_names_the_table_on_write_and_read(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    delta = DeltaResource(root=str(tmp_path))
    # the schema directory "file" is a regular file: every access below it fails with ENOTDIR
    with pytest.raises(DeltaStoreUnreachableError) as err:
        run_job({"root": str(tmp_path), "ref": "file.t", "mode": "append", "n": 10, "run_id": "w"})
    assert "file.t" in str(err.value) and "unreachable" in str(err.value)
    assert blocker.read_text() == "not a directory"
    assert not delta.exists(TableRef.parse("file.t"))  # a read of it: missing, not a crash
    with pytest.raises(BackendUnavailableError, match="file.t"):
        delta.read(SourceSpec(TableRef.parse("file.t")), RunParams())
