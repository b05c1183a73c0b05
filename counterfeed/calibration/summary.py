"""Operating characteristics of estimators over replications: bias, RMSE, coverage, power, MDE.

For a group of replications of one (estimator, metric, arm, estimand, segment, analysis entry), with estimates
:math:`\\hat\\theta_r`, intervals :math:`[l_r, u_r]` at level :math:`1-\\alpha` and true effects
:math:`\\theta_r` (the truth of replication :math:`r`, from its counterfactual worlds):

- bias :math:`= \\frac1R \\sum_r (\\hat\\theta_r - \\theta_r)`, RMSE
  :math:`= \\sqrt{\\frac1R \\sum_r (\\hat\\theta_r - \\theta_r)^2}`;
- coverage :math:`= \\frac1R \\sum_r 1[l_r \\le \\theta_r \\le u_r]`, with a Wilson score interval
  (95%) on the coverage itself, which is a binomial proportion (Wilson, 1927; Brown, Cai and
  DasGupta, 2001, recommend it over the Wald interval for proportions near 0 or 1);
- rejection rate :math:`= \\frac1R \\sum_r 1[p_r < \\alpha]` (or, without a p-value, the interval
  excludes 0): the false-positive rate when the arms are identical, the power otherwise;
- minimum detectable effect at 80% power and a 5% two-sided test,
  :math:`\\mathrm{MDE} = (z_{0.975} + z_{0.80})\\,\\overline{\\mathrm{se}} \\approx 2.80\\,\\overline{\\mathrm{se}}`,
  with each replication's standard error read from its interval width,
  :math:`\\mathrm{se}_r = (u_r - l_r) / (2 z_{1-\\alpha/2})` (exact for symmetric normal intervals);
- ``zero_width``: how many replications reported an interval of zero width (up to rounding); such an
  interval covers only by the rounding tolerance and is a warning sign (no observed variance);
- ``unbounded``: how many replications reported an interval with an infinite bound (e.g. a relative
  lift whose control mean is not distinguishable from 0: Fieller's set is unbounded). The whole line
  covers every truth, so it counts as covering; a two-ray set (an Anderson-Rubin set) covers unless the
  truth lies in its gap (:func:`counterfeed.core.scoring.score_values`). Neither has a width:
  ``mean_width``, ``mean_se`` and ``mde`` are over the bounded intervals only (``calibrate`` says so
  when any is unbounded);
- ``not_identified``: how many replications' estimates the estimator itself marked not identified
  (``diagnostics.identified`` false: a positivity failure, unobserved confounding adjusted anyway, a
  weak instrument); they are still scored, which is what measures the flag's cost;
- ``null_truth``: the true effect is exactly 0 in every replication (an A/A comparison), so the
  rejection rate is a false-positive rate;
- ``undercoverage_p``: the exact one-sided binomial p-value of "the coverage is below the level",
  :math:`P(X \\le k)` for :math:`X \\sim \\mathrm{Bin}(n, \\text{level})` with :math:`k` of :math:`n`
  intervals covering (NaN below two); ``overrejection_p``: where every true effect is 0, that of "the
  rejection rate is above ``1 - level``", :math:`P(Y \\ge j)` for :math:`Y \\sim \\mathrm{Bin}(n, 1-\\text{level})`
  (NaN otherwise);
- ``verdict`` (:func:`verdict`): ``"undercovers"`` when ``undercoverage_p`` is at most
  :data:`VERDICT_ALPHA` (2.5%): a one-sided exact binomial test, i.e. the one-sided 97.5% Clopper-Pearson
  upper bound of the coverage lies below the level; ``"over-rejects"`` likewise from ``overrejection_p``
  (an A/A comparison: the rejection rate is a false-positive rate); ``"overcovers"`` when the exact
  test of "the coverage is above the level" rejects at 2.5% (conservative intervals: honest, but wider
  than they need be); ``"ok"`` when the replications are consistent with the nominal level, and
  ``None`` (null in JSON) when nothing can be judged (fewer than two replications with a known truth).
  A flag also needs the displayed Wilson bound on the same side of the level (it almost always is:
  the exact bound is the wider), so that the table never contradicts a flag. A row whose coverage is
  exactly the level is therefore flagged ``undercovers`` with probability at most 2.5% at every number
  of replications (and an A/A row whose false-positive rate is exactly ``1 - level``, ``over-rejects``);
  Wilson's interval alone is not conservative at small n (it flags such a row 14% of the time at n = 3,
  7.5% at n = 20). Conversely a row whose Wilson interval just misses the level can be ``"ok"``: the
  exact test decides, not Wilson's approximation. Each verdict is one test of one row, so with k
  calibrated rows up to about k x 2.5% of them are flagged by chance (some row, for k = 8 independent
  rows, up to 1 - 0.975^8 = 18% of the time); :func:`strict_failures` controls the family
  (``calibrate --strict``).

Coverage is judged up to a few ulps relative to the numbers' scale
(:func:`counterfeed.core.scoring.covers`): a bound and a truth computed by different sums of the same
numbers differ in their last bits.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import binom, norm

from counterfeed.core.scoring import COVER_ULPS, covers

__all__ = ["ESTIMATE_FIELDS", "GROUP_KEYS", "wilson_interval", "records_frame", "summarize", "assign_entries", "analysis_entries", "repeated_in",
           "MDE_MULTIPLIER", "verdict", "FLAGGED_VERDICTS", "VERDICT_ALPHA", "undercoverage_p",
           "overcoverage_p", "overrejection_p", "strict_failures"]

ESTIMATE_FIELDS = ["estimator", "metric", "arm", "estimand", "segment", "analysis", "point", "lower", "upper",
                   "p_value", "truth", "covered", "level", "not_identified"]
#: ``analysis``: the index of the scenario's analysis entry that made the estimate, so that two entries of one
#: estimator (two levels, a control group each) are summarised apart, never pooled into one row
GROUP_KEYS = ["estimator", "metric", "arm", "estimand", "segment", "analysis"]
MDE_MULTIPLIER = float(norm.ppf(0.975) + norm.ppf(0.80))
#: the verdicts that say an estimator's intervals are not honest here (``calibrate --strict`` fails on them)
FLAGGED_VERDICTS = ("undercovers", "over-rejects")
#: the size of each verdict's one-sided exact test (``calibrate --strict`` divides it among the tests)
VERDICT_ALPHA = 0.025


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (Wilson 1927, JASA 22(158)).

    NaNs (null in JSON) below two trials: no interval from fewer than two independent units.
    """
    if trials < 2:
        return math.nan, math.nan
    z = float(norm.ppf(0.5 + confidence / 2))
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    lo = 0.0 if successes == 0 else max(0.0, centre - half)  # exact ends: no rounding residue
    hi = 1.0 if successes == trials else min(1.0, centre + half)
    return lo, hi


