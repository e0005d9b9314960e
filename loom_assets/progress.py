"""A progress line for long writes in the demo's console.

The writers log ``<table>: <rows> rows in <n> batches so far`` while they stream; this handler
turns those records into one updating line with a cycling bar on a terminal. When the output is
not a terminal (a log file, CI), a carriage return cannot redraw anything, so each update is a
plain, complete line without a bar (``  writing raw.orders: 1,099,868 rows, 512,000 rows/s``)
and nothing is left half-drawn.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["write_progress"]

_PROGRESS = re.compile(r"(?P<table>[\w.]+): (?P<rows>\d+) rows in (?P<batches>\d+) batches so far")


class _ProgressHandler(logging.Handler):
    """Prints ``  writing <table> [####....] <rows> rows  <rate> rows/s`` as writes report progress
    (on a terminal; elsewhere ``  writing <table>: <rows> rows, <rate> rows/s``, one line each)."""

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.first: dict[str, tuple[float, int]] = {}
        self.shown = False
        self.tty = sys.stdout.isatty()  # a redrawn line on a terminal; plain lines elsewhere

    def emit(self, record: logging.LogRecord) -> None:
        m = _PROGRESS.search(record.getMessage())
        if m is None:
            return
        table, rows, now = m["table"], int(m["rows"]), time.monotonic()
        t0, rows0 = self.first.setdefault(table, (now, rows))
        rate = f"{(rows - rows0) / (now - t0):>12,.0f} rows/s" if now > t0 and rows > rows0 else ""
        if self.tty:
            filled = int(m["batches"]) % 20
            bar = "#" * filled + "." * (20 - filled)  # the total is unknown while streaming: the bar cycles
            sys.stdout.write("\r" + f"  writing {table:32s} [{bar}] {rows:>13,d} rows  {rate}".rstrip())
        else:
            sys.stdout.write(f"  writing {table}: {rows:,d} rows{', ' + rate.strip() if rate else ''}\n")
        sys.stdout.flush()
        self.shown = True

    def finish(self) -> None:
        """End an updating line before the next output."""
        if self.shown and self.tty:
            sys.stdout.write("\r" + " " * 100 + "\r")
            sys.stdout.flush()
        self.shown = False


@contextmanager
def write_progress() -> Iterator[None]:
    """Show write progress on the console while the block runs."""
    handler = _ProgressHandler()
    logger = logging.getLogger("dagster")
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        handler.finish()
