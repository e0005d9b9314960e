"""The ClickHouse resource: discovery, reads, streaming reads, SQL pushdown and writes over
clickhouse-connect, against the embedded engine (``chdb://``) or a server (``http(s)://``).

The embedded engine holds one data path per process, and one process per path. So the
resource connects lazily (loading the code location opens nothing), closes its client when a
Dagster step ends, and turns "path already held" into a :class:`BackendUnavailableError`
that says what to do.
"""

from __future__ import annotations

import atexit
import base64
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

import polars as pl
import pyarrow as pa
import pyarrow.ipc as ipc
from dagster import ConfigurableResource, InitResourceContext
from pydantic import Field as PydanticField
from pydantic import PrivateAttr

from loom_resources.clickhouse_sql import (
    ClickHouseQuery,
    ClickHouseRelation,
    bind_aliases,
    lit,
    qi,
    qt,
    select_sql,
)
from loom_resources.clickhouse_types import from_clickhouse, to_clickhouse
from loom_resources.dtypes import ColumnSchema, Schema
from loom_resources.errors import BackendUnavailableError, LoomError, SchemaMismatchError
from loom_resources.model import RunParams, SourceSpec, TableRef, TargetSpec, WriteContext, WriteResult
from loom_resources.polars_types import empty_frame, to_polars
from loom_resources.predicates import check_columns
from loom_resources.sql import PolarsSQLExecutor

__all__ = ["ClickHouseQuery", "ClickHouseRelation", "ClickHouseResource"]

_SPOOLS: set[str] = set()
_STREAM_BATCH_ROWS = 131_072
_SPOOL_FILE_ROWS = 2_000_000
_SPOOL_LOCK = threading.Lock()


@atexit.register
def _remove_leftover_spools() -> None:
    # Backstop for spools of resources that were never closed (e.g. used outside Dagster).
    for d in list(_SPOOLS):
        shutil.rmtree(d, ignore_errors=True)


_EMBEDDED_HELP = (
    "The embedded ClickHouse engine (chdb) opens one data path per process, and a path can be open "
    "in only one process at a time. Run assets that use it with the in_process_executor and one run "
    "at a time (the Loom code location does this for chdb:// URLs), close other programs using the "
    "path, or point LOOM_CLICKHOUSE_URL at a ClickHouse server (http(s)://user@host:port/db)."
)


