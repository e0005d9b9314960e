"""The Delta write-mode tests of test_delta.py, run against an ``s3://`` root.

The S3 endpoint is moto in server mode on 127.0.0.1, started and stopped by the fixture
(in a child process). Commits
use S3 conditional puts (``conditional_put=etag``), never unsafe renames, so concurrent writers
are safe.
"""

from __future__ import annotations

import boto3
import polars as pl
import pytest
from conftest import s3_delta_resource
from deltalake import DeltaTable
from test_delta import (  # noqa: F401  (re-exported so pytest runs them with the S3 fixture)
    D1,
    frame,
    new_ref,
    spec,
    test_append_creates_from_declared_schema,
    test_append_retry_of_same_step_is_skipped,
    test_append_with_evolve_adds_nullable_column,
    test_audit_columns,
    test_bad_frame_leaves_table_unchanged,
    test_concurrent_writers_to_disjoint_partitions,
    test_duplicate_merge_keys_rejected,
    test_history_ignore_policy,
    test_history_snapshot_close_and_rerun,
    test_history_soft_delete_and_changelog,
    test_merge_prunes_to_written_partitions,
    test_merge_updates_inserts_and_deletes_within_written_partitions,
    test_merge_with_evolve_adds_column,
    test_overwrite,
    test_partition_value_outside_run_key_rejected,
    test_predicate_on_unknown_column,
    test_read_binds_params_time_travel_and_streaming,
    test_replace_partitions_by_actual_column_type,
    test_replace_partitions_present_in_frame,
    test_replace_partitions_run_range_is_one_commit,
    test_replace_where,
    test_replace_where_rows_outside_predicate_rejected,
    test_safe_cast_applied_lossy_cast_rejected,
    test_stored_columns_missing_from_frame_are_written_as_nulls,
    test_streaming_replace_of_partitions_present_in_lazy_frame,
    test_streaming_write_validates_each_batch_and_aborts,
    test_strict_schema_against_stored_table,
    test_update_schema_adds_nullable_columns_only,
)

from loom_resources.delta import DeltaResource
from loom_resources.dtypes import ColumnSchema
from loom_resources.errors import BackendUnavailableError, DataValidationError
from loom_resources.model import RunParams


@pytest.fixture(params=["polars", "delta-rs"])
def delta(s3_endpoint: str, request: pytest.FixtureRequest) -> DeltaResource:
    """Every test with each Parquet writer (``DeltaResource.parquet_writer``)."""
    return s3_delta_resource(s3_endpoint, parquet_writer=request.param)


def test_files_land_in_the_bucket(delta: DeltaResource, s3_endpoint: str) -> None:
    ref = new_ref()
    delta.write(frame([1, 2], [D1, D1]), spec(ref, partition_by=("day",)), RunParams())
    bucket = delta.root.split("/")[2]
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    schema, table = ref.split(".")
    assert f"loom/{schema}/{table}/_delta_log/00000000000000000000.json" in keys
    assert any(k.startswith(f"loom/{schema}/{table}/day=2024-01-01/") for k in keys)
    assert delta.exists(ref)  # type: ignore[arg-type]
    got = pl.read_delta(delta.table_uri(ref), storage_options=delta.storage_options)
    assert sorted(got["id"].to_list()) == [1, 2]


def test_secrets_stay_out_of_the_uri(delta: DeltaResource) -> None:
    ref = new_ref()
    res = delta.write(frame([1], [D1]), spec(ref), RunParams())
    assert res.uri.startswith("s3://") and "testing" not in res.uri


def test_missing_bucket_is_a_clear_error(delta: DeltaResource) -> None:
    missing = DeltaResource(root="s3://no-such-bucket/loom", storage_options=delta.storage_options)
    with pytest.raises(BackendUnavailableError, match="no-such-bucket"):
        missing.write(frame([1], [D1]), spec("s.t"), RunParams())


def _keys(delta: DeltaResource, endpoint: str, ref: str) -> set[str]:
    bucket, prefix = delta.root.split("/")[2], "/".join(delta.root.split("/")[3:])
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    schema, table = ref.split(".")
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/{schema}/{table}/")
    return {o["Key"] for p in pages for o in p.get("Contents", [])}


