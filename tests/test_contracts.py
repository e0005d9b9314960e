"""The runtime contracts are runtime-checkable protocols: structural, method-name based."""

from __future__ import annotations

from typing import Any

import pytest

import loom_resources.contracts as contracts
from loom_resources.contracts import SourceReader, SQLExecutor, StreamingSourceReader, TableDiscovery, TargetWriter

PROTOCOLS: dict[type, tuple[str, ...]] = {
    TableDiscovery: ("exists", "columns", "schema", "update_schema"),
    SourceReader: ("read",),
    StreamingSourceReader: ("read_streaming",),
    SQLExecutor: ("execute_sql",),
    TargetWriter: ("write",),
}


def _impl(methods: tuple[str, ...]) -> object:
    """An object of a fresh class having exactly ``methods``."""
    ns: dict[str, Any] = {m: (lambda self, *a, **k: None) for m in methods}
    return type("Impl", (), ns)()


def test_all_exported() -> None:
    assert set(contracts.__all__) == {p.__name__ for p in PROTOCOLS}


@pytest.mark.parametrize("proto", list(PROTOCOLS), ids=lambda p: p.__name__)
def test_protocol_is_runtime_checkable(proto: type) -> None:
    assert getattr(proto, "_is_runtime_protocol", False) is True
    assert isinstance(_impl(PROTOCOLS[proto]), proto)


@pytest.mark.parametrize("proto", list(PROTOCOLS), ids=lambda p: p.__name__)
def test_missing_method_is_not_an_instance(proto: type) -> None:
    methods = PROTOCOLS[proto]
    for missing in methods:
        partial = tuple(m for m in methods if m != missing)
        assert not isinstance(_impl(partial), proto), missing
    assert not isinstance(object(), proto)


def test_protocols_are_separate_capabilities() -> None:
    reader = _impl(("read",))
    assert isinstance(reader, SourceReader)
    assert not isinstance(reader, StreamingSourceReader)
    assert not isinstance(reader, SQLExecutor)
    assert not isinstance(reader, TargetWriter)
    assert not isinstance(reader, TableDiscovery)
    discovery_without_update = _impl(("exists", "columns", "schema"))
    assert not isinstance(discovery_without_update, TableDiscovery)


def test_protocol_members_are_as_documented() -> None:
    for proto, methods in PROTOCOLS.items():
        members = {n for n in vars(proto) if not n.startswith("_") and callable(getattr(proto, n))}
        assert members == set(methods), proto.__name__
