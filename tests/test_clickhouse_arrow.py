"""The Arrow flavour of ClickHouse inserts (loom_resources.clickhouse._write.arrow_level): string
views for the embedded engine, classic large strings for a server."""

from __future__ import annotations

import clickhouse_connect
import polars as pl
import pyarrow as pa
import pytest

from loom_resources.clickhouse import ClickHouseResource
from loom_resources.clickhouse._write import _arrow_batches, arrow_level
from loom_resources.dtypes import ColumnSchema
from loom_resources.model import RunParams, TableRef, TargetSpec, WriteMode


def test_embedded_engine_gets_string_views_and_a_server_large_strings(chdb_url: str) -> None:
    df = pl.DataFrame({"s": ["a", None, "ccc"], "b": [b"x", b"", None]})
    embedded = next(_arrow_batches(df, 10, arrow_level(ClickHouseResource(url=chdb_url))))
    server = next(_arrow_batches(df, 10, arrow_level(ClickHouseResource(url="http://loom@ch.example:8123/db"))))
    assert embedded.schema.field("s").type == pa.string_view()
    assert embedded.schema.field("b").type == pa.binary_view()
    assert server.schema.field("s").type == pa.large_string()
    assert server.schema.field("b").type == pa.large_binary()


@pytest.mark.parametrize("in_place", [False, True], ids=["arrow-file-slices", "in-place-stream"])
def test_sliced_view_batches_store_every_string_exactly(chdb_url: str, in_place: bool,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Several batches of views read back equal: eager slices (each shares the frame's string
    buffers) through ``insert_arrow``, the path of an embedded client that does not expose its
    engine connection; and streamed batches inserted in place."""
    import loom_resources.clickhouse._client as client_module

    if not in_place:
        monkeypatch.setattr(ClickHouseResource, "inserts_in_place", lambda self: False)
    batches: list[int] = []
    in_place_batches: list[int] = []
    real_insert, real_in_place = ClickHouseResource.insert_arrow, client_module.insert_in_place
    monkeypatch.setattr(client_module, "insert_in_place",
                        lambda c, t, b, s=None: in_place_batches.append(b.num_rows) or real_in_place(c, t, b, s))
    monkeypatch.setattr(ClickHouseResource, "insert_arrow",
                        lambda self, ref, b, **kw: batches.append(b.num_rows) or real_insert(self, ref, b, **kw))
    n = 25_000
    df = pl.DataFrame({
        "id": pl.arange(0, n, eager=True),
        "s": [None if i % 7 == 0 else f"value-{i}-" + "x" * (i % 40) for i in range(n)],
    })
    spec = TargetSpec(ref=TableRef("arrow", "views"), backend="clickhouse", mode=WriteMode.OVERWRITE,
                      columns=(ColumnSchema("id", "int64", False), ColumnSchema("s", "string")))
    res = ClickHouseResource(url=chdb_url, insert_batch_rows=4_000)
    try:
        res.write(df.lazy() if in_place else df, spec, RunParams(), streaming=in_place)
    finally:
        res.close()
    client = clickhouse_connect.get_client(dsn=chdb_url)
    try:
        back = pl.from_arrow(client.query_arrow("SELECT id, s FROM arrow.views ORDER BY id"))
    finally:
        client.close()
    assert len(batches) == 7 and sum(batches) == n  # 25,000 rows in batches of 4,000
    assert in_place_batches == (batches if in_place else [])
    assert isinstance(back, pl.DataFrame)
    assert back.height == n
    assert back["s"].cast(pl.String).to_list() == df["s"].to_list()
