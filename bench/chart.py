"""``results.png``: throughput and peak RSS per case, Loom next to each alternative (matplotlib)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

COLORS = {"ours": "#1f6fb4", "raw": "#9a9a9a", "official": "#e08a1e", "dagster": "#c9c9c9"}
NAMES = {"ours": "Loom", "raw": "bare library / hand-written", "official": "official Dagster integration",
         "dagster": "empty materialization"}


def _short(label: str) -> str:
    return (label.replace("**", "").replace("`", "").replace("dagster-deltalake-polars", "dagster-deltalake-polars")
            .replace(" (Dagster's fixed cost)", "").replace("(DataFrame body, overwrite)", "(eager)")
            .replace("(LazyFrame body, streaming)", "(streaming)").replace("`make demo`, ", "make demo: ").replace("ClickhousePolarsIOManager ", ""))[:72]


def _n(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1e6:g}M"
    if n >= 1000:
        return f"{n / 1e3:g}k"
    return str(n)


def draw(summary: dict[str, dict[str, Any]], path: Path, *, title: str) -> None:
    """Three panels: rows/s and peak RSS (cases 1-5 and 7), code-location load seconds (case 6)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in summary.values() if r["case"]["group"] != "6 load time" and not r["case"]["name"].startswith("dagster_noop")]
    loads = [r for r in summary.values() if r["case"]["group"] == "6 load time"]
    labels: list[str] = []
    rates: list[float] = []
    rss: list[float] = []
    colors: list[str] = []
    failed: list[bool] = []
    groups: list[tuple[int, str]] = []
    last_group = None
    for r in rows:
        c = r["case"]
        if c["group"] != last_group:
            groups.append((len(labels), c["group"]))
            last_group = c["group"]
        size = f"{_n(c['rows'])}/day" if c["module"] == "demo" else _n(c["rows"])
        labels.append(f"{_short(c['label'])}  [{size}]")
        ok = r["status"] == "ok" and r["seconds"]
        rates.append((r["rows_per_s"] or 0) / 1e6 if ok else 0)
        rss.append(r["rss_mb"] or 0)
        colors.append(COLORS.get(c["impl"], "#777777"))
        failed.append(not ok)

    height = max(6.0, 0.32 * len(labels) + 2.5)
    fig = plt.figure(figsize=(17, height))
    grid = fig.add_gridspec(2, 2, width_ratios=[1.35, 1], height_ratios=[4, 1.2] if loads else [1, 0.001],
                            hspace=0.25, wspace=0.05)
    ax_rate = fig.add_subplot(grid[0, 0])
    ax_rss = fig.add_subplot(grid[0, 1], sharey=ax_rate)
    y = list(range(len(labels)))
    # log scale: the rates span four orders of magnitude (a filtered read of 1% of a table counts
    # the table's rows per second); on a linear axis every write's bar was a sliver
    lo = min([r for r in rates if r > 0] + [1.0]) / 3
    ax_rate.set_xscale("log")
    ax_rate.barh(y, [max(rt - lo, 0) for rt in rates], left=lo, color=colors,
                 edgecolor=["#b00000" if f else "none" for f in failed])
    for yi, f, rt in zip(y, failed, rates, strict=True):
        if f:
            ax_rate.text(lo, yi, "  fails (see RESULTS.md)", va="center", ha="left", fontsize=8, color="#b00000")
        else:
            ax_rate.text(rt, yi, f" {rt:.2f}M", va="center", ha="left", fontsize=7)
    ax_rss.barh(y, rss, color=colors)
    for yi, v in zip(y, rss, strict=True):
        ax_rss.text(v, yi, f" {v:.0f}", va="center", ha="left", fontsize=7)
    ax_rate.set_yticks(y, labels, fontsize=8)
    ax_rate.invert_yaxis()
    plt.setp(ax_rss.get_yticklabels(), visible=False)
    ax_rate.set_xlabel("throughput, million rows/s, log scale (higher is better)")
    ax_rss.set_xlabel("peak RSS of the process, MB (lower is better)")
    ax_rate.set_xlim(lo, max(rates + [1.0]) * 3)
    ax_rss.set_xlim(0, max(rss + [1]) * 1.15)
    for start, _ in groups[1:]:
        for ax in (ax_rate, ax_rss):
            ax.axhline(start - 0.5, color="#444444", lw=0.6)
    for start, name in groups:
        ax_rss.text(1.01, start - 0.4, name, transform=ax_rss.get_yaxis_transform(), fontsize=8, va="top",
                    color="#333333", weight="bold")
    for ax in (ax_rate, ax_rss):
        ax.grid(axis="x", alpha=0.3)
    handles = [plt.Rectangle((0, 0), 1, 1, color=COLORS[k]) for k in ("ours", "raw", "official")]
    ax_rate.legend(handles, [NAMES[k] for k in ("ours", "raw", "official")], loc="lower right", fontsize=8)
    ax_rate.set_title(title, loc="left", fontsize=11)

    if loads:
        ax_load = fig.add_subplot(grid[1, :])
        sizes = sorted({r["case"]["rows"] for r in loads})
        width = 0.38
        for i, impl in enumerate(("raw", "ours")):
            vals = []
            for n in sizes:
                key = f"{'load_cli_bare' if impl == 'raw' else 'load_cli_loom'}@{n}"
                vals.append(summary.get(key, {}).get("seconds") or 0)
            xs = [j + (i - 0.5) * width for j in range(len(sizes))]
            ax_load.bar(xs, vals, width, color=COLORS[impl], label="bare @asset" if impl == "raw" else "Loom declared tables")
            for x, v in zip(xs, vals, strict=True):
                ax_load.text(x, v, f"{v:.2f}s", ha="center", va="bottom", fontsize=8)
        ax_load.set_xticks(range(len(sizes)), [f"{n:,} tables" for n in sizes])
        ax_load.set_ylabel("dagster definitions validate, s")
        ax_load.set_title("code-location load time (lower is better)", loc="left", fontsize=10)
        ax_load.legend(fontsize=8)
        ax_load.grid(axis="y", alpha=0.3)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
