"""Delta writes whose Parquet files Polars encodes (``loom_resources.delta._files``): the file
statistics and partition values they commit, which writes take the path, and that a failed
write leaves neither a commit nor a file behind. Every other Delta test runs with both writers
(the ``delta`` fixtures of ``test_delta``, ``test_delta_types`` and ``test_delta_stats``)."""

from __future__ import annotations

import datetime as dt
import glob
import json
import os
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from deltalake import DeltaTable, write_deltalake

import loom_resources.delta._files as files
from loom_resources import RunParams
from loom_resources.delta import DeltaResource
from loom_resources.dtypes import ColumnSchema
from loom_resources.errors import DataValidationError, StoreFullError
from loom_resources.model import Backend, SchemaMode, TableRef, TargetSpec, WriteMode

COLUMNS = (ColumnSchema("id", "int64", False), ColumnSchema("day", "date", False), ColumnSchema("name", "string"),
           ColumnSchema("score", "float64"))


def _spec(name: str, mode: str = "append", partition_by: tuple[str, ...] = (), columns: tuple[ColumnSchema, ...] = COLUMNS,
          **kw: Any) -> TargetSpec:
    return TargetSpec(ref=TableRef("s", name), backend=Backend.DELTA, columns=columns, mode=WriteMode(mode),
                      partition_by=partition_by, **kw)


def _frame(ids: list[int], day: dt.date = dt.date(2024, 1, 1)) -> pl.DataFrame:
    return pl.DataFrame({"id": ids, "day": [day] * len(ids), "name": [f"n{i}" if i % 3 else None for i in ids],
                         "score": [i / 2 for i in ids]}, schema={"id": pl.Int64, "day": pl.Date, "name": pl.String,
                                                                  "score": pl.Float64})


def _data_files(uri: str) -> set[str]:
    return {os.path.relpath(f, uri) for f in glob.glob(os.path.join(uri, "**", "*.parquet"), recursive=True)
            if "_delta_log" not in f}


@pytest.fixture
def delta(tmp_path: Path) -> DeltaResource:
    return DeltaResource(root=str(tmp_path), parquet_writer="polars")


def _all_columns_indexed(delta: DeltaResource, spec: TargetSpec, empty: pl.DataFrame) -> None:
    """Create the table (empty, as another writer would) listing every column in
    delta.dataSkippingStatsColumns: Loom's own tables leave floats and timestamps out (delta-rs'
    writer gets their bounds wrong); a table whose owner lists them gets them from the Polars
    path by ``_stats``' rule. (Not ``alter.set_table_properties``: delta-rs then adds writer
    features, appendOnly among them, that send every write to its own writer.)"""
    write_deltalake(delta.table_uri(spec.ref), empty.to_arrow(), partition_by=list(spec.partition_by) or None,
                    configuration={"delta.dataSkippingStatsColumns": ",".join(empty.columns)})


