"""Figures of a calibration or a sweep (matplotlib, Agg backend, PNG)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from counterfeed.calibration.summary import repeated_in
from counterfeed.core.display import estimator_label

__all__ = ["coverage_figure", "estimate_vs_truth_figure", "power_figure"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _label(row: pd.Series, keys: list[str], repeated: set[str] = frozenset()) -> str:
    """The values of ``keys`` in ``row`` joined by " · " (missing ones left out); the estimator names its
    analysis entry when it is among ``repeated`` (core.display.estimator_label)."""
    parts = [estimator_label(row[k], row.get("analysis"), repeated) if k == "estimator" else str(row[k])
             for k in keys if k in row and row[k] is not None and not (isinstance(row[k], float) and math.isnan(row[k]))]
    return " · ".join(parts)


def coverage_figure(summary: pd.DataFrame, path: Path) -> Path:
    """Coverage of the true effect with its Wilson interval, one row per estimate; nominal level marked."""
    plt = _pyplot()
    rows = summary[summary["coverage"].notna()].reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(8, max(2.5, 0.32 * len(rows) + 1.2)))
    if len(rows):
        y = np.arange(len(rows))[::-1]
        cov = rows["coverage"].to_numpy(float)
        err = np.clip(np.vstack([cov - rows["coverage_lower"].to_numpy(float),
                         rows["coverage_upper"].to_numpy(float) - cov]), 0, None)
        ax.errorbar(cov, y, xerr=err, fmt="o", color="tab:blue", capsize=3, label="coverage (95% Wilson)")
        for level in sorted(rows["level"].dropna().unique()):
            ax.axvline(level, color="tab:red", ls="--", lw=1, label=f"nominal {level:.0%}")
        ax.set_yticks(y)
        repeated = repeated_in(rows)
        ax.set_yticklabels([_label(r, ["estimator", "metric", "arm", "estimand", "segment"], repeated)
                            for _, r in rows.iterrows()], fontsize=8)
        lo = min(float(rows["coverage_lower"].min()), float(rows["level"].min())) - 0.02
        ax.set_xlim(max(0.0, lo), 1.005)
        ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=2, fontsize=8, frameon=False)
    else:
        ax.text(0.5, 0.5, "no estimate has a known truth", ha="center", va="center")
        ax.set_yticks([])
    ax.set_xlabel("coverage of the true effect")
    entries = 1 + (len(rows["level"].dropna().unique()) if len(rows) else 0)  # the legend above the axes
    ax.set_title("Interval coverage over replications", pad=10 + 12 * math.ceil(entries / 2))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def estimate_vs_truth_figure(frame: pd.DataFrame, path: Path, max_panels: int = 12) -> Path:
    """Scatter of each replication's estimate against its true effect, one panel per metric/estimand."""
    plt = _pyplot()
    data = frame[frame["truth"].notna() & frame["point"].notna()]
    panels = list(data.groupby(["metric", "arm", "estimand"], sort=True).groups)[:max_panels]
    repeated = repeated_in(frame)
    fig, axes = _panel_grid(plt, len(panels), 4.2)
    if not panels:
        axes[0, 0].text(0.5, 0.5, "no estimate has a known truth", ha="center", va="center")
    for ax, (metric, arm, estimand) in zip(axes.flat, panels):
        d = data[(data["metric"] == metric) & (data["arm"] == arm) & (data["estimand"] == estimand)]
        for (est, entry), g in d.groupby(["estimator", "analysis"], sort=True, dropna=False):
            ax.scatter(g["truth"], g["point"], s=8, alpha=0.5, label=estimator_label(est, entry, repeated))
        lo = float(min(d["truth"].min(), d["point"].min()))
        hi = float(max(d["truth"].max(), d["point"].max()))
        ax.plot([lo, hi], [lo, hi], color="black", lw=0.8, ls="--")
        ax.set_title(f"{metric} · {arm} · {estimand}", fontsize=9)
        ax.set_xlabel("true effect")
        ax.set_ylabel("estimate")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _panel_grid(plt, n_panels: int, width: float):
    """A figure with up to 3 panels a row for ``n_panels`` panels (at least one); unused axes hidden."""
    n = max(1, n_panels)
    cols = min(3, n)
    nrows = math.ceil(n / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(width * cols, 3.6 * nrows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, axes


def power_figure(summary: pd.DataFrame, fields: list[str], path: Path, max_panels: int = 12) -> Path:
    """Power (rejection rate) against the first varied field, one line per estimator/arm/other fields; grey
    dotted: 80% power; red dotted: each level's test size, 1 - level (an 80% entry rejects at 20%)."""
    plt = _pyplot()
    x_field, others = fields[0], fields[1:]
    panels = list(summary.groupby(["metric", "estimand"], sort=True).groups)[:max_panels]
    fig, axes = _panel_grid(plt, len(panels), 4.4)
    xs = list(dict.fromkeys(summary[x_field])) if len(summary) else []
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in xs)
    repeated = repeated_in(summary)  # as the table names them: over the whole summary, not per panel
    for ax, (metric, estimand) in zip(axes.flat, panels):
        d = summary[(summary["metric"] == metric) & (summary["estimand"] == estimand)]
        for key, g in d.groupby(["estimator", "analysis", "arm", *others], sort=True, dropna=False):
            key = (estimator_label(key[0], key[1], repeated), *key[2:])
            g = g.sort_values(x_field) if numeric else g
            x = g[x_field].to_numpy(float) if numeric else [xs.index(v) for v in g[x_field]]
            y = g["rejection_rate"].to_numpy(float)
            yerr = np.clip(np.vstack([y - g["rejection_lower"].to_numpy(float),
                                      g["rejection_upper"].to_numpy(float) - y]), 0, None)
            label = " · ".join(str(k) for k in key) if others else f"{key[0]} · {key[1]}"
            ax.errorbar(x, y, yerr=yerr, marker="o", capsize=2, label=label)
        ax.axhline(0.8, color="grey", ls=":", lw=1)
        for level in sorted(set(d["level"].dropna())) or [0.95]:  # each entry's test size: 1 - its level
            ax.axhline(1.0 - float(level), color="tab:red", ls=":", lw=1)
        if numeric and len(xs) > 2 and min(xs) > 0 and max(xs) / min(xs) >= 10:
            ax.set_xscale("log")
        if not numeric:
            ax.set_xticks(range(len(xs)))
            ax.set_xticklabels([str(v) for v in xs], fontsize=8)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel(x_field)
        ax.set_ylabel("power (rejection rate)")
        ax.set_title(f"{metric} · {estimand}", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
