"""The harness of the contract kit: sample data, and :class:`KitStore`, which wraps one backend
object for one test (table names, specs, writes, read-back and the "unchanged after a failed
write" assertion).

Every assertion of the kit is made on data read back from the store through the contracts
(``read``, ``schema``, ``columns``), never on what ``write`` returns.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import polars as pl
import pytest

from loom_resources.dtypes import ColumnSchema, Date, Float64, Int64, Schema, String
from loom_resources.errors import LoomError
from loom_resources.model import Backend, RunParams, SourceSpec, TableRef, TargetSpec, WriteMode
from loom_resources.polars_types import polars_schema

__all__ = [
    "COLUMNS", "D1", "D2", "D3", "D4", "NOTE", "SEED", "KitStore", "Row", "Snapshot", "frame", "partitions_of_days",
    "supported_write_modes",
]

Row = tuple[Any, ...]

D1, D2, D3, D4 = (dt.date(2024, 1, d) for d in (1, 2, 3, 4))

COLUMNS: Schema = (
    ColumnSchema("id", Int64(), nullable=False),
    ColumnSchema("day", Date(), nullable=False),
    ColumnSchema("amount", Float64(), nullable=True),
)
"""The sample table: types every backend stores as declared."""

NOTE = ColumnSchema("note", String(), nullable=True)
"""The nullable column that schema evolution adds."""

SEED: list[Row] = [(1, D1, 1.0), (2, D1, 2.0), (3, D2, 3.0), (4, D3, None)]
"""The rows every write-mode case starts from: days D1 (two rows), D2 and D3."""


def frame(rows: Sequence[Row], columns: Schema = COLUMNS) -> pl.DataFrame:
    """A DataFrame of ``rows`` with the Polars types of ``columns``."""
    return pl.DataFrame(list(rows), schema=polars_schema(columns), orient="row")


def partitions_of_days(*days: dt.date) -> RunParams:
    """Run parameters of a (multi-)partition run over the daily partitions ``days``."""
    keys = tuple(d.isoformat() for d in days)
    return RunParams(partition_keys=keys, partitions=tuple({"day": k} for k in keys))


def supported_write_modes(store: Any) -> frozenset[WriteMode]:
    """The write modes ``store`` declares it supports.

    Read from the store's ``capabilities.write_modes`` (see
    :class:`loom_resources.capabilities.Capabilities`), else ``supported_write_modes`` (an
    attribute or a method without arguments). A store that declares nothing is expected to
    support every mode.
    """
    capabilities = getattr(store, "capabilities", None)
    if capabilities is not None:
        return frozenset(capabilities.write_modes)
    for name in ("supported_write_modes",):
        declared = getattr(store, name, None)
        if declared is None:
            continue
        if callable(declared):
            declared = declared()
        return frozenset(WriteMode(m) for m in declared)
    return frozenset(WriteMode)


def sorted_rows(df: pl.DataFrame) -> list[Row]:
    """The rows of ``df`` in a canonical order (nulls last)."""
    return df.sort(df.columns, nulls_last=True).rows() if df.width else []


@dataclass(frozen=True)
class Snapshot:
    """What a reader sees of one table: its stored schema and its rows."""

    schema: Schema | None
    rows: tuple[Row, ...]


class KitStore:
    """One backend object under test, with the schema (namespace) of the current test.

    Attributes:
        store: The object implementing the contracts.
        backend: The ``Backend`` value put into every :class:`TargetSpec`.
        schema: A schema name unique to the test; every table of the test lives in it.
    """

    def __init__(self, store: Any, backend: Backend, schema: str) -> None:
        self.store = store
        self.backend = backend
        self.schema = schema

    # -- declarations -----------------------------------------------------------------------
    def ref(self, table: str = "orders") -> TableRef:
        """The table ``table`` in this test's schema."""
        return TableRef(self.schema, table)

    def spec(self, mode: WriteMode = WriteMode.APPEND, table: str = "orders", **kw: Any) -> TargetSpec:
        """A target spec of the sample table (``kw`` overrides any field)."""
        args: dict[str, Any] = {"ref": self.ref(table), "backend": self.backend, "columns": COLUMNS, "mode": mode}
        args.update(kw)
        return TargetSpec(**args)

    def supports(self, mode: WriteMode) -> bool:
        """Whether the store declares support for ``mode`` (see :func:`supported_write_modes`)."""
        return mode in supported_write_modes(self.store)

    def expected_schema(self, spec: TargetSpec) -> Schema:
        """The schema the store should report for ``spec``: the store's ``expected_schema(spec)``
        when it has one (types it stores differently), else the declared stored columns."""
        expected = getattr(self.store, "expected_schema", None)
        return tuple(expected(spec)) if callable(expected) else spec.stored_columns()

    # -- writing ------------------------------------------------------------------------------
    def write(self, data: pl.DataFrame, spec: TargetSpec, params: RunParams | None = None, *,
              streaming: bool = False) -> None:
        """Write ``data`` (as a LazyFrame on the streaming path)."""
        payload = data.lazy() if streaming else data
        self.store.write(payload, spec, params or RunParams(), streaming=streaming)

    def seed(self, spec: TargetSpec, rows: Sequence[Row] = SEED, params: RunParams | None = None) -> TableRef:
        """Create the table of ``spec`` with ``rows`` (written with ``spec`` itself, so a store can
        pick the table layout the mode needs) and check that they read back."""
        self.write(frame(rows, spec.columns), spec, params)
        assert self.rows(spec.ref) == sorted_rows(frame(rows, spec.columns)), "seed rows do not read back"
        return spec.ref

    def unsupported(self, spec: TargetSpec, rows: Sequence[Row] = SEED) -> bool:
        """When the store does not support ``spec.mode``, assert that it refuses to write ``rows``
        with a LoomError and creates nothing, and return True; otherwise return False."""
        if self.supports(spec.mode):
            return False
        with self.fails_unchanged(LoomError, spec.ref):
            self.write(frame(rows, spec.columns), spec, RunParams())
        return True

    # -- reading ------------------------------------------------------------------------------
    def read(self, source: SourceSpec, params: RunParams | None = None) -> pl.DataFrame:
        """Read ``source`` and collect it."""
        return collect(self.store.read(source, params or RunParams()))

    def rows(self, ref: TableRef, columns: Sequence[str] | None = None) -> list[Row]:
        """The rows of ``ref`` read back from the store, in canonical order."""
        source = SourceSpec(ref, columns=tuple(columns) if columns is not None else None)
        return sorted_rows(self.read(source))

    def snapshot(self, ref: TableRef) -> Snapshot:
        """The table's schema and rows as read back (empty for a missing table)."""
        if not self.store.exists(ref):
            return Snapshot(None, ())
        return Snapshot(self.store.schema(ref), tuple(self.rows(ref)))

    @contextmanager
    def fails_unchanged(self, error: type[BaseException], ref: TableRef) -> Iterator[None]:
        """Expect the block to raise ``error`` naming ``ref``, and the table to be exactly as
        it was before (schema and rows, read back)."""
        before = self.snapshot(ref)
        with pytest.raises(error, match=re.escape(str(ref))):
            yield
        assert self.snapshot(ref) == before, f"the failed operation changed table {ref}"


def collect(result: Any) -> pl.DataFrame:
    """A reader's result as a DataFrame (readers return LazyFrames; DataFrames are accepted)."""
    if isinstance(result, pl.LazyFrame):
        return result.collect()
    assert isinstance(result, pl.DataFrame), f"a reader returned {type(result).__name__}, not a polars frame"
    return result
