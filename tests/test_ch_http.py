"""The ClickHouse HTTP endpoint for tests (:mod:`loom_resources.testing.ch_http`), driven by
clickhouse-connect's real HTTP client and by raw HTTP: formats both ways, compressed bodies,
settings, parameters, sessions, errors as ClickHouse returns them, and many clients at once.
Every value is read back from the engine behind it."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import clickhouse_connect
import pyarrow as pa
import pytest

from loom_resources.testing.ch_http import ServerProcess


def client(server: ServerProcess, **kw: Any) -> Any:
    return clickhouse_connect.get_client(host=server.host, port=server.port, username="default", password="",
                                         query_retries=0, autogenerate_session_id=False, **kw)


def http(server: ServerProcess, query: str, body: bytes = b"", headers: dict[str, str] | None = None,
         **params: str) -> tuple[int, dict[str, str], bytes]:
    from urllib.parse import urlencode

    url = f"http://{server.host}:{server.port}/?" + urlencode({"query": query, **params})
    req = urllib.request.Request(url, data=body or None, headers=headers or {}, method="POST" if body else "GET")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


@pytest.mark.parametrize("compress", [True, False, "zstd", "gzip"])
def test_round_trip_through_the_http_client(ch_http: ServerProcess, unique_schema: str, compress: Any) -> None:
    c = client(ch_http, compress=compress)
    c.command(f"CREATE DATABASE {unique_schema}")
    c.command(f"CREATE TABLE {unique_schema}.t (id Int64, s String, x Nullable(Float64), ts DateTime64(6, 'UTC'), "
              "tags Array(String)) ENGINE = MergeTree ORDER BY id")
    ts = dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC)
    c.insert_arrow(f"{unique_schema}.t", pa.table({
        "id": [1, 2], "s": ["a", "é\t'\n"], "x": [1.5, None], "ts": pa.array([ts, ts], pa.timestamp("us", "UTC")),
        "tags": [["p"], []]}))
    c.insert(f"{unique_schema}.t", [[3, "c", None, ts, ["q", "r"]]], column_names=["id", "s", "x", "ts", "tags"])  # Native
    assert c.query(f"SELECT id, s, x, tags FROM {unique_schema}.t ORDER BY id").result_rows == [
        (1, "a", 1.5, ["p"]), (2, "é\t'\n", None, []), (3, "c", None, ["q", "r"])]
    arrow = c.query_arrow(f"SELECT id, ts FROM {unique_schema}.t ORDER BY id")
    assert arrow.column("id").to_pylist() == [1, 2, 3]
    assert arrow.column("ts").to_pylist()[0] == ts
    with c.query_arrow_stream("SELECT number FROM numbers(300000)") as stream:
        assert sum(b.num_rows for b in stream) == 300_000
    assert c.command(f"SELECT count(), sum(id) FROM {unique_schema}.t") == ["3", "6"]
    c.close()


def test_settings_and_parameters_apply_to_their_query_only(ch_http: ServerProcess) -> None:
    c = client(ch_http)
    assert c.command("SELECT getSetting('max_threads')", settings={"max_threads": 3}) == 3
    assert c.command("SELECT getSetting('max_threads')") != 3
    assert c.query("SELECT {x:Int32} * 2", parameters={"x": 21}).result_rows == [(42,)]
    c.close()


def test_errors_come_back_as_clickhouse_returns_them(ch_http: ServerProcess) -> None:
    status, headers, body = http(ch_http, "SELECT * FROM no_such_db.t")
    assert status == 404 and headers["X-ClickHouse-Exception-Code"] == "81"
    assert body.startswith(b"Code: 81. DB::Exception: ") and b"UNKNOWN_DATABASE" in body
    status, headers, body = http(ch_http, "SELEKT 1")
    assert status == 400 and headers["X-ClickHouse-Exception-Code"] == "62"
    c = client(ch_http)
    with pytest.raises(clickhouse_connect.driver.exceptions.DatabaseError) as err:
        c.command("SELECT * FROM system.no_such_table")
    assert err.value.code == 60
    c.close()


def test_headers_formats_and_compressed_requests_over_raw_http(ch_http: ServerProcess, unique_schema: str) -> None:
    status, headers, body = http(ch_http, "SELECT 1 AS a, 'x' AS b FORMAT JSONCompact", query_id="q-1")
    assert status == 200 and headers["X-ClickHouse-Format"] == "JSONCompact" and headers["X-ClickHouse-Query-Id"] == "q-1"
    assert json.loads(body)["data"] == [[1, "x"]]
    assert set(json.loads(headers["X-ClickHouse-Summary"])) >= {"read_rows", "written_rows", "elapsed_ns"}
    assert headers["X-ClickHouse-Timezone"] and headers["X-ClickHouse-Server-Display-Name"]
    assert http(ch_http, "SELECT 2")[2] == b"2\n"  # TabSeparated by default
    http(ch_http, f"CREATE DATABASE {unique_schema}")
    http(ch_http, f"CREATE TABLE {unique_schema}.t (a Int32, b String) ENGINE = MergeTree ORDER BY a")
    # statement in the query parameter, gzip-compressed TSV data in the body
    status, _, body = http(ch_http, f"INSERT INTO {unique_schema}.t FORMAT TabSeparated",
                           gzip.compress(b"1\tone\n2\ttwo\n"), {"Content-Encoding": "gzip"})
    assert status == 200, body
    # statement and data both in the body
    assert http(ch_http, "", f"INSERT INTO {unique_schema}.t FORMAT CSV\n3,\"three\"\n".encode())[0] == 200
    _, headers, body = http(ch_http, f"SELECT * FROM {unique_schema}.t ORDER BY a FORMAT CSV",
                            headers={"Accept-Encoding": "gzip"}, enable_http_compression="1")
    assert headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(body) == b'1,"one"\n2,"two"\n3,"three"\n'


def test_session_settings_stay_in_their_session(ch_http: ServerProcess) -> None:
    assert http(ch_http, "SET max_threads = 5", session_id="s-a")[0] == 200
    assert http(ch_http, "SELECT getSetting('max_threads')", session_id="s-a")[2] == b"5\n"
    assert http(ch_http, "SELECT getSetting('max_threads')", session_id="s-b")[2] != b"5\n"
    assert http(ch_http, "SELECT getSetting('max_threads')")[2] != b"5\n"


def test_many_clients_at_once(ch_http: ServerProcess, unique_schema: str) -> None:
    """Eight clients insert and read concurrently; every row lands once."""
    c = client(ch_http)
    c.command(f"CREATE DATABASE {unique_schema}")
    c.command(f"CREATE TABLE {unique_schema}.t (w Int32, i Int64) ENGINE = MergeTree ORDER BY (w, i)")

    def work(w: int) -> int:
        mine = client(ch_http)
        for k in range(5):
            mine.insert_arrow(f"{unique_schema}.t", pa.table({"w": pa.array([w] * 1000, pa.int32()),
                                                              "i": range(k * 1000, (k + 1) * 1000)}))
            assert mine.query(f"SELECT count() FROM {unique_schema}.t").result_rows[0][0] >= 1000
        mine.close()
        return w

    with ThreadPoolExecutor(8) as pool:
        assert sorted(pool.map(work, range(8))) == list(range(8))
    assert c.query(f"SELECT w, count(), uniqExact(i) FROM {unique_schema}.t GROUP BY w ORDER BY w").result_rows == [
        (w, 5000, 5000) for w in range(8)]
    c.close()
