"""Test helpers for Loom users: in-memory tables and the contract test kit.

- :class:`InMemoryTables` implements every Loom contract over Polars DataFrames, for unit
  tests of transforms (:mod:`loom_resources.testing.memory`).
- :class:`ContractKit` is the one contract test suite every backend passes: subclass it in a
  ``test_*.py`` file with a fixture that yields your resource, and pytest runs every promise of
  the contracts against it (:mod:`loom_resources.testing.kit`). It needs pytest, so it is
  imported only when asked for; importing ``InMemoryTables`` does not import pytest.
- :mod:`loom_resources.testing.ch_http` is a ClickHouse HTTP endpoint over one real embedded
  engine, for testing the server path (``make clickhouse-http``; docs/clickhouse-server.md).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from loom_resources.testing.memory import InMemoryTables, PolarsSQLExecutor

if TYPE_CHECKING:
    from loom_resources.testing.kit import ContractKit, KitStore

__all__ = ["ContractKit", "InMemoryTables", "KitStore", "PolarsSQLExecutor"]

_KIT_NAMES = frozenset({"ContractKit", "KitStore"})


def __getattr__(name: str) -> Any:
    """Import the contract kit (and pytest with it) on first use."""
    if name in _KIT_NAMES:
        if "loom_resources.testing.kit" not in sys.modules:
            import pytest

            # plain asserts in the kit then fail with pytest's detailed diffs
            pytest.register_assert_rewrite("loom_resources.testing.kit", "loom_resources.testing.harness")
        from loom_resources.testing import kit

        return getattr(kit, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
