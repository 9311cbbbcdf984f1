"""Bar charts of a suite's results (matplotlib, Agg backend), written as PNG and SVG.

* ``bars_<metric>``: one chart per table column metric; x = datasets, one bar per model
  (mean over seeds, error bar = sample std), models coloured by group, ``ours`` hatched.
* ``overview_<dataset>``: x = metrics, one bar per model; a one-glance summary per dataset.
* one chart per ablation figure of the suite (e.g. GLTA's Figures 3 and 4): one panel per
  dataset, x = metrics, one bar per variant.

Models without results (missing, failed, not run) are left out of the bars and named in
a note under the chart.
"""

from pathlib import Path

from recbole_llm.benchmark.suite import TableSpec
from recbole_llm.benchmark.tables import collect


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


_GROUP_COLORS = ["#4C72B0", "#55A868", "#8172B2", "#CCB974", "#64B5CD", "#C44E52", "#DD8452", "#937860"]


def _row_colors(table):
    """One colour per row, shades of its group's base colour."""
    import matplotlib.colors as mcolors

    colors = {}
    for gi, (_, _, rows) in enumerate(table.groups):
        base = mcolors.to_rgb(_GROUP_COLORS[gi % len(_GROUP_COLORS)])
        for ri, r in enumerate(rows):
            f = 0.35 * ri / max(1, len(rows) - 1) if len(rows) > 1 else 0.0
            colors[r.label] = tuple(c + (1 - c) * f for c in base)
    return colors


def _save(fig, path_stem):
    path_stem = Path(path_stem)
    path_stem.parent.mkdir(parents=True, exist_ok=True)
    out = []
    for ext in ("png", "svg"):
        p = path_stem.with_suffix(f".{ext}")
        fig.savefig(p, dpi=150, bbox_inches="tight")
        out.append(p)
    return out


def _grouped_bars(ax, table, xs, rows, value_of, colors, xlabels, hatch_ours=True):
    import numpy as np

    n = max(1, len(rows))
    width = 0.8 / n
    x = np.arange(len(xs))
    for i, r in enumerate(rows):
        means, errs = [], []
        for xv in xs:
            cell = value_of(r, xv)
            means.append(cell.mean if cell is not None and cell.has_value else np.nan)
            errs.append(cell.std if cell is not None and cell.has_value and cell.n > 1 else 0.0)
        ax.bar(x - 0.4 + width * (i + 0.5), means, width, yerr=errs, capsize=3, label=r.label,
               color=colors.get(r.label), edgecolor="black", linewidth=0.5,
               hatch="//" if (r.ours and hatch_ours) else None)
    ax.set_xticks(x)
    ax.set_xticklabels(xlabels)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)


def _note_missing(table, ax):
    """Name the rows without results under the x axis; return the legend's y anchor."""
    import textwrap

    absent = [f"{r.label} ({r.status})" for r in table.rows if not any(c.has_value for c in r.cells.values())]
    if not absent:
        return -0.12
    ax.set_xlabel(textwrap.fill("No results: " + ", ".join(absent), 110), fontsize=7)
    return -0.22


def bar_chart(table, metric, path_stem, title=None):
    """x = datasets, bars = models, for one metric."""
    plt = _plt()
    rows = [r for r in table.rows if any(r.cells[(d, metric)].has_value for d, _ in table.datasets)]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 + 0.45 * len(rows) * len(table.datasets)), 3.4))
    _grouped_bars(ax, table, [d for d, _ in table.datasets], rows, lambda r, d: r.cells.get((d, metric)),
                  _row_colors(table), [lab for _, lab in table.datasets])
    ax.set_ylabel(table.metric_labels[metric])
    ax.set_title(title or f"{table.caption}: {table.metric_labels[metric]}", fontsize=10)
    y = _note_missing(table, ax)
    if rows:
        ax.legend(fontsize=7, ncol=min(4, len(rows)), loc="upper center", bbox_to_anchor=(0.5, y), frameon=False)
    paths = _save(fig, path_stem)
    plt.close(fig)
    return paths


def metrics_chart(table, datasets, path_stem, title=None, rows=None, ablation=False):
    """One panel per dataset: x = metrics, bars = rows (models, or ablation variants: then
    one distinct colour per variant)."""
    plt = _plt()
    rows = rows if rows is not None else [r for r in table.rows if any(c.has_value for c in r.cells.values())]
    nd = len(datasets)
    fig, axes = plt.subplots(1, nd, figsize=(max(4.5, 0.5 + 0.35 * len(rows) * len(table.metrics)) * nd, 3.4),
                             squeeze=False)
    if ablation:
        cmap = plt.get_cmap("tab10")
        colors = {r.label: cmap(i % 10) for i, r in enumerate(table.rows)}
    else:
        colors = _row_colors(table)
    for ax, (ds, lab) in zip(axes[0], datasets):
        _grouped_bars(ax, table, table.metrics, rows, lambda r, m, ds=ds: r.cells.get((ds, m)), colors,
                      [table.metric_labels[m] for m in table.metrics], hatch_ours=not ablation)
        if nd > 1 or not title:
            ax.set_title(lab, fontsize=10)
    axes[0][0].set_ylabel("test score (mean ± std over seeds)", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    y = _note_missing(table, axes[0][0])
    if rows:
        axes[0][0].legend(fontsize=7, ncol=min(5, len(rows)), loc="upper left", bbox_to_anchor=(0.0, y),
                          frameon=False)
    fig.tight_layout()
    paths = _save(fig, path_stem)
    plt.close(fig)
    return paths


def write_plots(plan, store, out_dir, tables=None):
    """Write every chart of the suite under ``out_dir/plots``; return the written paths."""
    plots = Path(out_dir) / "plots"
    suite = plan.suite
    main = None
    if tables:
        main = next((t for t in tables if t.kind == "main"), None)
    if main is None:
        main = collect(plan, store, suite.all_tables()[0] if suite.main_table else None)
    written = []
    for m in main.metrics:
        safe = m.replace("@", "_at_")
        written += bar_chart(main, m, plots / f"bars_{safe}")
    for ds, lab in main.datasets:
        title = suite.title if lab.lower() in suite.title.lower() or len(main.datasets) == 1 else f"{suite.title}: {lab}"
        written += metrics_chart(main, [(ds, lab)], plots / f"overview_{ds}", title=title)
    for fig in suite.figures:
        spec = TableSpec(name=fig.name, caption=fig.caption, kind="ablation", rows=fig.rows, columns=fig.columns,
                         datasets=fig.datasets)
        t = collect(plan, store, spec)
        written += metrics_chart(t, t.datasets, plots / fig.name, title=fig.caption or fig.name, ablation=True)
    return written
