"""Delta tables laid out the way Spark / Databricks write them, built by hand.

delta-rs never writes some layouts that other engines do: binary partition columns,
``__HIVE_DEFAULT_PARTITION__`` directories, Spark's timestamp partition strings, Hive-escaped
directory names. This module writes them as the Delta protocol specifies
(https://github.com/delta-io/delta/blob/master/PROTOCOL.md): Parquet data files *without* the
partition columns inside them, in ``col=value`` directories, and a JSON commit per version in
``_delta_log`` with ``protocol``, ``metaData`` (``schemaString``, ``partitionColumns``) and one
``add`` action per file whose ``partitionValues`` hold the values serialized as strings
("Partition Value Serialization": numbers as text, dates ``YYYY-MM-DD``, timestamps
``YYYY-MM-DD HH:MM:SS[.ffffff]``, booleans ``true``/``false``, binary as the bytes' characters,
``null`` for a null value).
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from deltalake import write_deltalake

HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"
# Spark's ExternalCatalogUtils.escapePathName: these characters become %XX in directory names.
_SPARK_ESCAPED = set('"#%\'*/:=?\\\x7f{[]^') | {chr(c) for c in range(0x01, 0x20)}
_FIXED_MTIME = 1_767_225_600_000  # 2026-01-01T00:00:00Z in ms; modificationTime is informational


def spark_escape(value: str) -> str:
    """A partition value as Spark writes it into a directory name."""
    return "".join(f"%{ord(ch):02X}" if ch in _SPARK_ESCAPED else ch for ch in value)


def uri_path(path: str) -> str:
    """A relative path as it appears in an ``add`` action (a URI: ``%``, space and the like encoded,
    non-ASCII characters kept, as Java's ``URI.toString`` leaves them)."""
    out = []
    for ch in path:
        if ch in ' %"<>\\^`{|}#?[]' or ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.extend(f"%{b:02X}" for b in ch.encode())
        else:
            out.append(ch)
    return "".join(out)


@dataclass(frozen=True)
class Column:
    """One column of the table's schema: its Delta type name (or a complex type as a dict)."""

    name: str
    type: str | dict[str, Any]
    nullable: bool = True

    def field(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "nullable": self.nullable, "metadata": {}}


@dataclass(frozen=True)
class DataFile:
    """One Parquet data file: its data columns and, per partition column, the log's string value
    (``None``: a null partition value). ``directory`` overrides the Spark-style directory."""

    partition: Mapping[str, str | None]
    data: pa.Table
    directory: str | None = None
    stats: bool = True


@dataclass
class Commit:
    """One version: new metadata (schema / partition columns) if it changed, then files."""

    files: Sequence[DataFile] = ()
    schema: Sequence[Column] | None = None
    partition_columns: Sequence[str] | None = None
    features: Sequence[str] = field(default_factory=tuple)


def _directory(partition_columns: Sequence[str], values: Mapping[str, str | None]) -> str:
    parts = []
    for name in partition_columns:
        v = values.get(name)
        parts.append(f"{spark_escape(name)}={HIVE_NULL if v is None or v == '' else spark_escape(v)}")
    return "/".join(parts)


def _stats(data: pa.Table) -> str:
    mins: dict[str, Any] = {}
    maxs: dict[str, Any] = {}
    nulls: dict[str, int] = {}
    for name in data.column_names:
        column = data.column(name)
        nulls[name] = column.null_count
        typ = column.type
        if not (pa.types.is_integer(typ) or pa.types.is_floating(typ) or pa.types.is_string(typ)
                or pa.types.is_date(typ)):
            continue
        if column.null_count == len(column):
            continue
        mm = pc.min_max(column)
        lo, hi = mm["min"].as_py(), mm["max"].as_py()
        mins[name] = lo.isoformat() if pa.types.is_date(typ) else lo
        maxs[name] = hi.isoformat() if pa.types.is_date(typ) else hi
    return json.dumps({"numRecords": data.num_rows, "minValues": mins, "maxValues": maxs, "nullCount": nulls})


def write_foreign_table(root: Path, commits: Sequence[Commit]) -> Path:
    """Write ``commits`` as versions 0, 1, ... of a Delta table at ``root`` (created)."""
    log = root / "_delta_log"
    log.mkdir(parents=True, exist_ok=True)
    table_id = str(uuid.uuid4())
    partition_columns: Sequence[str] = ()
    for version, commit in enumerate(commits):
        actions: list[dict[str, Any]] = [{"commitInfo": {
            "timestamp": _FIXED_MTIME + version, "operation": "WRITE", "engineInfo": "Apache-Spark/3.5.1 Delta-Lake/3.2.0",
        }}]
        if version == 0 or commit.features:
            if commit.features:
                actions.append({"protocol": {"minReaderVersion": 3, "minWriterVersion": 7,
                                             "readerFeatures": list(commit.features),
                                             "writerFeatures": list(commit.features)}})
            else:
                actions.append({"protocol": {"minReaderVersion": 1, "minWriterVersion": 2}})
        if commit.schema is not None:
            if commit.partition_columns is not None:
                partition_columns = tuple(commit.partition_columns)
            schema_string = json.dumps({"type": "struct", "fields": [c.field() for c in commit.schema]})
            actions.append({"metaData": {
                "id": table_id, "format": {"provider": "parquet", "options": {}},
                "schemaString": schema_string, "partitionColumns": list(partition_columns),
                "configuration": {}, "createdTime": _FIXED_MTIME,
            }})
        elif version == 0:
            raise ValueError("the first commit must carry the schema")
        for i, f in enumerate(commit.files):
            directory = f.directory if f.directory is not None else _directory(partition_columns, f.partition)
            name = f"part-{i:05d}-{uuid.uuid4()}.c000.snappy.parquet"
            relative = f"{directory}/{name}" if directory else name
            target = root / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(f.data, target, compression="snappy")
            add: dict[str, Any] = {
                "path": uri_path(relative),
                "partitionValues": {c: f.partition.get(c) for c in partition_columns},
                "size": target.stat().st_size,
                "modificationTime": _FIXED_MTIME,
                "dataChange": True,
            }
            if f.stats:
                add["stats"] = _stats(f.data)
            actions.append({"add": add})
        (log / f"{version:020d}.json").write_text("\n".join(json.dumps(a) for a in actions) + "\n")
    return root


# -- the test tables --------------------------------------------------------------------------
# Every case: a builder writing the table at a path, the rows it must read back (sorted by
# ``id``, exact polars types), its partition column with one value to filter on, and whether
# polars' native scan is exact for it (else the read falls back to deltalake's Arrow dataset).


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[Path], None]
    expected: pl.DataFrame
    partition_column: str
    partition_value: Any
    native: bool