def assign_entries(records: list[dict[str, Any]], entries: list[tuple[str, list[str] | None]]) -> None:
    """Check and complete, in place, the analysis entries of stored replication records' estimates.

    ``entries``: the scenario's analysis entries in order, each its estimator's name and its ``metrics``
    option (None: every metric). An estimate's ``analysis``, when stored, must index one of them (a
    :class:`~counterfeed.errors.DataError` otherwise: the store was edited or is another scenario's). An
    estimate stored before estimates carried their entry (no ``analysis`` key) gets the one entry that
    could have made it: the entries of its estimator (``ope:dr`` is ``ope``'s), narrowed to those whose
    ``metrics`` name its metric when several run that estimator. When still several could have made it,
    the store cannot tell their rows apart: a DataError asking to start afresh (``--fresh``), raised
    before anything is simulated when the caller checks the stored records first."""
    from counterfeed.errors import DataError

    for rec in records:
        for j, est in enumerate(rec.get("estimates", [])):
            where = f"replication {rec.get('index')} of the store, estimates[{j}]"
            if "analysis" in est:
                got = est["analysis"]
                if got is not None and (isinstance(got, bool) or not isinstance(got, int)
                                        or not 0 <= got < len(entries)):
                    raise DataError(f"{where}: analysis must be the index of one of the scenario's "
                                    f"{len(entries)} analysis entries, got {got!r}; rerun with --fresh")
                continue
            name = str(est.get("estimator", "")).split(":", 1)[0]
            found = [i for i, (e, _) in enumerate(entries) if e == name]
            if len(found) > 1:
                found = [i for i in found if entries[i][1] is None or est.get("metric") in entries[i][1]]
            if len(found) > 1:
                raise DataError(
                    f"{where} was stored by an older counterfeed, which did not record which analysis entry "
                    f"made each estimate, and analysis entries {found} could all have made its "
                    f"'{est.get('estimator')}' row of '{est.get('metric')}': their rows cannot be told apart; "
                    "rerun with --fresh")
            est["analysis"] = found[0] if found else None


