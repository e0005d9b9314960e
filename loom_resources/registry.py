"""What the IO manager knows about each asset: its target spec and how its inputs are read.

The asset factory (``loom_assets``) registers every declared table here when the code
location loads; the IO manager looks assets up by key. Keys are asset-key paths (tuples of
strings), so this module stays free of Dagster.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from loom_resources.model import SourceSpec, TargetSpec

KeyPath = tuple[str, ...]


@dataclass(frozen=True)
class InputBinding:
    """How one input of an asset is read.

    Attributes:
        source: Projection and predicate of the read (the table ref is the upstream's).
        streaming: Read through the streaming reader.
        relation: Hand the body a relation marker instead of a frame (SQL pushed down into
            the store that holds every source).
    """

    source: SourceSpec
    streaming: bool = False
    relation: bool = False


@dataclass(frozen=True)
class AssetBinding:
    """One registered table.

    Attributes:
        target: The table's target spec.
        partition_columns: Partition dimension -> column (``""`` for one dimension).
        inputs: Input alias -> how it is read.
    """

    target: TargetSpec
    partition_columns: Mapping[str, str] = field(default_factory=dict)
    inputs: Mapping[str, InputBinding] = field(default_factory=dict)


class TableRegistry:
    """Asset key path -> :class:`AssetBinding`."""

    def __init__(self) -> None:
        self._by_key: dict[KeyPath, AssetBinding] = {}

    def register(self, key: KeyPath, binding: AssetBinding) -> None:
        """Register (or replace) the binding of ``key``."""
        self._by_key[tuple(key)] = binding

    def get(self, key: KeyPath) -> AssetBinding:
        """The binding of ``key``; ``KeyError`` naming it when the asset is not a Loom table."""
        try:
            return self._by_key[tuple(key)]
        except KeyError:
            raise KeyError(f"asset {'/'.join(key)} is not a declared Loom table") from None

    def __contains__(self, key: object) -> bool:
        return isinstance(key, tuple) and key in self._by_key

    def items(self) -> list[tuple[KeyPath, AssetBinding]]:
        """Every registered binding."""
        return list(self._by_key.items())


#: The registry of this process's code location.
REGISTRY = TableRegistry()
