"""The SQL-check cache: the tables a statement reads, remembered across loads (loom_assets.sql_cache)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import loom_assets.sql_body as sql_body
import loom_assets.sql_cache as sql_cache
from loom_assets.sql_cache import TablesCache
from loom_resources import SpecError

SQL = "WITH x AS (SELECT * FROM a) SELECT * FROM x JOIN b USING (id) WHERE d >= {partition_start_date}"


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> TablesCache:
    monkeypatch.setenv("LOOM_CACHE_DIR", str(tmp_path / "cache"))
    fresh = TablesCache()
    monkeypatch.setattr(sql_body, "TABLES_CACHE", fresh)
    return fresh


def _no_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*a: Any, **k: Any) -> Any:
        raise AssertionError("parsed although the statement is cached")

    monkeypatch.setattr(sql_body, "_parse_tables", fail)


def test_a_parsed_statement_is_answered_from_the_file_by_the_next_load(
        cache: TablesCache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert sql_body.referenced_tables(SQL, table="s.t") == {"a", "b"}
    cache.save()
    stored = json.loads((tmp_path / "cache" / "sql_tables.json").read_text())
    assert stored["format"] == 1 and list(stored["tables"].values()) == [["a", "b"]]
    monkeypatch.setattr(sql_body, "TABLES_CACHE", TablesCache())  # the next process
    _no_parse(monkeypatch)
    assert sql_body.referenced_tables(SQL, table="s.t") == {"a", "b"}


def test_a_changed_statement_or_parser_is_parsed_again(cache: TablesCache, monkeypatch: pytest.MonkeyPatch) -> None:
    sql_body.referenced_tables(SQL, table="s.t")
    cache.save()
    assert sql_body.referenced_tables(SQL.replace("JOIN b", "JOIN c"), table="s.t") == {"a", "c"}
    monkeypatch.setattr(sql_cache, "_parser_fingerprint", lambda: "another sqlglot")
    again = TablesCache()
    assert again.get(sql_body._PARAM.sub("NULL", SQL)) is None


def test_a_statement_that_does_not_parse_is_not_remembered(cache: TablesCache, tmp_path: Path) -> None:
    for _ in range(2):
        with pytest.raises(SpecError, match="table s.t: SQL body does not parse"):
            sql_body.referenced_tables("SELECT FROM WHERE (", table="s.t")
    cache.save()
    assert not (tmp_path / "cache" / "sql_tables.json").exists()


def test_the_cached_names_still_fail_a_statement_reading_an_undeclared_table(
        cache: TablesCache, monkeypatch: pytest.MonkeyPatch) -> None:
    sql_body.check_sql(SQL, ["a", "b"], table="s.t")
    _no_parse(monkeypatch)
    with pytest.raises(SpecError, match=r"table s.t: SQL reads \['b'\], which are not declared sources"):
        sql_body.check_sql(SQL, ["a"], table="s.t")


def test_a_corrupt_file_is_ignored_and_rewritten(cache: TablesCache, tmp_path: Path) -> None:
    path = tmp_path / "cache" / "sql_tables.json"
    path.parent.mkdir()
    path.write_text("{not json")
    assert sql_body.referenced_tables(SQL, table="s.t") == {"a", "b"}
    cache.save()
    assert list(json.loads(path.read_text())["tables"].values()) == [["a", "b"]]


def test_an_unwritable_or_disabled_cache_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    for setting in (str(blocker / "cache"), "off"):  # a directory under a file cannot be made
        monkeypatch.setenv("LOOM_CACHE_DIR", setting)
        fresh = TablesCache()
        monkeypatch.setattr(sql_body, "TABLES_CACHE", fresh)
        assert sql_body.referenced_tables(SQL, table="s.t") == {"a", "b"}
        fresh.save()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


LOCATION = """
import sys, dagster as dg, polars as pl
from loom_assets import Table, build_definitions
from loom_resources import ColumnSchema as C
cols = [C("id", "int64", False)]
a = Table("s.a", backend="delta", columns=cols, mode="overwrite", transform=lambda context: pl.LazyFrame())
b = Table("s.b", backend="delta", columns=cols, mode="overwrite", sources=["s.a"], sql={sql!r})
dg.Definitions.validate_loadable(build_definitions([a, b]))
print("sqlglot" in sys.modules)
"""


def _load(sql: str, cache_dir: Path, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LOOM_CACHE_DIR": str(cache_dir), "LOOM_HOME": str(home)}
    return subprocess.run([sys.executable, "-c", LOCATION.format(sql=sql)], capture_output=True, text=True,
                          timeout=180, env=env)


def test_a_second_load_of_unchanged_sql_does_not_import_the_parser(tmp_path: Path) -> None:
    first = _load("SELECT id FROM a", tmp_path / "cache", tmp_path / "home")
    second = _load("SELECT id FROM a", tmp_path / "cache", tmp_path / "home")
    changed = _load("SELECT id FROM a WHERE id > 0", tmp_path / "cache", tmp_path / "home")
    assert [p.stdout.strip() for p in (first, second, changed)] == ["True", "False", "True"], (
        first.stderr[-2000:], second.stderr[-2000:], changed.stderr[-2000:])
    bad = _load("SELECT id FROM a JOIN elsewhere USING (id)", tmp_path / "cache", tmp_path / "home")
    assert bad.returncode != 0 and "table s.b: SQL reads ['elsewhere'], which are not declared sources" in bad.stderr
