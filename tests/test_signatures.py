"""The signature stored once on generated op functions (loom_assets.signatures)."""

import inspect
from typing import Any

import dagster as dg

from loom_assets.signatures import signature_once


def test_signature_once_stores_the_functions_own_signature() -> None:
    def fn(context: Any, left: int, **inputs: Any) -> None:
        return None

    expected = inspect.signature(fn)
    assert signature_once(fn) is fn
    assert fn.__signature__ == expected  # type: ignore[attr-defined]
    assert inspect.signature(fn) is fn.__signature__  # type: ignore[attr-defined]


def test_dagster_reads_inputs_and_context_through_the_stored_signature() -> None:
    @dg.asset(ins={"up": dg.AssetIn(key="up")})
    @signature_once
    def down(context: dg.AssetExecutionContext, **inputs: Any) -> int:
        return inputs["up"] + 1

    @dg.asset
    def up() -> int:
        return 41

    result = dg.materialize([up, down])
    assert result.success
    assert result.output_for_node("down") == 42
