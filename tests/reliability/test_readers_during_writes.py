"""A reader polling a ClickHouse table while overwrites and partition replaces publish never sees
an empty table or a partition holding two generations of rows."""

from __future__ import annotations

import datetime as dt
import threading

import polars as pl

from loom_resources import ColumnSchema, RunParams, TargetSpec, WriteContext
from loom_resources.clickhouse import ClickHouseResource

DAYS = [dt.date(2026, 11, d) for d in range(1, 4)]


def frame(gen: int, n: int = 60_000) -> pl.DataFrame:
    return pl.DataFrame({"id": pl.int_range(0, n, eager=True)}).with_columns(
        pl.col("id").map_elements(lambda i: DAYS[i % 3], return_dtype=pl.Date).alias("day"), pl.lit(gen).alias("gen"))


def poll_while(write: threading.Thread, reader: ClickHouseResource, sql: str) -> list[list[tuple[object, ...]]]:
    """The result of ``sql`` at every poll while ``write`` runs."""
    polls: list[list[tuple[object, ...]]] = []
    write.start()
    while write.is_alive():
        polls.append(reader.query_rows(sql))
    write.join()
    return polls


def test_overwrite_and_replace_are_never_seen_half_done(chdb_url: str, unique_schema: str) -> None:
    writer, reader = ClickHouseResource(url=chdb_url), ClickHouseResource(url=chdb_url)
    cols = [ColumnSchema("id", "int64", False), ColumnSchema("day", "date", False), ColumnSchema("gen", "int64", False)]
    over = TargetSpec(f"{unique_schema}.o", "clickhouse", cols, mode="overwrite")
    repl = TargetSpec(f"{unique_schema}.r", "clickhouse", cols, mode="replace_partitions", partition_by=("day",))
    keys = tuple(d.isoformat() for d in DAYS)
    params = RunParams(partition_keys=keys, partitions=tuple({"day": k} for k in keys))
    try:
        writer.write(frame(0), over, RunParams())
        writer.write(frame(0), repl, params)

        def writes() -> None:
            for gen in (1, 2, 3):
                writer.write(frame(gen), over, RunParams(), write_ctx=WriteContext(run_id=f"o{gen}", asset_key="o"))
                writer.write(frame(gen), repl, params, write_ctx=WriteContext(run_id=f"r{gen}", asset_key="r"))

        polls = poll_while(threading.Thread(target=writes), reader,
                          f"SELECT 'o', toString(day), count(), uniqExact(gen) FROM {unique_schema}.o GROUP BY day "
                          f"UNION ALL SELECT 'r', toString(day), count(), uniqExact(gen) FROM {unique_schema}.r GROUP BY day")
        assert len(polls) > 3, "the reader polled too rarely to prove anything"
        every_day = {(t, d.isoformat()) for t in "or" for d in DAYS}
        for poll in polls:  # never an empty table or partition, never two generations in one
            assert {(t, d) for t, d, _, _ in poll} == every_day, poll
            assert all(count == 20_000 and gens == 1 for _, _, count, gens in poll), poll
        assert writer.query_rows(f"SELECT DISTINCT gen FROM {unique_schema}.r") == [(3,)]
    finally:
        writer.close()
        reader.close()
