"""One table, one code location: claims that stop two code locations serving the same table.

Dagster loads each code location in a code server of its own, so no location sees the others;
two that declare the same table only meet in the webserver, as Dagster's "Multiple asset
definitions found", which names neither location nor says what to do. Loom's claims are files
under the instance directory both servers share: ``$DAGSTER_HOME/loom/claims/<schema>.<table>``,
holding the claiming location's name and process. A code server that loads a table claimed by
another code location whose server is alive fails to load, naming the table and both locations.
A claim of a process that has exited is taken over, so renaming or moving a location needs no
clean-up.

Claims are made only by Dagster code servers (``dagster api grpc`` / ``dagster code-server``,
what ``dg dev``, ``dagster dev`` and the webserver start per location): one-off processes — the
CLI, runs, tests — serve no workspace and claim nothing.
"""

from __future__ import annotations

import atexit
import json
import os
import socket
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from loom_resources import SpecError

__all__ = ["claim_tables", "code_server_location"]


def code_server_location(argv: list[str] | None = None) -> str | None:
    """The location name when this process is a Dagster code server, else ``None``."""
    argv = sys.argv if argv is None else argv
    if "grpc" not in argv and "code-server" not in argv:
        return None
    for i, arg in enumerate(argv):
        if arg == "--location-name" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--location-name="):
            return arg.split("=", 1)[1]
    return None


def _alive(pid: int, host: str) -> bool:
    if host != socket.gethostname():
        return True  # another machine's server: assume it serves (its claim is released when it exits)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _claims_dir() -> Path | None:
    home = os.environ.get("DAGSTER_HOME")
    return Path(home) / "loom" / "claims" if home else None


def claim_tables(tables: Iterable[str], *, location: str | None = None, directory: Path | None = None) -> None:
    """Claim ``tables`` (``schema.table``) for this code location, or raise :class:`SpecError`
    naming each table another live code location already serves.

    Args:
        tables: The tables this location declares (external tables are read, not claimed).
        location: This location's name (default: the code server's ``--location-name``; outside a
            code server nothing is claimed).
        directory: Where claims live (default ``$DAGSTER_HOME/loom/claims``; none without it).
    """
    location = location or code_server_location()
    directory = directory or _claims_dir()
    if location is None or directory is None:
        return
    directory.mkdir(parents=True, exist_ok=True)
    me: dict[str, Any] = {"location": location, "pid": os.getpid(), "host": socket.gethostname()}
    conflicts: list[str] = []
    mine: list[Path] = []
    for table in sorted(set(tables)):
        path = directory / table
        try:
            # O_EXCL: of two servers starting at once, exactly one creates the claim
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                held = json.loads(path.read_text())
            except (OSError, ValueError):
                held = {}
            other = held.get("location")
            if other and other != location and held.get("pid") != me["pid"] and _alive(int(held["pid"]), held.get("host", "")):
                conflicts.append(f"table {table} is declared by code location {other!r} (pid {held['pid']}) and by "
                                 f"{location!r}")
                continue
            path.write_text(json.dumps(me))
        else:
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(me))
        mine.append(path)
    atexit.register(_release, mine, me["pid"])
    if conflicts:
        raise SpecError(
            "a table must be declared by one code location only:\n  " + "\n  ".join(conflicts)
            + f"\nRemove it from one of them (or make it a Source of the other); claims: {directory}"
        )


def _release(paths: list[Path], pid: int) -> None:
    for path in paths:
        try:
            if json.loads(path.read_text()).get("pid") == pid:
                path.unlink()
        except (OSError, ValueError):
            pass