def test_polars_encoded_files_on_s3_round_trip_with_their_partitions_and_statistics(s3_endpoint: str) -> None:
    delta = s3_delta_resource(s3_endpoint, parquet_writer="polars")
    ref = new_ref()
    cols = (ColumnSchema("id", "int64", False), ColumnSchema("region", "string"))
    df = pl.DataFrame({"id": [1, 2, 3, 4, 5], "region": ["EU", "New York/NY", None, "zürich", "50%"]},
                      schema={"id": pl.Int64, "region": pl.String})
    delta.write(df, spec(ref, columns=cols, partition_by=("region",)), RunParams())
    table = DeltaTable(delta.table_uri(ref), storage_options=delta.storage_options)
    assert table.history(1)[0]["operation"] == "CREATE TABLE"  # files put by Loom, committed as add actions
    # the objects sit where the log says, escaped as delta-rs escapes them
    data = {k.split("/", 3)[3].rsplit("/", 1)[0] for k in _keys(delta, s3_endpoint, ref) if k.endswith(".parquet")}
    assert data == {"region=EU", "region=New%20York%2FNY", "region=__HIVE_DEFAULT_PARTITION__",
                    "region=z%C3%BCrich", "region=50%25"}
    assert pl.from_arrow(table.to_pyarrow_table()).sort("id").select(df.columns).equals(df)  # type: ignore[union-attr]
    back = pl.read_delta(delta.table_uri(ref), storage_options=delta.storage_options).select(df.columns).sort("id")
    assert back.equals(df)
    got = pl.scan_delta(delta.table_uri(ref), storage_options=delta.storage_options).filter(
        pl.col("region") == "New York/NY").collect()
    assert got["id"].to_list() == [2]
    stats = pl.DataFrame(table.get_add_actions(flatten=True))
    assert stats.height == 5 and stats["num_records"].sum() == 5
    assert set(stats["min.id"].to_list()) == {1, 2, 3, 4, 5}


def test_a_write_failing_validation_leaves_no_object_in_the_bucket(s3_endpoint: str,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import loom_resources.delta._files as files

    monkeypatch.setattr(files, "TARGET_FILE_BYTES", 2_000)  # several files before the bad batch
    delta = s3_delta_resource(s3_endpoint, parquet_writer="polars")
    ref = new_ref()
    delta.write(frame([1, 2], [D1, D1]), spec(ref), RunParams())
    before = _keys(delta, s3_endpoint, ref)
    good = frame(list(range(10, 800)), [D1] * 790)
    # a lazy concatenation streams in several batches: files are written before the bad one
    bad = pl.concat([good.lazy(), frame([0], [D1]).with_columns(pl.lit(None, pl.Int64).alias("id")).lazy()])
    with pytest.raises(DataValidationError, match="id"):
        delta.write(bad, spec(ref), RunParams(), streaming=True)
    assert _keys(delta, s3_endpoint, ref) == before
    assert DeltaTable(delta.table_uri(ref), storage_options=delta.storage_options).version() == 0


def test_a_failed_upload_fails_the_write_and_leaves_no_object(s3_endpoint: str,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import loom_resources.delta._files as files
    from loom_resources.delta._sweep import StoreFiles

    monkeypatch.setattr(files, "TARGET_FILE_BYTES", 2_000)
    delta = s3_delta_resource(s3_endpoint, parquet_writer="polars")
    ref = new_ref()
    delta.write(frame([1, 2], [D1, D1]), spec(ref), RunParams())
    before = _keys(delta, s3_endpoint, ref)
    real, calls = StoreFiles.write, []

    def flaky(self: StoreFiles, path: str, data: bytes) -> None:
        calls.append(path)
        if len(calls) == 3:
            raise OSError("connection reset by the store")
        real(self, path, data)

    monkeypatch.setattr(StoreFiles, "write", flaky)
    lazy = pl.concat([frame(list(range(i, i + 100)), [D1] * 100).lazy() for i in range(10, 1010, 100)])
    with pytest.raises(OSError, match="connection reset"):
        delta.write(lazy, spec(ref), RunParams(), streaming=True)
    assert len(calls) >= 3
    assert _keys(delta, s3_endpoint, ref) == before  # the files that were stored are deleted again
    got = pl.read_delta(delta.table_uri(ref), storage_options=delta.storage_options)
    assert sorted(got["id"].to_list()) == [1, 2]
