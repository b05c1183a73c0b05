"""The report section "Heterogeneous effects (CATE)": per-user scores, uplift curves and decile
calibration of the CATE estimators, read from the run directory's ``cate_scores.json`` and
``cate_curves.parquet`` (written by :mod:`counterfeed.analysis.cate_scores`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from counterfeed.analysis.cate_scores import CURVES_FILE, SCORES_FILE
from counterfeed.core.display import fmt
from counterfeed.core.figures import TRUTH_COLOR

__all__ = ["cate_section", "uplift_figure", "calibration_figure"]

_COLORS = ["#1c7ed6", "#2b8a3e", "#7048e8", "#c2255c", "#e67700", "#0b7285"]


def _fmt(v: Any) -> str:
    """4 significant digits (:func:`counterfeed.core.display.fmt`: a table never rounds 1.0365 to 1)."""
    return "n/a" if v is None else fmt(v)


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(plt: Any, fig: Any, ax: Any, path: Path, title: str, xlabel: str, ylabel: str) -> Path:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def uplift_figure(path: Path, title: str, curves: list[tuple[str, Any]]) -> Path:
    """Average gain per user vs the fraction treated (top by predicted effect): per estimator its true
    curve (solid) and the one estimated from the experiment (dashed); the oracle and random curves."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    first = curves[0][1]
    ax.plot(first["q"], first["oracle"], color=TRUTH_COLOR, lw=2, label="oracle (ranked by true effect)")
    ax.plot(first["q"], first["random"], color="#868e96", ls=":", label="random ranking")
    for i, (name, c) in enumerate(curves):
        col = _COLORS[i % len(_COLORS)]
        ax.plot(c["q"], c["true"], color=col, lw=1.6, label=f"{name}: true")
        ax.plot(c["q"], c["estimated"], color=col, lw=1, ls="--", label=f"{name}: estimated from the A/B data")
    return _save(plt, fig, ax, path, title, "fraction of users treated (highest predicted effect first)",
                 "average gain per user")


