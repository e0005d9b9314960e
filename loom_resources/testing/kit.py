"""The contract test kit: one pytest suite that every Loom backend passes.

It checks every promise of the contracts in :mod:`loom_resources.contracts` against a real
store: discovery of missing and existing tables; reads with projection and predicate;
streaming reads (bounded or refused); every write mode the store supports (and a clean
refusal of the others); the strict, evolve and overwrite schema modes; and the same error
class for the same fault on every backend, with the table exactly as before after any
failed write. Assertions are made on what the store reads back, never on ``write``'s result.

Run it on your own resource by subclassing :class:`ContractKit` in a test module (the class
name must start with ``Test`` so pytest collects it)::

    import pytest
    from loom_resources.model import Backend
    from loom_resources.testing import ContractKit

    class TestMyStoreContract(ContractKit):
        backend = Backend.DELTA          # the Backend value put into every TargetSpec

        @pytest.fixture
        def contract_store(self, tmp_path):
            store = MyStore(root=str(tmp_path))   # a fresh store for every test
            yield store
            store.close()

Optional: override the ``contract_schema`` fixture to choose the per-test schema (namespace)
name. Which write modes are exercised is decided by the store's ``supported_write_modes``
(``capabilities.write_modes``) declaration; a store without one must support every mode.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any, ClassVar

import polars as pl
import pytest

from loom_resources.contracts import StreamingSourceReader
from loom_resources.dtypes import ColumnSchema, Int64, String
from loom_resources.errors import DataValidationError, PredicateError, SchemaMismatchError, TableNotFoundError
from loom_resources.model import Backend, RunParams, SchemaMode, SourceSpec, WriteMode
from loom_resources.predicates import col, param
from loom_resources.testing.harness import (
    COLUMNS,
    D1,
    D2,
    D3,
    D4,
    NOTE,
    SEED,
    KitStore,
    collect,
    frame,
    partitions_of_days,
    sorted_rows,
)

__all__ = ["ContractKit", "KitStore"]

_COLUMN_NAMES = tuple(c.name for c in COLUMNS)
_WINDOW = col("day").window(param("start"), param("end"))
_HISTORY_COLUMNS = (ColumnSchema("id", Int64(), nullable=False), ColumnSchema("name", String()))
_T1, _T2 = dt.datetime(2024, 1, 1), dt.datetime(2024, 1, 2)


_EAGER_AND_STREAMING = pytest.mark.parametrize("streaming", [False, True], ids=["eager", "streaming"])
"""Run a write case on the eager path (a DataFrame) and the streaming path (a LazyFrame)."""


def _window(start: dt.date, end: dt.date) -> RunParams:
    """Run parameters binding ``start``/``end`` of the replace predicate :data:`_WINDOW`."""
    return RunParams(values={"start": start, "end": end})


class ContractKit:
    """The contract suite. Subclass it as ``Test...`` with a ``backend`` value and a
    ``contract_store`` fixture yielding a fresh store (see the module docstring)."""

    backend: ClassVar[Backend]
    """The ``Backend`` value put into every TargetSpec; set it in the subclass."""

    @pytest.fixture
    def contract_store(self) -> Any:
        """Yield a fresh store implementing the contracts; override it in the subclass."""
        raise NotImplementedError(f"{type(self).__name__} must define a contract_store fixture")

    @pytest.fixture
    def contract_schema(self) -> str:
        """A schema (namespace) name unique to the test."""
        return "kit_" + uuid.uuid4().hex[:10]

    @pytest.fixture
    def kit(self, contract_store: Any, contract_schema: str) -> KitStore:
        """The store under test, wrapped for one test."""
        backend = getattr(self, "backend", None)
        if backend is None:
            raise TypeError(f"{type(self).__name__} must set the class attribute `backend` (a loom Backend value)")
        return KitStore(contract_store, Backend(backend), contract_schema)

    # -- discovery ------------------------------------------------------------------------------
    def test_discovery_of_a_missing_table(self, kit: KitStore) -> None:
        """An unknown table does not exist, has no columns and no schema."""
        ref = kit.ref("missing")
        assert kit.store.exists(ref) is False
        assert tuple(kit.store.columns(ref)) == ()
        assert kit.store.schema(ref) is None

    def test_discovery_of_a_written_table(self, kit: KitStore) -> None:
        """A written table exists, lists the declared columns in order and reports the storable schema."""
        spec = kit.spec()
        ref = kit.seed(spec)
        assert kit.store.exists(ref) is True
        assert tuple(kit.store.columns(ref)) == spec.column_names
        assert tuple(kit.store.schema(ref)) == kit.expected_schema(spec)

    # -- reads ----------------------------------------------------------------------------------
    def test_read_projection_keeps_the_requested_order(self, kit: KitStore) -> None:
        """A projection returns exactly the requested columns, in the requested order."""
        ref = kit.seed(kit.spec())
        out = kit.read(SourceSpec(ref, columns=("amount", "id")))
        assert out.columns == ["amount", "id"]
        assert sorted_rows(out) == sorted_rows(frame(SEED).select("amount", "id"))

    def test_read_predicate_bound_from_run_params(self, kit: KitStore) -> None:
        """A predicate with ``param(...)`` is bound from ``RunParams.values`` and filters the rows."""
        ref = kit.seed(kit.spec())
        pred = col("amount").ge(param("min")) & col("day").is_in([D1, D2])
        out = kit.read(SourceSpec(ref, columns=("id", "day"), predicate=pred), RunParams(values={"min": 2.0}))
        assert sorted_rows(out) == [(2, D1), (3, D2)]

    def test_read_predicate_on_an_unknown_column_is_refused(self, kit: KitStore) -> None:
        """A predicate on a column the table lacks is a PredicateError naming it."""
        ref = kit.seed(kit.spec())
        with pytest.raises(PredicateError, match="nope"):
            kit.read(SourceSpec(ref, predicate=col("nope").eq(1)))

    def test_read_predicate_with_an_unbound_parameter_is_refused(self, kit: KitStore) -> None:
        """A predicate parameter without a value in the run is a PredicateError naming it."""
        ref = kit.seed(kit.spec())
        with pytest.raises(PredicateError, match="min"):
            kit.read(SourceSpec(ref, predicate=col("amount").gt(param("min"))))

    def test_read_projection_of_an_unknown_column_is_refused(self, kit: KitStore) -> None:
        """Projecting a column the table lacks is a SchemaMismatchError naming it."""
        ref = kit.seed(kit.spec())
        with pytest.raises(SchemaMismatchError, match="nope"):
            kit.read(SourceSpec(ref, columns=("id", "nope")))

    def test_read_of_a_missing_table(self, kit: KitStore) -> None:
        """Reading (or stream-reading) a missing table is a TableNotFoundError naming it."""
        ref = kit.ref("missing")
        with pytest.raises(TableNotFoundError, match=re.escape(str(ref))):
            collect(kit.store.read(SourceSpec(ref), RunParams()))
        if isinstance(kit.store, StreamingSourceReader):
            with pytest.raises(TableNotFoundError, match=re.escape(str(ref))):
                collect(kit.store.read_streaming(SourceSpec(ref), RunParams()))

    @pytest.mark.parametrize("filtered", [False, True], ids=["whole", "filtered"])
    def test_streaming_read_is_bounded_or_refused(self, kit: KitStore, filtered: bool) -> None:
        """A streaming read is refused with TypeError, or is a LazyFrame whose streaming
        collection equals the plain read."""
        if not isinstance(kit.store, StreamingSourceReader):
            return  # the capability is not offered: callers refuse streaming themselves
        ref = kit.seed(kit.spec())
        source = SourceSpec(ref, columns=("id", "amount"), predicate=col("day").ne(D2)) if filtered else SourceSpec(ref)
        try:
            lf = kit.store.read_streaming(source, RunParams())
        except TypeError:
            return  # refused, as the contract allows
        assert isinstance(lf, pl.LazyFrame), "a streaming read must return a LazyFrame"
        assert sorted_rows(lf.collect(engine="streaming")) == sorted_rows(kit.read(source))

    # -- write modes ----------------------------------------------------------------------------
    @_EAGER_AND_STREAMING
    def test_append(self, kit: KitStore, streaming: bool) -> None:
        """Append adds the frame's rows to the stored ones."""
        spec = kit.spec(WriteMode.APPEND)
        if kit.unsupported(spec):
            return
        kit.seed(spec, SEED[:2])
        kit.write(frame(SEED[2:]), spec, streaming=streaming)
        assert kit.rows(spec.ref) == sorted_rows(frame(SEED))

    @_EAGER_AND_STREAMING
    def test_overwrite(self, kit: KitStore, streaming: bool) -> None:
        """Overwrite replaces every row and keeps the declared schema."""
        spec = kit.spec(WriteMode.OVERWRITE)
        if kit.unsupported(spec):
            return
        kit.seed(spec)
        kit.write(frame([(9, D4, 9.0)]), spec, streaming=streaming)
        assert kit.rows(spec.ref) == [(9, D4, 9.0)]
        assert tuple(kit.store.schema(spec.ref)) == kit.expected_schema(spec)

    @_EAGER_AND_STREAMING
    def test_replace_partitions_of_the_frame(self, kit: KitStore, streaming: bool) -> None:
        """Without run partitions, the partitions present in the frame are replaced."""
        spec = kit.spec(WriteMode.REPLACE_PARTITIONS, partition_by=("day",))
        if kit.unsupported(spec):
            return
        kit.seed(spec)
        kit.write(frame([(10, D1, 10.0)]), spec, streaming=streaming)  # the frame holds D1 only
        assert kit.rows(spec.ref) == sorted_rows(frame([(3, D2, 3.0), (4, D3, None), (10, D1, 10.0)]))

    @_EAGER_AND_STREAMING
    def test_replace_partitions_of_a_multi_partition_run(self, kit: KitStore, streaming: bool) -> None:
        """A run over several partitions replaces all of them, also those the frame has no rows for."""
        spec = kit.spec(WriteMode.REPLACE_PARTITIONS, partition_by=("day",))
        if kit.unsupported(spec):
            return
        kit.seed(spec)
        # the run owns D1 and D2: both are replaced although the frame only holds D2 rows
        kit.write(frame([(20, D2, 20.0), (21, D2, None)]), spec, partitions_of_days(D1, D2), streaming=streaming)
        assert kit.rows(spec.ref) == sorted_rows(frame([(4, D3, None), (20, D2, 20.0), (21, D2, None)]))

    @_EAGER_AND_STREAMING
    def test_replace_where(self, kit: KitStore, streaming: bool) -> None:
        """Replace-where swaps exactly the rows matching the bound predicate."""
        spec = kit.spec(WriteMode.REPLACE_WHERE, replace_predicate=_WINDOW)
        if kit.unsupported(spec):
            return
        kit.seed(spec, params=_window(D1, D4))
        kit.write(frame([(30, D2, 30.0), (31, D3, None)]), spec, _window(D2, D4), streaming=streaming)
        assert kit.rows(spec.ref) == sorted_rows(frame([(1, D1, 1.0), (2, D1, 2.0), (30, D2, 30.0), (31, D3, None)]))

    @_EAGER_AND_STREAMING
    def test_merge(self, kit: KitStore, streaming: bool) -> None:
        """Merge updates rows with known keys and inserts new ones; other rows stay."""
        spec = kit.spec(WriteMode.MERGE, merge_keys=("id",))
        if kit.unsupported(spec):
            return
        kit.seed(spec)
        kit.write(frame([(2, D1, 22.0), (3, D2, None), (5, D3, 5.0)]), spec, streaming=streaming)
        expected = [(1, D1, 1.0), (2, D1, 22.0), (3, D2, None), (4, D3, None), (5, D3, 5.0)]
        assert kit.rows(spec.ref) == sorted_rows(frame(expected))

    def test_history(self, kit: KitStore) -> None:
        """History (SCD2) closes changed and vanished versions and opens new ones at the effective date."""
        spec = kit.spec(WriteMode.HISTORY, columns=_HISTORY_COLUMNS, merge_keys=("id",))
        if kit.unsupported(spec, [(1, "a")]):
            return
        kit.write(frame([(1, "a"), (2, "b")], spec.columns), spec, RunParams(values={"effective_date": D1}))
        kit.write(frame([(1, "a1"), (3, "c")], spec.columns), spec, RunParams(values={"effective_date": D2}))
        # 1 changes, 2 disappears (its version is closed), 3 is new
        assert kit.rows(spec.ref, ("id", "name", "valid_from", "valid_to", "is_current")) == [
            (1, "a", _T1, _T2, False), (1, "a1", _T2, None, True), (2, "b", _T1, _T2, False), (3, "c", _T2, None, True),
        ]

    # -- schema modes ---------------------------------------------------------------------------
    def test_strict_refuses_an_undeclared_column(self, kit: KitStore) -> None:
        """Strict schema mode refuses a frame with an undeclared column."""
        spec = kit.spec()
        kit.seed(spec)
        with kit.fails_unchanged(SchemaMismatchError, spec.ref):
            kit.write(frame([(5, D4, 5.0, "x")], COLUMNS + (NOTE,)), spec)

    @pytest.mark.parametrize("declared", [True, False], ids=["declared", "frame_only"])
    def test_evolve_adds_a_nullable_column(self, kit: KitStore, declared: bool) -> None:
        """Evolve adds a new nullable column (declared or frame-only); old rows read it as null."""
        kit.seed(kit.spec())
        columns = COLUMNS + (NOTE,) if declared else COLUMNS
        kit.write(frame([(5, D4, 5.0, "new")], COLUMNS + (NOTE,)), kit.spec(columns=columns, schema_mode=SchemaMode.EVOLVE))
        ref = kit.ref()
        assert tuple(kit.store.columns(ref)) == (*_COLUMN_NAMES, "note")
        assert tuple(kit.store.schema(ref)) == kit.expected_schema(kit.spec(columns=COLUMNS + (NOTE,)))
        old = [(*row, None) for row in SEED]
        assert kit.rows(ref) == sorted_rows(frame([*old, (5, D4, 5.0, "new")], COLUMNS + (NOTE,)))

    def test_schema_overwrite_replaces_the_schema(self, kit: KitStore) -> None:
        """Schema mode overwrite replaces the stored schema with the declared one."""
        ref = kit.seed(kit.spec(WriteMode.OVERWRITE))
        columns = (ColumnSchema("id", Int64(), nullable=False), ColumnSchema("label", String()))
        spec = kit.spec(WriteMode.OVERWRITE, columns=columns, schema_mode=SchemaMode.OVERWRITE)
        kit.write(frame([(7, "x")], columns), spec)
        assert tuple(kit.store.columns(ref)) == ("id", "label")
        assert tuple(kit.store.schema(ref)) == kit.expected_schema(spec)
        assert kit.rows(ref) == [(7, "x")]

    # -- faults: the same error class everywhere, and the table unchanged ------------------------
    @_EAGER_AND_STREAMING
    def test_nulls_in_a_not_null_column(self, kit: KitStore, streaming: bool) -> None:
        """Nulls in a column declared not null are a DataValidationError."""
        spec = kit.spec()
        kit.seed(spec)
        with kit.fails_unchanged(DataValidationError, spec.ref):
            kit.write(frame([(5, D4, 5.0), (6, None, 6.0)]), spec, streaming=streaming)

    def test_wrong_type_is_a_schema_mismatch(self, kit: KitStore) -> None:
        """A column of a type without a lossless cast to the declared one is a SchemaMismatchError."""
        spec = kit.spec()
        kit.seed(spec)
        with kit.fails_unchanged(SchemaMismatchError, spec.ref):
            kit.write(frame([(5, D4, 5.0)]).with_columns(pl.col("amount").cast(pl.String)), spec)

    def test_missing_declared_column_is_a_schema_mismatch(self, kit: KitStore) -> None:
        """A declared column missing from the frame is a SchemaMismatchError."""
        spec = kit.spec()
        kit.seed(spec)
        with kit.fails_unchanged(SchemaMismatchError, spec.ref):
            kit.write(frame([(5, D4, 5.0)]).drop("amount"), spec)

    @_EAGER_AND_STREAMING
    def test_row_outside_the_replace_predicate(self, kit: KitStore, streaming: bool) -> None:
        """A row outside the replace predicate is a DataValidationError."""
        spec = kit.spec(WriteMode.REPLACE_WHERE, replace_predicate=_WINDOW)
        if kit.unsupported(spec):
            return
        kit.seed(spec, params=_window(D1, D4))
        with kit.fails_unchanged(DataValidationError, spec.ref):
            kit.write(frame([(30, D2, 30.0), (32, D1, 0.0)]), spec, _window(D2, D4), streaming=streaming)

    @_EAGER_AND_STREAMING
    def test_row_outside_the_run_partitions(self, kit: KitStore, streaming: bool) -> None:
        """A row outside the run's partitions is a DataValidationError."""
        spec = kit.spec(WriteMode.REPLACE_PARTITIONS, partition_by=("day",))
        if kit.unsupported(spec):
            return
        kit.seed(spec)
        with kit.fails_unchanged(DataValidationError, spec.ref):
            kit.write(frame([(20, D2, 20.0), (21, D3, 21.0)]), spec, partitions_of_days(D1, D2), streaming=streaming)

    @_EAGER_AND_STREAMING
    def test_duplicate_merge_keys(self, kit: KitStore, streaming: bool) -> None:
        """A merge key present twice in the frame is a DataValidationError."""
        spec = kit.spec(WriteMode.MERGE, merge_keys=("id",))
        if kit.unsupported(spec):
            return
        kit.seed(spec)
        with kit.fails_unchanged(DataValidationError, spec.ref):
            kit.write(frame([(6, D1, 1.0), (6, D2, 2.0)]), spec, streaming=streaming)

    # -- update_schema --------------------------------------------------------------------------
    def test_update_schema_adds_a_nullable_column(self, kit: KitStore) -> None:
        """update_schema adds a missing nullable column; old rows read it as null."""
        ref = kit.seed(kit.spec())
        kit.store.update_schema(ref, COLUMNS + (NOTE,))
        assert tuple(kit.store.columns(ref)) == (*_COLUMN_NAMES, "note")
        assert tuple(kit.store.schema(ref)) == kit.expected_schema(kit.spec(columns=COLUMNS + (NOTE,)))
        assert kit.rows(ref) == sorted_rows(frame([(*row, None) for row in SEED], COLUMNS + (NOTE,)))

    def test_update_schema_refuses_a_type_change(self, kit: KitStore) -> None:
        """update_schema refuses to change a stored column's type."""
        ref = kit.seed(kit.spec())
        changed = (*COLUMNS[:2], ColumnSchema("amount", String()))
        with kit.fails_unchanged(SchemaMismatchError, ref):
            kit.store.update_schema(ref, changed)

    def test_update_schema_refuses_a_new_not_null_column(self, kit: KitStore) -> None:
        """update_schema refuses to add a not-null column to a table with rows."""
        ref = kit.seed(kit.spec())
        with kit.fails_unchanged(SchemaMismatchError, ref):
            kit.store.update_schema(ref, COLUMNS + (ColumnSchema("strict", Int64(), nullable=False),))

    def test_update_schema_of_a_missing_table(self, kit: KitStore) -> None:
        """update_schema of a missing table is a TableNotFoundError naming it."""
        ref = kit.ref("missing")
        with kit.fails_unchanged(TableNotFoundError, ref):
            kit.store.update_schema(ref, COLUMNS)

