"""Benchmark cases of the official Dagster integrations, run with the Python of their own
virtual environment (``.venv-bench-official``, made by ``make bench``): they pin their own
Dagster and must never be installed into the product's ``.venv``.

* ``dagster-deltalake-polars`` ``DeltaLakePolarsIOManager``
* ``dagster-polars`` ``PolarsDeltaIOManager``
* ``dagster-clickhouse-polars`` ``ClickhousePolarsIOManager``. It speaks only ClickHouse's native
  TCP protocol (``clickhouse_driver.Client``), which the embedded engine (chdb) does not serve.
  So **only its transport is shimmed**: :class:`NativeClientShim` stands in for
  ``clickhouse_driver.Client`` and sends the same statements to chdb through clickhouse-connect.
  Everything above the transport is the package's own code: its type mapping, ``CREATE TABLE ...
  ORDER BY tuple()``, ``TRUNCATE`` and ``INSERT ... VALUES`` of ``DataFrame.to_dicts()`` rows,
  which the shim hands to clickhouse-connect's row-wise ``insert`` (Python row -> column
  conversion, as clickhouse-driver does for dict rows).

Same protocol as :mod:`bench.cases`: ``python -m bench.official CASE ROWS WORKDIR OUT_JSON``.
A failing materialization is a result (``status: failed`` with the error), not a crash.

No ``from __future__ import annotations`` here: Dagster resolves the assets' return annotations
(``pl.DataFrame``) at definition time to pick the IO manager's type handler.
"""

import datetime as dt
import os
import re
import time
from typing import Any

from bench.workload import (
    BASE_DAY,
    DAYS,
    child_main,
    day_window,
    delta_tables,
    eager_frame,
    run_outcome,
    step_failures,
)

RANGE_TAGS = {"dagster/asset_partition_range_start": "2024-01-01", "dagster/asset_partition_range_end": "2024-01-30"}
PACKAGES = ("dagster", "dagster-deltalake", "dagster-deltalake-polars", "dagster-polars", "dagster-clickhouse",
            "dagster-clickhouse-polars", "clickhouse-driver", "clickhouse-connect", "chdb", "polars", "deltalake", "pyarrow")




def _tables(wd: str, n: int) -> list[dict[str, Any]]:
    return [{"kind": "delta", "uri": uri, "rows": n} for uri in delta_tables(os.path.join(wd, "data"))] or [
        {"kind": "delta", "uri": os.path.join(wd, "data", "b", "t"), "rows": n}]




def _run(assets: list[Any], resources: dict[str, Any], instance: Any, **kw: Any) -> tuple[float, str | None]:
    import dagster as dg

    t0 = time.perf_counter()
    try:
        result = dg.materialize(assets, resources=resources, instance=instance, raise_on_error=False, **kw)
    except Exception as exc:  # noqa: BLE001 (e.g. a partition range rejected before the run starts)
        return time.perf_counter() - t0, f"{type(exc).__name__}: {exc}"[:800]
    seconds = time.perf_counter() - t0
    return seconds, None if result.success else step_failures(result)


def _preload(*modules: str) -> None:
    """Import the storage libraries before the clock starts, as bench.cases does for Loom."""
    import importlib

    for m in modules:
        importlib.import_module(m)


def _daily() -> Any:
    import dagster as dg

    return dg.DailyPartitionsDefinition(start_date=BASE_DAY.isoformat(),
                                        end_date=(BASE_DAY + dt.timedelta(days=DAYS)).isoformat())


# -- Delta eager -----------------------------------------------------------------------------------


def _ddp_io(wd: str) -> Any:
    from dagster_deltalake import LocalConfig
    from dagster_deltalake_polars import DeltaLakePolarsIOManager

    return DeltaLakePolarsIOManager(root_uri=os.path.join(wd, "data"), storage_options=LocalConfig())


def _polars_io(wd: str) -> Any:
    from dagster_polars import PolarsDeltaIOManager

    return PolarsDeltaIOManager(base_dir=os.path.join(wd, "data"))


def _eager(io: Any, n: int, wd: str) -> dict[str, Any]:
    import dagster as dg
    import polars as pl

    _preload("pyarrow", "deltalake")
    df = eager_frame(n)

    @dg.asset(key=["b", "t"])
    def t() -> pl.DataFrame:
        return df

    seconds, error = _run([t], {"io_manager": io}, dg.DagsterInstance.ephemeral())
    return run_outcome(seconds, error, _tables(wd, n))


def ddp_eager(n: int, wd: str) -> dict[str, Any]:
    return _eager(_ddp_io(wd), n, wd)


def polars_delta_eager(n: int, wd: str) -> dict[str, Any]:
    return _eager(_polars_io(wd), n, wd)


# -- ClickHouse row-wise ---------------------------------------------------------------------------

CHDB_URL = ""


