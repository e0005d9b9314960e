"""Run a producer iterator in a thread of its own, ahead of its consumer, through a bounded queue.

Why: a streaming write pulls a batch (the source engine reads and converts it), then encodes it;
done in turn, one core idles while the other works (a ClickHouse -> Delta copy used ~1.5 of 2
cores). With the producer a few batches ahead, the source and the encoder work at the same time,
and the queue's bound keeps memory at ``depth`` batches more than before.

Why by hand: ``concurrent.futures`` has no bounded, ordered, cancellable prefetch of an iterator,
and an executor's ``map`` consumes its whole input at once (unbounded memory).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator, Iterator
from typing import TypeVar

__all__ = ["prefetch"]

T = TypeVar("T")

_POLL_SECONDS = 0.1  # how often a blocked producer looks whether the consumer stopped


class _End:
    """The producer finished (``error`` is ``None``) or failed with ``error``."""

    def __init__(self, error: BaseException | None) -> None:
        self.error = error


def prefetch(items: Iterator[T], depth: int, *, name: str = "loom-prefetch") -> Generator[T, None, None]:
    """Yield what ``items`` yields, in order, while a thread pulls up to ``depth`` items ahead.

    An exception raised by ``items`` is raised here, as the same object, once the items before it
    have been consumed. When the consumer stops early (closes this generator, or fails while
    consuming it), the producer stops at the next item and ``items`` is closed in its thread
    (so a source query is cancelled), and this generator returns only when that thread ended.

    Args:
        items: The producer. It runs in the new thread only: nothing else may advance it.
        depth: Items the producer may hold ready (at least 1).
        name: The thread's name (seen in profilers and thread dumps).
    """
    q: queue.Queue[T | _End] = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(item: T | _End) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        error: BaseException | None = None
        try:
            for item in items:
                if not put(item):
                    break
        except BaseException as exc:  # noqa: BLE001  (handed to the consumer, which raises it)
            error = exc
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:  # noqa: BLE001  (the consumer's or producer's own error is the one to report)
                    pass
        put(_End(error))

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if isinstance(item, _End):
                if item.error is not None:
                    raise item.error
                return
            yield item
    finally:
        stop.set()
        # free the producer if it waits on a full queue, and drop what it made ahead
        while thread.is_alive():
            try:
                q.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                pass
        thread.join()
