"""ClickHouseResource against the embedded engine (the session's one chdb path), isolated by
database name. Data is checked with a separate clickhouse-connect client, not with what the
writer returned."""

from __future__ import annotations

import datetime as dt
import http.server
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from loom_resources.clickhouse import ClickHouseQuery, ClickHouseRelation, ClickHouseResource
from loom_resources.dtypes import ColumnSchema
from loom_resources.errors import BackendUnavailableError, DataValidationError, SchemaMismatchError, SpecError
from loom_resources.model import ClickHouseTableOptions, RunParams, SourceSpec, TableRef, TargetSpec, WriteContext
from loom_resources.predicates import col, param

ROOT = Path(__file__).resolve().parents[1]


def rows(raw: Any, ref: TableRef, order: str = "id", final: bool = False) -> list[tuple[Any, ...]]:
    return list(raw.query(f"SELECT * FROM `{ref.schema}`.`{ref.table}`{' FINAL' if final else ''} ORDER BY {order}").result_rows)


COLS = (
    ColumnSchema("id", "int64", nullable=False),
    ColumnSchema("day", "date", nullable=False),
    ColumnSchema("amount", "float64"),
    ColumnSchema("sku", "string"),
)


def orders(ids: range | list[int], day: dt.date = dt.date(2024, 1, 1), amount: float = 1.0) -> pl.DataFrame:
    ids = list(ids)
    return pl.DataFrame(
        {"id": ids, "day": [day] * len(ids), "amount": [amount] * len(ids), "sku": [f"s{i}" for i in ids]},
        schema={"id": pl.Int64, "day": pl.Date, "amount": pl.Float64, "sku": pl.String},
    )


def spec(schema: str, table: str = "orders", **kw: Any) -> TargetSpec:
    kw.setdefault("columns", COLS)
    return TargetSpec(ref=TableRef(schema, table), backend="clickhouse", **kw)


def day_params(*days: str) -> RunParams:
    return RunParams(partition_keys=days, partitions=tuple({"day": d} for d in days))


# -- connection -----------------------------------------------------------------------------


def test_connects_lazily_and_close_releases(chdb_url: str, unique_schema: str) -> None:
    r = ClickHouseResource(url=chdb_url)
    assert r._client is None  # constructing (loading the code location) opens nothing
    assert r.is_embedded()
    assert not r.exists(TableRef(unique_schema, "nothing"))
    assert r._client is not None
    r.close()
    assert r._client is None


