"""The table-to-asset factory (:mod:`loom_assets.factory`): refusals at load naming the table,
where SQL runs, what each asset requires and carries, and that importing the API builds nothing."""

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest

from loom_assets.declare import Source, Table
from loom_assets.factory import build_assets, sql_pushdown, validate_tables
from loom_resources import Backend, ColumnSchema, Date, SourceSpec, SpecError, col, param
from loom_resources.binding import (
    INPUT_METADATA,
    AssetBinding,
    InputBinding,
    SourceBinding,
    asset_binding,
    input_binding,
)
from loom_resources.clickhouse import ClickHouseResource
from loom_resources.delta import DeltaResource

C = ColumnSchema
COLS = [C("id", "int64", False), C("v", "string")]


@pytest.fixture
def backends(tmp_path: Path, chdb_url: str) -> dict[str, Any]:
    # nothing is opened: validation and building only read the resources' capabilities
    return {"delta": DeltaResource(root=str(tmp_path)), "clickhouse": ClickHouseResource(url=chdb_url)}


def body(context: Any, **inputs: Any) -> pl.DataFrame:
    return pl.DataFrame({"id": [1], "v": ["a"]})


def T(name: str, backend: str = "delta", **kw: Any) -> Table:
    kw.setdefault("columns", COLS)
    if "sql" not in kw:
        kw.setdefault("transform", body)
    return Table(name, backend=backend, **kw)


def refused(tables: list[Table], backends: dict[str, Any], *needles: str) -> str:
    with pytest.raises(SpecError) as ei:
        validate_tables(tables, backends)
    msg = str(ei.value)
    for n in needles:
        assert n in msg, msg
    # build_assets refuses the same set the same way
    with pytest.raises(SpecError):
        build_assets(tables, backends=backends)
    return msg


# -- validate_tables ---------------------------------------------------------------------------

def test_valid_set_passes(backends: dict[str, Any]) -> None:
    validate_tables([T("a.x"), T("a.y", "clickhouse", sources=["a.x"])], backends)


def test_duplicate_table(backends: dict[str, Any]) -> None:
    refused([T("a.x"), T("a.x", "clickhouse")], backends, "a.x", "declared twice")


def test_unknown_source(backends: dict[str, Any]) -> None:
    refused([T("a.x", sources=["a.nope"])], backends, "table a.x", "a.nope", "not a declared table")


def test_cycle(backends: dict[str, Any]) -> None:
    msg = refused([T("a.x", sources=["a.z"]), T("a.y", sources=["a.x"]), T("a.z", sources=["a.y"])], backends, "cycle")
    assert "a.x" in msg and "a.y" in msg and "a.z" in msg


def test_self_cycle(backends: dict[str, Any]) -> None:
    refused([T("a.x", sources=["a.x"])], backends, "a.x", "cycle")


@pytest.mark.parametrize(
    ("mode", "kw"),
    [
        ("history", {"merge_keys": ["id"]}),
        ("replace_where", {"replace_predicate": col("id").ge(param("lo"))}),
    ],
)
def test_clickhouse_refuses_modes_it_cannot_write_at_load(backends: dict[str, Any], mode: str, kw: dict[str, Any]) -> None:
    refused([T("a.ch", "clickhouse", mode=mode, **kw)], backends, "a.ch", repr(mode), "clickhouse")
    validate_tables([T("a.d", "delta", mode=mode, **kw)], backends)  # Delta writes both


def test_clickhouse_refuses_delete_unmatched(backends: dict[str, Any]) -> None:
    refused([T("a.ch", "clickhouse", mode="merge", merge_keys=["id"], delete_unmatched=True)], backends,
            "a.ch", "delete_unmatched")
    validate_tables([T("a.d", mode="merge", merge_keys=["id"], delete_unmatched=True)], backends)


@pytest.mark.parametrize("backend", ["delta", "clickhouse"])
def test_loom_schema_is_reserved(backends: dict[str, Any], backend: str) -> None:
    refused([T("loom.mine", backend)], backends, "loom.mine", "reserved")


def test_clickhouse_system_schema_is_reserved(backends: dict[str, Any]) -> None:
    refused([T("system.mine", "clickhouse")], backends, "system.mine", "reserved")
    validate_tables([T("system.mine", "delta")], backends)  # only ClickHouse reserves it


