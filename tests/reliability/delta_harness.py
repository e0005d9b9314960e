"""Fault-injection harness for the Delta reliability tests (not a test module).

Writers run in separate processes so they can be SIGKILLed. Importing Dagster takes seconds, so
one *zygote* process imports everything once and forks a fresh writer per job (before any
polars/deltalake thread pool exists, so the forks are safe). Each writer writes its outcome to a
marker file and leaves with ``os._exit`` (never reading back with ``to_pyarrow_table``: a process
that did may abort at exit). The test process kills writers by their pid only.

Run as a script, this file is the zygote: one JSON job per stdin line, the forked pid per stdout
line.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest

ROOT_DIR = Path(__file__).resolve().parents[2]
D0 = dt.date(2024, 1, 1)
DAYS = 4  # partitions day 0..3


# -- the data every writer and every reference run agree on --------------------------------------
def rows(n: int, *, offset: int = 0, factor: float = 1.0, days: int = DAYS) -> pl.LazyFrame:
    """``n`` deterministic rows: id from ``offset``, ``day`` cycling over ``days`` partitions,
    ``amount = id * factor`` (so old and new versions of a row are told apart)."""
    i = pl.int_range(offset, offset + n, dtype=pl.Int64)
    return pl.LazyFrame().select(
        id=i, day=pl.lit(D0) + pl.duration(days=i % days), amount=i.cast(pl.Float64) * factor,
    )


def job_frame(job: dict[str, Any]) -> pl.LazyFrame:
    f = rows(job["n"], offset=job.get("offset", 0), factor=job.get("factor", 1.0), days=job.get("days", DAYS))
    if job.get("only_days"):
        wanted = [D0 + dt.timedelta(days=d) for d in job["only_days"]]
        f = f.filter(pl.col("day").is_in(wanted))
    return f


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """One write through DeltaResource, described by ``job`` (also used in-process)."""
    from loom_resources.delta import DeltaResource
    from loom_resources.dtypes import ColumnSchema as C
    from loom_resources.model import RunParams, TargetSpec, WriteContext

    t_start = time.perf_counter()
    cols = (C("id", "int64", nullable=False), C("day", "date", nullable=False), C("amount", "float64"))
    kw: dict[str, Any] = {"mode": job["mode"], "partition_by": ("day",)}
    if job["mode"] == "merge":
        kw["merge_keys"] = ("id",)
    spec = TargetSpec(job["ref"], "delta", cols, **kw)
    keys = tuple((D0 + dt.timedelta(days=d)).isoformat() for d in job.get("only_days", ()))
    params = RunParams(partition_keys=keys, partitions=tuple({"day": k} for k in keys)) if keys else RunParams()
    ctx = WriteContext(run_id=job["run_id"], asset_key=job["ref"].replace(".", "/"), partition_keys=keys,
                       timestamp=dt.datetime(2024, 5, 1, tzinfo=dt.UTC))
    frame: pl.LazyFrame | pl.DataFrame = job_frame(job)
    if not job.get("streaming"):
        frame = frame.collect()
    go = job.get("go")
    Path(job["root"]).mkdir(parents=True, exist_ok=True)
    while go and not os.path.exists(go):  # start barrier for concurrent attempts
        time.sleep(0.001)
    t0 = time.perf_counter()
    res = DeltaResource(root=job["root"], max_commit_retries=job.get("retries", 8),
                        parquet_writer=job.get("parquet_writer", "polars")).write(
        frame, spec, params, streaming=bool(job.get("streaming")), write_ctx=ctx)
    end = time.perf_counter()
    return {"ok": True, "skipped": res.skipped, "version": res.version, "seconds": end - t0, "total": end - t_start}


# -- the zygote --------------------------------------------------------------------------------
def _serve() -> None:
    import loom_resources.delta  # noqa: F401  (the slow imports, once)

    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    for line in sys.stdin:
        job = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                out = run_job(job)
            except BaseException as exc:  # reported through the marker
                out, code = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}, 1
            Path(job["marker"] + ".tmp").write_text(json.dumps(out))
            os.replace(job["marker"] + ".tmp", job["marker"])
            os._exit(code)
        print(pid, flush=True)


class Zygote:
    """The test side of the zygote: start writers, wait for them, kill them."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        env = dict(os.environ, PYTHONPATH=str(ROOT_DIR))
        self.proc = subprocess.Popen([sys.executable, __file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, cwd=ROOT_DIR, env=env)
        self.n = 0

    def start(self, job: dict[str, Any]) -> tuple[int, Path]:
        self.n += 1
        marker = self.workdir / f"job{self.n}.json"
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({**job, "marker": str(marker)}) + "\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline()), marker

    @staticmethod
    def alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    def wait(self, pid: int, marker: Path, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while self.alive(pid) and time.monotonic() < deadline:
            time.sleep(0.005)
        assert not self.alive(pid), f"writer {pid} did not finish"
        out: dict[str, Any] = json.loads(marker.read_text())
        return out

    def kill_after(self, pid: int, delay: float) -> bool:
        """SIGKILL writer ``pid`` after ``delay`` seconds; whether it was still running."""
        end = time.monotonic() + delay
        while time.monotonic() < end and self.alive(pid):
            time.sleep(0.002)
        running = self.alive(pid)
        if running:
            os.kill(pid, signal.SIGKILL)
        while self.alive(pid):
            time.sleep(0.002)
        return running

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module", name="zygote")
def zygote_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Zygote]:
    z = Zygote(tmp_path_factory.mktemp("zygote"))
    yield z
    z.close()


# -- comparing tables --------------------------------------------------------------------------
def read(uri: str) -> pl.DataFrame:
    return pl.read_delta(uri).select("id", "day", "amount")


def lost_and_duplicated(got: pl.DataFrame, expected: pl.DataFrame) -> tuple[int, int]:
    """Rows of ``expected`` missing from ``got`` and rows of ``got`` beyond ``expected``, as
    multisets over all columns."""
    cols = list(expected.columns)
    g = got.group_by(cols).len("got")
    e = expected.group_by(cols).len("exp")
    j = e.join(g, on=cols, how="full", coalesce=True, nulls_equal=True).fill_null(0)
    lost = j.select((pl.col("exp") - pl.col("got")).clip(lower_bound=0).sum()).item()
    dup = j.select((pl.col("got") - pl.col("exp")).clip(lower_bound=0).sum()).item()
    return int(lost), int(dup)


def delays(seed: int, n: int, span: float) -> list[float]:
    """``n`` deterministic kill delays spread over ``[0, span]`` (one per stratum)."""
    rng = random.Random(seed)
    return [span * (i + rng.random()) / n for i in range(n)]


if __name__ == "__main__":
    _serve()
