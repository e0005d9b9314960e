"""The endpoint in a child process, for tests and ``make clickhouse-http``."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any


@dataclass
class ServerProcess:
    """An endpoint running in a child process (see :func:`start_process`)."""

    proc: Any
    host: str
    port: int
    path: str

    def url(self, database: str = "default", user: str = "default") -> str:
        """A Loom ClickHouse URL for ``database`` on this endpoint (no password: none is checked)."""
        return f"http://{user}@{self.host}:{self.port}/{database}"

    def stop(self, timeout: float = 30) -> None:
        """Terminate the child and wait for it (the engine flushes its data on SIGTERM)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except Exception:  # noqa: BLE001 - a child that does not stop in time is killed
                self.proc.kill()
                self.proc.wait(timeout=timeout)


def start_process(path: str, *, host: str = "127.0.0.1", port: int = 0, timeout: float = 60,
                  log: str | None = None) -> ServerProcess:
    """Start the endpoint over ``path`` in a child process and wait until it answers ``/ping``.
    ``port=0`` picks a free port. ``log`` (a file path) receives its output, else it is dropped."""
    import socket
    import subprocess
    import urllib.request

    if port == 0:
        with socket.socket() as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - the child keeps it open
    proc = subprocess.Popen([sys.executable, "-m", "loom_resources.testing.ch_http", "--path", path, "--host", host,
                             "--port", str(port)], stdout=out, stderr=subprocess.STDOUT)
    server = ServerProcess(proc, host, port, path)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://{host}:{port}/ping", timeout=2) as r:
                if r.status == 200:
                    return server
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"the ClickHouse HTTP endpoint over {path} did not start (exit code {proc.poll()})")
        time.sleep(0.1)