@pytest.mark.parametrize("backend", ["delta", "clickhouse"])
@pytest.mark.parametrize("name", ["Loom.run_records", "LOOM.mine", "lOoM.x"])
def test_loom_schema_is_reserved_whatever_its_case(backends: dict[str, Any], backend: str, name: str) -> None:
    # issue 23: on a case-insensitive file system Loom.run_records is the audit table's directory
    refused([T(name, backend)], backends, name, "reserved")


@pytest.mark.parametrize("name", ["SYSTEM.x", "System.x", "Information_Schema.x", "INFORMATION_SCHEMA.x",
                                  "_LOOM.x", "_Loom.x"])
def test_clickhouse_reserved_schemas_whatever_their_case(backends: dict[str, Any], name: str) -> None:
    refused([T(name, "clickhouse")], backends, name, "reserved")


def test_delta_refuses_a_case_variant_of_the_loom_schema_at_write(tmp_path: Path) -> None:
    from loom_resources import RunParams, TableRef, TargetSpec
    from loom_resources.model import Backend as B

    delta = DeltaResource(root=str(tmp_path))
    spec = TargetSpec(ref=TableRef("Loom", "run_records"), backend=B.DELTA, columns=tuple(COLS))
    with pytest.raises(SpecError, match="Loom.run_records.*reserved"):
        delta.write(pl.DataFrame({"id": [1], "v": ["a"]}), spec, RunParams())
    assert not (tmp_path / "Loom").exists() and not (tmp_path / "loom").exists()


def test_sql_reading_a_table_that_is_not_a_source(backends: dict[str, Any]) -> None:
    refused([T("a.x"), T("a.y", sql="SELECT id, v FROM other", sources=["a.x"])], backends, "a.y", "other")


def test_backend_without_a_resource(backends: dict[str, Any]) -> None:
    refused([T("a.ch", "clickhouse")], {"delta": backends["delta"]}, "a.ch", "clickhouse")


# -- sql_pushdown ------------------------------------------------------------------------------

def _by_name(*tables: Table) -> dict[str, Table]:
    return {str(t.ref): t for t in tables}


def test_sql_pushdown(backends: dict[str, Any]) -> None:
    ch1, ch2, d1 = T("a.c1", "clickhouse"), T("a.c2", "clickhouse"), T("a.d1")
    by = _by_name(ch1, ch2, d1)
    all_ch = T("a.m", "delta", sources=["a.c1", "a.c2"], sql="SELECT c1.id, c2.v FROM c1 JOIN c2 ON c1.id = c2.id")
    assert sql_pushdown(all_ch, by, backends) == ("clickhouse", "clickhouse")
    mixed = T("a.m", "clickhouse", sources=["a.c1", "a.d1"], sql="SELECT c1.id, d1.v FROM c1 JOIN d1 ON c1.id = d1.id")
    assert sql_pushdown(mixed, by, backends) is None
    all_delta = T("a.m", "clickhouse", sources=["a.d1"], sql="SELECT id, v FROM d1")
    assert sql_pushdown(all_delta, by, backends) is None  # Delta runs no SQL of its own: Polars
    python = T("a.m", "delta", sources=["a.c1", "a.c2"])
    assert sql_pushdown(python, by, backends) is None
    no_sources = T("a.m", "clickhouse", sql="SELECT 1 AS id, 'a' AS v")
    assert sql_pushdown(no_sources, by, backends) is None


# -- the built assets ----------------------------------------------------------------------------

def _asset(assets: list[dg.AssetsDefinition], name: str) -> dg.AssetsDefinition:
    return next(a for a in assets if not isinstance(a, dg.AssetChecksDefinition) and a.key.path[-1] == name)


def test_required_resource_keys(backends: dict[str, Any]) -> None:
    tables = [T("a.d"), T("a.c", "clickhouse"), T("a.cd", "clickhouse", sources=["a.d"]), T("a.dd", sources=["a.d"])]
    assets = build_assets(tables, backends=backends)
    req = {a.key.path[-1]: set(a.required_resource_keys) for a in assets if not isinstance(a, dg.AssetChecksDefinition)}
    assert req["d"] >= {"delta", "io_manager"} and "clickhouse" not in req["d"]
    assert req["dd"] >= {"delta", "io_manager"} and "clickhouse" not in req["dd"]
    # the run-records table is Delta: every asset needs the delta resource to record failures
    assert req["c"] >= {"clickhouse", "delta", "io_manager"}
    assert req["cd"] >= {"clickhouse", "delta", "io_manager"}