def repeated_in(frame: pd.DataFrame) -> set[str]:
    """The estimators of a summary or records frame that several analysis entries ran, whose rows name
    their entry (:func:`counterfeed.core.display.repeated_estimators`)."""
    from counterfeed.core.display import repeated_estimators

    if not len(frame) or "analysis" not in frame:
        return set()
    return repeated_estimators(zip(frame["estimator"], frame["analysis"]))


def analysis_entries(scenario: Any) -> list[tuple[str, list[str] | None]]:
    """A scenario's analysis entries for :func:`assign_entries`: each its estimator and ``metrics``."""
    out = []
    for spec in scenario.analysis:
        metrics = (spec.options or {}).get("metrics")
        out.append((spec.estimator, [str(m) for m in metrics] if isinstance(metrics, list) else None))
    return out


def records_frame(records: list[dict[str, Any]], extra: list[str] | None = None) -> pd.DataFrame:
    """One row per (replication, estimate) from stored replication records, ordered by replication.

    ``extra`` names record fields copied onto every row (e.g. a sweep's grid point).
    """
    extra = list(extra or [])
    rows: list[dict[str, Any]] = []
    for rec in sorted(records, key=lambda r: (r.get("grid_point", 0), r["index"])):
        for est in rec.get("estimates", []):
            row = {"replication": rec["index"], "seed": rec["seed"]}
            row.update({k: rec.get(k) for k in extra})
            row.update({k: est.get(k) for k in ESTIMATE_FIELDS})
            rows.append(row)
    cols = ["replication", "seed", *extra, *ESTIMATE_FIELDS]
    frame = pd.DataFrame(rows, columns=cols)
    for col in ("point", "lower", "upper", "p_value", "truth", "level"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype(float)
    frame["covered"] = frame["covered"].astype(object)
    frame["analysis"] = pd.Series([None if v is None or (isinstance(v, float) and math.isnan(v)) else int(v)
                                   for v in frame["analysis"]], index=frame.index, dtype=object)
    frame["replication"] = frame["replication"].astype("int64")
    frame["seed"] = frame["seed"].astype("int64")
    return frame


def _rejected(frame: pd.DataFrame) -> np.ndarray:
    p = frame["p_value"].to_numpy(float)
    alpha = 1.0 - frame["level"].fillna(0.95).to_numpy(float)
    lo, hi = frame["lower"].to_numpy(float), frame["upper"].to_numpy(float)
    by_interval = (lo > 0) | (hi < 0)
    return np.where(np.isfinite(p), p < alpha, by_interval)


def _group_stats(g: pd.DataFrame) -> dict[str, Any]:
    point = g["point"].to_numpy(float)
    truth = g["truth"].to_numpy(float)
    ok = np.isfinite(point)
    err = (point - truth)[ok & np.isfinite(truth)]
    covered = [_covered(c, lo, hi, t) for c, lo, hi, t in zip(g["covered"], g["lower"], g["upper"], g["truth"])]
    covered = [c for c in covered if c is not None]
    width = (g["upper"] - g["lower"]).to_numpy(float)
    width = width[np.isfinite(width)]
    lo_abs = np.maximum(np.abs(g["lower"].to_numpy(float)), np.abs(g["upper"].to_numpy(float)))[
        np.isfinite((g["upper"] - g["lower"]).to_numpy(float))]
    zero_width = int(np.sum(width <= COVER_ULPS * np.finfo(float).eps * lo_abs))
    unbounded = int(np.sum(np.isinf(g["lower"].to_numpy(float)) | np.isinf(g["upper"].to_numpy(float))))
    not_identified = int(sum(v is True for v in g["not_identified"])) if "not_identified" in g else 0
    level = float(g["level"].dropna().mode().iloc[0]) if g["level"].notna().any() else 0.95
    z = float(norm.ppf(0.5 + level / 2))
    rejected = _rejected(g[ok])
    n_cov, k_cov = len(covered), int(sum(covered))
    n_rej, k_rej = len(rejected), int(rejected.sum())
    cov_lo, cov_hi = wilson_interval(k_cov, n_cov)
    rej_lo, rej_hi = wilson_interval(k_rej, n_rej)
    mean_se = float(np.mean(width) / (2 * z)) if len(width) else math.nan
    truths = truth[np.isfinite(truth)]
    null_truth = bool(truths.size) and bool(np.all(truths == 0.0))  # A/A: every true effect exactly 0
    under_p = undercoverage_p(k_cov, n_cov, level)
    over_p = overcoverage_p(k_cov, n_cov, level)
    rej_p = overrejection_p(k_rej, n_rej, level) if null_truth else math.nan
    return {
        "replications": int(ok.sum()),
        "level": level,
        "mean_estimate": float(np.mean(point[ok])) if ok.any() else math.nan,
        "mean_truth": float(np.nanmean(truth)) if np.isfinite(truth).any() else math.nan,
        "bias": float(np.mean(err)) if len(err) else math.nan,
        "rmse": float(np.sqrt(np.mean(err ** 2))) if len(err) else math.nan,
        "coverage": k_cov / n_cov if n_cov else math.nan,
        "coverage_lower": cov_lo,
        "coverage_upper": cov_hi,
        "mean_width": float(np.mean(width)) if len(width) else math.nan,
        "rejection_rate": k_rej / n_rej if n_rej else math.nan,
        "rejection_lower": rej_lo,
        "rejection_upper": rej_hi,
        "mean_se": mean_se,
        "mde": MDE_MULTIPLIER * mean_se,
        "zero_width": zero_width,
        "unbounded": unbounded,
        "not_identified": not_identified,
        "null_truth": null_truth,
        "undercoverage_p": under_p,
        "overrejection_p": rej_p,
        "verdict": verdict(level, under_p, over_p, rej_p, coverage_interval=(cov_lo, cov_hi),
                           rejection_lower=rej_lo),
    }


def undercoverage_p(covered: int, trials: int, level: float) -> float:
    """Exact one-sided p-value of "coverage < level": P(X <= covered), X ~ Bin(trials, level); NaN below 2."""
    return float(binom.cdf(covered, trials, level)) if trials >= 2 else math.nan


def overcoverage_p(covered: int, trials: int, level: float) -> float:
    """Exact one-sided p-value of "coverage > level": P(X >= covered), X ~ Bin(trials, level); NaN below 2."""
    return float(binom.sf(covered - 1, trials, level)) if trials >= 2 else math.nan


def overrejection_p(rejected: int, trials: int, level: float) -> float:
    """Exact one-sided p-value of "rejection rate > 1 - level" (true nulls): P(Y >= rejected),
    Y ~ Bin(trials, 1 - level); NaN below 2."""
    return float(binom.sf(rejected - 1, trials, 1.0 - level)) if trials >= 2 else math.nan


def _at(p: float, alpha: float) -> bool:
    return math.isfinite(p) and p <= alpha


def verdict(level: float, undercoverage_p: float, overcoverage_p: float = math.nan,
            overrejection_p: float = math.nan, *, alpha: float = VERDICT_ALPHA,
            coverage_interval: tuple[float, float] = (math.nan, math.nan),
            rejection_lower: float = math.nan) -> str | None:
    """``"undercovers"``, ``"over-rejects"``, ``"overcovers"``, ``"ok"`` or None (see the module docstring).

    The p-values are the exact one-sided ones (:func:`undercoverage_p`, :func:`overcoverage_p`,
    :func:`overrejection_p`; NaN when there is nothing to test, e.g. ``overrejection_p`` unless every true
    effect is 0); each test is at ``alpha``. Where the displayed Wilson bounds are given
    (``coverage_interval``, ``rejection_lower``) a flag also needs them on its side of the level, so a table
    never shows a flagged row's interval holding the level (this only ever removes a flag: the rate stays at
    most ``alpha``). Undercoverage is named first: in an A/A comparison it usually comes with
    over-rejection (``calibrate`` warns of each).
    """
    cov_lo, cov_hi = coverage_interval
    if _at(undercoverage_p, alpha) and not (math.isfinite(cov_hi) and cov_hi >= level):
        return "undercovers"
    if _at(overrejection_p, alpha) and not (math.isfinite(rejection_lower) and rejection_lower <= 1.0 - level):
        return "over-rejects"
    if _at(overcoverage_p, alpha) and not (math.isfinite(cov_lo) and cov_lo <= level):
        return "overcovers"
    if math.isfinite(undercoverage_p) or math.isfinite(overrejection_p):
        return "ok"
    return None


def strict_failures(summary: pd.DataFrame, alpha: float = VERDICT_ALPHA) -> pd.DataFrame:
    """The rows ``calibrate --strict`` fails on: flagged (:data:`FLAGGED_VERDICTS`) and failing their test at
    the Bonferroni level ``alpha / m``, ``m`` the number of tests judged in the summary (one coverage test per
    row with a verdict, plus one false-positive test per A/A row), so that when every row is calibrated the
    chance of any failure is at most ``alpha``."""
    if not len(summary) or "verdict" not in summary:
        return summary.iloc[0:0]
    if not {"undercoverage_p", "overrejection_p"} <= set(summary.columns):  # an older summary: its verdicts
        return summary[summary["verdict"].isin(FLAGGED_VERDICTS)]
    under = pd.to_numeric(summary["undercoverage_p"], errors="coerce")
    rej = pd.to_numeric(summary["overrejection_p"], errors="coerce")
    m = int(under.notna().sum() + rej.notna().sum())
    if m == 0:
        return summary.iloc[0:0]
    fails = (under <= alpha / m) | (rej <= alpha / m)
    return summary[summary["verdict"].isin(FLAGGED_VERDICTS) & fails.fillna(False).to_numpy(bool)]


def _covered(stored: Any, lower: float, upper: float, truth: float) -> bool | None:
    """Coverage of one replication, rechecked up to rounding (:func:`counterfeed.core.scoring.covers`) where
    the bounds and the truth are known (older stores kept an exact comparison); else the stored flag."""
    if all(isinstance(x, float) and math.isfinite(x) for x in (lower, upper, truth)):
        return covers(lower, upper, truth)
    if stored is None or (isinstance(stored, float) and math.isnan(stored)):
        return None
    return bool(stored)


def summarize(frame: pd.DataFrame, by: list[str] | None = None) -> pd.DataFrame:
    """One row per group (default :data:`GROUP_KEYS`) with the statistics in the module docstring."""
    by = list(by or GROUP_KEYS)
    if "analysis" in by and "analysis" not in frame:  # a frame of estimates that do not say their entry
        frame = frame.assign(analysis=None)
    rows = []
    if len(frame):
        for key, g in frame.groupby(by, sort=True, dropna=False):
            key = key if isinstance(key, tuple) else (key,)
            row = {k: (None if (isinstance(v, float) and math.isnan(v)) else v) for k, v in zip(by, key)}
            row.update(_group_stats(g))
            rows.append(row)
    cols = by + ["replications", "level", "mean_estimate", "mean_truth", "bias", "rmse", "coverage",
                 "coverage_lower", "coverage_upper", "mean_width", "rejection_rate", "rejection_lower",
                 "rejection_upper", "mean_se", "mde", "zero_width", "unbounded", "not_identified", "null_truth",
                 "undercoverage_p",
                 "overrejection_p", "verdict"]
    return pd.DataFrame(rows, columns=cols)
