"""Charts for the run report and for plugins' report sections (matplotlib, Agg backend).

Every function draws one figure from plain Python data, writes it as PNG at the path it is given and
returns that path, so a report can be rebuilt from a run directory alone. A report section passes one
of them to :meth:`counterfeed.core.report.Section.figure`. Colours: one per arm (stable across figures), the
simulator's true effect always in :data:`TRUTH_COLOR` with a diamond marker.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["arm_colors", "forest", "timeseries", "posterior_forest", "posterior_densities",
           "paths", "preload", "TRUTH_COLOR"]

TRUTH_COLOR = "#d9480f"
_PALETTE = ["#1c7ed6", "#2b8a3e", "#7048e8", "#c2255c", "#e67700", "#0b7285", "#5c940d", "#862e9c"]
_CONTROL_COLOR = "#495057"
_DPI = 110


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update({
        "font.size": 10, "axes.titlesize": 11, "axes.titleweight": "bold", "axes.labelsize": 10,
        "axes.spines.top": False, "axes.spines.right": False, "axes.edgecolor": "#868e96",
        "axes.grid": True, "grid.color": "#e9ecef", "grid.linewidth": 0.8, "axes.axisbelow": True,
        "legend.frameon": False, "font.family": "DejaVu Sans", "savefig.facecolor": "white",
    })
    return plt


def arm_colors(arms: Sequence[str], control: str | None) -> dict[str, str]:
    """A stable colour per arm; the control arm is dark grey."""
    colors, i = {}, 0
    for arm in arms:
        if arm == control:
            colors[arm] = _CONTROL_COLOR
        else:
            colors[arm] = _PALETTE[i % len(_PALETTE)]
            i += 1
    return colors


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def preload() -> None:
    """Import matplotlib, its Agg backend and the PNG writer, and load the font, so that processes
    forked from this one draw at once (:mod:`counterfeed.core._report_draw`)."""
    _plt()
    import matplotlib.backends.backend_agg  # noqa: F401 - imported by the first savefig otherwise
    import matplotlib.lines  # noqa: F401
    import matplotlib.patches  # noqa: F401
    import PIL.PngImagePlugin  # noqa: F401
    from matplotlib.font_manager import FontProperties, findfont, get_font

    get_font(findfont(FontProperties()))


def _save(fig, path: Path) -> Path:
    """Write ``fig`` as PNG at ``path`` and close it. Every figure is laid out by ``tight_layout``
    before: the layout engine that leaves behind is dropped, else ``savefig`` would lay the figure
    out again (and ``bbox_inches="tight"`` once more): one drawing instead of three."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.set_layout_engine(None)
    fig.savefig(path, dpi=_DPI)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def forest(path: Path, title: str, panels: list[tuple[str, list[dict[str, Any]]]],
           colors: dict[str, str], level: float | str) -> Path:
    """Forest plot: one panel per estimand, one row per estimate; ``level`` the intervals' level (a
    fraction, or the text of several levels, e.g. ``"80% and 95%"``).

    Each row is a dict with ``label``, ``arm``, ``point``, ``lower``, ``upper`` and ``truth`` (or
    None). The interval is a line in the arm's colour, the point a dot, the truth a diamond.
    """
    plt = _plt()
    from matplotlib.lines import Line2D

    labels = [[r["label"] for r in rows] for _, rows in panels]
    side = len(panels) > 1 and all(lab == labels[0] for lab in labels)  # same rows: panels side by side
    if side:
        fig, axes = plt.subplots(1, len(panels), figsize=(11, len(labels[0]) * 0.42 + 1.3), squeeze=False,
                                 sharey=True)
        axes = axes.T
    else:
        heights = [max(len(rows), 1) * 0.42 + 0.9 for _, rows in panels]
        fig, axes = plt.subplots(len(panels), 1, figsize=(9.5, sum(heights)),
                                 gridspec_kw={"height_ratios": heights}, squeeze=False)
    has_truth = False
    for ax, (estimand, rows) in zip(axes[:, 0], panels):
        n = len(rows)
        for i, r in enumerate(rows):
            y = n - 1 - i
            c = colors.get(r["arm"], _PALETTE[0])
            if _finite(r["lower"]) and _finite(r["upper"]):
                ax.plot([r["lower"], r["upper"]], [y, y], color=c, lw=2.6, solid_capstyle="round")
            if _finite(r["point"]):
                ax.plot(r["point"], y, "o", color=c, ms=7, mec="white", mew=1.2, zorder=3)
            if _finite(r.get("truth")):
                has_truth = True
                ax.plot(r["truth"], y, "D", color=TRUTH_COLOR, ms=8, mec="white", mew=1.0, zorder=4)
        ax.axvline(0, color="#adb5bd", lw=1, zorder=1)
        ax.set_yticks(range(n))
        ax.set_yticklabels([r["label"] for r in reversed(rows)])
        ax.set_ylim(-0.7, n - 0.3)
        ax.grid(axis="y", visible=False)
        ax.set_xlabel(f"effect ({estimand})")
        ax.tick_params(axis="y", length=0)
    handles = [Line2D([], [], color="#495057", lw=2.6, marker="o", mec="white",
                      label=f"estimate and {level if isinstance(level, str) else f'{level:.0%}'} interval")]
    if has_truth:
        handles.append(Line2D([], [], color=TRUTH_COLOR, lw=0, marker="D", ms=8, label="true effect"))
    axes[0, 0].legend(handles=handles, loc="lower left", bbox_to_anchor=(0, 1.0), ncol=2,
                      fontsize=9, borderaxespad=0.2)
    axes[0, 0].set_title(title, loc="left", pad=24)
    fig.tight_layout()
    return _save(fig, path)


