"""Signatures computed once for the functions Loom generates per table."""

import inspect
from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable[..., object])


def signature_once(fn: F) -> F:
    """Store ``fn``'s signature on it (``__signature__``), before a Dagster decorator sees it.

    Why by hand: Dagster's decorators ask :func:`inspect.signature` for the same function some
    17 times while they build one asset or check (context, config and resource parameters,
    inputs, type hints), and :func:`inspect.signature` recomputes it each time unless the
    function carries ``__signature__``, which Dagster honours (``decorator_utils.get_type_hints``
    reads its hints from it). For 400 generated ops that was ~0.06 s of every code-location load.
    """
    fn.__signature__ = inspect.signature(fn)  # type: ignore[attr-defined]
    return fn
