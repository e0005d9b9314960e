"""Profile one Loom materialization end to end: where the time and the memory go.

``python -m bench.profile_asset CASE ROWS [--top N] [--memory]`` runs one case of
:mod:`bench.cases` (``loom_delta_eager``, ``loom_delta_streaming``, ``loom_ch_eager``,
``loom_range30``) in this process under ``cProfile`` (or, with ``--memory``, ``tracemalloc``)
in a fresh ``LOOM_HOME``, and prints:

- the wall time of the ``dagster.materialize()`` call;
- the top entries by cumulative time among Loom's own functions (``loom_resources``,
  ``loom_assets``): what our layer spends, the write included;
- the top entries by own time over everything (where the CPU actually goes);
- with ``--memory`` (instead of the time profile): the peak traced Python memory and the top
  allocation sites still held after the run (Arrow and
  Polars buffers are allocated outside Python's allocator, so the process RSS is measured by
  :mod:`bench.run_all`, not here).

The numbers under a profiler are inflated by its own cost; compare before/after runs of the same
command, not with the benchmark page.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import tempfile
import time
import tracemalloc
from typing import Any

OURS = ("loom_resources", "loom_assets")


def _ours(func: tuple[str, int, str]) -> bool:
    return any(f"/{p}/" in func[0] for p in OURS)


def top_entries(stats: pstats.Stats, *, key: str, only_ours: bool, n: int) -> list[tuple[float, float, int, str]]:
    """The top ``n`` functions by ``key`` ("cumulative" or "tottime"): (cumulative s, own s,
    calls, where)."""
    rows = []
    for func, (_cc, nc, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        if only_ours and not _ours(func):
            continue
        where = f"{os.path.relpath(func[0]) if func[0].startswith('/') else func[0]}:{func[1]}({func[2]})"
        rows.append((ct, tt, nc, where))
    rows.sort(key=lambda r: r[0] if key == "cumulative" else r[1], reverse=True)
    return rows[:n]


def _print_rows(title: str, rows: list[tuple[float, float, int, str]]) -> None:
    print(f"\n{title}")
    print(f"{'cum s':>8} {'own s':>8} {'calls':>7}  function")
    for ct, tt, nc, where in rows:
        print(f"{ct:8.3f} {tt:8.3f} {nc:7d}  {where}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("case", choices=["loom_delta_eager", "loom_delta_streaming", "loom_ch_eager", "loom_range30"])
    ap.add_argument("rows", type=int)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--memory", action="store_true", help="trace Python allocations instead of profiling time")
    args = ap.parse_args(argv)

    home = tempfile.mkdtemp(prefix="loom-profile-")
    os.environ["LOOM_HOME"] = home
    os.environ.pop("LOOM_CLICKHOUSE_URL", None)
    os.environ.pop("LOOM_DELTA_ROOT", None)

    import dagster as dg

    from bench import cases

    # capture the materialize() call of the case: the Loom helper's run() is what the clock times
    calls: list[Any] = []
    original = dg.materialize
    profiler = cProfile.Profile()

    def profiled(*a: Any, **kw: Any) -> Any:
        if args.memory:
            tracemalloc.start(25)
        t0 = time.perf_counter()
        if not args.memory:  # one tool at a time: each would count the other's allocations and time
            profiler.enable()
        try:
            return original(*a, **kw)
        finally:
            profiler.disable()
            calls.append(time.perf_counter() - t0)

    dg.materialize = profiled  # type: ignore[assignment]
    out = getattr(cases, args.case)(args.rows, home)
    if out.get("error"):
        print(f"case failed: {out['error']}", file=sys.stderr)
        return 1
    print(f"{args.case} rows={args.rows:,}: materialize() {', '.join(f'{c:.3f} s' for c in calls)} under the profiler;"
          f" case wall {out['seconds']:.3f} s")
    if not args.memory:
        stats = pstats.Stats(profiler, stream=io.StringIO())
        _print_rows("Loom's functions by cumulative time", top_entries(stats, key="cumulative", only_ours=True, n=args.top))
        _print_rows("All functions by own time", top_entries(stats, key="tottime", only_ours=False, n=args.top))
    else:
        snap = tracemalloc.take_snapshot()
        _cur, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(f"\ntraced Python memory peak: {peak / 2**20:.1f} MB; top allocation sites still held:")
        for st in snap.statistics("lineno")[: args.top]:
            print(f"{st.size / 2**20:8.2f} MB {st.count:7d} blocks  {st.traceback[0]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
