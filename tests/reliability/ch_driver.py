"""Child process of the ClickHouse fault-injection tests: one write or one read-back against an
embedded ClickHouse path of its own, or against a ClickHouse HTTP endpoint, so the parent can
SIGKILL it at any point.

Usage: ``python ch_driver.py write|write+read HOME MODE GEN RUN_ID ORDER STREAMING``, ``read HOME MODE``,
``day HOME INDEX`` or ``stage-only HOME MODE GEN RUN_ID`` (claims the write, then dies before publishing).
HOME is a directory (embedded engine at HOME/ch) or an ``http://`` URL, whose database
``$CH_DRIVER_SCHEMA`` (default ``rel``) holds the table.
Prints one JSON line; exits with os._exit so no interpreter teardown can abort it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys

import polars as pl

from loom_resources import ColumnSchema, RunParams, TableRef, TargetSpec, WriteContext
from loom_resources.clickhouse import ClickHouseResource

ROWS = 100_000
DAYS = [dt.date(2026, 11, d) for d in range(1, 6)]
REPLACED = DAYS[:3]  # replace_partitions rewrites these days only
REF = TableRef(os.environ.get("CH_DRIVER_SCHEMA", "rel"), "t")


def store_url(home: str) -> str:
    """The ClickHouse URL of HOME: itself when it is a server URL, else an embedded path under it."""
    return home if home.startswith("http") else f"chdb://{home}/ch"


def spec(mode: str) -> TargetSpec:
    """The target of every trial."""
    return TargetSpec(
        REF, "clickhouse",
        [ColumnSchema("id", "int64", False), ColumnSchema("day", "date", False), ColumnSchema("gen", "int64", False)],
        mode=mode, partition_by=("day",), merge_keys=("id",) if mode == "merge" else (),
    )


def frame(mode: str, gen: int, order: str) -> pl.DataFrame:
    """Generation ``gen`` of the data; the merge and replace writes cover part of the keys/days."""
    n = ROWS
    df = pl.DataFrame({"id": pl.int_range(0, n, eager=True)}).with_columns(
        pl.col("id").map_elements(lambda i: DAYS[i % len(DAYS)], return_dtype=pl.Date).alias("day"),
        pl.lit(gen, pl.Int64).alias("gen"),
    )
    if gen > 1 and mode == "replace_partitions":
        df = df.filter(pl.col("day").is_in(REPLACED))
    if gen > 1 and mode == "merge":
        df = df.filter(pl.col("id") % 2 == 0).with_columns((pl.col("id") + n // 2).alias("id"))
    if gen > 1 and mode == "append":
        df = df.with_columns((pl.col("id") + n).alias("id"))
    return df.reverse() if order == "desc" else df


def write(home: str, mode: str, gen: int, run_id: str, order: str, streaming: bool) -> dict[str, object]:
    res = ClickHouseResource(url=store_url(home))
    keys = tuple(d.isoformat() for d in REPLACED) if mode == "replace_partitions" and gen > 1 else ()
    params = RunParams(partition_keys=keys, partitions=tuple({"day": k} for k in keys))
    ctx = WriteContext(run_id=run_id, asset_key="rel/t", partition_keys=keys)
    df = frame(mode, gen, order)
    out = res.write(df.lazy() if streaming else df, spec(mode), params, streaming=streaming, write_ctx=ctx)
    res.close()
    return {"rows": out.rows_written, "skipped": out.skipped}


def write_day(home: str, index: int) -> dict[str, object]:
    """Replace one day (generation 2) of the replace_partitions table, as one of several writers."""
    res = ClickHouseResource(url=store_url(home), embedded_wait_s=120)
    day = DAYS[index]
    df = frame("append", 1, "asc").filter(pl.col("day") == day).with_columns(pl.lit(2, pl.Int64).alias("gen"))
    params = RunParams(partition_keys=(day.isoformat(),), partitions=({"day": day.isoformat()},))
    ctx = WriteContext(run_id=f"day-{index}", asset_key="rel/t", partition_keys=(day.isoformat(),))
    out = res.write(df, spec("replace_partitions"), params, write_ctx=ctx)
    res.close()
    return {"rows": out.rows_written, "skipped": out.skipped}


def read(home: str, mode: str) -> dict[str, object]:
    res = ClickHouseResource(url=store_url(home))
    recovered = res.recover()
    final = " FINAL" if mode == "merge" else ""
    if not res.exists(REF):
        stage = res.query_rows("SELECT count() FROM system.tables WHERE name LIKE '\\\\_loom\\\\_stage\\\\_%' "
                           f"AND database = '{REF.schema}'")[0][0]
        res.close()
        return {"groups": [], "staging_tables": int(stage), "recovered": len(recovered)}
    rows = res.query_rows(f"SELECT toString(day), gen, count(), uniqExact(id), sum(id) FROM {REF}{final} GROUP BY day, gen ORDER BY 1, 2")
    stage = res.query_rows("SELECT count() FROM system.tables WHERE name LIKE '\\\\_loom\\\\_stage\\\\_%' "
                           f"AND database = '{REF.schema}'")[0][0]
    res.close()
    return {"groups": [list(r) for r in rows], "staging_tables": int(stage), "recovered": len(recovered)}


if __name__ == "__main__":
    cmd, home, mode = sys.argv[1:4]
    if cmd in ("write", "write+read"):
        gen, run_id, order, streaming = int(sys.argv[4]), sys.argv[5], sys.argv[6], sys.argv[7] == "1"
        print("started", flush=True)
        result = write(home, mode, gen, run_id, order, streaming)
        if cmd == "write+read":
            result |= read(home, mode)
    elif cmd == "stage-only":
        # the write claims and stages, then the process dies inside the publication (as a kill would)
        from loom_resources.clickhouse import _publish

        def die(*args: object, **kw: object) -> None:
            print(json.dumps({"died": True}), flush=True)
            os._exit(0)

        _publish._ops = die  # type: ignore[assignment]
        write(home, mode, int(sys.argv[4]), sys.argv[5], "asc", False)
        result = {}
    elif cmd == "day":
        result = write_day(home, int(mode))
    else:
        result = read(home, mode)
    print(json.dumps(result, default=int), flush=True)
    sys.stdout.flush()
    os._exit(0)
