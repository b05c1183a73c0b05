"""The report section of the population-level and long-term metrics (``counterfeed_report_sections``).

It shows, for every population-level metric, the true global effect from the counterfactual worlds
next to what a naive comparison of the A/B world's arm groups would claim (which no estimator
reports: the effect is not identified by a user split, see :mod:`counterfeed.core.longterm`), and
the trajectories over time of the long-term metrics in each world.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from counterfeed.core.hookspecs import hookimpl
from counterfeed.core.plan import POPULATION_NOTE

__all__ = ["population_rows", "draw_trajectories"]


def _fmt(v: Any) -> str:
    return "—" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:+.4g}"


def population_rows(effects: list[dict[str, Any]]) -> list[list[Any]]:
    """Table rows: metric, arm vs control, both worlds' values, true effect, naive A/B claim, its error."""
    rows = []
    for e in effects:
        rows.append([(e["metric"], "code"), f"{e['arm']} vs {e['control']}",
                     (_fmt(e["world_arm"]).lstrip("+"), "num"), (_fmt(e["world_control"]).lstrip("+"), "num"),
                     (_fmt(e["true_effect"]), "truth"), (_fmt(e["naive_ab_claim"]), "num"),
                     (_fmt(e["naive_error"]), "num")])
    return rows


def draw_trajectories(path: Path, series: Any, metrics: list[str]) -> None:
    """One panel per metric: its value per period in each counterfactual world (``all-<arm>``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(metrics), figsize=(3.3 * len(metrics), 2.8), squeeze=False)
    for ax, m in zip(axes[0], metrics):
        sel = series[(series["metric"] == m) & series["world"].astype(str).str.startswith("all-")]
        for world, g in sel.groupby("world", sort=True):
            g = g.sort_values("day")
            ax.plot(g["day"], g["value"], marker=".", label=str(world)[4:])
        ax.set_title(m, fontsize=9)
        ax.set_xlabel("day")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@hookimpl
def counterfeed_report_sections(result, report):
    """"Long-term and population-level metrics": truth vs naive A/B table and trajectories."""
    pop = (getattr(result, "manifest", None) or {}).get("population_metrics")
    if not pop or not pop.get("effects"):
        return
    sec = report.section("Long-term and population-level metrics")
    sec.paragraph(POPULATION_NOTE[1], kind="caution")
    sec.table(["Metric", "Arms", "World all-arm", "World all-control", "True global effect",
               "Naive A/B claim", "Naive error"], population_rows(pop["effects"]))
    ts = getattr(result, "timeseries", None)
    if ts is None or getattr(ts, "empty", True):
        return
    daily = {"sessions", "impressions", "clicks", "dwell", "ctr", "active"}
    metrics = [m for m in dict.fromkeys(ts["metric"]) if m not in daily]
    if metrics:
        sec.figure("long-term", "Long-term metrics per period (weekly from 4-week runs) in each counterfactual "
                   "world: where each policy takes the catalog and the users when it serves everyone.",
                   draw_trajectories, ts, metrics[:6])
