"""Libraries imported on first use: loading a code location (``dagster definitions validate``, a
UI reload, a code server) builds assets and reads no data, so it should not pay for the data
libraries (polars: ~0.3-0.5 s per process). Modules that move data name them as usual for the
type checker and get a stand-in at run time::

    if TYPE_CHECKING:
        import polars as pl
    else:
        pl = lazy_import("polars")

Why by hand: the standard library's ``importlib.util.LazyLoader`` is not thread-safe on Python
3.11 (two threads touching the module first can see it half-initialized; fixed in 3.12), and
a code server evaluates definitions in threads. Here the first attribute access runs a normal
``import`` (which holds the import lock); attributes are then read from the module itself.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

__all__ = ["lazy_import"]


class _LazyModule:
    """Stands in for a module; imports it when an attribute is first read."""

    def __init__(self, name: str) -> None:
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_module", None)

    def _load(self) -> ModuleType:
        module: ModuleType | None = object.__getattribute__(self, "_module")
        if module is None:
            module = importlib.import_module(object.__getattribute__(self, "_name"))
            object.__setattr__(self, "_module", module)
        return module

    def __getattr__(self, attr: str) -> Any:  # only called for names not found on the stand-in
        # read from the module every time (not cached here), so a test that patches the module
        # sees its patch through the stand-in too; the cost is a call per access
        return getattr(self._load(), attr)

    def __repr__(self) -> str:
        return f"<lazy module {object.__getattribute__(self, '_name')!r}>"


def lazy_import(name: str) -> Any:
    """A stand-in for module ``name`` that imports it on first attribute access (typed ``Any``:
    callers name the real module under ``TYPE_CHECKING``)."""
    return _LazyModule(name)
