"""Each add action of a snapshot checked against the Parquet file it names: ``numRecords``,
``nullCount``, the bounds, the partition values and the schema, as delta-rs parses them."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

import polars as pl
from conformance_readers import Table, _filesystem, _from_arrow


def _bound_ok(lo: Any, hi: Any, values: pl.Series) -> str | None:
    """Whether ``lo <= v <= hi`` for every non-null value (``None``: yes)."""
    vals = values.drop_nulls()
    if vals.dtype.is_float() and vals.is_nan().any():
        # NaN sorts above every number (polars, DataFusion's total order): only +inf bounds it
        if hi != float("inf"):
            return f"maximum {hi!r} below the NaN the file holds"
        vals = vals.filter(~vals.is_nan())
    for v in (vals.min(), vals.max()):
        if v is None:
            continue
        if isinstance(v, bytes | bytearray):
            continue
        if hasattr(v, "tzinfo") and hasattr(lo, "tzinfo") and (v.tzinfo is None) != (lo.tzinfo is None):
            return f"bound {lo!r} and value {v!r} differ in time zone"
        if not lo <= v <= hi:
            return f"value {v!r} outside [{lo!r}, {hi!r}]"
    return None


def view_files(t: Table) -> list[str]:
    """The snapshot's files whose Arrow schema holds a string or binary view."""
    import pyarrow.parquet as pq

    table = t.open()
    fs, base = _filesystem(t)
    out = []
    for path in _from_arrow(table.get_add_actions(flatten=True))["path"]:
        with fs.open_input_file(f"{base}/{unquote(path)}") as fh:
            if "view" in str(pq.read_schema(fh)):
                out.append(path)
    return out


def check_actions(t: Table) -> list[str]:
    """Every disagreement between the snapshot's add actions and their files."""
    import pyarrow.parquet as pq

    table = t.open()
    problems: list[str] = []
    actions = _from_arrow(table.get_add_actions(flatten=False))
    parts = list(table.metadata().partition_columns)
    stored = _from_arrow(table.to_pyarrow_dataset().schema.empty_table()).schema
    fs, base = _filesystem(t)
    for row in actions.iter_rows(named=True):
        path = unquote(row["path"])
        with fs.open_input_file(f"{base}/{path}") as fh:
            held = _from_arrow(pq.read_table(fh))
        where = f"{path}:"
        # schema: the table's columns less the partition columns, in the stored types
        want = {c: d for c, d in stored.items() if c not in parts}
        if dict(held.schema) != want:
            problems.append(f"{where} file schema {dict(held.schema)} != table {want}")
        if row["num_records"] != held.height:
            problems.append(f"{where} numRecords {row['num_records']} != {held.height} rows")
        nulls, lows, highs = row["null_count"] or {}, row["min"] or {}, row["max"] or {}
        for c in held.columns:
            if held[c].dtype.is_nested():
                continue  # no statistics for nested columns (delta-rs nests a struct's counts)
            n, lo, hi = nulls.get(c), lows.get(c), highs.get(c)
            if n is not None and n != held[c].null_count():
                problems.append(f"{where} nullCount.{c} {n} != {held[c].null_count()}")
            if n is not None and n < held.height and (lo is None or hi is None):
                problems.append(f"{where} {c}: a null count ({n} of {held.height}) without bounds reads as 'nulls only'")
            if lo is not None and hi is not None:
                bad = _bound_ok(lo, hi, held[c])
                if bad:
                    problems.append(f"{where} {c}: {bad}")
        # partition values: the log's, typed by delta-rs, against the directory delta-rs/Polars made
        values = row.get("partition") or row.get("partition_values") or {}
        segments = [s for s in path.split("/")[:-1]]
        for c, seg in zip(parts, segments, strict=False):
            key, _, text = seg.partition("=")
            v = values.get(c)
            shown = "__HIVE_DEFAULT_PARTITION__" if v is None else _partition_text(v)
            if unquote(key) != c or unquote(text) != shown:
                problems.append(f"{where} partition {c}={v!r} but directory {seg!r}")
    return problems


def _partition_text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if hasattr(v, "isoformat"):
        return str(v.isoformat())
    return str(v)
