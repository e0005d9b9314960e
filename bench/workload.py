"""The benchmark workload and the child-process protocol, shared by both virtual environments.

This module imports only the standard library and Polars, so the official integrations'
venv (``.venv-bench-official``) can import it as well as the product's ``.venv``.

Workload (as in ``shared/ANCHORS.md``): N rows of ``id`` Int64 (0..N-1), ``day`` Date (30 days
from 2024-01-01), ``amount`` Float64 (``id * 0.5``) and ``sku`` String (``"sku-" + id % 1000``).
Every written table is checked on read-back against count N, N distinct ids and
sum(id) = N(N-1)/2.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import resource
import sys
import traceback
from collections.abc import Callable
from typing import Any

BASE_DAY = dt.date(2024, 1, 1)
DAYS = 30
BLOCK = 10_000


def _exprs(ids: Any) -> list[Any]:
    import polars as pl

    return [
        ids.alias("id"),
        (pl.lit(BASE_DAY) + pl.duration(days=ids % DAYS)).cast(pl.Date).alias("day"),
        (ids.cast(pl.Float64) * 0.5).alias("amount"),
        (pl.lit("sku-") + (ids % 1000).cast(pl.String)).alias("sku"),
    ]


def eager_frame(n: int) -> Any:
    """The workload as a materialized ``polars.DataFrame``."""
    import polars as pl

    return pl.DataFrame({"i": pl.int_range(0, n, eager=True, dtype=pl.Int64)}).select(_exprs(pl.col("i")))


def lazy_frame(n: int) -> Any:
    """The workload as a ``polars.LazyFrame`` that is never materialized whole: a cross join of
    two small ranges, which the streaming engine produces batch by batch."""
    import polars as pl

    outer = pl.LazyFrame({"a": pl.int_range(0, max(1, -(-n // BLOCK)), eager=True, dtype=pl.Int64)})
    inner = pl.LazyFrame({"b": pl.int_range(0, BLOCK, eager=True, dtype=pl.Int64)})
    ids = pl.col("a") * BLOCK + pl.col("b")
    return outer.join(inner, how="cross").filter(ids < n).select(_exprs(ids))


def day_window(df: Any, start: dt.date, end: dt.date) -> Any:
    """Rows of ``df`` with ``start <= day < end`` (what a partitioned asset returns for its window)."""
    import polars as pl

    return df.filter((pl.col("day") >= start) & (pl.col("day") < end))


def expect(n: int) -> dict[str, int]:
    """What a read-back of the N-row workload must show."""
    return {"count": n, "distinct": n, "sum": n * (n - 1) // 2}


def peak_rss_mb() -> float:
    """This process's peak RSS so far (MB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def versions(*names: str) -> dict[str, str]:
    """Installed versions of distributions (missing ones are left out)."""
    from importlib import metadata

    out = {"python": sys.version.split()[0]}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def run_outcome(seconds: float, error: str | None, tables: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """A timed run's case result: ``failed`` (with the error) or ``ok``, and the tables to read back."""
    return {"seconds": seconds, "error": error, "status": "failed" if error else "ok", **extra, "tables": tables}


def step_failures(result: Any) -> str:
    """The root-cause messages of a Dagster run's failed steps (``ExecuteInProcessResult``)."""
    msgs = []
    for ev in result.all_events:
        if ev.is_step_failure and ev.step_failure_data is not None:
            err = ev.step_failure_data.error
            while err is not None and err.cause is not None:
                err = err.cause
            msgs.append(err.message.strip() if err is not None else ev.message or "")
    return " | ".join(msgs)[:800] or "run failed"


def delta_tables(root: str) -> list[str]:
    """Every Delta table (a folder with ``_delta_log``) under ``root``."""
    found = []
    for dirpath, dirnames, _ in os.walk(root):
        if "_delta_log" in dirnames:
            found.append(dirpath)
            dirnames[:] = []
    return sorted(found)


def child_main(cases: dict[str, Callable[..., dict[str, Any]]]) -> None:
    """Entry point of a case process: ``python -m <module> CASE ROWS WORKDIR OUT_JSON``.

    Writes the case's result (or its failure) as JSON to OUT_JSON, flushes, and leaves with
    ``os._exit(0)`` so that library teardown at interpreter exit (a known abort in processes
    that import Polars and read with deltalake) can never turn a finished case into a crash.
    """
    name, rows, workdir, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    try:
        result = cases[name](rows, workdir)
        result.setdefault("status", "ok")
    except BaseException as exc:  # noqa: BLE001 (a failing case is a result, not a crash)
        result = {"status": "error", "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-3000:]}
    result.setdefault("self_rss_mb", peak_rss_mb())
    tmp = out + ".part"
    with open(tmp, "w") as fh:
        json.dump(result, fh, default=str)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, out)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