def timeseries(path: Path, series: dict[str, dict[tuple[str, str], tuple[list[float], list[float]]]],
               arms: Sequence[str], colors: dict[str, str], pre_days: float) -> Path:
    """Small multiples, one panel per metric: each arm's daily value in the A/B world (solid) and in
    its counterfactual world ``all-<arm>`` (dashed). ``series[metric][(world_kind, arm)] = (days,
    values)`` with world_kind ``"ab"`` or ``"all"``. The pre-period is shaded."""
    plt = _plt()
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    metrics = list(series)
    ncol = 2 if len(metrics) > 1 else 1
    nrow = math.ceil(len(metrics) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(11 if ncol == 2 else 8, 3.0 * nrow + 0.6),
                             squeeze=False)
    for ax in axes.flat[len(metrics):]:
        ax.set_visible(False)
    for ax, metric in zip(axes.flat, metrics):
        for (kind, arm), (days, values) in series[metric].items():
            ax.plot(days, values, color=colors.get(arm, _PALETTE[0]), lw=1.9 if kind == "ab" else 1.4,
                    ls="-" if kind == "ab" else (0, (4, 2.5)), alpha=1.0 if kind == "ab" else 0.85)
        if pre_days > 0:
            ax.axvspan(-0.5, pre_days - 0.5, color="#f1f3f5", zorder=0)
        ax.set_title(metric, loc="left")
        ax.set_xlabel("day")
    handles = [Line2D([], [], color=colors.get(a, _PALETTE[0]), lw=2, label=a) for a in arms]
    handles += [Line2D([], [], color="#495057", lw=1.9, label="A/B world"),
                Line2D([], [], color="#495057", lw=1.4, ls=(0, (4, 2.5)), label="all-<arm> world")]
    if pre_days > 0:
        handles.append(Patch(color="#f1f3f5", label="pre-period"))
    fig.legend(handles=handles, loc="upper center", ncol=min(len(handles), 7), fontsize=9,
               bbox_to_anchor=(0.5, 1.0))
    _tight_below_band(fig, nrow, 0.45 / (3.0 * nrow + 0.6))
    return _save(fig, path)


def _tight_below_band(fig, nrow: int, band: float) -> None:
    """``fig.tight_layout(rect=(0, 0, 1, 1 - band))`` for a grid of ``nrow`` rows, measured once.

    With a ``rect``, matplotlib's tight layout measures every panel's decorations twice
    (``_tight_layout.get_tight_layout_figure``), the panels unmoved in between, so both passes
    measure the same extents; for a multi-panel figure that is about half its drawing time. Here it
    measures once (no ``rect``) and the band is taken from the top as its second pass would: the
    same left, right, bottom and ``wspace``, the top lowered by ``band`` (a fraction of the
    figure's height) and ``hspace`` (relative to the panels' height) rescaled so that the absolute
    gap between rows stays the one measured."""
    fig.tight_layout()
    sp = fig.subplotpars
    top = sp.top - band
    if nrow < 2:
        fig.subplots_adjust(top=top)
        return
    gap = sp.hspace * (sp.top - sp.bottom) / (nrow + sp.hspace * (nrow - 1))  # between rows, figure fraction
    fig.subplots_adjust(top=top, hspace=gap / ((top - sp.bottom - gap * (nrow - 1)) / nrow))


def posterior_forest(path: Path, title: str, rows: list[dict[str, Any]], level: float) -> Path:
    """Posterior mean and equal-tailed credible interval per scalar quantity (rows: ``label``,
    ``mean``, ``lower``, ``upper``)."""
    plt = _plt()
    n = len(rows)
    fig, ax = plt.subplots(figsize=(9.5, 0.38 * n + 1.3))
    for i, r in enumerate(rows):
        y = n - 1 - i
        ax.plot([r["lower"], r["upper"]], [y, y], color="#5f3dc4", lw=2.4, solid_capstyle="round")
        ax.plot(r["mean"], y, "o", color="#5f3dc4", ms=6, mec="white", mew=1.1, zorder=3)
    ax.axvline(0, color="#adb5bd", lw=1, zorder=1)
    ax.set_yticks(range(n))
    ax.set_yticklabels([r["label"] for r in reversed(rows)], fontfamily="DejaVu Sans Mono")
    ax.set_ylim(-0.7, n - 0.3)
    ax.grid(axis="y", visible=False)
    ax.tick_params(axis="y", length=0)
    ax.set_title(title, loc="left")
    ax.set_xlabel(f"posterior mean and {level:.0%} credible interval")
    fig.tight_layout()
    return _save(fig, path)


