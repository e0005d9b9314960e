"""Streaming reads of ClickHouse: streamed straight into the consumer (the default, no temporary
disk), the capped spool mode, its errors, and the sweep of spools left by killed processes.

Every test uses the session's one embedded-engine path (``chdb_url``) and its own database;
subprocess tests give each child its own LOOM_HOME."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from loom_resources.clickhouse import ClickHouseResource
from loom_resources.clickhouse._spool import SpoolDiskFullError, SpoolLimitError, sweep_spools
from loom_resources.delta import DeltaResource
from loom_resources.dtypes import ColumnSchema
from loom_resources.errors import LoomError
from loom_resources.model import RunParams, SourceSpec, TableRef, TargetSpec
from loom_resources.predicates import col

ROOT = Path(__file__).resolve().parents[1]
COLS = (ColumnSchema("id", "int64", False), ColumnSchema("day", "date", False),
        ColumnSchema("amount", "float64"), ColumnSchema("sku", "string"))
SCHEMA = pl.Schema({"id": pl.Int64, "day": pl.Date, "amount": pl.Float64, "sku": pl.String})


def _fill(r: ClickHouseResource, schema: str, n: int, start: int = 0) -> TableRef:
    r.command(f"CREATE DATABASE IF NOT EXISTS `{schema}`")
    r.command(f"CREATE TABLE IF NOT EXISTS `{schema}`.src (`id` Int64, `day` Date32, `amount` Nullable(Float64), "
              f"`sku` Nullable(String)) ENGINE = MergeTree ORDER BY id")
    r.command(f"INSERT INTO `{schema}`.src SELECT number + {start}, toDate32('2024-01-01') + number % 3, "
              f"if(number % 7 = 0, NULL, number * 0.5), concat('s', toString(number % 10)) FROM numbers({n})")
    return TableRef(schema, "src")


@pytest.fixture
def spool_parent(tmp_path: Path) -> Path:
    d = tmp_path / "spool"
    d.mkdir()
    return d


@pytest.fixture
def res(ch_url: str, spool_parent: Path) -> Iterator[ClickHouseResource]:
    """On the embedded engine, then over HTTP (``ch_url`` in conftest)."""
    r = ClickHouseResource(url=ch_url, spool_dir=str(spool_parent))
    yield r
    r.close()


def _tmp_spools() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("loom-ch-spool-*"))


# -- direct streaming ------------------------------------------------------------------------------


def test_direct_stream_spools_nothing_and_delivers_every_row(res: ClickHouseResource, unique_schema: str,
                                                             spool_parent: Path) -> None:
    ref = _fill(res, unique_schema, 300_000)
    before = _tmp_spools()
    lf = res.read_streaming(SourceSpec(ref), RunParams())
    assert lf.collect_schema() == SCHEMA
    n = total = 0
    for df in lf.collect_batches(engine="streaming"):
        assert list(spool_parent.iterdir()) == [] and _tmp_spools() == before  # nothing on disk mid-stream
        assert df.schema == SCHEMA
        n, total = n + df.height, total + df["id"].sum()
    assert (n, total) == (300_000, sum(range(300_000)))
    assert res._spools == [] and list(spool_parent.iterdir()) == [] and _tmp_spools() == before


def test_direct_stream_is_re_executable_with_every_engine(res: ClickHouseResource, unique_schema: str,
                                                           tmp_path: Path) -> None:
    ref = _fill(res, unique_schema, 50_000)
    lf = res.read_streaming(SourceSpec(ref), RunParams())
    expected = res.read(SourceSpec(ref), RunParams()).collect().sort("id")
    assert lf.collect().sort("id").equals(expected)
    assert lf.collect(engine="streaming").sort("id").equals(expected)
    assert pl.concat(lf.collect_batches(engine="streaming")).sort("id").equals(expected)
    lf.sink_parquet(tmp_path / "out.parquet")
    assert pl.read_parquet(tmp_path / "out.parquet").sort("id").equals(expected)
    lf.sink_ipc(tmp_path / "out.arrow")
    assert pl.read_ipc(tmp_path / "out.arrow").sort("id").equals(expected)
    # the frame used twice in one plan, and each collect re-runs the query (it sees new rows)
    assert lf.join(lf, on="id").select(pl.len()).collect(engine="streaming").item() == 50_000
    _fill(res, unique_schema, 10, start=50_000)
    assert lf.select(pl.len()).collect().item() == 50_010


def test_direct_stream_pushes_projection_and_limit_and_applies_filters(
    res: ClickHouseResource, unique_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import loom_resources.clickhouse._read as mod

    ref = _fill(res, unique_schema, 20_000)
    sent: list[str] = []
    original = mod.arrow_batches

    def recording(conn: Any, sql: str) -> Any:
        sent.append(sql)
        return original(conn, sql)

    monkeypatch.setattr(mod, "arrow_batches", recording)
    lf = res.read_streaming(SourceSpec(ref, predicate=col("id").lt(10_000)), RunParams())
    out = lf.select("sku", "id").collect(engine="streaming")
    assert out.columns == ["sku", "id"] and out.height == 10_000
    assert "`amount`" not in sent[-1].split("FROM")[0]
    assert lf.head(7).collect(engine="streaming").height == 7 and "LIMIT 7" in sent[-1]
    got = lf.filter(pl.col("amount").is_null() & (pl.col("id") < 100)).collect(engine="streaming")
    assert sorted(got["id"].to_list()) == [i for i in range(100) if i % 7 == 0]
    assert lf.filter(pl.col("id") >= 9_990).head(3).collect(engine="streaming").height == 3


def test_direct_stream_feeds_the_delta_and_clickhouse_writers(res: ClickHouseResource, unique_schema: str,
                                                             tmp_path: Path) -> None:
    ref = _fill(res, unique_schema, 200_000)
    lf = res.read_streaming(SourceSpec(ref), RunParams())
    delta = DeltaResource(root=str(tmp_path))
    d = TargetSpec(TableRef("s", "copy"), "delta", COLS, mode="replace_partitions", partition_by=("day",))  # type: ignore[arg-type]
    assert delta.write(lf, d, RunParams(), streaming=True).rows_written == 200_000
    back = pl.scan_delta(str(tmp_path / "s" / "copy")).select(pl.len(), pl.col("id").sum()).collect().row(0)
    assert back == (200_000, sum(range(200_000)))
    # into the same embedded engine, while the source query is still streaming
    c = TargetSpec(TableRef(unique_schema, "copy"), "clickhouse", COLS)  # type: ignore[arg-type]
    res.write(lf, c, RunParams(), streaming=True)
    assert res.query_rows(f"SELECT count(), sum(id) FROM `{unique_schema}`.copy") == [(200_000, sum(range(200_000)))]


def test_direct_stream_failure_is_a_clear_error_and_leaves_nothing(res: ClickHouseResource, unique_schema: str,
                                                                    spool_parent: Path) -> None:
    ref = _fill(res, unique_schema, 10)
    lf = res.read_streaming(SourceSpec(ref), RunParams())
    res.command(f"DROP TABLE `{unique_schema}`.src")
    with pytest.raises(LoomError, match=f"stream the result of query `SELECT .*{unique_schema}"):
        lf.collect(engine="streaming")
    assert list(spool_parent.iterdir()) == []
    _fill(res, unique_schema, 5)
    assert lf.collect().height == 5  # the same frame works again once the table is back


def test_empty_result_streams_an_empty_typed_frame(res: ClickHouseResource, unique_schema: str) -> None:
    ref = _fill(res, unique_schema, 10)
    out = res.read_streaming(SourceSpec(ref, predicate=col("id").gt(100)), RunParams()).collect(engine="streaming")
    assert out.height == 0 and out.schema == SCHEMA


# -- spool mode: cap and disk full -----------------------------------------------------------------


def test_spool_cap_exceeded_names_the_query_and_directory(chdb_url: str, unique_schema: str, spool_parent: Path) -> None:
    r = ClickHouseResource(url=chdb_url, streaming_reads="spool", spool_dir=str(spool_parent), spool_max_bytes=200_000)
    try:
        ref = _fill(r, unique_schema, 500_000)
        with pytest.raises(SpoolLimitError, match=r"(?s)spool_max_bytes=200000.*" + str(spool_parent)) as info:
            r.read_streaming(SourceSpec(ref), RunParams())
        assert f"{unique_schema}" in str(info.value) and "streaming_reads='direct'" in str(info.value)
        assert list(spool_parent.iterdir()) == []  # removed at once, not at step end
        assert r.read_streaming(SourceSpec(ref, predicate=col("id").lt(10)), RunParams()).collect().height == 10
    finally:
        r.close()
    assert list(spool_parent.iterdir()) == []


def test_spool_disk_full_is_a_loom_error_saying_what_to_do(chdb_url: str, unique_schema: str, spool_parent: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import pyarrow as pa  # the spool imports it when it writes

    class FullFile:  # a file on a disk that fills up after 50 kB, like a small tmpfs
        def __init__(self, path: str, mode: str) -> None:
            self.f, self.closed = open(path, mode), False  # noqa: SIM115

        def write(self, data: Any) -> int:
            if self.f.tell() > 50_000:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.f.write(data)

        def tell(self) -> int:
            return self.f.tell()

        def flush(self) -> None:
            self.f.flush()

        def close(self) -> None:
            self.f.close()
            self.closed = True

    monkeypatch.setattr(pa, "OSFile", FullFile)
    r = ClickHouseResource(url=chdb_url, streaming_reads="spool", spool_dir=str(spool_parent))
    try:
        ref = _fill(r, unique_schema, 300_000)
        with pytest.raises(SpoolDiskFullError, match=f"(?s){spool_parent}.*{unique_schema}.*spool_dir") as info:
            r.read_streaming(SourceSpec(ref), RunParams())
        assert isinstance(info.value, LoomError) and "streaming_reads='direct'" in str(info.value)
        assert list(spool_parent.iterdir()) == []
    finally:
        r.close()


# -- sweep -----------------------------------------------------------------------------------------


def _leftover(parent: Path, pid: int, *, age_s: float = 3600, host: str | None = None) -> Path:
    host = host or socket.gethostname()
    d = Path(tempfile.mkdtemp(prefix=f"loom-ch-spool-{host}-{pid}-", dir=parent))
    (d / "part-00000.arrow").write_bytes(b"x" * 1000)
    old = time.time() - age_s
    for p in (d / "part-00000.arrow", d):
        os.utime(p, (old, old))
    return d


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_sweep_removes_only_old_spools_of_dead_processes(spool_parent: Path) -> None:
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead = _dead_pid()
        gone = _leftover(spool_parent, dead)
        kept = [
            _leftover(spool_parent, live.pid),            # a live process's spool, however old
            _leftover(spool_parent, os.getpid()),         # our own
            _leftover(spool_parent, dead, age_s=5),       # too recent to judge
            _leftover(spool_parent, dead, host="otherhost"),  # another machine's process
        ]
        (spool_parent / "loom-ch-spool-legacy").mkdir()  # no owner in the name
        assert sweep_spools(str(spool_parent)) == [str(gone)]
        assert not gone.exists() and all(d.exists() for d in kept) and (spool_parent / "loom-ch-spool-legacy").exists()
    finally:
        live.kill()
        live.wait()


def test_connection_start_up_sweeps_leftovers(chdb_url: str, spool_parent: Path) -> None:
    gone = _leftover(spool_parent, _dead_pid())
    r = ClickHouseResource(url=chdb_url, spool_dir=str(spool_parent))
    assert gone.exists()  # configuring the resource touches nothing
    try:
        r.client()
        assert not gone.exists()
    finally:
        r.close()


def test_spool_of_a_killed_process_is_swept_and_a_live_one_is_not(chdb_url: str, spool_parent: Path,
                                                                    tmp_path: Path) -> None:
    """A child spools a read and is SIGKILLed (nothing of its own cleanup runs); a second child
    is alive with its spool. The sweep at the next connection removes only the dead one's."""
    script = textwrap.dedent(f"""
        import os, sys, time
        from loom_resources.clickhouse import ClickHouseResource
        from loom_resources.model import RunParams, SourceSpec, TableRef
        home = sys.argv[1]
        os.environ["LOOM_HOME"] = home
        r = ClickHouseResource(url="chdb://" + home + "/ch", streaming_reads="spool", spool_dir={str(spool_parent)!r})
        r.command("CREATE DATABASE d")
        r.command("CREATE TABLE d.t (id Int64) ENGINE = MergeTree ORDER BY id")
        r.command("INSERT INTO d.t SELECT number FROM numbers(100000)")
        r.read_streaming(SourceSpec(TableRef("d", "t")), RunParams())
        print(r._spools[-1], flush=True)
        if sys.argv[2] == "kill":
            os.kill(os.getpid(), 9)
        time.sleep(60)
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = {}
    for how in ("kill", "live"):
        home = tmp_path / f"home-{how}"
        home.mkdir()
        procs[how] = subprocess.Popen([sys.executable, "-c", script, str(home), how], cwd=ROOT, env=env,
                                      stdout=subprocess.PIPE, text=True)
    try:
        spools = {how: Path(p.stdout.readline().strip()) for how, p in procs.items()}  # type: ignore[union-attr]
        assert procs["kill"].wait(timeout=60) == -signal.SIGKILL
        assert all(s.is_dir() and any(s.iterdir()) for s in spools.values())
        old = time.time() - 3600
        for s in spools.values():  # both look old; only the owner's liveness tells them apart
            for p in (*s.iterdir(), s):
                os.utime(p, (old, old))
        r = ClickHouseResource(url=chdb_url, spool_dir=str(spool_parent))
        try:
            r.client()
        finally:
            r.close()
        assert not spools["kill"].exists()
        assert spools["live"].exists() and any(spools["live"].iterdir())
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
            p.wait()


# -- memory stays flat ------------------------------------------------------------------------------

_RSS_CHILD = textwrap.dedent("""
    import json, os, resource, sys
    home, n, what = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    os.environ["LOOM_HOME"] = home
    from loom_resources.clickhouse import ClickHouseResource
    from loom_resources.model import RunParams, SourceSpec, TableRef
    r = ClickHouseResource(url="chdb://" + home + "/ch", spool_dir=home + "/spool")
    os.makedirs(home + "/spool", exist_ok=True)
    if what == "setup":
        r.command("CREATE DATABASE d")
        r.command("CREATE TABLE d.t (id Int64, day Date32, amount Nullable(Float64), sku Nullable(String)) "
                  "ENGINE = MergeTree ORDER BY id")
        r.command(f"INSERT INTO d.t SELECT number, toDate32('2024-01-01') + number % 30, number * 0.5, "
                  f"concat('sku', toString(number % 1000)) FROM numbers({n})")
        r.close()
        print(json.dumps({}), flush=True)
        os._exit(0)
    rows = spooled = 0
    for df in r.read_streaming(SourceSpec(TableRef("d", "t")), RunParams()).collect_batches(engine="streaming"):
        rows += df.height
        spooled = max(spooled, sum(f.stat().st_size for f in __import__("pathlib").Path(home, "spool").rglob("*")
                                   if f.is_file()))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    r.close()
    print(json.dumps({"rows": rows, "rss_mb": rss, "spooled": spooled}), flush=True)
    os._exit(0)
""")


def _rss_child(home: Path, n: int, what: str) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-c", _RSS_CHILD, str(home), str(n), what], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=600)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert lines, f"child failed ({proc.returncode}): {proc.stderr[-2000:]}"
    return dict(json.loads(lines[-1]))


def test_direct_stream_memory_is_flat_and_nothing_is_spooled(tmp_path: Path) -> None:
    """Peak RSS of streaming 20M rows is within 1.25x that of 5M rows, and zero bytes are spooled."""
    got = {}
    for n in (5_000_000, 20_000_000):
        home = tmp_path / f"h{n}"
        home.mkdir()
        _rss_child(home, n, "setup")
        got[n] = _rss_child(home, n, "read")
        assert got[n]["rows"] == n and got[n]["spooled"] == 0
    assert got[20_000_000]["rss_mb"] <= 1.25 * got[5_000_000]["rss_mb"], got
    assert got[20_000_000]["rss_mb"] < 2048, got  # generous: one batch at a time, not the result
