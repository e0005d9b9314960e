"""loom_resources._lazy: a data library stands in until first used, and its first use from many
threads at once sees the whole module."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from loom_resources._lazy import lazy_import

SLOW_MODULE = """
import time
time.sleep(0.3)  # a module whose import takes a while, as polars' does
DONE = "imported"
"""


@pytest.fixture
def slow_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    name = f"loom_slow_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(SLOW_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_the_module_is_imported_on_first_attribute_access(slow_module: str) -> None:
    mod = lazy_import(slow_module)
    assert slow_module not in sys.modules
    assert mod.DONE == "imported"
    assert slow_module in sys.modules
    assert mod.DONE is sys.modules[slow_module].DONE
    sys.modules[slow_module].DONE = "patched"  # a patch of the module shows through the stand-in
    assert mod.DONE == "patched"
    with pytest.raises(AttributeError):
        mod.missing  # noqa: B018 (an unknown name is an AttributeError, as on the module)


def test_first_use_from_many_threads_sees_the_whole_module(slow_module: str) -> None:
    # importlib.util.LazyLoader on Python 3.11 hands the other threads a half-executed module here
    mod = lazy_import(slow_module)
    barrier = threading.Barrier(8)
    seen: list[object] = []

    def use() -> None:
        barrier.wait()
        try:
            seen.append(mod.DONE)
        except AttributeError as exc:
            seen.append(exc)

    threads = [threading.Thread(target=use) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == ["imported"] * 8