def posterior_densities(path: Path, quantities: list[dict[str, Any]], level: float) -> Path:
    """One density panel per defined quantity (``label``, ``draws``, ``truth``)."""
    plt = _plt()
    import numpy as np
    from matplotlib.lines import Line2D

    n = len(quantities)
    ncol = min(n, 3)
    nrow = math.ceil(n / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.6 * ncol + 0.8, 2.8 * nrow + 0.5), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    alpha = (1 - level) / 2
    any_truth = False
    for ax, q in zip(axes.flat, quantities):
        x = np.asarray(q["draws"], float)
        x = x[np.isfinite(x)]
        if x.size == 0:
            ax.set_title(q["label"], loc="left")
            continue
        lo, hi = np.quantile(x, [alpha, 1 - alpha])
        grid, dens = _density(x)
        ax.plot(grid, dens, color="#5f3dc4", lw=1.8)
        inside = (grid >= lo) & (grid <= hi)
        ax.fill_between(grid[inside], dens[inside], color="#5f3dc4", alpha=0.18, lw=0)
        ax.axvline(float(x.mean()), color="#5f3dc4", lw=1, ls=":")
        if _finite(q.get("truth")):
            any_truth = True
            ax.axvline(q["truth"], color=TRUTH_COLOR, lw=2)
            ax.plot(q["truth"], 0, "D", color=TRUTH_COLOR, ms=8, clip_on=False, zorder=4)
        ax.set_title(q["label"], loc="left")
        ax.set_yticks([])
        ax.grid(False)
        ax.spines["left"].set_visible(False)
    handles = [Line2D([], [], color="#5f3dc4", lw=6, alpha=0.3, label=f"{level:.0%} credible interval")]
    if any_truth:
        handles.append(Line2D([], [], color=TRUTH_COLOR, lw=2, marker="D", label="true effect"))
    fig.legend(handles=handles, loc="upper center", ncol=2, fontsize=9, bbox_to_anchor=(0.5, 1.0))
    _tight_below_band(fig, nrow, 0.4 / (2.8 * nrow + 0.5))
    return _save(fig, path)


def _density(x):
    import numpy as np

    lo, hi = np.quantile(x, [0.001, 0.999])
    pad = (hi - lo) * 0.15 or 1e-9
    grid = np.linspace(lo - pad, hi + pad, 256)
    if x.size > 2 and np.std(x) > 0:
        from scipy.stats import gaussian_kde

        return grid, gaussian_kde(x)(grid)
    dens = np.zeros_like(grid)
    dens[np.argmin(np.abs(grid - x.mean()))] = 1.0
    return grid, dens


def paths(path: Path, title: str, lines: list[dict[str, Any]], colors: dict[str, str],
          level: float) -> Path:
    """Estimate and interval over time: ``lines`` entries have ``label``, ``arm``, ``days``,
    ``point``, ``lower``, ``upper`` and ``truth``."""
    plt = _plt()
    import numpy as np
    from matplotlib.lines import Line2D

    fig, ax = plt.subplots(figsize=(9.5, 3.6))
    any_truth = False
    styles = ["-", "--", ":", "-."]
    for i, ln in enumerate(lines):
        c = colors.get(ln["arm"], _PALETTE[i % len(_PALETTE)])
        days = np.asarray(ln["days"], float)
        ax.fill_between(days, np.asarray(ln["lower"], float), np.asarray(ln["upper"], float),
                        color=c, alpha=0.13, lw=0)
        ax.plot(days, np.asarray(ln["point"], float), color=c, lw=1.9, ls=styles[i % 4],
                marker="o", ms=3, label=ln["label"])
        if _finite(ln.get("truth")):
            any_truth = True
            ax.axhline(ln["truth"], color=TRUTH_COLOR, lw=1.4, ls=(0, (6, 3)))
    ax.axhline(0, color="#adb5bd", lw=1)
    handles, _ = ax.get_legend_handles_labels()
    if any_truth:
        handles.append(Line2D([], [], color=TRUTH_COLOR, lw=1.4, ls=(0, (6, 3)), label="true effect"))
    ax.legend(handles=handles, fontsize=9, loc="best")
    ax.set_title(title, loc="left")
    ax.set_xlabel("day")
    ax.set_ylabel(f"estimate, {level:.0%} interval")
    fig.tight_layout()
    return _save(fig, path)
