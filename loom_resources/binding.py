"""What the IO manager needs about an asset, carried on the asset definition itself.

The factory attaches an :class:`AssetBinding` to the function its asset's op runs
(:func:`attach_binding`) and encodes an :class:`InputBinding` into each input's metadata, as
``dagster-deltalake`` keeps its table slice settings on the asset. The IO manager reads them from
its Output/InputContext (``op_def``, ``definition_metadata``), so no process-global state exists
and two ``Definitions`` in one process cannot interfere.

Why the asset binding is not metadata (nor an op tag): the UI shows every definition metadata
entry on the asset's page and every op tag under "Compute details", and the binding is Loom's
internals (the whole target spec as JSON). A Python attribute of the op's function is never
serialized; the run worker rebuilds it when it loads the code location. An upstream table that
is not part of a run (its op is not in the run's job) is read from what its definition
metadata shows anyway (:func:`source_binding`): the table name, the column schema and, for a
partitioned table, its partition columns (:data:`PARTITION_COLUMNS_METADATA`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import dagster as dg

from loom_resources import codec
from loom_resources.dtypes import ColumnSchema, DataType, Schema, parse_dtype
from loom_resources.errors import SpecError
from loom_resources.model import Backend, SourceSpec, TableRef, TargetSpec

__all__ = [
    "BINDING_ATTRIBUTE", "INPUT_METADATA", "PARTITION_COLUMNS_METADATA", "AssetBinding", "InputBinding", "SourceBinding",
    "asset_binding", "attach_binding", "input_binding", "source_binding",
]

F = TypeVar("F", bound=Callable[..., Any])

#: Attribute of the asset op's function that holds its :class:`AssetBinding`.
BINDING_ATTRIBUTE = "loom_binding"
#: Definition-metadata key of a partitioned table's partition columns (``order_date``; with
#: several dimensions ``date=order_date, region=region``).
PARTITION_COLUMNS_METADATA = "loom/partition_columns"
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

    def metadata(self) -> dict[str, str]:
        """The definition metadata a reader of the table needs beyond the table name and column
        schema: the partition columns of a partitioned table (nothing otherwise)."""
        cols = self.partition_columns
        if not cols:
            return {}
        text = cols[""] if list(cols) == [""] else ", ".join(f"{d}={c}" for d, c in cols.items())
        return {PARTITION_COLUMNS_METADATA: text}

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


def attach_binding(fn: F, binding: AssetBinding) -> F:
    """Attach ``binding`` to ``fn``, the function the asset's op runs (before decorating it)."""
    setattr(fn, BINDING_ATTRIBUTE, binding)
    return fn


def asset_binding(op_def: Any, key: dg.AssetKey) -> AssetBinding:
    """The binding of the asset computed by ``op_def``; an asset the factory did not build
    raises :class:`SpecError` naming it."""
    # the decorated function of the op (Dagster keeps it as ``compute_fn.decorated_fn``)
    fn = getattr(getattr(op_def, "compute_fn", None), "decorated_fn", None)
    out = getattr(fn, BINDING_ATTRIBUTE, None)
    if not isinstance(out, AssetBinding):
        raise SpecError(f"asset {key.to_user_string()} is not a declared Loom table (its op carries no Loom binding)")
    return out


def _value(value: Any) -> Any:
    return getattr(value, "value", value)  # Dagster hands metadata back raw or as MetadataValue


def source_binding(metadata: Mapping[str, Any] | None, kinds: Iterable[str], key: dg.AssetKey) -> SourceBinding:
    """How to read a declared table from its definition metadata (table name, column schema,
    partition columns) and kinds (the backend), for an upstream whose op is not in the run."""
    md = metadata or {}
    name = _text(md.get("dagster/table_name"))
    backends = [k for k in kinds if k in {b.value for b in Backend}]
    schema = _value(md.get("dagster/column_schema"))
    if name is None or len(backends) != 1 or not isinstance(schema, dg.TableSchema):
        raise SpecError(f"asset {key.to_user_string()} is not a declared Loom table (no table name, backend kind "
                        "and column schema in its definition)")
    text = _text(md.get(PARTITION_COLUMNS_METADATA)) or ""
    cols: dict[str, str] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        dim, _, col = part.rpartition("=")
        cols[dim] = col
    types = {c.name: parse_dtype(c.type) for c in schema.columns if c.name in cols.values()}
    return SourceBinding(TableRef.parse(name), Backend(backends[0]), cols, types)


def input_binding(metadata: Mapping[str, Any] | None) -> InputBinding | None:
    """The binding in an input's definition metadata, if the factory set one."""
    text = _text((metadata or {}).get(INPUT_METADATA))
    if text is None:
        return None
    out = _decode(text)
    assert isinstance(out, InputBinding)
    return out
