"""What delta-rs' writer is handed (``delta._batches``): Arrow data without string or binary
views, since it stores that schema in every Parquet file and readers fail on ``Utf8View``."""

from __future__ import annotations

import glob
from pathlib import Path

import polars as pl
import pytest

from loom_resources import ColumnSchema, DeltaResource, RunParams, TableRef, TargetSpec
from loom_resources.model import Backend


@pytest.mark.parametrize("writer", ["polars", "delta-rs"])
def test_files_hold_no_views_and_filter_by_string_in_every_reader(tmp_path: Path, writer: str) -> None:
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq
    from deltalake import DeltaTable

    delta = DeltaResource(root=str(tmp_path), parquet_writer=writer)  # type: ignore[arg-type]
    spec = TargetSpec(ref=TableRef("s", "views"), backend=Backend.DELTA, columns=(
        ColumnSchema("id", "int64"), ColumnSchema("s", "string"), ColumnSchema("b", "binary"),
        ColumnSchema("st", "struct<a: string>"), ColumnSchema("l", "list<string>")))
    delta.write(pl.DataFrame({"id": [1, 2], "s": ["x", "y"], "b": [b"x", None], "st": [{"a": "q"}, None],
                              "l": [["p"], []]}), spec, RunParams())
    uri = delta.table_uri(spec.ref)
    for f in glob.glob(f"{uri}/*.parquet"):
        assert "view" not in str(pq.read_schema(f)), pq.read_schema(f)
    # deltalake's Arrow dataset had no kernel to compare a string with a file's string_view
    assert DeltaTable(uri).to_pyarrow_dataset().to_table(filter=ds.field("s") == "y").column("id").to_pylist() == [2]
    daft = pytest.importorskip("daft")  # a dev dependency: "Unsupported Arrow DataType: Utf8View"
    assert daft.read_deltalake(uri).where(daft.col("s") == "y").to_pydict()["id"] == [2]
