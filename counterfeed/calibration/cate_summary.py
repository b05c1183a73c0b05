"""Per-user operating characteristics of CATE estimators over replications: PEHE, interval coverage.

Each replication's ``cate`` estimate carries its per-user scores (``diagnostics["cate_scores"]``,
kept by :func:`counterfeed.calibration.engine.slim_estimate` as ``cate``). Per (estimator, analysis
entry, metric, arm) over the R replications that have them:

- ``pehe``: mean over replications of the replication's PEHE; ``pehe_baseline``: the same for
  predicting the true average effect for everyone; ``pehe_ratio`` = ratio of the two means;
  ``beats_baseline_30``: the share of replications whose PEHE is below 70% of their baseline, with
  its Wilson interval (replications are independent);
- ``coverage``: the mean over replications of the share of users whose true effect lies in their
  per-user interval, with a t interval from the spread across replications (users within one
  replication share one fitted model, so their coverage indicators are correlated and a binomial
  interval on the pooled users would be too narrow); ``coverage_in_band``: the share of replications
  whose coverage lies in [level - 0.05, level + 0.02] ([0.90, 0.97] at 95%), with its Wilson interval;
- ``regret``: the mean over replications of the targeting regret of the rule learned from the
  estimator's effects (the oracle rule's true value minus the rule's, in the improving direction;
  the run's ``targeting`` stage), with a t interval across replications;
- ``pehe_mc``, ``pehe_baseline_mc``, ``pehe_ratio_mc``, ``coverage_deconvolved`` (t interval), and the
  individual intervals' ``ite_coverage``/``ite_coverage_deconvolved`` (t intervals, clipped to
  [0, 1]), ``ite_coverage_realised`` (of the realised effect), ``ite_coverage_treated``/``_control``
  (the judged coverage by arm) and ``ite_in_band`` (the share of replications whose
  ``ite_coverage_judged`` is in ``[level - 0.05, level + 0.02]``, Wilson interval): the means of the
  replications' Monte Carlo-corrected scores (:func:`counterfeed.analysis.cate_scores.truth_mc_error`);
  ``coverage_in_band`` is judged on ``coverage_deconvolved`` when every replication with intervals
  has it (the figure docs/heterogeneity.md reads the acceptance point against), else on the raw
  coverage; ``in_band_of`` says which;
- ``truth_estimand``: which per-user truth was scored (``conditional`` or ``realised``; "mixed" when
  replications differ).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from counterfeed.calibration.summary import repeated_in, wilson_interval
from counterfeed.core.display import estimator_label

__all__ = ["CATE_KEYS", "cate_summary", "cate_table", "with_targeting_regret"]

#: the per-replication CATE scores calibration keeps (a subset of ``diagnostics["cate_scores"]``, its
#: Monte Carlo-corrected scores, and the targeting ``regret`` that :func:`with_targeting_regret` adds)
CATE_KEYS = ("truth_estimand", "n_users", "pehe", "pehe_baseline", "coverage", "coverage_n", "spearman",
             "pehe_mc", "pehe_baseline_mc", "coverage_deconvolved", "ite_coverage", "ite_coverage_deconvolved",
             "ite_coverage_realised", "ite_coverage_judged", "ite_judged_on", "ite_coverage_treated",
             "ite_coverage_control", "regret")
_COLUMNS = ["estimator", "analysis", "metric", "arm", "truth_estimand", "replications", "pehe", "pehe_baseline",
            "pehe_ratio", "beats_baseline_30", "beats_lower", "beats_upper", "spearman", "coverage",
            "coverage_lower", "coverage_upper", "coverage_in_band", "in_band_lower", "in_band_upper",
            "regret", "regret_lower", "regret_upper", "pehe_mc", "pehe_baseline_mc", "pehe_ratio_mc",
            "coverage_deconvolved", "deconvolved_lower", "deconvolved_upper", "in_band_of", "ite_coverage",
            "ite_coverage_lower", "ite_coverage_upper", "ite_coverage_deconvolved", "ite_deconvolved_lower",
            "ite_deconvolved_upper", "ite_coverage_realised", "ite_in_band", "ite_in_band_lower", "ite_in_band_upper",
            "ite_coverage_treated", "ite_coverage_control"]


def _num(v: Any) -> float:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return math.nan
    return x


def with_targeting_regret(estimates: list[dict[str, Any]], targeting: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Add each targeting rule's ``regret`` (the run manifest's ``targeting`` entry: ``metric``, ``arm``
    and per rule ``rule`` = the estimator's name and ``regret``) to the ``cate`` scores of the slim
    estimate it was learned from. Returns ``estimates`` (changed in place)."""
    if not targeting:
        return estimates
    regret = {r.get("rule"): r.get("regret") for r in targeting.get("rules", [])}
    for e in estimates:
        if (e.get("estimand") == "cate" and e.get("metric") == targeting.get("metric")
                and e.get("arm") == targeting.get("arm") and e.get("estimator") in regret):
            e["cate"] = {**(e.get("cate") or {}), "regret": regret[e["estimator"]]}
    return estimates


