"""What ``make bench`` runs: the cases of each group at each size (``sizes``, ``plan``) and the
records of a case and of one of its processes (``Case``, ``Run``). :mod:`bench.run_all` runs them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Case:
    """One benchmarked path at one size."""

    group: str  # which of the cases it belongs to
    key: str  # unique id in this run
    label: str  # what is measured, for the tables
    impl: str  # ours | raw | official | dagster
    module: str  # bench.cases | bench.official | demo
    name: str  # case function (or rows per day for the demo)
    rows: int  # N written (tables for load cases)
    env: dict[str, str] = field(default_factory=dict)
    shared: str | None = None  # set-up case whose ClickHouse path this case reads


@dataclass
class Run:
    """One process of one case."""

    key: str
    round: int
    status: str  # ok | failed (the integration failed: a result) | error (the benchmark broke)
    seconds: float | None
    wall_s: float
    rss_mb: float
    exit_code: int
    error: str | None = None
    read_back: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


# -- plan ------------------------------------------------------------------------------------------


def sizes(mode: str) -> dict[str, Any]:
    div = {"full": 1, "quick": 10, "tiny": 1000}[mode]
    return {
        "eager": 8_000_000 // div,
        "stream": (5_000_000 // div, 20_000_000 // div),
        "ch": 8_000_000 // div,
        "rowwise": 2_000_000 // div,
        "copy": (10_000_000 // div, 40_000_000 // div, 100_000_000 // div),
        "part": 2_000_000 // div,
        # -- load (issue 27): tables per code location; quick/tiny keep one size, whose cost is mostly
        # fixed (start-up, Dagster)
        "load": {"full": (20, 200, 1000), "quick": (200,), "tiny": (20,)}[mode],
        # quick leaves out `make demo` (about 20 s whatever the size: that is what `make demo` is for)
        "demo": {"full": (100_000, 1_000_000), "quick": (), "tiny": (200,)}[mode],
        # -- merge (issue 27): the Delta merge target's rows (the change set is 1/20 of it)
        "merge": 20_000_000 // div,
        # -- ClickHouse merge (issue 27): the merge target's rows (the change set is 1/20 of it)
        "chmerge": 20_000_000 // div,
        # -- files (issue 27)
        "files": 8_000_000 // div,
        "files_copy": 10_000_000 // div,  # one of the "copy" sizes: its ch_source set-up is shared
    }


def plan(mode: str, official: bool) -> tuple[list[Case], list[Case]]:
    """(set-up cases run once before the rounds, cases run every round)."""
    s = sizes(mode)
    cases: list[Case] = []
    setup: list[Case] = []

    def add(group: str, label: str, impl: str, module: str, name: str, rows: int, **kw: Any) -> None:
        if impl == "official" and not official:
            return
        cases.append(Case(group, f"{name}@{rows}", label, impl, module, name, rows, **kw))

    n = s["eager"]
    add("1 Delta eager", "bare polars `DataFrame.write_delta`", "raw", "bench.cases", "raw_write_delta", n)
    add("1 Delta eager", "empty `dagster.materialize` (Dagster's fixed cost per run)", "dagster", "bench.cases", "dagster_noop", 0)
    add("1 Delta eager", "empty `dagster.materialize`, 2nd in the process (reference)", "dagster", "bench.cases",
        "dagster_noop_warm", 0)
    add("1 Delta eager", "**Loom** Delta table (DataFrame body, overwrite)", "ours", "bench.cases", "loom_delta_eager", n)
    add("1 Delta eager", "dagster-deltalake-polars `DeltaLakePolarsIOManager`", "official", "bench.official", "ddp_eager", n)
    add("1 Delta eager", "dagster-polars `PolarsDeltaIOManager`", "official", "bench.official", "polars_delta_eager", n)
    for n in s["stream"]:
        add("2 Delta streaming", "bare polars `LazyFrame.sink_delta`", "raw", "bench.cases", "raw_sink_delta", n)
        add("2 Delta streaming", "**Loom** Delta table (LazyFrame body, streaming)", "ours", "bench.cases", "loom_delta_streaming", n)
    n = s["ch"]
    add("3 ClickHouse write", "bare clickhouse-connect `insert_arrow`, 500k batches", "raw", "bench.cases", "raw_ch_insert", n)
    add("3 ClickHouse write", "**Loom** ClickHouse table (DataFrame body, overwrite)", "ours", "bench.cases", "loom_ch_eager", n)
    n = s["rowwise"]
    add("3 ClickHouse write", "**Loom** ClickHouse table (DataFrame body, overwrite)", "ours", "bench.cases", "loom_ch_eager", n)
    add("3 ClickHouse write", "dagster-clickhouse-polars `ClickhousePolarsIOManager` (row-wise; transport shimmed)",
        "official", "bench.official", "ch_rowwise", n)
    for n in s["copy"]:
        src = Case("4 ClickHouse to Delta", f"ch_source@{n}", "source table made by SQL (set-up)", "setup",
                   "bench.cases", "ch_source", n)
        setup.append(src)
        add("4 ClickHouse to Delta", "hand-written `query_arrow_stream` -> IPC -> `sink_delta`", "raw", "bench.cases",
            "raw_copy", n, shared=src.key)
        add("4 ClickHouse to Delta", "**Loom** two declared tables, streaming source", "ours", "bench.cases", "loom_copy", n,
            shared=src.key)
    n = s["part"]
    add("5 30-day range", "bare polars `write_delta(partition_by=day)`, new table", "raw", "bench.cases", "raw_partitioned", n)
    add("5 30-day range", "**Loom** one run over the range, existing table", "ours", "bench.cases", "loom_range30", n)
    add("5 30-day range", "**Loom** 30 single-partition runs", "ours", "bench.cases", "loom_30runs", n)
    add("5 30-day range", "dagster-deltalake-polars one run over the range, new table", "official", "bench.official",
        "ddp_range_new", n)
    add("5 30-day range", "dagster-deltalake-polars one run over the range, existing table", "official", "bench.official",
        "ddp_range_existing", n)
    add("5 30-day range", "dagster-deltalake-polars 30 single-partition runs", "official", "bench.official", "ddp_30runs", n)
    add("5 30-day range", "dagster-polars `PolarsDeltaIOManager` one run over the range", "official", "bench.official",
        "polars_delta_range", n)
    # -- load (issue 27): `dagster definitions validate` as a user runs it, bare then Loom back to back
    # in every round (one paired ratio per round; bench/cases_load.py)
    for n in s["load"]:
        add("6 load time", "bare `@asset`s, same graph: `dagster definitions validate`", "raw", "bench.cases_load",
            "load_cli_bare", n)
        add("6 load time", "**Loom** declared tables: `dagster definitions validate`", "ours", "bench.cases_load",
            "load_cli_loom", n)
    for n in s["demo"]:
        add("7 make demo", f"`make demo`, {n:,} orders/day", "ours", "demo", str(n), n)
    # -- merge (issue 27)
    n = s["merge"]
    tgt = Case("8 Delta merge", f"merge_targets@{n}", "merge targets written by Loom (set-up)", "setup",
               "bench.cases_merge", "merge_targets", n)
    setup.append(tgt)
    for kind, what in (("clustered", "clustered changes (recent ids), unpartitioned"),
                       ("random", "random keys, unpartitioned"), ("partitioned", "3 of 30 days, partitioned by day")):
        add("8 Delta merge", f"raw `DeltaTable.merge`, {what}", "raw", "bench.cases_merge", f"raw_merge_{kind}", n,
            shared=tgt.key)
        add("8 Delta merge", f"**Loom** `merge` mode, {what}", "ours", "bench.cases_merge", f"loom_merge_{kind}", n,
            shared=tgt.key)
    if mode != "tiny":  # a reference row, not a path of Loom's: the test suite's tiny run leaves it out
        add("8 Delta merge", "raw `DeltaTable.merge(streamed_exec=False)`, clustered (reference)", "raw",
            "bench.cases_merge", "raw_merge_clustered_nostream", n, shared=tgt.key)
    add("8 Delta merge", "**Loom** `history` (SCD2, change log), clustered changes", "ours", "bench.cases_merge",
        "loom_history_scd2", n, shared=tgt.key)
    # -- ClickHouse merge (issue 27)
    n = s["chmerge"]
    stores: dict[str, str] = {}
    for impl in ("raw", "loom"):
        for layout in ("flat", "daily"):
            st = Case("9 ClickHouse merge", f"chmerge_setup_{impl}_{layout}@{n}", f"{impl} {layout} merge target (set-up)",
                      "setup", "bench.cases_chmerge", f"chmerge_setup_{impl}_{layout}", n)
            setup.append(st)
            stores[f"{impl}_{layout}"] = st.key
    for kind, layout, what in (("clustered", "flat", "clustered changes (recent ids), unpartitioned"),
                               ("random", "flat", "random keys, unpartitioned"),
                               ("partitioned", "daily", "3 of 30 days, partitioned by day")):
        add("9 ClickHouse merge", f"raw `INSERT ... SELECT` + `REPLACE PARTITION`, {what}", "raw", "bench.cases_chmerge",
            f"raw_chmerge_{kind}", n, shared=stores[f"raw_{layout}"])
        add("9 ClickHouse merge", f"**Loom** `merge` mode, {what}", "ours", "bench.cases_chmerge", f"loom_chmerge_{kind}", n,
            shared=stores[f"loom_{layout}"])
    # -- files (issue 27)
    n = s["files"]
    add("10 file layout", "bare deltalake `write_deltalake` (delta-rs' writer), new table", "raw", "bench.cases_files",
        "files_raw", n)
    add("10 file layout", "**Loom** Delta table (DataFrame body, overwrite): Polars-encoded files", "ours",
        "bench.cases_files", "files_loom", n)
    add("10 file layout", "filtered read (polars `scan_delta`), **Loom**'s table (both tables read, alternating)", "ours",
        "bench.cases_files", "files_reads", n)
    n = s["files_copy"]
    src_key = f"ch_source@{n}"
    assert any(c.key == src_key for c in setup), src_key
    add("10 file layout", "ClickHouse -> Delta: the engine's Arrow batches into `write_deltalake`", "raw",
        "bench.cases_files", "files_copy_raw", n, shared=src_key)
    add("10 file layout", "ClickHouse -> Delta: **Loom** two declared tables, streaming source", "ours",
        "bench.cases_files", "files_copy_loom", n, shared=src_key)
    return setup, cases