def test_default_url_comes_from_loom_home(loom_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOOM_CLICKHOUSE_URL", raising=False)
    assert ClickHouseResource().resolved_url() == f"chdb://{loom_home / 'clickhouse'}"
    monkeypatch.setenv("LOOM_CLICKHOUSE_URL", "http://u@h:8123/db")
    assert ClickHouseResource().resolved_url() == "http://u@h:8123/db"


def test_unreachable_server_fails_fast_with_clear_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    r = ClickHouseResource(url=f"http://default@127.0.0.1:{port}/default", connect_timeout_s=2)
    start = time.monotonic()
    with pytest.raises(BackendUnavailableError, match=f"127.0.0.1:{port}"):
        r.exists(TableRef("a", "b"))
    assert time.monotonic() - start < 15


class _AuthFailHandler(http.server.BaseHTTPRequestHandler):
    """Answers like a ClickHouse server rejecting the password, and echoes the request's
    Authorization header, so a leak of the password anywhere in the error would show."""

    def _reply(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        auth = self.headers.get("Authorization") or ""
        import base64

        plain = base64.b64decode(auth[6:]).decode() if auth.startswith("Basic ") else ""
        code = self.server.code  # type: ignore[attr-defined]
        body = (
            f"Code: {code}. DB::Exception: loom: {'Authentication failed' if code == 516 else 'Broken server'}. Request auth: {auth} "
            f"decoded {plain} key {self.headers.get('X-ClickHouse-Key')} path {self.path}. (SOME_ERROR)"
        ).encode()
        self.send_response(403 if code == 516 else 500)
        self.send_header("X-ClickHouse-Exception-Code", str(code))
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = _reply
    do_POST = _reply

    def log_message(self, *args: Any) -> None:
        pass


@pytest.mark.parametrize("code", [516, 1002])
def test_wrong_password_error_never_echoes_it(monkeypatch: pytest.MonkeyPatch, code: int) -> None:
    """516 is ClickHouse's AUTHENTICATION_FAILED; 1002 stands for any other error whose text
    (here, deliberately) contains the credentials: the resource must scrub them."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _AuthFailHandler)
    server.code = code  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    secret = "s3cr3t-P@ss"
    monkeypatch.setenv("LOOM_TEST_CH_PASSWORD", secret)
    try:
        r = ClickHouseResource(
            url=f"http://loom@127.0.0.1:{server.server_address[1]}/default",
            password_env="LOOM_TEST_CH_PASSWORD", connect_timeout_s=2,
        )
        with pytest.raises(BackendUnavailableError) as info:
            r.exists(TableRef("a", "b"))
        text = str(info.value) + repr(info.value) + str(info.value.__cause__) + str(info.value.__context__)
        assert ("authentication failed" if code == 516 else "***") in text
        assert secret not in text
        import base64
        assert base64.b64encode(f"loom:{secret}".encode()).decode() not in text
        # a password carried in a URL from the environment is scrubbed the same way
        monkeypatch.setenv("LOOM_CLICKHOUSE_URL", f"http://loom:{secret}@127.0.0.1:{server.server_address[1]}/default")
        r2 = ClickHouseResource(connect_timeout_s=2)
        with pytest.raises(BackendUnavailableError) as info2:
            r2.exists(TableRef("a", "b"))
        assert secret not in str(info2.value) and secret not in r2.store()
        # written literally in code, it is refused before anything connects, without echoing it
        with pytest.raises(BackendUnavailableError, match="password_env") as info3:
            ClickHouseResource(url=f"http://loom:{secret}@127.0.0.1:{server.server_address[1]}/default")
        assert secret not in str(info3.value)
    finally:
        server.shutdown()


def test_embedded_path_held_by_another_process_gives_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "held"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import clickhouse_connect, sys, time
            c = clickhouse_connect.get_client(dsn="chdb://{path}")
            print("ready", flush=True)
            sys.stdin.readline()
            c.close()
        """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        probe = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(f"""
                from loom_resources.clickhouse import ClickHouseResource
                from loom_resources.errors import BackendUnavailableError
                from loom_resources.model import TableRef
                try:
                    ClickHouseResource(url="chdb://{path}", embedded_wait_s=1).exists(TableRef("a", "b"))
                except BackendUnavailableError as exc:
                    print("CLEAR:", exc)
            """)],
            capture_output=True, text=True, timeout=60, cwd=ROOT,
        )
        assert probe.returncode == 0, probe.stderr
        assert "CLEAR:" in probe.stdout and "another process holds this path" in probe.stdout
        assert "in_process_executor" in probe.stdout and "waited 1 s" in probe.stdout
    finally:
        assert holder.stdin is not None
        holder.stdin.write("\n")
        holder.stdin.flush()
        holder.wait(timeout=30)


def test_embedded_path_is_waited_for_until_the_other_process_releases_it(tmp_path: Path) -> None:
    path = tmp_path / "shared"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import clickhouse_connect, sys
            c = clickhouse_connect.get_client(dsn="chdb://{path}")
            c.command("CREATE DATABASE IF NOT EXISTS w")
            print("ready", flush=True)
            sys.stdin.readline()
            c.close()
        """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
    waiter = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            from loom_resources.clickhouse import ClickHouseResource
            print("OPENED", ClickHouseResource(url="chdb://{path}", embedded_wait_s=30).query_rows("SELECT count() FROM system.databases WHERE name = 'w'"))
        """)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )
    time.sleep(2)
    assert waiter.poll() is None  # still waiting for the path
    assert holder.stdin is not None
    holder.stdin.write("\n")
    holder.stdin.flush()
    holder.wait(timeout=30)
    out, err = waiter.communicate(timeout=60)
    assert "OPENED [(1,)]" in out, err[-2000:]


def test_second_embedded_path_in_one_process_gives_clear_error(chdb_url: str, tmp_path: Path) -> None:
    res = ClickHouseResource(url=chdb_url)
    res.exists(TableRef("a", "b"))  # this process now holds the session path
    other = ClickHouseResource(url=f"chdb://{tmp_path / 'other'}")
    with pytest.raises(BackendUnavailableError, match="already holds another chdb path"):
        other.exists(TableRef("a", "b"))
    other.close()
    res.close()


