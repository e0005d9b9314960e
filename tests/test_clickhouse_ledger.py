"""The publication ledger's failure paths (issue 24, defects 2 and 3), on the embedded engine and
over HTTP: a publication interrupted after its claim (the publication step raises, as a kill
inside it would leave things), then what the next resource does. Read back from the store."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import polars as pl
import pytest

from loom_resources import ColumnSchema, RunParams, SourceSpec, TableRef, TargetSpec, WriteContext
from loom_resources.clickhouse import ClickHouseResource, _publish
from loom_resources.clickhouse._publish import PublicationBlockedError


def spec(schema: str, table: str = "t") -> TargetSpec:
    return TargetSpec(TableRef(schema, table), "clickhouse",
                      [ColumnSchema("id", "int64", False), ColumnSchema("day", "date", False)],
                      mode="append", partition_by=("day",))


def frame(n: int, start: int = 0) -> pl.DataFrame:
    return pl.DataFrame({"id": range(start, start + n), "day": [dt.date(2026, 1, 1 + i % 3) for i in range(n)]})


def interrupted_write(url: str, schema: str, monkeypatch: pytest.MonkeyPatch, n: int = 300) -> WriteContext:
    """A write claimed and staged whose publication never ran (the process 'died' inside it)."""
    ctx = WriteContext(run_id="run-1", asset_key=f"{schema}/t")
    res = ClickHouseResource(url=url)
    with monkeypatch.context() as m:
        def die(*a: Any, **k: Any) -> None:
            raise KeyboardInterrupt("killed inside the publication")

        m.setattr(_publish, "_ops", die)
        with pytest.raises(KeyboardInterrupt):
            res.write(frame(n), spec(schema), RunParams(), write_ctx=ctx)
    res.close()
    return ctx


def count(res: ClickHouseResource, ref: str) -> int:
    return int(res.query_rows(f"SELECT count() FROM {ref}")[0][0])


def test_rerun_that_completes_a_publication_reports_its_rows(ch_url: str, unique_schema: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Defect 3: the rerun published the rows, so it says so (not skipped, rows_written = N)."""
    ctx = interrupted_write(ch_url, unique_schema, monkeypatch)
    res = ClickHouseResource(url=ch_url)
    out = res.write(frame(300), spec(unique_schema), RunParams(), write_ctx=ctx)
    assert (out.skipped, out.rows_written) == (False, 300)
    assert count(res, f"{unique_schema}.t") == 300
    again = res.write(frame(300), spec(unique_schema), RunParams(), write_ctx=ctx)
    assert (again.skipped, again.rows_written) == (True, 0)
    assert count(res, f"{unique_schema}.t") == 300
    res.close()