class NativeClientShim:
    """Transport shim: the calls dagster-clickhouse makes on ``clickhouse_driver.Client``, sent to
    the embedded engine through clickhouse-connect. No statement is changed."""

    def __init__(self, **kwargs: Any) -> None:
        import clickhouse_connect

        self._client = clickhouse_connect.get_client(dsn=CHDB_URL)

    def execute(self, query: str, params: Any = None, settings: Any = None, **kwargs: Any) -> Any:
        q = query.strip()
        m = re.fullmatch(r"INSERT INTO (.+?)\s*\((.*)\)\s*VALUES", q, re.S | re.I)
        if m and isinstance(params, list):
            # clickhouse-driver's INSERT ... VALUES with a list of dict rows: rows are turned into
            # columns in Python and sent; clickhouse-connect's row-wise insert does the same
            db, table = [p.strip("`") for p in m.group(1).split(".", 1)]
            cols = [c.strip().strip("`") for c in m.group(2).split(",")]
            rows = [[row[c] for c in cols] for row in params]
            self._client.insert(table, rows, column_names=cols, database=db)
            return None
        if params:
            return self._client.query(q, parameters=params, settings=settings).result_rows
        return self._client.command(q, settings=settings)

    def query_dataframe(self, query: str, params: Any = None, settings: Any = None) -> Any:
        return self._client.query_df(query, parameters=params)

    def disconnect(self) -> None:
        self._client.close()


def ch_rowwise(n: int, wd: str) -> dict[str, Any]:
    global CHDB_URL
    import dagster as dg
    import dagster_clickhouse.db_client as db_client
    import polars as pl
    from dagster_clickhouse_polars import ClickhousePolarsIOManager

    _preload("pyarrow", "clickhouse_connect", "chdb", "clickhouse_driver")
    CHDB_URL = f"chdb://{os.path.join(wd, 'clickhouse')}"
    db_client.Client = NativeClientShim  # type: ignore[attr-defined,misc]  # the transport, nothing else
    df = eager_frame(n)

    @dg.asset(key=["b", "t"])
    def t() -> pl.DataFrame:
        return df

    seconds, error = _run([t], {"io_manager": ClickhousePolarsIOManager(host="localhost")}, dg.DagsterInstance.ephemeral())
    return run_outcome(seconds, error, [{"kind": "clickhouse", "url": CHDB_URL, "table": "b.t", "rows": n}])


# -- 30-day range ----------------------------------------------------------------------------------


def _daily_asset(df: Any, polars_io: bool) -> Any:
    import dagster as dg
    import polars as pl

    _preload("pyarrow", "deltalake")
    md = {"partition_by": "day"} if polars_io else {"partition_expr": "day"}

    @dg.asset(key=["b", "t"], partitions_def=_daily(), backfill_policy=dg.BackfillPolicy.single_run(), metadata=md)
    def t(context: dg.AssetExecutionContext) -> pl.DataFrame:
        w = context.partition_time_window
        return day_window(df, w.start.date(), w.end.date())

    return t


def ddp_range_new(n: int, wd: str) -> dict[str, Any]:
    """One single-run 30-day range into a new table."""
    import dagster as dg

    asset = _daily_asset(eager_frame(n), False)
    seconds, error = _run([asset], {"io_manager": _ddp_io(wd)}, dg.DagsterInstance.ephemeral(), tags=RANGE_TAGS)
    return run_outcome(seconds, error, _tables(wd, n), runs=1)


def ddp_range_existing(n: int, wd: str) -> dict[str, Any]:
    """The same single-run 30-day range again, on the table the first run wrote."""
    import dagster as dg

    asset = _daily_asset(eager_frame(n), False)
    inst = dg.DagsterInstance.ephemeral()
    _, error = _run([asset], {"io_manager": _ddp_io(wd)}, inst, tags=RANGE_TAGS)
    if error:
        return {"status": "failed", "error": f"set-up run (new table): {error}", "tables": _tables(wd, n)}
    seconds, error = _run([asset], {"io_manager": _ddp_io(wd)}, inst, tags=RANGE_TAGS)
    return run_outcome(seconds, error, _tables(wd, n), runs=1)


def ddp_30runs(n: int, wd: str) -> dict[str, Any]:
    """30 single-partition runs."""
    import dagster as dg

    asset = _daily_asset(eager_frame(n), False)
    inst = dg.DagsterInstance.ephemeral()
    total = 0.0
    for d in range(DAYS):
        seconds, error = _run([asset], {"io_manager": _ddp_io(wd)}, inst,
                              partition_key=(BASE_DAY + dt.timedelta(days=d)).isoformat())
        total += seconds
        if error:
            return {"status": "failed", "error": f"partition {d}: {error}", "tables": _tables(wd, n)}
    return {"seconds": total, "runs": DAYS, "tables": _tables(wd, n)}


def polars_delta_range(n: int, wd: str) -> dict[str, Any]:
    """dagster-polars' PolarsDeltaIOManager asked for the same single-run 30-day range."""
    import dagster as dg

    asset = _daily_asset(eager_frame(n), True)
    seconds, error = _run([asset], {"io_manager": _polars_io(wd)}, dg.DagsterInstance.ephemeral(), tags=RANGE_TAGS)
    return run_outcome(seconds, error, _tables(wd, n), runs=1)


def versions_case(n: int, wd: str) -> dict[str, Any]:
    from bench.workload import versions

    return {"seconds": 0.0, "versions": versions(*PACKAGES), "tables": []}


CASES = {f.__name__: f for f in (ddp_eager, polars_delta_eager, ch_rowwise, ddp_range_new, ddp_range_existing,
                                 ddp_30runs, polars_delta_range, versions_case)}

if __name__ == "__main__":
    child_main(CASES)
