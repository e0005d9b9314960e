"""What the IO manager needs about an asset, carried on the asset definition itself.

The factory encodes an :class:`AssetBinding` into a tag of the asset's op and an
:class:`InputBinding` into each input's metadata, as ``dagster-deltalake`` keeps its table slice
settings on the asset. The IO manager decodes them from its Output/InputContext (``op_def.tags``,
``definition_metadata``), so no process-global state exists and two ``Definitions`` in one
process cannot interfere. The asset binding is an op tag rather than asset metadata because the
UI shows every asset metadata entry on the asset's page, and the binding is Loom's internals
(the UI shows none of the op's tags there).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from loom_resources import codec
from loom_resources.dtypes import ColumnSchema, DataType, Schema
from loom_resources.errors import SpecError
from loom_resources.model import Backend, SourceSpec, TableRef, TargetSpec

__all__ = [
    "BINDING_TAG", "INPUT_METADATA", "AssetBinding", "InputBinding", "SourceBinding", "asset_binding", "input_binding",
]

#: Op-tag key of an asset's :class:`AssetBinding` (JSON).
BINDING_TAG = "loom/binding"
#: Definition-metadata key of an input's :class:`InputBinding` (JSON).
INPUT_METADATA = "loom/input"


@dataclass(frozen=True)
class SourceBinding:
    """The upstream table of an input, as the IO manager reads it.

    Attributes:
        ref: The table.
        backend: Where it lives.
        partition_columns: Partition dimension -> column (``""`` for one dimension).
        column_types: Types of the partition columns (to slice by the run's partitions).
        expected: Columns that must exist with these types before a run reads the table
            (external tables; ``None``: not checked).
    """

    ref: TableRef
    backend: Backend
    partition_columns: Mapping[str, str] = field(default_factory=dict)
    column_types: Mapping[str, DataType] = field(default_factory=dict)
    expected: Schema | None = None

    def slice_spec(self) -> TargetSpec | None:
        """A spec naming just the partition columns, for :func:`partitions.slice_predicate`."""
        if not self.partition_columns:
            return None
        cols = [ColumnSchema(c, self.column_types[c], True) for c in dict.fromkeys(self.partition_columns.values())]
        return TargetSpec(self.ref, self.backend, tuple(cols))


@dataclass(frozen=True)
class InputBinding:
    """How one input of an asset is read.

    Attributes:
        source: Projection and predicate of the read (the table ref is the upstream's).
        streaming: Read through the streaming reader.
        relation: Hand the body a relation marker instead of a frame (SQL pushed down into
            the store that holds every source).
        consumer_partition_columns: Partition dimension -> column of the consuming table (binds
            run parameters in the source predicate).
        upstream: The upstream table (``None``: read it from the upstream asset's binding).
    """

    source: SourceSpec
    streaming: bool = False
    relation: bool = False
    consumer_partition_columns: Mapping[str, str] = field(default_factory=dict)
    upstream: SourceBinding | None = None

    def metadata(self) -> dict[str, Any]:
        """The input's definition metadata."""
        return {INPUT_METADATA: codec.dumps(self)}


@dataclass(frozen=True)
class AssetBinding:
    """One declared table, as its asset's IO manager sees it.

    Attributes:
        target: The table's target spec.
        partition_columns: Partition dimension -> column (``""`` for one dimension).
    """

    target: TargetSpec
    partition_columns: Mapping[str, str] = field(default_factory=dict)

    def op_tags(self) -> dict[str, str]:
        """The tag of the asset's op that carries the binding (``@asset(op_tags=...)``)."""
        return {BINDING_TAG: codec.dumps(self)}

    def source(self) -> SourceBinding:
        """How the table is read as an input."""
        types = {c: self.target.column(c).dtype for c in self.partition_columns.values()}
        return SourceBinding(self.target.ref, self.target.backend, dict(self.partition_columns), types)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else getattr(value, "value", getattr(value, "text", None))


@functools.lru_cache(maxsize=512)
def _decode(text: str) -> Any:
    return codec.loads(text)


def asset_binding(op_tags: Mapping[str, Any] | None, key: dg.AssetKey) -> AssetBinding:
    """The binding in the tags of an asset's op; an asset the factory did not build raises
    :class:`SpecError` naming it."""
    text = _text((op_tags or {}).get(BINDING_TAG))
    if text is None:
        raise SpecError(f"asset {key.to_user_string()} is not a declared Loom table (its op has no {BINDING_TAG} tag)")
    out = _decode(text)
    assert isinstance(out, AssetBinding)
    return out


def input_binding(metadata: Mapping[str, Any] | None) -> InputBinding | None:
    """The binding in an input's definition metadata, if the factory set one."""
    text = _text((metadata or {}).get(INPUT_METADATA))
    if text is None:
        return None
    out = _decode(text)
    assert isinstance(out, InputBinding)
    return out
