"""Independent read-back of every table a case wrote, in a process of its own.

The runner keeps one verifier process alive (``python -m bench.verify``) and sends it one JSON
request per line on stdin; it answers one JSON line on stdout. Requests:

* ``{"kind": "delta", "uri": ...}`` -> count, distinct ids, sum of ids, Delta version, files
* ``{"kind": "clickhouse", "url": "chdb://...", "table": "db.t"}`` -> count, distinct ids, sum of ids
* ``{"kind": "stores", "delta_root": ..., "url": ...}`` -> the row count of every Delta table under
  the root and of every ClickHouse table outside the system databases (for ``make demo``)

Add ``"ids": false`` to skip the distinct/sum check (counts only). Each ClickHouse client is
closed after its request, so the writer of the next case can open the engine path.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from typing import Any

from bench.workload import delta_tables

DISTINCT_LIMIT = 200_000_000  # above this, exact distinct counts cost more memory than the check is worth




def check_delta(uri: str, ids: bool = True) -> dict[str, Any]:
    import polars as pl
    from deltalake import DeltaTable

    dt = DeltaTable(uri)
    out: dict[str, Any] = {"version": dt.version(), "files": len(dt.file_uris())}
    lf = pl.scan_delta(uri)
    if not ids:
        out["count"] = int(lf.select(pl.len()).collect(engine="streaming").item())
        return out
    count = int(lf.select(pl.len()).collect(engine="streaming").item())
    exprs = [pl.col("id").sum().alias("sum"), pl.col("id").min().alias("min"), pl.col("id").max().alias("max")]
    if count <= DISTINCT_LIMIT:
        exprs.append(pl.col("id").n_unique().alias("distinct"))
    row = lf.select(exprs).collect(engine="streaming").row(0, named=True)
    out.update(count=count, **{k: (int(v) if v is not None else None) for k, v in row.items()})
    return out


def _ch_client(url: str) -> Any:
    import clickhouse_connect

    return clickhouse_connect.get_client(dsn=url)


_COLLAPSING = ("Replacing", "Collapsing", "Summing", "Aggregating")


def _as_read(client: Any, table: str) -> str:
    """``table`` as its readers see it: with ``FINAL`` when its engine collapses rows at merge
    time (Loom's ``merge`` tables are ReplacingMergeTree, and Loom reads them with ``FINAL``)."""
    db, _, name = table.rpartition(".")
    db, name = (db.strip("`") or "default").replace("'", ""), name.strip("`").replace("'", "")  # bench names only
    rows = client.query(f"SELECT engine FROM system.tables WHERE database = '{db}' AND name = '{name}'").result_rows
    return f"{table} FINAL" if rows and any(k in rows[0][0] for k in _COLLAPSING) else table


def check_clickhouse(url: str, table: str, ids: bool = True) -> dict[str, Any]:
    client = _ch_client(url)
    try:
        table = _as_read(client, table)
        if not ids:
            return {"count": int(client.command(f"SELECT count() FROM {table}"))}  # type: ignore[arg-type]
        count = int(client.command(f"SELECT count() FROM {table}"))  # type: ignore[arg-type]
        if count > DISTINCT_LIMIT:  # uniqExact over 1B ids exceeds the engine's memory limit on 24 GiB
            total, lo, hi = client.query(f"SELECT sum(id), min(id), max(id) FROM {table}").result_rows[0]
            return {"count": count, "sum": int(total), "min": int(lo), "max": int(hi)}
        distinct, total, lo, hi = client.query(
            f"SELECT uniqExact(id), sum(id), min(id), max(id) FROM {table}").result_rows[0]
        return {"count": count, "distinct": int(distinct), "sum": int(total), "min": int(lo), "max": int(hi)}
    finally:
        client.close()


def check_stores(delta_root: str, url: str | None) -> dict[str, Any]:
    tables: dict[str, int] = {}
    for uri in delta_tables(delta_root):
        name = os.path.relpath(uri, delta_root).replace(os.sep, ".")
        tables[f"delta:{name}"] = check_delta(uri, ids=False)["count"]
    if url:
        client = _ch_client(url)
        try:
            rows = client.query("SELECT database, name, engine FROM system.tables WHERE database NOT IN "
                                "('system', 'INFORMATION_SCHEMA', 'information_schema', 'default') "
                                "AND NOT is_temporary ORDER BY database, name").result_rows
            for db, name, engine in rows:
                final = " FINAL" if any(k in engine for k in _COLLAPSING) else ""
                tables[f"clickhouse:{db}.{name}"] = int(client.command(f"SELECT count() FROM `{db}`.`{name}`{final}"))  # type: ignore[arg-type]
        finally:
            client.close()
    return {"count": sum(tables.values()), "tables": tables}


def answer(req: dict[str, Any]) -> dict[str, Any]:
    kind = req["kind"]
    ids = bool(req.get("ids", True))
    if kind == "delta":
        if not os.path.isdir(os.path.join(req["uri"], "_delta_log")):
            return {"count": None, "missing": True}
        return check_delta(req["uri"], ids)
    if kind == "clickhouse":
        return check_clickhouse(req["url"], req["table"], ids)
    if kind == "stores":
        return check_stores(req["delta_root"], req.get("url"))
    raise ValueError(f"unknown kind {kind}")


def main() -> None:
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            out = {"ok": True, **answer(json.loads(line))}
        except Exception as exc:  # noqa: BLE001 (reported to the runner, which records it)
            out = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-2000:]}
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()
    sys.stdout.flush()
    os._exit(0)  # skip library teardown at exit (a known abort with Polars + deltalake loaded)


if __name__ == "__main__":
    main()