# -- discovery and reading --------------------------------------------------------------------


def test_discovery_maps_the_stored_schema(res: ClickHouseResource, raw: Any, unique_schema: str) -> None:
    ref = TableRef(unique_schema, "orders")
    assert not res.exists(ref) and res.columns(ref) == () and res.schema(ref) is None
    res.write(orders(range(3)), spec(unique_schema), RunParams())
    assert res.exists(ref)
    assert res.columns(ref) == ("id", "day", "amount", "sku")
    assert res.schema(ref) == COLS
    raw.command(f"CREATE TABLE `{unique_schema}`.ext (u UInt64, lc LowCardinality(Nullable(String)), "
                "ts DateTime64(6, 'UTC'), a Array(Int32), m Map(String, Int64)) ENGINE = Memory")
    got = res.schema(TableRef(unique_schema, "ext"))
    assert got is not None
    assert [str(c) for c in got] == [
        "u uint64 not null", "lc categorical", "ts datetime(us, UTC) not null", "a list<int32> not null",
        "m list<struct<key: string not null, value: int64 not null>> not null",
    ]


def test_read_renders_projection_and_escaped_literals(res: ClickHouseResource, unique_schema: str) -> None:
    df = pl.DataFrame({
        "id": [1, 2, 3, 4],
        "day": [dt.date(2024, 1, d) for d in (1, 2, 3, 4)],
        "amount": [1.0, None, 3.0, 4.0],
        "sku": ["it's", "back\\slash", "x'; DROP TABLE y; --", None],
    })
    res.write(df, spec(unique_schema), RunParams())
    ref = TableRef(unique_schema, "orders")
    read = lambda pred, cols=None: res.read(SourceSpec(ref, columns=cols, predicate=pred), RunParams(values={"d": dt.date(2024, 1, 2)}))  # noqa: E731
    assert read(col("sku").eq("it's")).collect()["id"].to_list() == [1]
    assert read(col("sku").eq("back\\slash")).collect()["id"].to_list() == [2]
    assert read(col("sku").eq("x'; DROP TABLE y; --")).collect()["id"].to_list() == [3]
    assert read(col("sku").eq(None)).collect()["id"].to_list() == [4]
    assert sorted(read(col("day").ge(param("d")), ("id",)).collect()["id"].to_list()) == [2, 3, 4]
    out = read(col("amount").is_null(), ("sku", "id")).collect()
    assert out.columns == ["sku", "id"] and out.rows() == [("back\\slash", 2)]
    assert res.exists(ref)  # still there after the injection attempt


def test_spool_mode_spools_and_deletes_the_file(chdb_url: str, unique_schema: str, tmp_path: Path) -> None:
    r = ClickHouseResource(url=chdb_url, streaming_reads="spool", spool_dir=str(tmp_path))
    try:
        r.write(orders(range(5000)), spec(unique_schema), RunParams())
        lf = r.read_streaming(SourceSpec(TableRef(unique_schema, "orders")), RunParams())
        spool = Path(r._spools[-1])
        assert spool.parent == tmp_path and spool.name.startswith("loom-ch-spool-") and f"-{os.getpid()}-" in spool.name
        assert len(list(spool.glob("part-*.arrow"))) == 1
        for _ in range(2):  # a snapshot: scanned twice, the query ran once
            out = lf.collect()
            assert out.height == 5000 and out["id"].sum() == sum(range(5000))
        assert out.schema == pl.Schema({"id": pl.Int64, "day": pl.Date, "amount": pl.Float64, "sku": pl.String})
    finally:
        r.close()
    assert not spool.exists()
    assert list(tmp_path.iterdir()) == []


