"""The ClickHouse connection: URL resolution, credentials, the embedded engine's lock, and
scrubbed errors. Every other module of the package talks to ClickHouse through
:class:`ClickHouseConnection`.

The embedded engine holds one data path per process, and one process per path. So the
connection opens lazily (loading the code location opens nothing), closes when a Dagster step
ends, and turns "path already held" into a :class:`BackendUnavailableError` that says what to do.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlparse

from dagster import ConfigurableResource, InitResourceContext
from pydantic import Field as PydanticField
from pydantic import PrivateAttr, field_validator

from loom_resources.clickhouse._inplace import engine_handle, insert_in_place
from loom_resources.clickhouse._secrets import (
    Scrubber,
    guard_url_field,
    locate_url,
    resolve_credentials,
    select_url,
    url_field_from_env,
)
from loom_resources.clickhouse._spool import forget_spool, sweep_spools
from loom_resources.clickhouse._sql import qt
from loom_resources.clickhouse._url import ENV_URL, ClickHouseURL
from loom_resources.errors import BackendUnavailableError, LoomError, StoreFullError
from loom_resources.model import TableRef

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["ClickHouseConnection"]

_EMBEDDED_HELP = (
    "The embedded ClickHouse engine (chdb) opens one data path per process, and a path can be open "
    "in only one process at a time. Run assets that use it with the in_process_executor and one run "
    "at a time (the Loom code location does this for chdb:// URLs), close other programs using the "
    "path, or point LOOM_CLICKHOUSE_URL at a ClickHouse server (http(s)://user@host:port/db)."
)



_DISK_FULL = ("No space left on device", "NOT_ENOUGH_SPACE", "Cannot reserve")
_ACCESS_DENIED = ("Permission denied", "ACCESS_DENIED", "Code: 497")


class ClickHouseConnection(ConfigurableResource):
    """Configuration and connection of a ClickHouse store (base of ``ClickHouseResource``)."""

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
    insert_batch_rows: int = PydanticField(default=500_000, description=(
        "Rows per insert batch: each batch of a streaming write, and slices of an eager frame sent to a server. "
        "The embedded engine reads an eager frame in place, in one insert."))
    streaming_reads: Literal["direct", "spool"] = PydanticField(
        default="direct",
        description="How read_streaming delivers a query result. 'direct' (default): streamed batch by batch "
        "into the consumer while ClickHouse produces it; each execution of the frame re-runs the query; no "
        "temporary disk. 'spool': the result is written once to lz4 Arrow IPC segments under spool_dir (a "
        "snapshot that can be scanned many times), capped by spool_max_bytes, deleted when the step ends.",
    )
    spool_max_bytes: int = PydanticField(
        default=2 * 1024**3,
        gt=0,
        description="streaming_reads='spool' only: the most temporary disk one streaming read may use "
        "(compressed bytes). A larger result fails with SpoolLimitError naming the query and the directory, "
        "and its spool is deleted at once; a full disk fails with SpoolDiskFullError.",
    )
    spool_dir: str | None = PydanticField(
        default=None,
        description="Directory for streaming-read spools (default: the system temp directory). When a "
        "connection opens, spools there left by dead processes of this host are removed.",
    )
    audit_columns: bool = PydanticField(
        default=False, description="Add _loom_* audit columns to every table this resource writes."
    )

    stale_after_s: float = PydanticField(
        default=3600.0,
        description="Staging tables of writes older than this many seconds that no unfinished publication needs are "
        "dropped by the sweep (at first use and in the maintenance job); younger ones may belong to a live write.",
    )

    _client: Any = PrivateAttr(default=None)
    _recovered: bool = PrivateAttr(default=False)
    #: (table, token) -> rows of interrupted writes this connection's recovery published
    _completed: dict[tuple[str, str], int] = PrivateAttr(default_factory=dict)
    _created: set[str] = PrivateAttr(default_factory=set)
    _spools: list[str] = PrivateAttr(default_factory=list)
    _scrubber: Scrubber = PrivateAttr(default_factory=Scrubber)

    @field_validator("url", mode="before")
    @classmethod
    def _no_literal_password(cls, value: Any) -> Any:
        """Refuse a password written literally into a URL in code (Dagster would store it)."""
        return guard_url_field(value)

    # -- connection ----------------------------------------------------------------------

    def location(self) -> ClickHouseURL:
        """The parsed URL in use (``url``, else ``$LOOM_CLICKHOUSE_URL``, else the embedded
        engine under ``$LOOM_HOME``), without applying the password policy."""
        return locate_url(self.url, os.environ.get(ENV_URL), os.environ)

    def resolved_url(self) -> str:
        """The URL in use, without credentials."""
        return self.location().display()

    def is_embedded(self) -> bool:
        """Whether the URL selects the embedded engine (one process per path, one path per process)."""
        return self.location().is_embedded

    def single_process(self) -> bool:
        """Whether only one process at a time may use this store (the embedded engine)."""
        return self.is_embedded()

    def store(self) -> str:
        """The store's URL without credentials, for metadata and relation markers."""
        return self.location().display()

    def scrub(self, text: str) -> str:
        """Replace every known form of a secret in ``text`` with ``***``."""
        return self._scrubber.scrub(text)

    def client(self) -> Any:
        """The clickhouse-connect client, opened on first use."""
        if self._client is not None:
            return self._client
        import clickhouse_connect

        err: LoomError | None = None
        try:
            env_url = os.environ.get(ENV_URL)
            url = resolve_credentials(self.url, env_url, self.password_env, os.environ,
                                      url_from_env=url_field_from_env(self))
            self._scrubber = Scrubber.for_url(url, select_url(self.url, env_url, os.environ))
            if url.is_embedded:
                Path(url.path).mkdir(parents=True, exist_ok=True)
                self._client = self._open_embedded(clickhouse_connect, url.path)
            else:
                self._client = clickhouse_connect.get_client(
                    interface=url.scheme,
                    host=url.host or "localhost",
                    port=url.effective_port,
                    username=url.user_or_default,
                    password=url.password or "",
                    database=url.database,
                    connect_timeout=self.connect_timeout_s,
                    send_receive_timeout=self.send_receive_timeout_s,
                    query_retries=0,
                    autogenerate_session_id=False,
                )
        except LoomError as exc:
            err = exc
        except Exception as exc:
            err = self._unavailable(exc)
        if err is not None:
            # raised outside the handler so the client's error (which may echo credentials) is not chained
            raise err
        sweep_spools(self.spool_dir)  # leftovers of killed processes; never a live process's spool
        return self._client

    def _open_embedded(self, clickhouse_connect: Any, path: str) -> Any:
        """Open the embedded engine, waiting up to ``embedded_wait_s`` while another process holds the path."""
        deadline = time.monotonic() + self.embedded_wait_s
        while True:
            try:
                return clickhouse_connect.get_client(dsn=f"chdb://{path}")
            except Exception as exc:
                # another process holds the path, or is starting on it and has not locked it yet
                racing = "Error initializing EmbeddedServer" in str(exc)
                if time.monotonic() >= deadline or not (racing or _held_elsewhere(f"chdb://{path}")):
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
        self._recovered = False
        self._created.clear()
        if client is not None:
            try:
                client.close()
            except Exception:  # noqa: S110 - closing a broken client must not mask the step's error
                pass
        for d in self._spools:
            shutil.rmtree(d, ignore_errors=True)
            forget_spool(d)
        self._spools.clear()

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        """Dagster calls this when the step ends, on success and on failure."""
        self.close()

    # -- low-level calls with scrubbed errors --------------------------------------------

    def failure(self, exc: BaseException, what: str) -> LoomError:
        """``exc`` as a LoomError with secrets scrubbed (unreachable stores as BackendUnavailableError)."""
        if isinstance(exc, LoomError):
            return exc
        name = type(exc).__name__
        if name in ("OperationalError",) or isinstance(exc, (ConnectionError, TimeoutError)):
            return self._unavailable(exc)
        text = self.scrub(str(exc))
        if any(m in text for m in _DISK_FULL):
            return StoreFullError(
                f"ClickHouse failed to {what}: the disk of ClickHouse at {self.store()} is full. Nothing was published; "
                f"free space there (or move the store) and rerun. (ClickHouse said: {text[:500]})"
            )
        if any(m in text for m in _ACCESS_DENIED):
            return BackendUnavailableError(
                f"ClickHouse failed to {what}: access denied at {self.store()}; check the data path's permissions or the "
                f"user's grants. (ClickHouse said: {text[:500]})"
            )
        return LoomError(f"ClickHouse failed to {what}: {text}")

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            err = self.failure(exc, what)
        # raised outside the handler so the client's error (which may echo credentials) is not chained
        raise err

    def create_once(self, sql: str, *, what: str) -> None:
        """Run an idempotent ``CREATE ... IF NOT EXISTS`` once per connection (Loom's own tables:
        a table created on this connection stays until it closes)."""
        if sql not in self._created:
            self.command(sql, what=what)
            self._created.add(sql)

    def done_once(self, key: str, *, mark: bool = False) -> bool:
        """Whether the step ``key`` was done on this connection (steps made once per connection,
        like :meth:`create_once`); ``mark=True`` records it as done."""
        if mark:
            self._created.add(key)
        return key in self._created

    def command(self, sql: str, *, what: str = "run a command", settings: Mapping[str, Any] | None = None) -> Any:
        """Run one statement; errors come back as :class:`LoomError` with secrets scrubbed."""
        return self._call(what, self.client().command, sql, settings=dict(settings or {}))

    def query_rows(self, sql: str, *, what: str = "run a query") -> list[tuple[Any, ...]]:
        """Run a small query and return its rows."""
        return list(self._call(what, self.client().query, sql).result_rows)

    def inserts_in_place(self) -> bool:
        """Whether Arrow batches go to the engine in place (:mod:`._inplace`): the embedded engine
        through a clickhouse-connect that exposes its connection."""
        return self.is_embedded() and engine_handle(self.client()) is not None

    def insert_arrow(self, ref: TableRef, table: pa.Table, *, settings: Mapping[str, Any] | None = None,
                     what: str | None = None) -> None:
        """Insert one Arrow table (one batch) into ``ref``: the embedded engine reads it in place
        (:mod:`._inplace`), a server receives it through clickhouse-connect's ``insert_arrow``."""
        client = self.client()
        what = what or f"insert into {ref}"
        if self.inserts_in_place() and self._call(what, insert_in_place, client, qt(ref), table, settings):
            return
        self._call(what, client.insert_arrow, qt(ref), table, settings=dict(settings or {}))

    def completed_here(self, ref: TableRef, token: str) -> int | None:
        """Rows of the write ``token`` of ``ref`` if this connection's recovery published it (once)."""
        return self._completed.pop((str(ref), token), None)  # reported once, by the write that asks first

    def track_spool(self, directory: str) -> None:
        """Delete ``directory`` when this connection closes (the step ends)."""
        self._spools.append(directory)

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
