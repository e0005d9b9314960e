"""A Dagster UI server (``dg dev``, ``dagster dev``, ``dagster-webserver``) started for a test on a
free port, and a poll for what it serves over GraphQL."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from test_webserver import free_port

T = TypeVar("T")


@contextlib.contextmanager
def serving(cmd: list[str], cwd: Path, env: dict[str, str]) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """Run ``cmd -h 127.0.0.1 -p <free port>`` in a process group of its own; yield it and the
    port; end the whole group (the webserver, its daemon and code servers) afterwards."""
    port = free_port()
    proc = subprocess.Popen([*cmd, "-h", "127.0.0.1", "-p", str(port)], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        yield proc, port
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def poll(proc: subprocess.Popen[bytes], probe: Callable[[], T | None], what: str, timeout: float = 180) -> T:
    """Call ``probe`` every second until it returns a value (a server still starting raises
    ``OSError`` or answers without the data: both count as not yet); fail when the server exits
    or ``timeout`` passes, saying ``what`` was awaited."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            got = probe()
            if got is not None:
                return got
        except (OSError, AssertionError, KeyError):
            pass
        assert proc.poll() is None, f"the server exited while waiting for {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(1)