def _data(ids: Sequence[int], **extra: pa.Array) -> pa.Table:
    return pa.table({"id": pa.array(ids, pa.int64()), "v": pa.array([f"v{i}" for i in ids], pa.string()), **extra})


_BASE = [Column("id", "long"), Column("v", "string")]


def _expected(ids: Sequence[int], column: str, values: Sequence[Any], dtype: pl.DataType,
              **extra: tuple[Sequence[Any], pl.DataType]) -> pl.DataFrame:
    cols: dict[str, pl.Series] = {
        "id": pl.Series("id", ids, pl.Int64), "v": pl.Series("v", [f"v{i}" for i in ids], pl.String),
    }
    for name, (vals, typ) in extra.items():
        cols[name] = pl.Series(name, vals, typ)
    cols[column] = pl.Series(column, values, dtype)
    return pl.DataFrame(cols).sort("id")


def _single(column: str, typ: str, values: Sequence[str | None], *, features: Sequence[str] = (),
            directories: Sequence[str | None] | None = None) -> Callable[[Path], None]:
    """A table partitioned by one column, one file (ids i+1) per logged partition value."""
    dirs = list(directories) if directories is not None else [None] * len(values)

    def build(path: Path) -> None:
        files = [DataFile({column: v}, _data([i + 1]), directory=dirs[i]) for i, v in enumerate(values)]
        write_foreign_table(path, [Commit(files, [*_BASE, Column(column, typ)], [column], features=features)])
    return build


def _evolved_binary(path: Path) -> None:
    """Spark: version 0 (id, v, p binary), version 1 adds ``extra`` at the end; old files lack it."""
    schema0 = [*_BASE, Column("p", "binary")]
    schema1 = [*_BASE, Column("p", "binary"), Column("extra", "double")]
    write_foreign_table(path, [
        Commit([DataFile({"p": "a"}, _data([1, 2]))], schema0, ["p"]),
        Commit([DataFile({"p": "b"}, _data([3], extra=pa.array([1.5]))),
                DataFile({"p": None}, _data([4], extra=pa.array([None], pa.float64())))], schema1),
    ])


def _evolved_deltalake(path: Path) -> None:
    """delta-rs: an append with ``schema_mode="merge"`` adds ``extra`` to a partitioned table."""
    write_deltalake(str(path), _data([1, 2], day=pa.array([dt.date(2026, 11, 1)] * 2)), partition_by=["day"])
    write_deltalake(str(path), _data([3], day=pa.array([dt.date(2026, 11, 2)]), extra=pa.array([7], pa.int32())),
                    mode="append", schema_mode="merge")


def _deltalake_timestamps(path: Path) -> None:
    """delta-rs's own layout for timestamp partitions, a null among them (stays native)."""
    ts = pa.array([dt.datetime(2026, 11, 2, 10, tzinfo=dt.UTC), dt.datetime(2026, 11, 2, 10, 0, 0, 123456, tzinfo=dt.UTC),
                   None], pa.timestamp("us", "UTC"))
    write_deltalake(str(path), _data([1, 2, 3], ts=ts), partition_by=["ts"])


