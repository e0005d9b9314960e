"""Loom runtime: the table model, the runtime contracts and the storage backends.

Public surface: everything in ``__all__``. The Dagster resources (``DeltaResource``,
``ClickHouseResource``, ``LoomIOManager``) and ``InMemoryTables`` are imported on first access,
so importing the table model stays cheap.
"""

from typing import Any

from loom_resources.contracts import SourceReader, SQLExecutor, StreamingSourceReader, TableDiscovery, TargetWriter
from loom_resources.dtypes import (
    Binary,
    Boolean,
    Categorical,
    ColumnSchema,
    DataType,
    Date,
    Datetime,
    Decimal,
    Duration,
    Enum,
    Field,
    Float32,
    Float64,
    Int8,
    Int16,
    Int32,
    Int64,
    List,
    Null,
    String,
    Struct,
    Time,
    UInt8,
    UInt16,
    UInt32,
    UInt64,
    parse_dtype,
)
from loom_resources.errors import (
    BackendUnavailableError,
    ChangeSetTooLargeError,
    DataValidationError,
    LoomError,
    PredicateError,
    SchemaMismatchError,
    SpecError,
    StoreFullError,
    TableNotFoundError,
    UnsupportedTypeError,
)
from loom_resources.model import (
    Backend,
    ClickHouseTableOptions,
    HistoryOptions,
    RunParams,
    SchemaMode,
    SourceSpec,
    TableRef,
    TargetSpec,
    WriteContext,
    WriteMode,
    WriteResult,
)
from loom_resources.predicates import Predicate, col, param
from loom_resources.sql import PolarsSQLExecutor

_LAZY = {
    "DeltaResource": "loom_resources.delta",
    "ClickHouseResource": "loom_resources.clickhouse",
    "LoomIOManager": "loom_resources.io_manager",
    "InMemoryTables": "loom_resources.testing",
    "Capabilities": "loom_resources.capabilities",
}


def __getattr__(name: str) -> Any:
    """Import the resources on first access."""
    if name not in _LAZY:
        raise AttributeError(f"module 'loom_resources' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_LAZY[name]), name)


__all__ = [
    "Capabilities", "ClickHouseResource", "DeltaResource", "InMemoryTables", "LoomIOManager", "StoreFullError", "TableNotFoundError",
    "Backend", "BackendUnavailableError", "Binary", "Boolean", "Categorical", "ChangeSetTooLargeError",
    "ClickHouseTableOptions",
    "ColumnSchema", "DataType", "DataValidationError", "Date", "Datetime", "Decimal", "Duration", "Enum",
    "Field", "Float32", "Float64", "HistoryOptions", "Int8", "Int16", "Int32", "Int64", "List", "LoomError",
    "Null", "PolarsSQLExecutor", "Predicate", "PredicateError", "RunParams", "SQLExecutor", "SchemaMismatchError",
    "SchemaMode", "SourceReader", "SourceSpec", "SpecError", "StreamingSourceReader", "String", "Struct",
    "TableDiscovery", "TableRef", "TargetSpec", "TargetWriter", "Time", "UInt8", "UInt16", "UInt32", "UInt64",
    "UnsupportedTypeError", "WriteContext", "WriteMode", "WriteResult", "col", "param", "parse_dtype",
]