def test_unpublishable_entry_blocks_nothing_and_says_how_to_clear_it(
    ch_url: str, unique_schema: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Defect 2: the target of a staged write is dropped outside Loom. Other tables still read
    and write; the stuck write's error names the write, the table and abandon_publication, which
    clears it."""
    ctx = interrupted_write(ch_url, unique_schema, monkeypatch)
    outside = ClickHouseResource(url=ch_url)
    outside.command(f"DROP TABLE {unique_schema}.t SYNC")
    outside.close()

    res = ClickHouseResource(url=ch_url)
    with caplog.at_level(logging.WARNING):
        other = res.write(frame(10), spec(unique_schema, "other"), RunParams(),
                          write_ctx=WriteContext(run_id="run-2", asset_key=f"{unique_schema}/other"))
    assert other.rows_written == 10 and count(res, f"{unique_schema}.other") == 10
    assert res.read(SourceSpec(TableRef(unique_schema, "other")), RunParams()).collect().height == 10
    pending = [e for e in res.pending_publications() if e.target == f"{unique_schema}.t"]
    assert [e.token for e in pending] == [f"loom-{ctx.idempotency_token()}"]

    with pytest.raises(PublicationBlockedError) as err:  # the same write again: clear error
        res.write(frame(300), spec(unique_schema), RunParams(), write_ctx=ctx)
    msg = str(err.value)
    assert f"{unique_schema}.t" in msg and ctx.idempotency_token() in msg and "abandon_publication" in msg

    summary = res.abandon_publication(f"{unique_schema}.t", f"loom-{ctx.idempotency_token()}")
    assert "abandoned" in summary
    assert not [e for e in res.pending_publications() if e.target == f"{unique_schema}.t"]
    assert res.query_rows(f"SELECT count() FROM system.tables WHERE database = '{unique_schema}' "
                          "AND name LIKE '\\\\_loom\\\\_stage\\\\_%'")[0][0] == 0
    res.close()


def test_an_up_to_date_ledger_costs_one_lookup_and_no_ddl(ch_url: str, unique_schema: str,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 27: a resource's first write used to send the ledger's DDL again (CREATE DATABASE,
    CREATE TABLE, two ADD COLUMNs, MODIFY SETTING: metadata rewrites) although the ledger was
    up to date. Now one look-up finds it up to date, and the write is still claimed and
    published exactly once (read back from the ledger and the table)."""
    first = ClickHouseResource(url=ch_url)  # makes sure the ledger exists, in this version's form
    first.write(frame(5), spec(unique_schema, "warm"), RunParams(),
                write_ctx=WriteContext(run_id="run-0", asset_key=f"{unique_schema}/warm"))
    first.close()

    sent: list[str] = []
    command = ClickHouseResource.command

    def spy(self: ClickHouseResource, sql: str, **kw: Any) -> Any:
        sent.append(sql)
        return command(self, sql, **kw)

    monkeypatch.setattr(ClickHouseResource, "command", spy)
    ctx = WriteContext(run_id="run-1", asset_key=f"{unique_schema}/t")
    res = ClickHouseResource(url=ch_url)
    out = res.write(frame(300), spec(unique_schema), RunParams(), write_ctx=ctx)
    ddl = [s for s in sent if "_loom`" in s and s.split()[0] in ("CREATE", "ALTER")]
    assert ddl == []
    assert out.rows_written == 300 and count(res, f"{unique_schema}.t") == 300
    states = res.query_rows(f"SELECT state FROM `_loom`.`publications` WHERE target = '{unique_schema}.t' "
                            f"AND token = 'loom-{ctx.idempotency_token()}' ORDER BY at")
    assert [s for (s,) in states] == ["staged", "published"]
    again = res.write(frame(300), spec(unique_schema), RunParams(), write_ctx=ctx)
    assert again.skipped and count(res, f"{unique_schema}.t") == 300
    res.close()


def test_a_ledger_made_by_an_earlier_version_is_brought_up_to_date(tmp_path: Any) -> None:
    """The look-up above must not skip the upgrade of a ledger without the newer columns and the
    deduplication window: in a process of its own (its own embedded path; the session's ledger
    is shared), an old-form ledger is upgraded by the first write, read back from the engine."""
    import subprocess
    import sys

    script = f"""
import os, polars as pl, clickhouse_connect
from loom_resources import ColumnSchema, RunParams, TableRef, TargetSpec, WriteContext
from loom_resources.clickhouse import ClickHouseResource
url = "chdb://{tmp_path / 'ch'}"
c = clickhouse_connect.get_client(dsn=url)
c.command("CREATE DATABASE `_loom`")
c.command("CREATE TABLE `_loom`.`publications` (target String, token String, state LowCardinality(String), "
          "staging String, rows UInt64, at DateTime64(6, 'UTC') DEFAULT now64(6, 'UTC')) ENGINE = MergeTree "
          "ORDER BY (target, token)")
c.close()
res = ClickHouseResource(url=url)
spec = TargetSpec(TableRef("s", "t"), "clickhouse", [ColumnSchema("id", "int64", False)], mode="append")
ctx = WriteContext(run_id="r", asset_key="s/t")
res.write(pl.DataFrame({{"id": [1, 2, 3]}}), spec, RunParams(), write_ctx=ctx)
cols = [r[0] for r in res.query_rows("SELECT name FROM system.columns WHERE database = '_loom' AND table = 'publications'")]
eng = res.query_rows("SELECT engine_full FROM system.tables WHERE database = '_loom' AND name = 'publications'")[0][0]
states = [r[0] for r in res.query_rows("SELECT state FROM `_loom`.`publications` ORDER BY at")]
n = res.query_rows("SELECT count() FROM s.t")[0][0]
print("RESULT", "owner" in cols, "cluster" in cols, "non_replicated_deduplication_window = 10000" in eng, states, n, flush=True)
res.close()
os._exit(0)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    line = [x for x in out.stdout.splitlines() if x.startswith("RESULT")]
    assert line, out.stderr[-3000:]
    assert line[0] == "RESULT True True True ['staged', 'published'] 3"