def test_spool_mode_failure_leaves_no_spool(chdb_url: str, unique_schema: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pyarrow.ipc as ipc  # the spool imports it when it writes

    r = ClickHouseResource(url=chdb_url, streaming_reads="spool", spool_dir=str(tmp_path))
    try:
        r.write(orders(range(10)), spec(unique_schema), RunParams())

        def broken(*a: Any, **k: Any) -> Any:
            raise OSError("device went away")

        monkeypatch.setattr(ipc, "new_file", broken)
        with pytest.raises(Exception, match="device went away"):
            r.read_streaming(SourceSpec(TableRef(unique_schema, "orders")), RunParams())
        assert list(tmp_path.iterdir()) == []
    finally:
        r.close()


def test_read_streaming_empty_result_has_schema_and_one_query(
    res: ClickHouseResource, unique_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import loom_resources.clickhouse._read as mod

    res.write(orders(range(3)), spec(unique_schema), RunParams())
    calls: list[str] = []
    original = mod.arrow_batches
    client = res.client()
    original_query_arrow = client.query_arrow

    def counting(conn: Any, sql: str) -> Any:
        calls.append(sql)
        return original(conn, sql)

    def no_second_query(*a: Any, **k: Any) -> Any:
        calls.append("query_arrow")
        return original_query_arrow(*a, **k)

    monkeypatch.setattr(mod, "arrow_batches", counting)
    client.query_arrow = no_second_query
    out = res.read_streaming(SourceSpec(TableRef(unique_schema, "orders"), predicate=col("id").gt(100)), RunParams()).collect()
    assert out.height == 0 and out.schema == pl.Schema({"id": pl.Int64, "day": pl.Date, "amount": pl.Float64, "sku": pl.String})
    assert len(calls) == 1


# -- SQL ---------------------------------------------------------------------------------------


def test_execute_sql_pushes_down_when_all_sources_live_here(res: ClickHouseResource, raw: Any, unique_schema: str) -> None:
    res.write(orders(range(10)), spec(unique_schema), RunParams())
    res.write(orders(range(5, 8), amount=2.0), spec(unique_schema, "more"), RunParams())
    frames = {"o": res.relation(f"{unique_schema}.orders"), "m": res.relation(f"{unique_schema}.more")}
    assert all(isinstance(f, ClickHouseRelation) for f in frames.values())
    assert res.sql_engine(frames) == "clickhouse"
    q = res.execute_sql(frames, "SELECT o.id AS id, o.day AS day, o.amount + m.amount AS amount, o.sku AS sku FROM o JOIN m ON o.id = m.id")
    assert isinstance(q, ClickHouseQuery) and q.engine_name == "clickhouse"
    assert dict(q.collect_schema()) == {"id": pl.Int64, "day": pl.Date, "amount": pl.Float64, "sku": pl.String}
    result = res.write(q, spec(unique_schema, "joined"), RunParams())
    assert result.sql_engine == "clickhouse"
    assert rows(raw, TableRef(unique_schema, "joined")) == [(i, dt.date(2024, 1, 1), 3.0, f"s{i}") for i in (5, 6, 7)]
    # a Polars frame among the sources: the Polars executor runs it
    mixed = {"o": frames["o"], "p": pl.LazyFrame({"id": [1, 2]})}
    assert res.sql_engine(mixed) == "polars"
    lf = res.execute_sql(mixed, "SELECT o.id FROM o JOIN p ON o.id = p.id ORDER BY o.id")
    assert isinstance(lf, pl.LazyFrame) and lf.collect()["id"].to_list() == [1, 2]


def test_pushed_down_query_with_nulls_into_not_null_is_rejected(res: ClickHouseResource, raw: Any, unique_schema: str) -> None:
    res.write(orders(range(3)), spec(unique_schema), RunParams())
    q = res.execute_sql({"o": res.relation(f"{unique_schema}.orders")},
                        "SELECT if(id = 1, NULL, id) AS id, day, amount, sku FROM o")
    target = spec(unique_schema, "copy")
    with pytest.raises(DataValidationError):
        res.write(q, target, RunParams())
    assert not res.exists(target.ref)


# -- write modes -------------------------------------------------------------------------------


def test_append_retry_does_not_duplicate(res: ClickHouseResource, raw: Any, unique_schema: str) -> None:
    s = spec(unique_schema)
    ctx = WriteContext(run_id="run-1", asset_key="sales/orders")
    res.write(orders(range(2500)), s, RunParams(), write_ctx=ctx)  # 3 batches of 1000
    res.write(orders(range(2500)), s, RunParams(), write_ctx=WriteContext(run_id="run-1", asset_key="sales/orders", attempt=2))
    assert raw.query(f"SELECT count(), uniqExact(id) FROM `{unique_schema}`.orders").result_rows == [(2500, 2500)]
    res.write(orders(range(2500)), s, RunParams(), write_ctx=WriteContext(run_id="run-2", asset_key="sales/orders"))
    assert raw.query(f"SELECT count() FROM `{unique_schema}`.orders").result_rows == [(5000,)]
    # without a context, identical appends are separate writes and both land
    res.write(orders(range(10)), s, RunParams())
    res.write(orders(range(10)), s, RunParams())
    assert raw.query(f"SELECT count() FROM `{unique_schema}`.orders").result_rows == [(5020,)]


def test_streaming_append_retry_does_not_duplicate(res: ClickHouseResource, raw: Any, unique_schema: str) -> None:
    s = spec(unique_schema)
    for attempt in (1, 2):
        ctx = WriteContext(run_id="run-9", asset_key="a", attempt=attempt)
        out = res.write(orders(range(3000)).lazy(), s, RunParams(), streaming=True, write_ctx=ctx)
        assert out.streaming
    assert raw.query(f"SELECT count(), uniqExact(id) FROM `{unique_schema}`.orders").result_rows == [(3000, 3000)]


def test_streaming_append_failure_mid_stream_leaves_target_unchanged(res: ClickHouseResource, raw: Any, unique_schema: str) -> None:
    s = spec(unique_schema)
    res.write(orders(range(5)), s, RunParams())
    bad = pl.concat([orders(range(100, 3100)), orders([None]).with_columns(pl.lit(None, pl.Int64).alias("id"))])  # type: ignore[list-item]
    with pytest.raises(DataValidationError, match="id"):
        res.write(bad.lazy(), s, RunParams(), streaming=True)
    assert rows(raw, s.ref) == rows(raw, s.ref)[:5] and len(rows(raw, s.ref)) == 5
    left = raw.query(f"SELECT name FROM system.tables WHERE database = '{unique_schema}'").result_rows
    assert left == [("orders",)]  # staging dropped


def test_overwrite_swaps_atomically_and_keeps_table_on_bad_input(res: ClickHouseResource, raw: Any, unique_schema: str) -> None:
    s = spec(unique_schema, mode="overwrite")
    res.write(orders(range(10)), s, RunParams())
    res.write(orders(range(100, 103)), s, RunParams())
    assert [r[0] for r in rows(raw, s.ref)] == [100, 101, 102]
    bad = orders(range(3)).with_columns(pl.Series("id", [1, None, 3], pl.Int64))
    with pytest.raises(DataValidationError, match="orders.id"):
        res.write(bad, s, RunParams())
    with pytest.raises(DataValidationError):
        res.write(bad.lazy(), s, RunParams(), streaming=True)
    assert [r[0] for r in rows(raw, s.ref)] == [100, 101, 102]
    assert raw.query(f"SELECT count() FROM system.tables WHERE database = '{unique_schema}'").result_rows == [(1,)]


def test_overwrite_schema_mode_overwrite_replaces_columns(res: ClickHouseResource, raw: Any, unique_schema: str) -> None:
    res.write(orders(range(3)), spec(unique_schema, mode="overwrite"), RunParams())
    new_cols = (ColumnSchema("id", "int64", False), ColumnSchema("note", "string"))
    s2 = spec(unique_schema, mode="overwrite", schema_mode="overwrite", columns=new_cols)
    res.write(pl.DataFrame({"id": [7], "note": ["n"]}), s2, RunParams())
    assert res.schema(s2.ref) == new_cols
    assert rows(raw, s2.ref) == [(7, "n")]


def test_replace_partitions_replaces_exactly_the_run_partitions(res: ClickHouseResource, raw: Any, unique_schema: str) -> None:
    s = spec(unique_schema, mode="replace_partitions", partition_by=("day",))
    d1, d2, d3 = dt.date(2024, 1, 1), dt.date(2024, 1, 2), dt.date(2024, 1, 3)
    res.write(pl.concat([orders(range(0, 3), d1), orders(range(3, 6), d2), orders(range(6, 9), d3)]), s, RunParams())
    # run over d2 and d3: d2 gets new rows, d3 has none and must end up empty, d1 untouched
    res.write(orders([50, 51], d2, 9.0), s, day_params("2024-01-02", "2024-01-03"))
    got = rows(raw, s.ref)
    assert [(r[0], r[1]) for r in got] == [(0, d1), (1, d1), (2, d1), (50, d2), (51, d2)]
    # retry of the same run: idempotent
    res.write(orders([50, 51], d2, 9.0).lazy(), s, day_params("2024-01-02", "2024-01-03"), streaming=True)
    assert rows(raw, s.ref) == got
    # a row outside the run's partitions is rejected and nothing changes
    with pytest.raises(DataValidationError, match="outside the run's partitions"):
        res.write(orders([99], d1), s, day_params("2024-01-02"))
    assert rows(raw, s.ref) == got
    assert raw.query(f"SELECT count() FROM system.mutations WHERE database = '{unique_schema}'").result_rows == [(0,)]


def test_replace_partitions_refuses_coarser_partition_by(res: ClickHouseResource, raw: Any, unique_schema: str) -> None:
    s = spec(unique_schema, mode="replace_partitions", partition_by=("day",),
             clickhouse=ClickHouseTableOptions(partition_by="toYYYYMM(day)"))
    res.write(pl.concat([orders([1], dt.date(2024, 1, 1)), orders([2], dt.date(2024, 1, 2))]), s, RunParams())
    with pytest.raises(DataValidationError, match="coarser"):
        res.write(orders([3], dt.date(2024, 1, 2)), s, day_params("2024-01-02"))
    assert [r[0] for r in rows(raw, s.ref)] == [1, 2]


def test_merge_updated_rows_replace_old_ones(res: ClickHouseResource, raw: Any, unique_schema: str) -> None:
    s = spec(unique_schema, mode="merge", merge_keys=("id",))
    res.write(orders(range(5), amount=1.0), s, RunParams())
    res.write(orders([3, 4, 5], amount=2.0), s, RunParams())
    res.write(orders([4], amount=3.0).lazy(), s, RunParams(), streaming=True)
    engine = raw.query(f"SELECT engine FROM system.tables WHERE database = '{unique_schema}' AND name = 'orders'").result_rows
    assert engine == [("ReplacingMergeTree",)]
    expect = [(0, 1.0), (1, 1.0), (2, 1.0), (3, 2.0), (4, 3.0), (5, 2.0)]
    assert [(r[0], r[2]) for r in rows(raw, s.ref, final=True)] == expect
    read = res.read(SourceSpec(s.ref), RunParams()).collect().sort("id")  # read adds FINAL
    assert list(zip(read["id"], read["amount"], strict=True)) == expect
    res.optimize_final(s.ref)
    assert [(r[0], r[2]) for r in rows(raw, s.ref)] == expect  # physically merged
    with pytest.raises(DataValidationError, match="duplicate merge key"):
        res.write(orders([1, 1]), s, RunParams())


def test_declared_replacing_engine_with_version(res: ClickHouseResource, raw: Any, unique_schema: str) -> None:
    cols = COLS + (ColumnSchema("ver", "uint64", False),)
    s = spec(unique_schema, columns=cols, mode="merge", merge_keys=("id",),
             clickhouse=ClickHouseTableOptions(engine="ReplacingMergeTree(ver)", order_by=("id",)))
    res.write(orders([1]).with_columns(pl.lit(5, pl.UInt64).alias("ver"), pl.lit(5.0).alias("amount")), s, RunParams())
    res.write(orders([1]).with_columns(pl.lit(4, pl.UInt64).alias("ver"), pl.lit(4.0).alias("amount")), s, RunParams())
    assert [(r[0], r[2], r[4]) for r in rows(raw, s.ref, final=True)] == [(1, 5.0, 5)]  # higher version wins


def test_schema_modes(res: ClickHouseResource, raw: Any, unique_schema: str) -> None:
    s = spec(unique_schema)
    res.write(orders(range(2)), s, RunParams())
    extra = orders([7]).with_columns(pl.lit("x").alias("note"))
    with pytest.raises(SchemaMismatchError, match="note"):
        res.write(extra, s, RunParams())
    res.write(extra, spec(unique_schema, schema_mode="evolve"), RunParams())
    assert raw.query(f"SELECT type FROM system.columns WHERE database = '{unique_schema}' AND name = 'note'").result_rows == [("Nullable(String)",)]
    assert [r[-1] for r in rows(raw, s.ref)] == [None, None, "x"]


def test_bad_input_leaves_table_unchanged(res: ClickHouseResource, raw: Any, unique_schema: str) -> None:
    s = spec(unique_schema)
    res.write(orders(range(3)), s, RunParams())
    before = rows(raw, s.ref)
    with pytest.raises(SchemaMismatchError, match="'amount' has type string"):
        res.write(orders([9]).with_columns(pl.lit("x").alias("amount")), s, RunParams())
    with pytest.raises(DataValidationError, match="orders.day"):
        res.write(orders([9]).with_columns(pl.lit(None, pl.Date).alias("day")), s, RunParams())
    stored_as_int32 = spec(unique_schema, columns=(COLS[0], COLS[1], ColumnSchema("amount", "int32"), COLS[3]))
    with pytest.raises(SchemaMismatchError, match="stored as float64"):
        res.write(orders([9]).with_columns(pl.lit(1, pl.Int32).alias("amount")), stored_as_int32, RunParams())
    assert rows(raw, s.ref) == before


def test_names_that_need_quoting_cannot_inject(res: ClickHouseResource, raw: Any, unique_schema: str) -> None:
    with pytest.raises(ValueError, match="invalid table name"):
        TableRef(unique_schema, "x; DROP TABLE y")
    weird = ("x; DROP TABLE y", "back`tick", "it's \"q\"", "slash\\")
    cols = tuple(ColumnSchema(n, "int64") for n in weird)
    s = TargetSpec(ref=TableRef(unique_schema, "weird"), backend="clickhouse", columns=cols, mode="overwrite")
    res.write(pl.DataFrame({n: [i] for i, n in enumerate(weird)}), s, RunParams())
    assert res.columns(s.ref) == weird
    assert raw.query(f"SELECT * FROM `{unique_schema}`.weird").result_rows == [(0, 1, 2, 3)]
    out = res.read(SourceSpec(s.ref, columns=("back`tick",), predicate=col("it's \"q\"").eq(2)), RunParams()).collect()
    assert out.rows() == [(1,)]


def test_audit_columns(res: ClickHouseResource, raw: Any, unique_schema: str) -> None:
    s = spec(unique_schema, audit_columns=True)
    ctx = WriteContext(run_id="r-42", asset_key="sales/orders", partition_keys=("2024-01-01",))
    res.write(orders(range(2)), s, RunParams(), write_ctx=ctx)
    got = raw.query(f"SELECT _loom_run_id, _loom_asset_key, _loom_partition_key, _loom_written_at FROM `{unique_schema}`.orders").result_rows
    assert [r[:3] for r in got] == [("r-42", "sales/orders", "2024-01-01")] * 2
    assert got[0][3] is not None


def test_unsupported_modes_fail_loudly(res: ClickHouseResource, unique_schema: str) -> None:
    s = spec(unique_schema, mode="replace_where", replace_predicate=col("day").eq(dt.date(2024, 1, 1)))
    with pytest.raises(SpecError, match="replace_where"):
        res.write(orders([1]), s, RunParams())
    assert not res.exists(s.ref)


def test_dagster_step_end_closes_client_and_deletes_spools(chdb_url: str, unique_schema: str, tmp_path: Path) -> None:
    import dagster as dg

    setup = ClickHouseResource(url=chdb_url)
    setup.write(orders(range(100)), spec(unique_schema), RunParams())
    setup.close()
    seen: dict[str, Any] = {}

    def resource() -> ClickHouseResource:
        return ClickHouseResource(url=chdb_url, streaming_reads="spool", spool_dir=str(tmp_path))

    @dg.asset
    def copy(clickhouse: ClickHouseResource) -> int:
        lf = clickhouse.read_streaming(SourceSpec(TableRef(unique_schema, "orders")), RunParams())
        seen["spool"] = Path(clickhouse._spools[-1])
        seen["res"] = clickhouse
        return lf.collect().height

    result = dg.materialize([copy], resources={"clickhouse": resource()})
    assert result.success and result.output_for_node("copy") == 100
    assert not seen["spool"].exists()
    assert seen["res"]._client is None

    @dg.asset
    def fails(clickhouse: ClickHouseResource) -> int:
        clickhouse.read_streaming(SourceSpec(TableRef(unique_schema, "orders")), RunParams())
        seen["spool"] = Path(clickhouse._spools[-1])
        raise RuntimeError("transform failed")

    result = dg.materialize([fails], resources={"clickhouse": resource()}, raise_on_error=False)
    assert not result.success
    assert not seen["spool"].exists()  # deleted on failure too
    assert list(tmp_path.iterdir()) == []


def test_update_schema_adds_nullable_columns_only(res: ClickHouseResource, raw: Any, unique_schema: str) -> None:
    s = spec(unique_schema)
    res.write(orders(range(2)), s, RunParams())
    res.update_schema(s.ref, COLS + (ColumnSchema("note", "string"),))
    assert res.columns(s.ref)[-1] == "note"
    with pytest.raises(SchemaMismatchError, match="'strict_col'"):
        res.update_schema(s.ref, COLS + (ColumnSchema("strict_col", "int64", False),))
    assert "strict_col" not in res.columns(s.ref)


def test_pushdown_keeps_the_users_with_clause_and_typed_literals(res: ClickHouseResource, unique_schema: str) -> None:
    cols = (ColumnSchema("id", "int64", False), ColumnSchema("ts", "datetime(us, UTC)", False), ColumnSchema("d", "date", False))
    s = TargetSpec(ref=TableRef(unique_schema, "events"), backend="clickhouse", columns=cols)
    base = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    res.write(pl.DataFrame({"id": [1, 2, 3], "ts": [base + dt.timedelta(hours=h) for h in (0, 1, 2)],
                            "d": [dt.date(2024, 1, d) for d in (1, 2, 3)]},
                           schema={"id": pl.Int64, "ts": pl.Datetime("us", "UTC"), "d": pl.Date}), s, RunParams())
    rel = res.relation(SourceSpec(s.ref, predicate=col("ts").ge(param("start")) & col("d").le(dt.date(2024, 1, 2))),
                       RunParams(values={"start": base + dt.timedelta(hours=1)}))
    q = res.execute_sql({"e": rel}, "WITH 10 AS k SELECT id * k AS x FROM e ORDER BY x")
    assert isinstance(q, ClickHouseQuery)
    assert q.collect()["x"].to_list() == [20]


def test_new_tables_have_no_insert_dedup_window(res: ClickHouseResource, raw: Any, unique_schema: str) -> None:
    """Exactly-once comes from the staging + ledger path; the window's block hashing would only slow inserts."""
    s = spec(unique_schema, mode="append")
    res.write(orders(range(5)), s, RunParams())
    engine = raw.query(f"SELECT engine_full FROM system.tables WHERE database = '{unique_schema}' AND name = 'orders'"
                       ).result_rows[0][0]
    assert "non_replicated_deduplication_window" not in engine
    res.write(orders(range(5)), s, RunParams())  # the same rows again are appended again (no context: a new write)
    assert len(rows(raw, s.ref)) == 10


@pytest.mark.parametrize("mode", ["append", "replace_partitions"])
def test_tables_made_with_the_old_dedup_window_still_take_writes(
        res: ClickHouseResource, raw: Any, unique_schema: str, mode: str) -> None:
    """Tables created by earlier versions (window 1000) accept staged parts from window-0 staging tables."""
    raw.command(f"CREATE DATABASE IF NOT EXISTS `{unique_schema}`")
    raw.command(f"CREATE TABLE `{unique_schema}`.`orders` (`id` Int64, `day` Date32, `amount` Nullable(Float64), "
                "`sku` Nullable(String)) ENGINE = MergeTree PARTITION BY `day` ORDER BY tuple() "
                "SETTINGS non_replicated_deduplication_window = 1000, allow_nullable_key = 1")
    s = spec(unique_schema, mode=mode, partition_by=("day",))
    day = dt.date(2024, 1, 1)
    res.write(orders(range(3), day), s, day_params(day.isoformat()))
    res.write(orders(range(3, 7), day), s, day_params(day.isoformat()))
    ids = [r[0] for r in rows(raw, s.ref)]
    assert ids == (list(range(7)) if mode == "append" else list(range(3, 7)))
