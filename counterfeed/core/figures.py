"""Charts for the run report and for plugins' report sections.

The run report's own figures, one forest plot per metric and the time series, are drawn with Pillow
(:mod:`counterfeed.core._raster`: a fifth of a quickstart run's CPU went to drawing them with
matplotlib); the others (posteriors, paths) with matplotlib's Agg backend.

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
           "paths", "TRUTH_COLOR"]

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


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=_DPI, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def forest(path: Path, title: str, panels: list[tuple[str, list[dict[str, Any]]]],
           colors: dict[str, str], level: float) -> Path:
    """Forest plot: one panel per estimand, one row per estimate.

    Each row is a dict with ``label``, ``arm``, ``point``, ``lower``, ``upper`` and ``truth`` (or
    None). The interval is a line in the arm's colour, the point a dot, the truth a diamond. Panels
    with the same rows sit side by side and share the row labels; otherwise they are stacked.
    Drawn with Pillow (:mod:`counterfeed.core._raster`), not matplotlib.
    """
    from counterfeed.core._raster import Axes, Canvas, limits, pt

    f10, f9, row_h = pt(10), pt(9), 0.42 * _DPI
    labels = [[r["label"] for r in rows] for _, rows in panels]
    side = len(panels) > 1 and all(lab == labels[0] for lab in labels)
    probe = Canvas(1, 1)
    label_w = max([probe.text_width(str(lab), f10) for labs in labels for lab in labs] + [0.0])
    left, gap, under = 12 + label_w + 10, 30, 50  # under an axes: tick labels and the x label
    has_truth = any(_finite(r.get("truth")) for _, rows in panels for r in rows)
    top = 12 + pt(11) + 10 + pt(9) + 14  # title, legend
    if side:
        n = max(len(labels[0]), 1)
        width, height = 11 * _DPI, top + n * row_h + 10 + under
        w = (width - left - 20 - gap * (len(panels) - 1)) / len(panels)
        boxes = [(left + i * (w + gap), top, left + i * (w + gap) + w, top + n * row_h + 10)
                 for i in range(len(panels))]
    else:
        width, y, boxes = 9.5 * _DPI, top, []
        for _, rows in panels:
            h = max(len(rows), 1) * row_h + 10
            boxes.append((left, y, width - 20, y + h))
            y += h + under + 16
        height = y - 16
    c = Canvas(width, height)
    for i, ((estimand, rows), box) in enumerate(zip(panels, boxes)):
        n = len(rows)
        vals = [0.0] + [r[k] for r in rows for k in ("lower", "upper", "point", "truth") if _finite(r.get(k))]
        ax = Axes(c, box, limits(vals), (-0.7, max(n, 1) - 0.3))
        ax.frame(yticks=False)
        zero = ax.x(0.0)
        c.line([(zero, box[1]), (zero, box[3])], "#adb5bd", 1)
        for j, r in enumerate(rows):
            yy = ax.y(n - 1 - j)
            col = colors.get(r["arm"], _PALETTE[0])
            if not side or i == 0:
                c.text(box[0] - 8, yy, str(r["label"]), f10, anchor="rm")
            if _finite(r["lower"]) and _finite(r["upper"]):
                c.line([(ax.x(r["lower"]), yy), (ax.x(r["upper"]), yy)], col, pt(2.6), round_caps=True)
            if _finite(r["point"]):
                c.marker(ax.x(r["point"]), yy, "o", col, pt(7), edge_width=pt(1.2))
            if _finite(r.get("truth")):
                c.marker(ax.x(r["truth"]), yy, "D", TRUTH_COLOR, pt(8), edge_width=pt(1.0))
        c.text((box[0] + box[2]) / 2, box[3] + 28, f"effect ({estimand})", f10, anchor="ma")
    x0, ly = boxes[0][0], 12 + pt(11) + 10 + pt(9) / 2
    c.text(x0, 12, title, pt(11), bold=True)
    c.line([(x0 + 4, ly), (x0 + 30, ly)], "#495057", pt(2.6), round_caps=True)
    c.marker(x0 + 17, ly, "o", "#495057", pt(6))
    c.text(x0 + 40, ly, f"estimate and {level:.0%} interval", f9, anchor="lm")
    if has_truth:
        x1 = x0 + 40 + c.text_width(f"estimate and {level:.0%} interval", f9) + 36
        c.marker(x1, ly, "D", TRUTH_COLOR, pt(8))
        c.text(x1 + 18, ly, "true effect", f9, anchor="lm")
    return c.save(path)


def timeseries(path: Path, series: dict[str, dict[tuple[str, str], tuple[list[float], list[float]]]],
               arms: Sequence[str], colors: dict[str, str], pre_days: float) -> Path:
    """Small multiples, one panel per metric: each arm's daily value in the A/B world (solid) and in
    its counterfactual world ``all-<arm>`` (dashed). ``series[metric][(world_kind, arm)] = (days,
    values)`` with world_kind ``"ab"`` or ``"all"``. The pre-period is shaded. Drawn with Pillow
    (:mod:`counterfeed.core._raster`), not matplotlib."""
    from counterfeed.core._raster import Axes, Canvas, limits, pt

    metrics = list(series)
    ncol = 2 if len(metrics) > 1 else 1
    nrow = math.ceil(len(metrics) / ncol)
    width, cell_h, top = (11 if ncol == 2 else 8) * _DPI, 3.0 * _DPI, 46
    c = Canvas(width, top + nrow * cell_h)
    cell_w = (width - 10) / ncol
    dash = (4 * pt(1.4), 2.5 * pt(1.4))
    for k, metric in enumerate(metrics):
        x0, y0 = 10 + (k % ncol) * cell_w, top + (k // ncol) * cell_h
        curves = series[metric].items()
        xs = [d for (_, (days, _)) in curves for d in days]
        ys = [v for (_, (_, values)) in curves for v in values]
        xlim = limits(xs + ([-0.5, pre_days - 0.5] if pre_days > 0 else []))
        box = (x0 + 62, y0 + 32, x0 + cell_w - 24, y0 + cell_h - 52)
        ax = Axes(c, box, xlim, limits(ys))
        if pre_days > 0:
            c.rect(ax.x(max(-0.5, xlim[0])), box[1], ax.x(min(pre_days - 0.5, xlim[1])), box[3], "#f1f3f5")
        ax.frame()
        for (kind, arm), (days, values) in curves:
            col = colors.get(arm, _PALETTE[0])
            if kind == "ab":
                ax.polyline(days, values, col, pt(1.9))
            else:
                ax.polyline(days, values, _blend(col, 0.85), pt(1.4), dash)
        c.text(box[0], box[1] - 6, metric, pt(11), bold=True, anchor="ls")
        c.text((box[0] + box[2]) / 2, box[3] + 26, "day", pt(10), anchor="ma")
    entries = [(a, colors.get(a, _PALETTE[0]), pt(2), None) for a in arms]
    entries += [("A/B world", "#495057", pt(1.9), None), ("all-<arm> world", "#495057", pt(1.4), dash)]
    if pre_days > 0:
        entries.append(("pre-period", None, 0, None))
    f9 = pt(9)
    widths = [36 + c.text_width(lab, f9) + 24 for lab, *_ in entries]
    x, y = (width - sum(widths)) / 2, 22
    for (lab, col, lw, ds), w in zip(entries, widths):
        if col is None:
            c.rect(x, y - 6, x + 28, y + 6, "#f1f3f5")
        else:
            c.line([(x, y), (x + 28, y)], col, lw, ds)
        c.text(x + 36, y, lab, f9, anchor="lm")
        x += w
    return c.save(path)


def _blend(color: str, alpha: float) -> str:
    """``color`` at opacity ``alpha`` over white, as an opaque hex colour."""
    rgb = [int(color[i:i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(255 - alpha * (255 - v)):02x}" for v in rgb)


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
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.4 / (2.8 * nrow + 0.5)))
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