class ClickHouseResource(ConfigurableResource):
    """Loom tables in ClickHouse: implements TableDiscovery, SourceReader,
    StreamingSourceReader, SQLExecutor and TargetWriter.

    Example::

        from dagster import Definitions, EnvVar
        defs = Definitions(
            assets=[...],
            resources={"clickhouse": ClickHouseResource(url="http://loom@ch.internal:8123/default",
                                                        password_env="CLICKHOUSE_PASSWORD")},
        )
    """

    url: str = PydanticField(
        default="",
        description="chdb:///abs/path (embedded engine) or http(s)://user@host:port/db; empty means "
        "$LOOM_CLICKHOUSE_URL, else chdb://$LOOM_HOME/clickhouse.",
    )
    password_env: str | None = PydanticField(
        default=None, description="Name of the environment variable holding the server password."
    )
    connect_timeout_s: float = PydanticField(default=10.0, description="Seconds to wait for a server connection.")
    send_receive_timeout_s: float = PydanticField(default=300.0, description="Seconds to wait for a query response.")
    embedded_wait_s: float = PydanticField(
        default=30.0,
        description="chdb:// only: seconds to wait while another process holds the engine path (each step "
        "releases it when it ends), before failing with BackendUnavailableError.",
    )
    insert_batch_rows: int = PydanticField(default=500_000, description="Rows per insert_arrow batch.")
    spool_dir: str | None = PydanticField(
        default=None, description="Directory for streaming-read spool files (default: the system temp directory)."
    )
    audit_columns: bool = PydanticField(
        default=False, description="Add _loom_* audit columns to every table this resource writes."
    )

    _client: Any = PrivateAttr(default=None)
    _spools: list[str] = PrivateAttr(default_factory=list)
    _secrets: list[str] = PrivateAttr(default_factory=list)

    # -- connection ----------------------------------------------------------------------

    def resolved_url(self) -> str:
        """The URL in use (resolved from the environment when ``url`` is empty)."""
        url = self.url or os.environ.get("LOOM_CLICKHOUSE_URL", "")
        if not url:
            home = Path(os.environ.get("LOOM_HOME", ".loom")).absolute()
            url = f"chdb://{home / 'clickhouse'}"
        if url.startswith("chdb://") and not url.startswith("chdb:///"):
            url = f"chdb://{Path(url[len('chdb://'):]).absolute()}"
        return url

    def is_embedded(self) -> bool:
        """Whether the URL selects the embedded engine (one process per path, one path per process)."""
        return self.resolved_url().startswith("chdb:")

    def store(self) -> str:
        """The store's URL without credentials, for metadata and relation markers."""
        p = urlparse(self.resolved_url())
        if p.scheme == "chdb":
            return f"chdb://{p.path}"
        host = p.hostname or "localhost"
        port = f":{p.port}" if p.port else ""
        user = f"{p.username}@" if p.username else ""
        return f"{p.scheme}://{user}{host}{port}{p.path}"

    def _password(self, parsed_password: str | None) -> str:
        if self.password_env:
            pw = os.environ.get(self.password_env)
            if pw is None:
                raise BackendUnavailableError(
                    f"ClickHouse password variable {self.password_env!r} is not set in the environment"
                )
            return pw
        return parsed_password or ""

    def scrub(self, text: str) -> str:
        """Replace every known secret in ``text`` with ``***``."""
        for s in self._secrets:
            if s:
                text = text.replace(s, "***")
        return text

    def client(self) -> Any:
        """The clickhouse-connect client, opened on first use."""
        if self._client is not None:
            return self._client
        import clickhouse_connect

        url = self.resolved_url()
        p = urlparse(url)
        err: LoomError | None = None
        try:
            if p.scheme == "chdb":
                Path(p.path).mkdir(parents=True, exist_ok=True)
                self._client = self._open_embedded(clickhouse_connect, p.path)
            elif p.scheme in ("http", "https"):
                password = self._password(p.password)
                user = p.username or "default"
                self._secrets = [x for x in {password, p.password or ""} if x]
                self._secrets += [base64.b64encode(f"{user}:{x}".encode()).decode() for x in self._secrets]
                self._client = clickhouse_connect.get_client(
                    interface=p.scheme,
                    host=p.hostname or "localhost",
                    port=p.port,
                    username=user,
                    password=password,
                    database=(p.path.strip("/") or None),
                    connect_timeout=self.connect_timeout_s,
                    send_receive_timeout=self.send_receive_timeout_s,
                    query_retries=0,
                    autogenerate_session_id=False,
                )
            else:
                err = BackendUnavailableError(
                    f"unsupported ClickHouse URL scheme {p.scheme!r} in {self.store()}: use chdb:// or http(s)://"
                )
        except LoomError as exc:
            err = exc
        except Exception as exc:
            err = self._unavailable(exc)
        if err is not None:
            # raised outside the handler so the client's error (which may echo credentials) is not chained
            raise err
        return self._client

    def _open_embedded(self, clickhouse_connect: Any, path: str) -> Any:
        """Open the embedded engine, waiting up to ``embedded_wait_s`` while another process holds the path."""
        deadline = time.monotonic() + self.embedded_wait_s
        while True:
            try:
                return clickhouse_connect.get_client(dsn=f"chdb://{path}")
            except Exception:
                if time.monotonic() >= deadline or not _held_elsewhere(f"chdb://{path}"):
                    raise
            time.sleep(0.25)

    def _unavailable(self, exc: BaseException) -> BackendUnavailableError:
        msg = self.scrub(str(exc))
        where = self.store()
        if "EmbeddedServer already initialized" in msg:
            return BackendUnavailableError(
                f"cannot open embedded ClickHouse at {where}: this process already holds another chdb path. "
                f"{_EMBEDDED_HELP} (engine said: {msg})"
            )
        if "Cannot lock file" in msg or "Another server instance" in msg or _held_elsewhere(self.resolved_url()):
            return BackendUnavailableError(
                f"cannot open embedded ClickHouse at {where}: another process holds this path "
                f"(waited {self.embedded_wait_s:g} s). "
                f"{_EMBEDDED_HELP} (engine said: {msg})"
            )
        if "Code: 516" in msg or "AUTHENTICATION_FAILED" in msg or "Authentication failed" in msg:
            return BackendUnavailableError(
                f"ClickHouse at {where} rejected the credentials (authentication failed); "
                f"check the user and the password in ${self.password_env or 'the URL'}"
            )
        if "Error initializing EmbeddedServer" in msg:
            return BackendUnavailableError(f"cannot open embedded ClickHouse at {where}. {_EMBEDDED_HELP} (engine said: {msg})")
        return BackendUnavailableError(f"cannot connect to ClickHouse at {where}: {msg}")

    def close(self) -> None:
        """Close the client (releasing an embedded path) and delete this resource's spool files."""
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:  # noqa: S110 - closing a broken client must not mask the step's error
                pass
        for d in self._spools:
            shutil.rmtree(d, ignore_errors=True)
            with _SPOOL_LOCK:
                _SPOOLS.discard(d)
        self._spools.clear()

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        """Dagster calls this when the step ends, on success and on failure."""
        self.close()

    # -- low-level calls with scrubbed errors --------------------------------------------

    def _fail(self, exc: BaseException, what: str) -> LoomError:
        if isinstance(exc, LoomError):
            return exc
        name = type(exc).__name__
        if name in ("OperationalError",) or isinstance(exc, (ConnectionError, TimeoutError)):
            return self._unavailable(exc)
        return LoomError(f"ClickHouse failed to {what}: {self.scrub(str(exc))}")

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            err = self._fail(exc, what)
        # raised outside the handler so the client's error (which may echo credentials) is not chained
        raise err

    def command(self, sql: str, *, what: str = "run a command", settings: Mapping[str, Any] | None = None) -> Any:
        """Run one statement; errors come back as :class:`LoomError` with secrets scrubbed."""
        return self._call(what, self.client().command, sql, settings=dict(settings or {}))

    def query_rows(self, sql: str, *, what: str = "run a query") -> list[tuple[Any, ...]]:
        """Run a small query and return its rows."""
        return list(self._call(what, self.client().query, sql).result_rows)

    def insert_arrow(self, ref: TableRef, table: pa.Table, *, settings: Mapping[str, Any] | None = None) -> None:
        """Insert one Arrow table (one batch) into ``ref``."""
        self._call(f"insert into {ref}", self.client().insert_arrow, qt(ref), table, settings=dict(settings or {}))

    # -- discovery -------------------------------------------------------------------------

    def ch_columns(self, ref: TableRef) -> list[tuple[str, str]]:
        """``(name, clickhouse type)`` of the table's columns in order; empty when it is missing."""
        rows = self.query_rows(
            f"SELECT name, type FROM system.columns WHERE database = {lit(ref.schema)} "
            f"AND table = {lit(ref.table)} ORDER BY position",
            what=f"list the columns of {ref}",
        )
        return [(str(n), str(t)) for n, t in rows]

    def table_engine(self, ref: TableRef) -> str | None:
        """The table's ``engine_full`` text, or ``None`` when the table is missing."""
        rows = self.query_rows(
            f"SELECT engine_full FROM system.tables WHERE database = {lit(ref.schema)} AND name = {lit(ref.table)}",
            what=f"look up table {ref}",
        )
        return str(rows[0][0]) if rows else None

    def exists(self, ref: TableRef) -> bool:
        """Whether the table exists."""
        return self.table_engine(ref) is not None

    def columns(self, ref: TableRef) -> tuple[str, ...]:
        """The table's column names in stored order; ``()`` when the table is unknown."""
        return tuple(n for n, _ in self.ch_columns(ref))

    def schema(self, ref: TableRef) -> Schema | None:  # type: ignore[override]
        """The table's stored schema in the Loom table model; ``None`` when it is missing."""
        cols = self.ch_columns(ref)
        if not cols:
            return None
        out = []
        for name, ty in cols:
            dtype, nullable = from_clickhouse(ty)
            out.append(ColumnSchema(name, dtype, nullable))
        return tuple(out)

    def update_schema(self, ref: TableRef, schema: Schema) -> None:
        """Add missing nullable columns of ``schema``; fail on any other difference."""
        stored = self.schema(ref)
        if stored is None:
            raise LoomError(f"table {ref} does not exist in ClickHouse at {self.store()}")
        have = {c.name: c for c in stored}
        problems, adds = [], []
        for c in schema:
            if c.name not in have:
                if c.nullable:
                    adds.append(c)
                else:
                    problems.append(f"column {c.name!r} is missing and not nullable; it cannot be added")
        if problems:
            raise SchemaMismatchError(str(ref), problems)
        for c in adds:
            self.command(
                f"ALTER TABLE {qt(ref)} ADD COLUMN IF NOT EXISTS {qi(c.name)} {to_clickhouse(c)}",
                what=f"add column {c.name!r} to {ref}",
            )

    # -- reading ---------------------------------------------------------------------------

    def _source_sql(self, spec: SourceSpec, params: RunParams) -> tuple[str, Schema, list[tuple[str, str]]]:
        engine = self.table_engine(spec.ref)
        if engine is None:
            raise LoomError(f"source table {spec.ref} does not exist in ClickHouse at {self.store()}")
        all_cols = self.ch_columns(spec.ref)
        known = [n for n, _ in all_cols]
        if spec.columns is not None:
            missing = [c for c in spec.columns if c not in known]
            if missing:
                raise SchemaMismatchError(str(spec.ref), [f"column {c!r} is requested but not in the table" for c in missing])
            by_name = dict(all_cols)
            cols = [(c, by_name[c]) for c in spec.columns]
        else:
            cols = all_cols
        pred = spec.predicate.bind(params.bindings()) if spec.predicate is not None else None
        if pred is not None:
            check_columns(pred, known, table=str(spec.ref))
        schema = tuple(ColumnSchema(n, *from_clickhouse(t)) for n, t in cols)
        return select_sql(spec.ref, cols, engine=engine, predicate=pred), schema, cols

    def relation(self, spec: SourceSpec | TableRef | str, params: RunParams | None = None) -> ClickHouseRelation:
        """A marker for a source in this store, to pass to :meth:`execute_sql` for pushdown."""
        if not isinstance(spec, SourceSpec):
            spec = SourceSpec(TableRef.parse(spec))
        sql, _, _ = self._source_sql(spec, params or RunParams())
        return ClickHouseRelation(spec.ref, self.store(), sql)

    def read(self, spec: SourceSpec, params: RunParams, /) -> pl.LazyFrame:
        """The source's projection and predicate, queried in ClickHouse (collapsing engines read
        with FINAL). The rows are fetched now, as Arrow; use :meth:`read_streaming` for large sources."""
        sql, schema, cols = self._source_sql(spec, params)
        return self._read_sql(sql, schema, cols, streaming=False)

    def read_streaming(self, spec: SourceSpec, params: RunParams, /) -> pl.LazyFrame:
        """The source spooled batch by batch to a compressed Arrow IPC file and scanned lazily.

        Peak memory is about one batch. The spool file is deleted when the step ends
        (:meth:`close`), on success and on failure. An empty result gives an empty frame with
        the table's schema.
        """
        sql, schema, cols = self._source_sql(spec, params)
        return self._read_sql(sql, schema, cols, streaming=True)

    def _read_sql(self, sql: str, schema: Schema, cols: Sequence[tuple[str, str]], *, streaming: bool) -> pl.LazyFrame:
        client = self.client()
        if not streaming:
            table = self._call("read", client.query_arrow, sql)
            if table.num_rows == 0:
                return empty_frame(schema).lazy()
            return _to_loom_types(pl.from_arrow(table).lazy(), schema)  # type: ignore[union-attr]
        spool = tempfile.mkdtemp(prefix="loom-ch-spool-", dir=self.spool_dir)
        self._spools.append(spool)
        with _SPOOL_LOCK:
            _SPOOLS.add(spool)
        files: list[str] = []
        writer = None
        rows_in_file = 0
        try:
            for batch in self._arrow_batches(sql):
                if writer is None or rows_in_file >= _SPOOL_FILE_ROWS:
                    # several files: Polars memory-maps each one it scans, so one file would keep
                    # the whole spool resident in the page cache of this process
                    if writer is not None:
                        writer.close()
                    files.append(os.path.join(spool, f"part-{len(files):05d}.arrow"))
                    writer = ipc.new_file(files[-1], batch.schema, options=ipc.IpcWriteOptions(compression="lz4"))
                    rows_in_file = 0
                writer.write(batch)
                rows_in_file += batch.num_rows
            if writer is None:
                shutil.rmtree(spool, ignore_errors=True)
                return empty_frame(schema).lazy()
            writer.close()
        except Exception as exc:
            if writer is not None:
                writer.close()
            shutil.rmtree(spool, ignore_errors=True)
            failure = self._fail(exc, "stream a query result")
        else:
            return _to_loom_types(pl.scan_ipc(files), schema)
        raise failure

    def _arrow_batches(self, sql: str) -> Iterator[pa.RecordBatch]:
        """Arrow record batches of a query's result, pulled one block at a time."""
        if not self.is_embedded():
            with self.client().query_arrow_stream(sql) as stream:
                yield from stream
            return
        # clickhouse-connect's chdb backend materializes Arrow results whole (Arrow is not one of its
        # stream-safe formats), so stream through a chdb handle of our own on the same engine path
        import chdb

        self.client()  # open (or fail clearly on) the engine path first
        conn = chdb.connect(os.path.realpath(urlparse(self.resolved_url()).path))
        result = None
        try:
            result = conn.send_query(sql, "Arrow")
            yield from result.record_batch(rows_per_batch=_STREAM_BATCH_ROWS)
        finally:
            if result is not None:
                result.close()
            conn.close()

    def _describe_query(self, sql: str) -> list[tuple[str, str]]:
        rows = self.query_rows(f"DESCRIBE ({sql})", what="describe a query")
        return [(str(r[0]), str(r[1])) for r in rows]

    # -- SQL -------------------------------------------------------------------------------

    def sql_engine(self, frames: Mapping[str, Any]) -> Literal["clickhouse", "polars"]:
        """Where :meth:`execute_sql` runs a query over these frames: inside ClickHouse when every
        source is a :class:`ClickHouseRelation` of this store, otherwise in Polars."""
        store = self.store()
        if frames and all(isinstance(f, ClickHouseRelation) and f.store == store for f in frames.values()):
            return "clickhouse"
        return "polars"

    def execute_sql(self, frames: Mapping[str, Any], query: str, /) -> ClickHouseQuery | pl.LazyFrame:
        """Run ``query`` over named sources.

        When every source is a :class:`ClickHouseRelation` of this store, returns a lazy
        :class:`ClickHouseQuery` (nothing is pulled into Python). Otherwise relations are read
        with :meth:`read_streaming` and the query runs in the Polars SQL executor.
        """
        if self.sql_engine(frames) == "clickhouse":
            rels = {k: v for k, v in frames.items()}
            return ClickHouseQuery(bind_aliases(rels, query), self, tuple(r.ref for r in rels.values()))
        resolved: dict[str, Any] = {}
        for alias, f in frames.items():
            if isinstance(f, ClickHouseRelation):
                if f.store != self.store():
                    raise LoomError(f"source {f.ref} lives in another ClickHouse store ({f.store}); read it with that resource")
                resolved[alias] = self._read_sql(f.select, *self._relation_schema(f), streaming=True)
            elif isinstance(f, ClickHouseQuery):
                resolved[alias] = f.to_lazyframe(streaming=True)
            else:
                resolved[alias] = f
        return PolarsSQLExecutor().execute_sql(resolved, query)

    def _relation_schema(self, rel: ClickHouseRelation) -> tuple[Schema, list[tuple[str, str]]]:
        cols = self._describe_query(rel.select)
        return tuple(ColumnSchema(n, *from_clickhouse(t)) for n, t in cols), cols

    def optimize_final(self, ref: TableRef) -> None:
        """Merge all parts of ``ref`` (collapses replaced rows of merge tables); for maintenance jobs."""
        self.command(f"OPTIMIZE TABLE {qt(ref)} FINAL", what=f"optimize {ref}")

    # -- writing ---------------------------------------------------------------------------

    def write(
        self,
        frame: Any,
        spec: TargetSpec,
        params: RunParams,
        /,
        *,
        streaming: bool = False,
        write_ctx: WriteContext | None = None,
    ) -> WriteResult:
        """Write ``frame`` (LazyFrame, DataFrame or :class:`ClickHouseQuery`) to the target.

        Modes: ``append`` (batched inserts with deduplication tokens), ``overwrite`` (staging
        table, then EXCHANGE TABLES), ``replace_partitions`` (staging table, then REPLACE
        PARTITION per partition), ``merge`` (ReplacingMergeTree on the merge keys, read with
        FINAL). Bad input raises before the target changes.
        """
        from loom_resources.clickhouse_write import write_frame

        return write_frame(self, frame, spec, params, streaming=streaming, write_ctx=write_ctx)

    def uri(self, ref: TableRef) -> str:
        """Where a table lives, without credentials."""
        return f"{self.store().rstrip('/')}/{ref.schema}.{ref.table}"


def _held_elsewhere(url: str) -> bool:
    """Whether another process holds the embedded engine's lock on this path."""
    if not url.startswith("chdb:"):
        return False
    status = Path(urlparse(url).path) / "status"
    if not status.exists():
        return False
    import fcntl

    try:
        with open(status, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fh, fcntl.LOCK_UN)
    except OSError:
        return True
    return False


def _to_loom_types(lf: pl.LazyFrame, schema: Schema) -> pl.LazyFrame:
    """Cast what Arrow gave back to the Polars types of the Loom schema."""
    actual = lf.collect_schema()
    exprs = []
    for c in schema:
        want = to_polars(c.dtype)
        got = actual[c.name]
        e = pl.col(c.name)
        if isinstance(got, pl.Datetime) and got.time_zone is not None and isinstance(want, pl.Datetime) and want.time_zone is None:
            # naive timestamps are stored as UTC epochs; Arrow output labels them with the server zone
            e = e.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
        exprs.append(e.cast(want) if got != want else e)
    return lf.select(exprs)