def _finite(column: pd.Series) -> np.ndarray:
    v = column.map(_num).to_numpy()
    return v[np.isfinite(v)]


def _mean_t(values: np.ndarray) -> tuple[float, float, float]:
    """Mean and 95% t interval of independent replications' values (NaN interval below two)."""
    if not values.size:
        return math.nan, math.nan, math.nan
    mean = float(values.mean())
    if values.size < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.975, values.size - 1) * values.std(ddof=1) / math.sqrt(values.size))
    return mean, mean - half, mean + half


def _clip01(t: tuple[float, float, float]) -> tuple[float, ...]:
    """A proportion's mean and t interval, the interval clipped to [0, 1]."""
    return tuple(v if math.isnan(v) else min(max(v, 0.0), 1.0) for v in t)


def _ite_band(g: pd.DataFrame) -> dict[str, float]:
    """The share of replications whose individual intervals' judged coverage (``ite_coverage_judged``:
    ``coverage_mc``, or raw for a truth without Monte Carlo error) is in ``[level - 0.05, level + 0.02]``
    (0.90-0.97 at 95%), with its Wilson interval; and the by-arm judged coverage, averaged."""
    out = {"ite_coverage_treated": _mean_t(_finite(g["ite_coverage_treated"]))[0],
           "ite_coverage_control": _mean_t(_finite(g["ite_coverage_control"]))[0]}
    v = g["ite_coverage_judged"].map(_num).to_numpy()
    level = g["level"].map(_num).to_numpy()
    ok = np.isfinite(v)
    if not ok.any():
        return {**out, "ite_in_band": math.nan, "ite_in_band_lower": math.nan, "ite_in_band_upper": math.nan}
    k = int(np.sum((v[ok] >= level[ok] - 0.05) & (v[ok] <= np.minimum(level[ok] + 0.02, 1.0))))
    lo, hi = wilson_interval(k, int(ok.sum()))
    return {**out, "ite_in_band": k / int(ok.sum()), "ite_in_band_lower": lo, "ite_in_band_upper": hi}