def test_asset_definition_carries_bindings(backends: dict[str, Any]) -> None:
    daily = dg.DailyPartitionsDefinition(start_date="2026-01-01")
    pred = col("v").ne("x")
    up = T("a.c1", "clickhouse", columns=[*COLS, C("d", "date", False)], mode="replace_partitions",
           partitions=daily, partition_column="d")
    up2 = T("a.c2", "clickhouse")
    sql = T("a.m", "clickhouse", columns=[*COLS, C("d", "date", False)], mode="replace_partitions",
            partitions=daily, partition_column="d",
            sources=[Source("a.c1", columns=("id", "v", "d"), predicate=pred), Source("a.c2", alias="other")],
            sql="SELECT c1.id, c1.v, c1.d FROM c1 JOIN other ON c1.id = other.id")
    py = T("a.p", "delta", sources=[Source("a.c2", streaming=True)])
    assets = build_assets([up, up2, sql, py], backends=backends)
    m = _asset(assets, "m")
    assert asset_binding(m.op, m.key) == AssetBinding(sql.target, {"": "d"})
    ins = {i.name: i for i in m.node_def.input_defs}
    c1 = AssetBinding(up.target, {"": "d"}).source()
    c2 = AssetBinding(up2.target, {}).source()
    assert c1 == SourceBinding(up.ref, Backend.CLICKHOUSE, {"": "d"}, {"d": Date()})
    assert input_binding(ins["c1"].metadata) == InputBinding(
        SourceSpec("a.c1", ("id", "v", "d"), pred), streaming=False, relation=True,
        consumer_partition_columns={"": "d"}, upstream=c1)
    assert input_binding(ins["other"].metadata) == InputBinding(
        SourceSpec("a.c2"), relation=True, consumer_partition_columns={"": "d"}, upstream=c2)
    assert INPUT_METADATA in ins["other"].metadata
    p = _asset(assets, "p")
    (pin,) = p.node_def.input_defs
    assert input_binding(pin.metadata) == InputBinding(SourceSpec("a.c2"), streaming=True, relation=False, upstream=c2)
    assert m.keys_by_input_name["other"] == dg.AssetKey(["a", "c2"])
    # the Dagster-facing metadata of the table
    md = m.metadata_by_key[m.key]
    assert md["dagster/table_name"] == "a.m"
    assert m.partitions_def == daily and m.backfill_policy == dg.BackfillPolicy.single_run()
    assert set(m.specs_by_key[m.key].kinds) == {"clickhouse", "polars", "sql"}
    # the checks are their own definition right after the asset, so they can run alone
    checks = next(a for a in assets if isinstance(a, dg.AssetChecksDefinition) and m.key in {k.asset_key for k in a.check_keys})
    assert {k.name for k in checks.check_keys} == {"schema_matches_declaration"} and not list(m.check_specs)


def test_two_sets_of_assets_keep_their_own_specs(backends: dict[str, Any]) -> None:
    a = build_assets([T("s.t", columns=[C("id", "int64", False)])], backends=backends)[0]
    b = build_assets([T("s.t", "clickhouse", columns=[C("x", "string")], mode="overwrite")], backends=backends)[0]
    ta = asset_binding(a.op, a.key).target
    tb = asset_binding(b.op, b.key).target
    assert ta.column_names == ("id",) and ta.backend.value == "delta"
    assert tb.column_names == ("x",) and tb.backend.value == "clickhouse" and tb.mode.value == "overwrite"


# -- importing the API builds nothing ------------------------------------------------------------

def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=str(Path(__file__).parent.parent))
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.strip()


def test_importing_the_library_imports_no_project() -> None:
    """loom_assets is a library: importing it builds nothing, opens no store and imports no
    project (the sample platform is an example project of its own)."""
    out = _run(
        "import sys\n"
        "import loom_assets\n"
        "from loom_assets import Table\n"
        "print(sorted(m for m in sys.modules if m.startswith('sample_platform')), "
        "'chdb' in sys.modules, hasattr(loom_assets, 'defs'))\n"
    )
    assert out == "[] False False"


def test_the_sample_platform_is_a_code_location_of_its_own() -> None:
    out = _run(
        "import sys, dagster as dg\n"
        "from sample_platform.definitions import defs\n"
        "print(isinstance(defs, dg.Definitions), 'sample_platform.tables' in sys.modules)\n"
    )
    assert out == "True True"