def _empty_string(path: Path) -> None:
    """delta-rs logs an empty string partition value as ``""``, which the protocol reads as null."""
    write_deltalake(str(path), _data([1, 2], s=pa.array(["", "x"])), partition_by=["s"])


_UTC = dt.UTC
_T0, _T1 = dt.datetime(2026, 11, 2, 10), dt.datetime(2026, 11, 2, 10, 0, 0, 123456)
_ESCAPED = ["a b", "a/b", "k=v", "100%", "zürich ✓", None, "%41", "x+y", "#?*:"]
_MULTI_VALUES = [("2026-11-02", "1"), (None, "2"), ("2026-11-03", None)]


def _multi(path: Path) -> None:
    """Two partition columns (date, int), nulls in either."""
    files = [DataFile({"day": d, "n": n}, _data([i + 1])) for i, (d, n) in enumerate(_MULTI_VALUES)]
    write_foreign_table(path, [Commit(files, [*_BASE, Column("day", "date"), Column("n", "integer")], ["day", "n"])])


CASES: list[Case] = [
    Case("binary", _single("p", "binary", ["ab", "\u0001\u0002", None]),
         _expected([1, 2, 3], "p", [b"ab", b"\x01\x02", None], pl.Binary()), "p", b"ab", native=False),
    Case("boolean", _single("p", "boolean", ["true", "false", None]),
         _expected([1, 2, 3], "p", [True, False, None], pl.Boolean()), "p", False, native=True),
    Case("timestamp_spark", _single("p", "timestamp", ["2026-11-02 10:00:00", "2026-11-02 10:00:00.123456", None]),
         _expected([1, 2, 3], "p", [_T0.replace(tzinfo=_UTC), _T1.replace(tzinfo=_UTC), None], pl.Datetime("us", "UTC")),
         "p", _T1.replace(tzinfo=_UTC), native=True),
    Case("timestamp_iso_utc", _single("p", "timestamp", ["2026-11-02 10:00:00", "2026-11-02T10:00:00.123456Z"]),
         _expected([1, 2], "p", [_T0.replace(tzinfo=_UTC), _T1.replace(tzinfo=_UTC)], pl.Datetime("us", "UTC")),
         "p", _T0.replace(tzinfo=_UTC), native=False),
    Case("timestamp_ntz", _single("p", "timestamp_ntz", ["2026-11-02 10:00:00", "2026-11-02 10:00:00.123456", None],
                                  features=["timestampNtz"]),
         _expected([1, 2, 3], "p", [_T0, _T1, None], pl.Datetime("us")), "p", _T0, native=True),
    Case("escaped_strings", _single("p", "string", _ESCAPED),
         _expected(range(1, len(_ESCAPED) + 1), "p", _ESCAPED, pl.String()), "p", "k=v", native=True),
    Case("null_date_and_int", _multi,
         _expected([1, 2, 3], "n", [1, 2, None], pl.Int32(),
                   day=([dt.date(2026, 11, 2), None, dt.date(2026, 11, 3)], pl.Date())),
         "day", dt.date(2026, 11, 3), native=True),
    Case("float_partition", _single("p", "double", ["1.5", "2.0", None]),
         _expected([1, 2, 3], "p", [1.5, 2.0, None], pl.Float64()), "p", 2.0, native=True),
    Case("decimal_partition", _single("p", "decimal(10,2)", ["1.50", "-2.25"]),
         _expected([1, 2], "p", [Decimal("1.50"), Decimal("-2.25")], pl.Decimal(10, 2)), "p", Decimal("1.50"),
         native=True),
    Case("random_prefix_dirs", _single("p", "string", ["a", "b", "c"], directories=["", "Qx", "p=b"]),
         _expected([1, 2, 3], "p", ["a", "b", "c"], pl.String()), "p", "a", native=False),
    Case("evolved_binary", _evolved_binary,
         _expected([1, 2, 3, 4], "extra", [None, None, 1.5, None], pl.Float64(),
                   p=([b"a", b"a", b"b", None], pl.Binary())), "p", b"b", native=False),
    Case("evolved_deltalake", _evolved_deltalake,
         _expected([1, 2, 3], "extra", [None, None, 7], pl.Int32(),
                   day=([dt.date(2026, 11, 1)] * 2 + [dt.date(2026, 11, 2)], pl.Date())),
         "day", dt.date(2026, 11, 1), native=True),
    Case("deltalake_timestamps", _deltalake_timestamps,
         _expected([1, 2, 3], "ts", [_T0.replace(tzinfo=_UTC), _T1.replace(tzinfo=_UTC), None], pl.Datetime("us", "UTC")),
         "ts", _T0.replace(tzinfo=_UTC), native=True),
    Case("empty_string_is_null", _empty_string,
         _expected([1, 2], "s", [None, "x"], pl.String()), "s", "x", native=False),
]