def cate_summary(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per (estimator, analysis entry, metric, arm) of the ``cate`` estimates in stored replication records
    (the columns are in the module docstring); empty when no replication has CATE scores."""
    rows = []
    for rec in records:
        for est in rec.get("estimates", []):
            scores = est.get("cate")
            if est.get("estimand") == "cate" and isinstance(scores, dict) and scores.get("pehe") is not None:
                rows.append({"estimator": est["estimator"], "analysis": est.get("analysis"), "metric": est["metric"],
                             "arm": est["arm"], "level": est.get("level") or 0.95, **{k: scores.get(k) for k in CATE_KEYS}})
    if not rows:
        return pd.DataFrame(columns=_COLUMNS)
    frame = pd.DataFrame(rows)
    out = []
    for (name, entry, metric, arm), g in frame.groupby(["estimator", "analysis", "metric", "arm"], sort=True,
                                                        dropna=False):
        pehe = g["pehe"].map(_num).to_numpy()
        base = g["pehe_baseline"].map(_num).to_numpy()
        ok = np.isfinite(pehe) & np.isfinite(base)
        beats = int(np.sum(pehe[ok] < 0.7 * base[ok]))
        b_lo, b_hi = wilson_interval(beats, int(ok.sum()))
        cov = g["coverage"].map(_num).to_numpy()
        cov = cov[np.isfinite(cov)]
        c_mean, c_lo, c_hi = _mean_t(cov)
        reg = g["regret"].map(_num).to_numpy()
        r_mean, r_lo, r_hi = _mean_t(reg[np.isfinite(reg)])
        dec = g["coverage_deconvolved"].map(_num).to_numpy()
        dec = dec[np.isfinite(dec)]
        d_mean, d_lo, d_hi = _mean_t(dec)
        # the 0.90-0.97 judgement reads the deconvolved coverage (docs/heterogeneity.md) where every
        # replication with intervals has it, the raw one otherwise; ``in_band_of`` says which
        judged, of = (dec, "deconvolved") if dec.size and dec.size == cov.size else (cov, "raw")
        lv = float(np.nanmedian(g["level"].map(_num).to_numpy()))  # one entry, one level
        band = int(np.sum((judged >= lv - 0.05) & (judged <= min(lv + 0.02, 1.0))))  # 0.90-0.97 at 95%
        i_lo, i_hi = wilson_interval(band, int(judged.size))
        mc = g["pehe_mc"].map(_num).to_numpy()
        mc_base = g["pehe_baseline_mc"].map(_num).to_numpy()
        mc_ok = np.isfinite(mc) & np.isfinite(mc_base)
        which = sorted(set(g["truth_estimand"].dropna()))
        out.append({"estimator": name, "analysis": None if pd.isna(entry) else int(entry), "metric": metric, "arm": arm,
                    "truth_estimand": which[0] if len(which) == 1 else ("mixed" if which else None),
                    "replications": int(ok.sum()), "pehe": float(pehe[ok].mean()) if ok.any() else math.nan,
                    "pehe_baseline": float(base[ok].mean()) if ok.any() else math.nan,
                    "pehe_ratio": float(pehe[ok].mean() / base[ok].mean()) if ok.any() and base[ok].mean() > 0
                    else math.nan,
                    "beats_baseline_30": beats / ok.sum() if ok.any() else math.nan,
                    "beats_lower": b_lo, "beats_upper": b_hi,
                    "spearman": float(np.nanmean(g["spearman"].map(_num))) if g["spearman"].notna().any() else math.nan,
                    "coverage": c_mean, "coverage_lower": c_lo, "coverage_upper": c_hi,
                    "coverage_in_band": band / judged.size if judged.size else math.nan,
                    "in_band_lower": i_lo, "in_band_upper": i_hi,
                    "regret": r_mean, "regret_lower": r_lo, "regret_upper": r_hi,
                    "pehe_mc": float(mc[mc_ok].mean()) if mc_ok.any() else math.nan,
                    "pehe_baseline_mc": float(mc_base[mc_ok].mean()) if mc_ok.any() else math.nan,
                    "pehe_ratio_mc": float(mc[mc_ok].mean() / mc_base[mc_ok].mean())
                    if mc_ok.any() and mc_base[mc_ok].mean() > 0 else math.nan,
                    "coverage_deconvolved": d_mean, "deconvolved_lower": d_lo, "deconvolved_upper": d_hi,
                    "in_band_of": of if judged.size else None,
                    **dict(zip(("ite_coverage", "ite_coverage_lower", "ite_coverage_upper"),
                               _clip01(_mean_t(_finite(g["ite_coverage"]))))),
                    **dict(zip(("ite_coverage_deconvolved", "ite_deconvolved_lower", "ite_deconvolved_upper"),
                               _clip01(_mean_t(_finite(g["ite_coverage_deconvolved"]))))),
                    "ite_coverage_realised": _mean_t(_finite(g["ite_coverage_realised"]))[0],
                    **_ite_band(g)})
    return pd.DataFrame(out, columns=_COLUMNS)


def _f(v: Any, spec: str = ".3f") -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def cate_table(summary: pd.DataFrame):
    """A rich Table of :func:`cate_summary` (printed by ``counterfeed calibrate``)."""
    from rich.table import Table

    table = Table(title="CATE estimators: per-user effects over replications", header_style="bold",
                  caption="coverage: of the per-user tau(X) intervals against the per-user truth (raw: the "
                          "R-replication truth itself, Monte Carlo error included; deconvolved: that error removed, "
                          "docs/heterogeneity.md); PEHE raw and MC-corrected (pehe_mc); in 0.90-0.97: the share of "
                          "replications, judged on the coverage named in brackets; individual intervals "
                          "(individual_intervals): their coverage of each user's own conditional effect, raw and "
                          "deconvolved, the share of replications whose judged coverage (coverage_mc) is in "
                          "[level - 0.05, level + 0.02] (0.90-0.97 at 95%), the judged coverage by arm, and their "
                          "coverage of the realised effect")
    for k in ("estimator", "metric", "arm", "truth"):
        table.add_column(k)
    for k in ("n", "PEHE", "baseline", "ratio", "PEHE (MC-corr.)", "ratio (MC)", "PEHE<0.7 base [95% CI]",
              "Spearman", "user coverage, raw [95% CI]", "deconvolved [95% CI]", "in 0.90-0.97 [95% CI]",
              "individual intervals: raw [95% CI]", "deconvolved", "in band [95% CI]", "treated / control",
              "realised", "targeting regret [95% CI]"):
        table.add_column(k, justify="right")
    repeated = repeated_in(summary)
    for _, r in summary.iterrows():
        table.add_row(estimator_label(r["estimator"], r["analysis"], repeated), str(r["metric"]), str(r["arm"]), str(r["truth_estimand"]),
                      str(int(r["replications"])), _f(r["pehe"], ".4g"), _f(r["pehe_baseline"], ".4g"),
                      _f(r["pehe_ratio"]), _f(r["pehe_mc"], ".4g"), _f(r["pehe_ratio_mc"]),
                      f"{_f(r['beats_baseline_30'])} [{_f(r['beats_lower'])}, {_f(r['beats_upper'])}]",
                      _f(r["spearman"]),
                      f"{_f(r['coverage'])} [{_f(r['coverage_lower'])}, {_f(r['coverage_upper'])}]",
                      f"{_f(r['coverage_deconvolved'])} [{_f(r['deconvolved_lower'])}, {_f(r['deconvolved_upper'])}]",
                      f"{_f(r['coverage_in_band'])} [{_f(r['in_band_lower'])}, {_f(r['in_band_upper'])}]"
                      + (f" ({r['in_band_of']})" if isinstance(r["in_band_of"], str) else ""),
                      f"{_f(r['ite_coverage'])} [{_f(r['ite_coverage_lower'])}, {_f(r['ite_coverage_upper'])}]",
                      _f(r["ite_coverage_deconvolved"]),
                      f"{_f(r['ite_in_band'])} [{_f(r['ite_in_band_lower'])}, {_f(r['ite_in_band_upper'])}]",
                      f"{_f(r['ite_coverage_treated'])} / {_f(r['ite_coverage_control'])}",
                      _f(r["ite_coverage_realised"]),
                      f"{_f(r['regret'], '.4g')} [{_f(r['regret_lower'], '.4g')}, {_f(r['regret_upper'], '.4g')}]")
    return table
