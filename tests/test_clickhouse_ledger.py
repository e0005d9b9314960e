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
