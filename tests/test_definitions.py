"""build_definitions' garbage-collector freeze (loom_assets/definitions.py), in fresh interpreters:
only the first build of a process freezes, and it can be turned off."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = """
import gc, json, sys
import polars as pl
from loom_assets import Table, build_definitions
from loom_resources import ClickHouseResource, ColumnSchema, DeltaResource

def tables(n):
    return [Table(f"s.t{i}", backend="delta", columns=[ColumnSchema("id", "int64")], mode="overwrite",
                  transform=lambda context: pl.DataFrame({"id": [1]})) for i in range(n)]

backends = {"delta": DeltaResource(root=sys.argv[1]), "clickhouse": ClickHouseResource(url="chdb://" + sys.argv[1] + "/ch")}
counts = [gc.get_freeze_count()]
first = build_definitions(tables(3), backends=backends, freeze_gc=sys.argv[2] == "on")
counts.append(gc.get_freeze_count())
assert {k.to_user_string() for k in first.resolve_asset_graph().get_all_asset_keys()} >= {"s/t0", "s/t2"}
second = build_definitions(tables(50), backends=backends)  # kept alive: a freeze would hold it
counts.append(gc.get_freeze_count())
print(json.dumps(counts))
"""


def _freeze_counts(tmp_path: Path, mode: str) -> list[int]:
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path), mode], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return list(json.loads(proc.stdout.strip().splitlines()[-1]))


def test_the_first_build_of_a_process_freezes_what_is_alive_and_later_builds_do_not(tmp_path: Path) -> None:
    before, after_first, after_second = _freeze_counts(tmp_path, "on")
    assert before == 0
    assert after_first > 10_000  # the libraries and the definitions: out of the collector's scans
    # a second build (a test session) freezes nothing more (a freeze would add its ~10^4 new objects;
    # the count moves by a few as frozen objects are freed or re-tracked)
    assert abs(after_second - after_first) < 1_000


def test_freeze_gc_false_leaves_the_collector_alone_until_a_build_asks_for_it(tmp_path: Path) -> None:
    before, after_first, after_second = _freeze_counts(tmp_path, "off")
    assert before == after_first == 0
    assert after_second > 10_000  # the first build that allows it freezes


PAUSE_SCRIPT = """
import gc, json, sys
import polars as pl
from loom_assets import Table, build_definitions
from loom_resources import ClickHouseResource, ColumnSchema, DeltaResource

tables = [Table(f"s.t{i}", backend="delta", columns=[ColumnSchema("id", "int64")], mode="overwrite",
                transform=lambda context: pl.DataFrame({"id": [1]})) for i in range(200)]
backends = {"delta": DeltaResource(root=sys.argv[1]), "clickhouse": ClickHouseResource(url="chdb://" + sys.argv[1] + "/ch")}
collections = []
gc.callbacks.append(lambda phase, info: collections.append(info["generation"]) if phase == "start" else None)
defs = build_definitions(tables, backends=backends)
during = list(collections)
print(json.dumps({"collections": during, "enabled_after": gc.isenabled(), "garbage": gc.collect()}))
"""


def test_the_first_build_pauses_the_collector_and_collects_once_before_freezing(tmp_path: Path) -> None:
    """The build allocates mostly what lives as long as the definitions: the collections it used to
    trigger (dozens at 200 tables) cost load time and found little. Paused, one full collection at
    its end frees the build's cyclic garbage before the freeze; the collector is on again after."""
    proc = subprocess.run([sys.executable, "-c", PAUSE_SCRIPT, str(tmp_path)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["collections"] == [2]  # the one full collection before the freeze, none during the build
    assert out["enabled_after"] is True
    assert out["garbage"] == 0  # nothing left over: the build's garbage was collected, not frozen