def test_file_statistics_are_exact_and_readers_skip_files_by_them(delta: DeltaResource,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(files, "TARGET_FILE_BYTES", 2_000)  # several files per write
    spec = _spec("stats")
    df = _frame(list(range(600)))
    _all_columns_indexed(delta, spec, df.head(0))
    delta.write(df.lazy(), spec, RunParams(), streaming=True)
    table = DeltaTable(delta.table_uri(spec.ref))
    actions = pl.DataFrame(table.get_add_actions(flatten=True))
    assert actions.height > 1
    back = pl.read_delta(delta.table_uri(spec.ref))
    assert back.sort("id").equals(df)
    # each file's statistics equal what the file holds
    for row in actions.iter_rows(named=True):
        held = pl.read_parquet(os.path.join(delta.table_uri(spec.ref), row["path"]))
        assert row["num_records"] == held.height
        assert row["null_count.name"] == held["name"].null_count()
        assert (row["min.id"], row["max.id"]) == (held["id"].min(), held["id"].max())
        assert (row["min.name"], row["max.name"]) == (held["name"].min(), held["name"].max())
        assert row["min.day"] == dt.date(2024, 1, 1)
        # finite floats: exact bounds (a zero minimum is written as -0.0, equal to 0.0)
        assert (row["min.score"], row["max.score"]) == (held["score"].min(), held["score"].max())
    # a filtered read prunes files by id and still returns exactly the matching rows
    lo, hi = 250, 260
    got = pl.scan_delta(delta.table_uri(spec.ref)).filter(pl.col("id").is_between(lo, hi)).collect()
    assert sorted(got["id"].to_list()) == list(range(lo, hi + 1))
    got = pl.scan_delta(delta.table_uri(spec.ref)).filter(pl.col("name") == "n7").collect()
    assert got["id"].to_list() == [7]


def test_partition_values_of_every_supported_type_round_trip(delta: DeltaResource) -> None:
    cols = (ColumnSchema("id", "int64", False), ColumnSchema("region", "string"), ColumnSchema("flag", "bool"),
            ColumnSchema("bucket", "int32"))
    spec = _spec("parts", partition_by=("region", "flag", "bucket"), columns=cols)
    df = pl.DataFrame({"id": [1, 2, 3, 4, 5],
                       "region": ["EU", "New York/NY", None, "zürich", "50%"],
                       "flag": [True, False, None, True, True],
                       "bucket": [1, -2, 3, None, 1]},
                      schema={"id": pl.Int64, "region": pl.String, "flag": pl.Boolean, "bucket": pl.Int32})
    delta.write(df, spec, RunParams())
    uri = delta.table_uri(spec.ref)
    back = pl.read_delta(uri).select(df.columns).sort("id")
    assert back.equals(df)
    table = DeltaTable(uri)
    assert table.metadata().partition_columns == ["region", "flag", "bucket"]
    # directories escaped as delta-rs escapes them (Polars' reader parses values from them)
    dirs = {p.split("/")[0] for p in _data_files(uri)}
    assert dirs == {"region=EU", "region=New%20York%2FNY", "region=__HIVE_DEFAULT_PARTITION__", "region=z%C3%BCrich",
                    "region=50%25"}
    assert DeltaTable(uri).to_pyarrow_table().num_rows == 5  # delta-rs resolves the (twice escaped) log paths
    # delta-rs prunes by the logged partition values
    assert pl.scan_delta(uri).filter(pl.col("region") == "New York/NY").collect()["id"].to_list() == [2]


def test_replace_partitions_replaces_exactly_the_run_partitions(delta: DeltaResource) -> None:
    spec = _spec("rp", mode="replace_partitions", partition_by=("day",))
    d1, d2, d3 = dt.date(2024, 1, 1), dt.date(2024, 1, 2), dt.date(2024, 1, 3)
    delta.write(pl.concat([_frame([1, 2], d1), _frame([3], d2), _frame([4], d3)]), spec, RunParams())
    before = _data_files(delta.table_uri(spec.ref))
    delta.write(_frame([30], d2), spec, RunParams())
    back = pl.read_delta(delta.table_uri(spec.ref)).sort("id")
    assert back["id"].to_list() == [1, 2, 4, 30]
    assert DeltaTable(delta.table_uri(spec.ref)).version() == 1
    history = DeltaTable(delta.table_uri(spec.ref)).history(1)[0]
    assert "2024-01-02" in json.dumps(history.get("operationParameters"))
    assert len(_data_files(delta.table_uri(spec.ref)) - before) == 1


def _small_files_table(delta: DeltaResource, monkeypatch: pytest.MonkeyPatch,
                       name: str) -> tuple[TargetSpec, str, set[str]]:
    """A table holding ids 1 and 2 (version 0), written from now on in files of ~2 kB; returns its
    spec, location and data files."""
    monkeypatch.setattr(files, "TARGET_FILE_BYTES", 2_000)
    spec = _spec(name)
    delta.write(_frame([1, 2]), spec, RunParams())
    uri = delta.table_uri(spec.ref)
    return spec, uri, _data_files(uri)


def test_a_batch_failing_validation_leaves_no_commit_and_no_file(delta: DeltaResource,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    spec, uri, before = _small_files_table(delta, monkeypatch, "bad")
    # a lazy concatenation streams in several batches: files are written before the bad one
    bad = pl.concat([_frame(list(range(10, 500))).lazy(), _frame([999]).with_columns(pl.lit(None, pl.Int64).alias("id")).lazy()])
    with pytest.raises(DataValidationError, match="id"):
        delta.write(bad, spec, RunParams(), streaming=True)
    assert DeltaTable(uri).version() == 0
    assert _data_files(uri) == before
    assert pl.read_delta(uri)["id"].sort().to_list() == [1, 2]


def _plain(tmp_path: Path, name: str, partition_by: list[str] | None = None, **config: str) -> tuple[DeltaTable, str]:
    uri = str(tmp_path / name)
    write_deltalake(uri, _frame([1]).to_arrow(), configuration=config or None, partition_by=partition_by)
    return DeltaTable(uri), uri


def test_supported_writes(tmp_path: Path, delta: DeltaResource) -> None:
    spec = _spec("t")
    loc = delta._location(spec.ref)
    cols = COLUMNS
    plain, _ = _plain(tmp_path, "plain")
    by_day, _ = _plain(tmp_path, "by_day", partition_by=["day"])
    cdf, _ = _plain(tmp_path, "cdf", **{"delta.enableChangeDataFeed": "true"})
    checked, _ = _plain(tmp_path, "checked")
    checked.alter.add_constraint({"id_positive": "id > 0"})
    day = [{"day": dt.date(2024, 1, 1)}]

    def ok(table: DeltaTable | None, **kw: Any) -> bool:
        args: dict[str, Any] = {"mode": "append", "predicate": None, "partitions": (), "schema_mode": None,
                                "partition_by": ()} | kw
        part = args.pop("partition_by")
        return files.supported(args.pop("loc", loc), table, cols, part, **args)

    assert ok(None) and ok(plain) and ok(plain, mode="overwrite")
    assert ok(by_day, mode="overwrite", predicate="day IN ('2024-01-01')", partitions=day, partition_by=("day",))
    assert not ok(cdf) and not ok(checked)
    assert not ok(plain, schema_mode="merge")
    assert not ok(plain, mode="overwrite", predicate="id > 3")  # replace_where
    two = [{"day": dt.date(2024, 1, 1), "name": "a"}]
    assert not ok(by_day, mode="overwrite", predicate="...", partitions=two, partition_by=("day", "name"))
    assert files.replace_filter(("day",), day) == [("day", "in", ["2024-01-01"])]
    assert files.replace_filter(("day", "name"), two) is None  # a conjunction would over-replace
    assert files.replace_filter(("day",), [{"day": None}]) is None
    assert not ok(None, partition_by=("score",))  # float partitions keep delta-rs' writer
    assert not ok(plain, partition_by=("day",))  # the stored table is not partitioned by day
    for uri in ("s3://bucket/t", "s3a://bucket/t"):  # S3: through delta-rs' own object store
        assert ok(None, loc=loc.__class__(uri, uri, {}, 3, polars_files=True))
    for uri in ("gs://bucket/t", "az://container/t", f"file://{loc.uri}", "memory:///t"):  # untested here
        assert not ok(None, loc=loc.__class__(uri, uri, {}, 3, polars_files=True))
    off = DeltaResource(root=str(tmp_path), parquet_writer="delta-rs")._location(spec.ref)
    assert not ok(None, loc=off)


def test_a_table_with_change_data_feed_keeps_delta_rs_writer(tmp_path: Path, delta: DeltaResource) -> None:
    spec = _spec("cdf", mode="overwrite")
    uri = delta.table_uri(spec.ref)
    write_deltalake(uri, _frame([1]).to_arrow(), configuration={"delta.enableChangeDataFeed": "true"})
    delta.write(_frame([5, 6]), spec, RunParams())
    assert pl.read_delta(uri)["id"].sort().to_list() == [5, 6]
    # delta-rs' writer keeps the change data feed of the overwrite
    changes = pl.DataFrame(DeltaTable(uri).load_cdf(starting_version=1))
    assert sorted(changes.filter(pl.col("_change_type") == "insert")["id"].to_list()) == [5, 6]


def test_schema_evolution_keeps_delta_rs_writer(delta: DeltaResource) -> None:
    spec = _spec("evolve", schema_mode=SchemaMode.EVOLVE)
    delta.write(_frame([1]), spec, RunParams())
    wider = _spec("evolve", schema_mode=SchemaMode.EVOLVE, columns=(*COLUMNS, ColumnSchema("extra", "string")))
    delta.write(_frame([2]).with_columns(pl.lit("x").alias("extra")), wider, RunParams())
    back = pl.read_delta(delta.table_uri(spec.ref)).sort("id")
    assert back["extra"].to_list() == [None, "x"]


def test_chunks_split_large_frames_and_group_small_batches() -> None:
    big = pl.DataFrame({"x": list(range(10_000))})
    parts = list(files._chunks(iter([big]), big.estimated_size() // 4))
    assert len(parts) >= 4 and pl.concat(parts).equals(big)
    small = [pl.DataFrame({"x": [i]}) for i in range(10)]
    grouped = list(files._chunks(iter([pl.DataFrame({"x": []}, schema={"x": pl.Int64}), *small]), 10**9))
    assert len(grouped) == 1 and grouped[0]["x"].to_list() == list(range(10))


def test_timestamp_statistics_bound_every_value_and_prune_correctly(delta: DeltaResource,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(files, "TARGET_FILE_BYTES", 1_000)
    cols = (ColumnSchema("id", "int64", False), ColumnSchema("at", "datetime(us, UTC)"), ColumnSchema("local", "datetime(us)"))
    spec = _spec("ts", columns=cols)
    base = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    at = [base + dt.timedelta(minutes=i, microseconds=1500 * i) for i in range(300)]
    df = pl.DataFrame({"id": list(range(300)), "at": at, "local": [a.replace(tzinfo=None) for a in at]},
                      schema={"id": pl.Int64, "at": pl.Datetime("us", "UTC"), "local": pl.Datetime("us")})
    _all_columns_indexed(delta, spec, df.head(0))
    delta.write(df, spec, RunParams())
    uri = delta.table_uri(spec.ref)
    actions = pl.DataFrame(DeltaTable(uri).get_add_actions(flatten=True))
    assert actions.height > 1
    for row in actions.iter_rows(named=True):
        held = pl.read_parquet(os.path.join(uri, row["path"]))
        assert row["min.at"] <= held["at"].min() and row["max.at"] >= held["at"].max()
        assert row["min.local"] <= held["local"].min() and row["max.local"] >= held["local"].max()
    # the exact microsecond of a value inside a file is found (a bound cut to milliseconds would lose it)
    for i in (0, 17, 299):
        got = pl.scan_delta(uri).filter(pl.col("at") == at[i]).collect()["id"].to_list()
        assert got == [i]
        got = pl.scan_delta(uri).filter(pl.col("local") >= at[i].replace(tzinfo=None)).collect()["id"]
        assert sorted(got.to_list()) == list(range(i, 300))


def test_a_commit_that_fails_after_committing_keeps_its_files(delta: DeltaResource,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    spec = _spec("ambiguous")
    delta.write(_frame([1]), spec, RunParams())
    real = DeltaTable.create_write_transaction

    def committed_then_failed(self: DeltaTable, *args: Any, **kwargs: Any) -> None:
        real(self, *args, **kwargs)
        raise OSError("connection reset after the commit")

    monkeypatch.setattr(DeltaTable, "create_write_transaction", committed_then_failed)
    with pytest.raises(OSError, match="connection reset"):
        delta.write(_frame([2]), spec, RunParams())
    # the commit happened: its file must still be there, and the table reads whole
    assert pl.read_delta(delta.table_uri(spec.ref))["id"].sort().to_list() == [1, 2]


def test_a_table_with_column_invariants_keeps_delta_rs_writer(tmp_path: Path) -> None:
    import pyarrow as pa

    uri = str(tmp_path / "inv")
    field = pa.field("id", pa.int64(), metadata={"delta.invariants": json.dumps({"expression": {"expression": "id > 0"}})})
    write_deltalake(uri, pa.table({"id": [1]}, schema=pa.schema([field])))
    table = DeltaTable(uri)
    loc = DeltaResource(root=str(tmp_path), parquet_writer="polars")._location(TableRef("s", "t"))
    assert "delta.invariants" in (table.schema().fields[0].metadata or {})
    assert not files.supported(loc, table, COLUMNS[:1], (), mode="append", predicate=None, partitions=(),
                               schema_mode=None)


def test_long_strings_give_a_prefix_as_minimum_and_an_incremented_prefix_as_maximum(delta: DeltaResource) -> None:
    spec = _spec("long")
    long_a, long_b = "a" * 100 + "z", "b" * 200
    delta.write(_frame([1, 2, 3]).with_columns(pl.Series("name", [long_a, long_b, None])), spec, RunParams())
    uri = delta.table_uri(spec.ref)
    row = pl.DataFrame(DeltaTable(uri).get_add_actions(flatten=True)).row(0, named=True)
    assert row["min.name"] == "a" * 32 and row["max.name"] == "b" * 31 + "c"
    # the bounds still let readers find every value
    for value, i in ((long_a, 1), (long_b, 2)):
        assert pl.scan_delta(uri).filter(pl.col("name") == value).collect()["id"].to_list() == [i]


def test_a_file_that_cannot_be_written_fails_the_write_with_its_own_error(delta: DeltaResource,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    spec, uri, before = _small_files_table(delta, monkeypatch, "full")
    real, calls = files.ParquetFiles._put, []

    def disk_full(self: files.ParquetFiles, rel: str, df: pl.DataFrame) -> int:
        calls.append(rel)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real(self, rel, df)

    monkeypatch.setattr(files.ParquetFiles, "_put", disk_full)
    lazy = pl.concat([_frame(list(range(i, i + 100))).lazy() for i in range(10, 1010, 100)])
    # the file's error, named for the table (not the streaming reader's GeneratorExit)
    with pytest.raises(StoreFullError, match="s.full.*No space left"):
        delta.write(lazy, spec, RunParams(), streaming=True)
    assert DeltaTable(uri).version() == 0
    assert _data_files(uri) == before