def test_loading_a_code_location_does_not_import_pyarrow_or_deltalake() -> None:
    """PyArrow (and the NumPy it loads) cost ~0.1 s at every load, deltalake ~20-40 ms; the
    writers import them when data moves. Declared tables of both backends, SQL and Python bodies, checks and jobs are built and
    validated without it (plain dagster-polars assets bring it in through dagster-polars)."""
    out = _run(
        "import sys, dagster as dg, polars as pl\n"
        "from loom_assets import Table, build_definitions, not_null\n"
        "from loom_resources import ColumnSchema as C\n"
        "daily = dg.DailyPartitionsDefinition(start_date='2026-01-01')\n"
        "cols = [C('id', 'int64', False), C('day', 'date', False)]\n"
        "a = Table('s.a', backend='delta', columns=cols, mode='replace_partitions', partitions=daily,\n"
        "          partition_column='day', transform=lambda context: pl.LazyFrame(), checks=[not_null('id')])\n"
        "b = Table('s.b', backend='clickhouse', columns=cols, mode='overwrite', sources=['s.a'],\n"
        "          sql='SELECT id, day FROM a')\n"
        "dg.Definitions.validate_loadable(build_definitions([a, b]))\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'pyarrow', 'numpy', 'pandas', 'deltalake'}))\n"
    )
    assert out == "[]"


DATA_LIBRARIES = ("polars", "pyarrow", "numpy", "pandas", "deltalake", "clickhouse_connect", "chdb", "sqlglot")


def test_loading_a_code_location_imports_no_data_library(tmp_path: Path) -> None:
    """Loading reads no data, so it imports none of the data libraries (polars alone was ~0.3-0.5 s
    of every load): both backends, SQL and Python bodies, data checks, jobs, validated as the CLI
    does. sqlglot is imported only when a SQL body is new to the parse cache (the first load)."""
    code = (
        "import sys, dagster as dg\n"
        "from loom_assets import Table, build_definitions, not_null, unique\n"
        "from loom_resources import ColumnSchema as C\n"
        "def body(context):\n"
        "    import polars as pl\n"
        "    return pl.LazyFrame()\n"
        "daily = dg.DailyPartitionsDefinition(start_date='2026-01-01')\n"
        "cols = [C('id', 'int64', False), C('day', 'date', False), C('amount', 'decimal(18,2)')]\n"
        "a = Table('s.a', backend='delta', columns=cols, mode='replace_partitions', partitions=daily,\n"
        "          partition_column='day', transform=body, checks=[not_null('id'), unique('id')])\n"
        "b = Table('s.b', backend='clickhouse', columns=cols, mode='replace_partitions', partitions=daily,\n"
        "          partition_column='day', sources=['s.a'],\n"
        "          sql='SELECT id, day, amount FROM a WHERE day >= {{partition_start_date}}')\n"
        "c = Table('s.c', backend='delta', columns=cols, mode='merge', merge_keys=['id'], sources=['s.b'],\n"
        "          sql='SELECT id, day, amount FROM b')\n"
        "defs = build_definitions([a, b, c])\n"
        "dg.Definitions.validate_loadable(defs)\n"
        "from dagster._core.remote_representation.external_data import RepositorySnap\n"
        "RepositorySnap.from_def(defs.get_repository_def())\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({DATA_LIBRARIES!r})))\n"
    )
    env = {**os.environ, "LOOM_CACHE_DIR": str(tmp_path / "cache"), "LOOM_HOME": str(tmp_path / "home")}

    def load() -> str:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                             cwd=str(Path(__file__).parent.parent), env=env)
        assert out.returncode == 0, out.stderr[-3000:]
        return out.stdout.strip()

    assert load() == "['sqlglot']"  # the first load parses the SQL bodies
    assert load() == "[]"


def test_no_internals_in_the_metadata_the_ui_shows() -> None:
    """The asset page lists every definition metadata entry: no ``loom/binding`` JSON there."""
    from sample_platform.definitions import defs

    graph = defs.resolve_asset_graph()
    declared = [k for k in graph.get_all_asset_keys() if graph.get(k).is_materializable]
    assert len(declared) > 10
    for key in declared:
        shown = graph.get(key).metadata
        assert set(shown) <= {"dagster/column_schema", "dagster/table_name", "loom/partition_columns",
                              "dagster/column_lineage"}, (key, list(shown))
        assert not graph.get(key).assets_def.op.tags, key  # "Compute details" shows the op's tags