def calibration_figure(path: Path, title: str, rows: list[dict[str, Any]]) -> Path:
    """Per estimator: the mean true effect per decile of predicted effect against the mean predicted
    effect, with +-2 standard errors; the diagonal is perfect calibration."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.6, 4.2))
    lo, hi = float("inf"), float("-inf")
    for i, r in enumerate(rows):
        d = r["deciles"]
        x = [q["predicted"] for q in d]
        y = [q["true"] for q in d]
        err = [2 * (q["true_se"] or 0.0) for q in d]
        ax.errorbar(x, y, yerr=err, marker="o", ms=3, lw=1, capsize=2, color=_COLORS[i % len(_COLORS)],
                    label=r["estimator"])
        lo, hi = min(lo, *x, *y), max(hi, *x, *y)
    if lo < hi:
        ax.plot([lo, hi], [lo, hi], color="#868e96", ls=":", label="calibrated")
    return _save(plt, fig, ax, path, title, "mean predicted effect (decile)", "mean true effect (+-2 se)")


def _individual_table(sec: Any, rows: list[dict[str, Any]]) -> None:
    """The individual effect intervals' coverage, with each mode's stated assumption."""
    from counterfeed.analysis.cate_conformal import ASSUMPTION_CONFORMAL
    from counterfeed.analysis.cate_individual import ASSUMPTION, ASSUMPTION_BOUNDS

    ite = [r for r in rows if r.get("ite_coverage") is not None]
    if not ite:
        return
    sec.paragraph("Individual effect intervals (individual_intervals): intervals for each user's own effect. "
                  "conformal: the user's own outcome minus a conformal interval for their outcome in the other "
                  "arm (Lei & Candes 2021); it covers the realised effect by randomization alone; for the "
                  f"expected effect, {ASSUMPTION_CONFORMAL}. covariates and posterior: {ASSUMPTION}. bounds: "
                  f"{ASSUMPTION_BOUNDS}. Coverage is of the true conditional effect: raw against the truth's "
                  "noise replications; judged: the interval widened by the truth's Monte Carlo error against "
                  "it (coverage_mc; the raw figure when the truth has no such error), the figure held against "
                  "the level; deconvolved: under a normal model of the interval's errors (misleading when they "
                  "differ by arm); treated and control: the judged figure by arm, where a conformal interval's "
                  "assumption failing shows; realised: of this world's realised effect (docs/heterogeneity.md).")
    sec.table(["estimator", "metric", "arm", "coverage", "judged", "deconvolved", "treated", "control", "realised",
               "mean width"],
              [[r["estimator"], r["metric"], r["arm"], (_fmt(r.get("ite_coverage")), "num"),
                (_fmt(r.get("ite_coverage_judged")), "num"), (_fmt(r.get("ite_coverage_deconvolved")), "num"),
                (_fmt(r.get("ite_coverage_treated")), "num"), (_fmt(r.get("ite_coverage_control")), "num"),
                (_fmt(r.get("ite_coverage_realised")), "num"), (_fmt(r.get("ite_interval_width")), "num")]
               for r in ite])
    for r in ite:  # scored against the truth: say when the coverage misses what the level should give
        level = float(r.get("level") or 0.95)
        lo_band, hi_band = level - 0.05, min(level + 0.02, 1.0)
        on = r.get("ite_judged_on") or "raw"  # scores written before the judged figure: the raw one
        c = r.get("ite_coverage_judged") if r.get("ite_judged_on") else r.get("ite_coverage")
        weak = (" (the truth's Monte Carlo error dominates this figure, which is then pulled towards the level: "
                "raise truth.replications)" if r.get("ite_judged_weak") else "")
        head = f"WARNING: {r['estimator']} ({r['metric']}, {r['arm']}): the individual intervals cover"
        if c is not None and not lo_band <= c <= hi_band:
            why = ("below: the mode's stated assumption fails in this world (see the estimate's "
                   "individual_intervals diagnostics and warnings)" if c < lo_band else
                   "above: the intervals are conservative (the bounds mode, an overestimated variance, noisier "
                   "users in the calibrating arm, or a discrete outcome whose ties make conformal sets "
                   "over-cover)")
            sec.paragraph(f"{head} the users' true conditional effects {c:.3f} of the time ({on}){weak}, outside "
                          f"the {lo_band:.2f}-{hi_band:.2f} expected of {100 * level:g}% intervals, {why}; see "
                          "docs/heterogeneity.md, \"Individual effects\".", kind="warn")
        arms = {a: r.get(f"ite_coverage_{a}") for a in ("treated", "control")}
        low = {a: v for a, v in arms.items() if v is not None and v < lo_band}
        if low:  # the overall rate can hide one arm's undercoverage
            sec.paragraph(f"{head} the {' and '.join(low)} users' true conditional effects only "
                          f"{', '.join(f'{v:.3f}' for v in low.values())} of the time ({on}){weak}, below "
                          f"{lo_band:.2f}: the intervals' assumption fails for that arm (for conformal intervals: "
                          "a user's noise differs between the arms).", kind="warn")


def cate_section(result: Any, report: Any) -> None:
    """Add the section when the run directory holds CATE scores."""
    directory = Path(report.run_dir)
    path = directory / SCORES_FILE
    if not path.is_file():
        return
    rows = json.loads(path.read_text())
    if not rows:
        return
    sec = report.section("Heterogeneous effects (CATE)")
    which = sorted({r["truth_estimand"] for r in rows if r.get("truth_estimand")})
    sec.paragraph(
        "Each CATE estimator predicts every user's effect out of fold; its predictions are scored against "
        f"the simulator's per-user truth ({', '.join(which) or 'none available'} effect: 'conditional' is the "
        "mean over the noise replications of the counterfactual worlds, 'realised' this run's single draw). "
        "PEHE is the root mean squared error of the predicted effects; the baseline predicts the true "
        "average effect for everyone. Coverage: share of users whose true effect lies in their "
        "per-user interval (n/a: the learner gives none); that interval is for tau(X), the average effect of "
        "users with the same effect modifiers, not for each user's own effect.")
    sec.table(["estimator", "metric", "arm", "truth", "PEHE", "baseline", "ratio", "Spearman", "coverage (tau(X))",
               "calib. slope", "AUUC (norm.)"],
              [[r["estimator"], r["metric"], r["arm"], r.get("truth_estimand") or "none",
                (_fmt(r.get("pehe")), "num"), (_fmt(r.get("pehe_baseline")), "num"),
                (_fmt(r.get("pehe_ratio")), "num"), (_fmt(r.get("spearman")), "num"),
                (_fmt(r.get("coverage")), "num"), (_fmt(r.get("calibration_slope")), "num"),
                (_fmt(r.get("auuc_normalised")), "num")] for r in rows])
    _individual_table(sec, rows)
    curves_path = directory / CURVES_FILE
    if not curves_path.is_file():
        return
    import pandas as pd

    curves = pd.read_parquet(curves_path)
    scored = [r for r in rows if r.get("deciles")]
    for (metric, arm), group in curves.groupby(["metric", "arm"], sort=False):
        parts = [(name, g.sort_values("q")) for name, g in group.groupby("estimator", sort=False)]
        sec.figure(f"cate-uplift-{metric}-{arm}", f"Uplift curves: {metric}, {arm} vs control",
                   uplift_figure, f"{metric}: {arm}", parts)
        these = [r for r in scored if r["metric"] == metric and r["arm"] == arm]
        if these:
            sec.figure(f"cate-calibration-{metric}-{arm}", f"Decile calibration: {metric}, {arm} vs control",
                       calibration_figure, f"{metric}: {arm}", these)
