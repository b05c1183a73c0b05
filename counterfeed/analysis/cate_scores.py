"""Per-user scores of CATE estimates against the simulator's per-user truth.

For every :class:`~counterfeed.core.estimation.Estimate` with estimand ``"cate"`` (its
``user_effects``: one out-of-fold prediction per user) and the truth stage's per-user table
(``RunResult.user_truth``: columns ``user``, ``metric``, ``arm``, ``control``, ``realised``,
``conditional``, ``conditional_se``), :func:`score_cate` computes:

- **PEHE** (Hill 2011): ``sqrt(mean_i (tau_hat_i - tau_i)^2)``; the **baseline** PEHE of predicting
  the true average effect for everyone (``sd(tau)``, the best constant prediction) and of
  predicting the estimate's own average effect;
- **Spearman rank correlation** of predicted and true effects (how well the estimator ranks users);
- **coverage** of the per-user intervals: the share of users whose true effect lies in their
  interval (None when the learner gives no per-user interval);
- **calibration by decile** of the predicted effect: per decile the mean predicted and mean true
  effect with their standard errors (``sd / sqrt(n)``), the chi-square of the deciles' true means
  around the overall mean (flat when the estimator finds no real heterogeneity) and the slope of the
  true on the predicted effect (1 for a calibrated estimator; OLS, HC1 standard error);
- **uplift curves** (Radcliffe 2007): treating the top fraction ``q`` of users by predicted effect,
  the average gain per user of the population, as estimated from the A/B world's outcomes (the
  difference in means among the top users times ``q``), as it truly is (the sum of their true
  effects / n), for the oracle ranking by the true effect, and for a random ranking; the
  normalised area ``(AUUC - random) / (oracle - random)`` (1: oracle ranking, 0: no better than random).

Which truth: ``conditional`` (the user's expected effect over R noise replications) where the truth
stage computed it for every user of the comparison, otherwise ``realised`` (this world's one draw of
the user's all-arm minus all-control outcome); each row says which in ``truth_estimand``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from counterfeed._json import clean
from counterfeed.core.scoring import interval_quantile

__all__ = ["score_cate", "uplift_curves", "truth_vector", "score_estimates_cate", "write_cate_scores",
           "SCORES_FILE", "CURVES_FILE", "EFFECTS_FILE", "EFFECT_COLUMNS", "SUMMARY_KEYS", "MC_KEYS", "ITE_KEYS",
           "truth_mc_error", "ITE_WEAK_MC_SHARE"]

SCORES_FILE = "cate_scores.json"
CURVES_FILE = "cate_curves.parquet"
EFFECTS_FILE = "cate_effects.parquet"
_GRID = np.linspace(0.0, 1.0, 21)
#: what each column of ``cate_effects.parquet`` estimates (its schema metadata ``counterfeed.estimands``)
EFFECT_COLUMNS = {
    "point": "tau(X) = E[tau_i | X]: the conditional average effect given the effect modifiers (out-of-fold "
             "prediction); null where NOT IDENTIFIED",
    "lower": "lower bound of the per-user interval for tau(X) (not for the user's own effect tau_i)",
    "upper": "upper bound of the per-user interval for tau(X) (not for the user's own effect tau_i)",
    "ite_point": "centre of the individual conditional effect interval, for tau_i (the user's own effect; "
                 "individual_intervals)",
    "ite_lower": "lower bound of the interval for the user's own effect: covers tau_i under the mode's stated "
                 "assumption; the conformal mode's also covers the realised effect by randomization alone",
    "ite_upper": "upper bound of the interval for the user's own effect: covers tau_i under the mode's stated "
                 "assumption; the conformal mode's also covers the realised effect by randomization alone",
}
#: the scores copied into the ``cate`` estimate's ``diagnostics["cate_scores"]`` (calibration reads them)
SUMMARY_KEYS = ("n_users", "pehe", "pehe_baseline", "pehe_ratio", "spearman", "coverage", "coverage_n",
                "calibration_slope", "auuc_normalised")
#: the Monte Carlo-corrected scores (:func:`truth_mc_error`) copied there too, when computed
MC_KEYS = ("truth_replications", "pehe_mc", "pehe_baseline_mc", "pehe_ratio_mc", "coverage_mc", "mc_variance_share",
           "error_variance_ratio", "coverage_deconvolved")
#: the scores of the individual conditional effect intervals (``ite_*`` columns of ``user_effects``,
#: :mod:`counterfeed.analysis.cate_individual`), copied there too when present
ITE_KEYS = ("ite_coverage", "ite_coverage_n", "ite_interval_width", "ite_coverage_mc", "ite_mc_variance_share",
            "ite_error_variance_ratio", "ite_coverage_deconvolved", "ite_coverage_realised", "ite_coverage_treated",
            "ite_coverage_control", "ite_coverage_judged", "ite_judged_on", "ite_judged_weak")
#: above this share of the widened interval's variance that is the truth's Monte Carlo error, the judged
#: coverage (``coverage_mc``) is pulled towards the level and the check has little power: said so
ITE_WEAK_MC_SHARE = 0.5


def truth_vector(user_truth: pd.DataFrame, users: np.ndarray, metric: str, arm: str, control: str
                 ) -> tuple[np.ndarray, str] | None:
    """The true per-user effect of ``arm`` vs ``control`` on ``metric`` for ``users`` (NaN where unknown)
    and which estimand it is (``conditional`` when known for every user, else ``realised``); None when
    the table has no row for that comparison."""
    t = user_truth[(user_truth["metric"] == metric) & (user_truth["arm"] == arm) & (user_truth["control"] == control)]
    if t.empty:
        return None
    t = t.drop_duplicates("user").set_index("user")
    for col in ("conditional", "realised"):
        if col in t and t[col].notna().all():
            return t[col].reindex(users).to_numpy(np.float64), col
    return t["realised"].reindex(users).to_numpy(np.float64), "realised"


def uplift_curves(point: np.ndarray, truth: np.ndarray, y: np.ndarray | None = None, t: np.ndarray | None = None,
                  grid: Sequence[float] = _GRID) -> pd.DataFrame:
    """Average gain per user of treating the top ``q`` by ``point`` (columns ``q``, ``estimated``,
    ``estimated_se``, ``true``, ``oracle``, ``random``); ``estimated`` from ``y`` and ``t`` (1 treated,
    0 control, -1 neither) where given and both arms are among the top users, else NaN."""
    n = point.size
    order = np.argsort(-point, kind="stable")
    true_cum = np.concatenate([[0.0], np.cumsum(truth[order])])
    oracle_cum = np.concatenate([[0.0], np.cumsum(np.sort(truth)[::-1])])
    rows = []
    for q in grid:
        k = int(round(float(q) * n))
        est = se = float("nan")
        if y is not None and t is not None and k > 0:
            top = order[:k]
            y1, y0 = y[top][t[top] == 1], y[top][t[top] == 0]
            if y1.size >= 2 and y0.size >= 2:
                est = (y1.mean() - y0.mean()) * k / n
                se = float(np.sqrt(y1.var(ddof=1) / y1.size + y0.var(ddof=1) / y0.size) * k / n)
        rows.append({"q": float(q), "estimated": float(est), "estimated_se": se, "true": true_cum[k] / n,
                     "oracle": oracle_cum[k] / n, "random": float(q) * float(truth.mean())})
    return pd.DataFrame(rows)


def _auuc(curve: pd.DataFrame) -> float | None:
    area = {c: float(np.trapezoid(curve[c], curve["q"])) for c in ("true", "oracle", "random")}
    span = area["oracle"] - area["random"]
    return (area["true"] - area["random"]) / span if span > 0 else None


def _deciles(point: np.ndarray, truth: np.ndarray, groups: int) -> tuple[list[dict[str, Any]], float, float]:
    from scipy import stats  # here, not at the top: every report imports this module (its file names)

    n = point.size
    rank = np.empty(n, dtype=np.int64)
    rank[np.argsort(point, kind="stable")] = np.arange(n)
    group = rank * groups // n
    overall = float(truth.mean())
    rows, chi2 = [], 0.0
    for g in range(groups):
        m = group == g
        k = int(m.sum())
        se_true = float(truth[m].std(ddof=1) / np.sqrt(k)) if k > 1 else float("nan")
        rows.append({"decile": g + 1, "n": k, "predicted": float(point[m].mean()),
                     "predicted_se": float(point[m].std(ddof=1) / np.sqrt(k)) if k > 1 else float("nan"),
                     "true": float(truth[m].mean()), "true_se": se_true})
        if se_true > 0:
            chi2 += ((truth[m].mean() - overall) / se_true) ** 2
    valid = sum(1 for r in rows if r["true_se"] > 0)
    p = float(stats.chi2.sf(chi2, valid - 1)) if valid > 1 else float("nan")
    return rows, float(chi2), p


def _slope(point: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    if np.ptp(point) == 0:
        return float("nan"), float("nan")
    import statsmodels.api as sm

    res = sm.OLS(truth, sm.add_constant(point)).fit(cov_type="HC1")
    return float(res.params[1]), float(res.bse[1])


def truth_mc_error(point: np.ndarray, tau: np.ndarray, lo: np.ndarray, hi: np.ndarray, se: np.ndarray,
                   replications: int, level: float = 0.95) -> dict[str, Any]:
    """Scores against the true conditional effect with the Monte Carlo error of the truth accounted for.

    The conditional truth ``tau~_i`` is the mean of ``R`` independent noise replications, so
    ``tau~_i = tau_i + e_i`` with ``Var(e_i) = se_i^2`` (``conditional_se``), independent of the
    estimate. Hence ``E[(tau_hat - tau~)^2] = E[(tau_hat - tau)^2] + E[se^2]``, and

    - ``pehe_mc = sqrt(max(0, mean((tau_hat - tau~)^2) - mean(se^2)))`` and
      ``pehe_baseline_mc = sqrt(max(0, var(tau~) - mean(se^2)))`` estimate the PEHE and the
      predict-the-average baseline against the exact conditional effect (method of moments);
    - ``coverage_mc``: the share of users with ``|tau_hat - tau~| <= t_df sqrt(s^2 + se^2)``
      (``s = h / z`` the interval's standard error, ``h`` its half-width; ``t_df`` the ``level``
      quantile of Student's t with Welch-Satterthwaite degrees of freedom
      ``df = (s^2 + se^2)^2 (R - 1) / se^4``, since ``se`` is estimated from ``R`` draws): when the
      interval covers ``tau`` at its level, this widened interval covers ``tau~`` at about that level.
      ``mc_variance_share = mean(se^2) / mean(se^2 + (h / z)^2)`` says how much of the widened
      interval is the truth's own error (near 1: the check has little power).
      ``coverage_mc`` tests "the intervals are exact"; as an estimate of the coverage it is pulled
      towards the level when the share is large (intervals a tenth as wide as they should be score
      about 0.89 at a share of 0.67), so two more scores estimate the coverage itself:
    - ``error_variance_ratio = (mean((tau_hat - tau~)^2) - mean(se^2)) / mean(s^2)``: the estimate's
      mean squared error against the exact ``tau`` (method of moments, as ``pehe_mc``) over the
      intervals' mean variance (1 for intervals of the right width);
    - ``coverage_deconvolved = 2 Phi(z / sqrt(error_variance_ratio)) - 1``: the coverage of ``tau``
      if each user's error ``tau_hat - tau`` is normal with variance ``error_variance_ratio * s^2``
      (one inflation factor for all users: a model, stated as such).
    """
    from scipy import stats

    se2 = np.asarray(se, dtype=np.float64) ** 2
    out: dict[str, Any] = {"truth_replications": int(replications)}
    msd = float(np.mean((point - tau) ** 2) - np.mean(se2))
    base = float(np.var(tau, ddof=1) - np.mean(se2)) if tau.size > 1 else float("nan")
    out["pehe_mc"] = float(np.sqrt(max(msd, 0.0)))
    out["pehe_baseline_mc"] = float(np.sqrt(max(base, 0.0)))
    out["pehe_ratio_mc"] = out["pehe_mc"] / out["pehe_baseline_mc"] if base > 0 else None
    has = np.isfinite(lo) & np.isfinite(hi)
    if has.any() and replications >= 2:
        z = interval_quantile(level)
        s2 = ((hi[has] - lo[has]) / (2 * z)) ** 2
        v = s2 + se2[has]
        # Welch-Satterthwaite degrees of freedom: se^2 is estimated from R draws, s^2 is taken as known
        df = np.full(v.size, np.inf)
        pos = se2[has] > 0
        with np.errstate(over="ignore"):
            df[pos] = v[pos] ** 2 * (replications - 1) / se2[has][pos] ** 2
        q = stats.t.ppf(0.5 + level / 2, np.minimum(df, 1e6))
        out["coverage_mc"] = float(np.mean(np.abs(point[has] - tau[has]) <= q * np.sqrt(v)))
        out["mc_variance_share"] = float(np.mean(se2[has]) / np.mean(v))
        msd_has, s2_mean = max(float(np.mean((point[has] - tau[has]) ** 2) - np.mean(se2[has])), 0.0), float(np.mean(s2))
        ratio = msd_has / s2_mean if s2_mean > 0 else None  # zero-width intervals: no ratio
        out["error_variance_ratio"] = ratio
        if ratio is None:
            out["coverage_deconvolved"] = 1.0 if msd_has == 0 else 0.0
        else:
            out["coverage_deconvolved"] = float(2 * stats.norm.cdf(z / np.sqrt(ratio)) - 1) if ratio > 0 else 1.0
    else:
        out["coverage_mc"] = out["mc_variance_share"] = out["error_variance_ratio"] = None
        out["coverage_deconvolved"] = None
    return out


def score_cate(effects: pd.DataFrame, truth: np.ndarray, *, average: float | None = None,
               y: np.ndarray | None = None, t: np.ndarray | None = None, groups: int = 10,
               truth_se: np.ndarray | None = None, replications: int = 0, level: float = 0.95,
               realised: np.ndarray | None = None) -> tuple[dict[str, Any], pd.DataFrame]:
    """Scores of one estimate's ``effects`` (columns ``point``, ``lower``, ``upper``) against ``truth``
    (same rows; NaN rows are left out). ``average``: the estimate's average effect (for its own
    constant-prediction baseline); ``y``, ``t``: outcomes and treatment indicator (1/0/-1) for the
    estimated uplift curve; ``truth_se``, ``replications``, ``level``: the conditional truth's Monte
    Carlo standard errors, its number of noise replications and the intervals' level, for the scores of
    :func:`truth_mc_error`; ``realised``: each user's realised effect in this world (the individual
    intervals' ``ite_coverage_realised``). Returns (scores, uplift curves). Raises ValueError for fewer than
    ``groups`` users with a known truth."""
    keep = np.isfinite(truth) & np.isfinite(effects["point"].to_numpy(np.float64))
    point = effects["point"].to_numpy(np.float64)[keep]
    tau = np.asarray(truth, dtype=np.float64)[keep]
    if point.size < groups:
        raise ValueError(f"score_cate: {point.size} users with a known effect; need at least {groups}")
    lo, hi = (effects[c].to_numpy(np.float64)[keep] for c in ("lower", "upper"))
    has_int = np.isfinite(lo) & np.isfinite(hi)
    deciles, chi2, chi2_p = _deciles(point, tau, groups)
    slope, slope_se = _slope(point, tau)
    curves = uplift_curves(point, tau, None if y is None else np.asarray(y)[keep],
                           None if t is None else np.asarray(t)[keep])
    from scipy import stats

    rho = stats.spearmanr(point, tau).statistic if np.ptp(point) > 0 and np.ptp(tau) > 0 else float("nan")
    pehe = float(np.sqrt(np.mean((point - tau) ** 2)))
    base = float(np.sqrt(np.mean((tau - tau.mean()) ** 2)))
    scores: dict[str, Any] = {
        "n_users": int(point.size), "pehe": pehe, "pehe_baseline": base,
        "pehe_ratio": pehe / base if base > 0 else None,
        "pehe_baseline_estimate": (float(np.sqrt(np.mean((tau - average) ** 2))) if average is not None else None),
        "true_average": float(tau.mean()), "predicted_average": float(point.mean()),
        "spearman": float(rho),
        "coverage": float(np.mean((lo[has_int] <= tau[has_int]) & (tau[has_int] <= hi[has_int])))
        if has_int.any() else None,
        "coverage_n": int(has_int.sum()),
        "interval_width": float(np.mean(hi[has_int] - lo[has_int])) if has_int.any() else None,
        "calibration_slope": slope, "calibration_slope_se": slope_se,
        "calibration_chi2": chi2, "calibration_chi2_p": chi2_p, "deciles": deciles,
        "auuc_normalised": _auuc(curves),
    }
    if truth_se is not None and replications >= 2:
        scores.update(truth_mc_error(point, tau, lo, hi, np.asarray(truth_se, dtype=np.float64)[keep],
                                     replications, level))
    if "ite_lower" in effects:
        scores.update(_ite_scores(effects, keep, tau, truth_se, replications, level,
                                  None if t is None else np.asarray(t)[keep]))
        if realised is not None:
            r = np.asarray(realised, dtype=np.float64)
            lo_i, hi_i = (effects[k].to_numpy(np.float64) for k in ("ite_lower", "ite_upper"))
            ok = np.isfinite(r) & np.isfinite(lo_i) & np.isfinite(hi_i)
            scores["ite_coverage_realised"] = (float(np.mean((lo_i[ok] <= r[ok]) & (r[ok] <= hi_i[ok])))
                                               if ok.any() else None)
    return scores, curves


def _ite_scores(effects: pd.DataFrame, keep: np.ndarray, tau: np.ndarray, truth_se: np.ndarray | None,
                replications: int, level: float, t: np.ndarray | None = None) -> dict[str, Any]:
    """The coverage scores of the individual conditional effect intervals (``ite_point``,
    ``ite_lower``, ``ite_upper``) against the same truth, prefixed ``ite_``: raw coverage, mean
    width and, with the truth's Monte Carlo error, :func:`truth_mc_error`'s coverage scores with the
    interval's centre ``ite_point`` as the point.

    ``ite_coverage_judged`` is the figure to hold against the level (``ite_judged_on`` says which):
    ``coverage_mc`` when the truth has Monte Carlo error (the interval widened by that error, against
    the noisy truth: it needs no model of the interval's own errors), else the raw coverage (a truth
    without error). Not the deconvolved figure: its normal model with one inflation factor misreads
    intervals whose errors differ by arm, as conformal ones may (0.96 for a true 0.85). Above
    :data:`ITE_WEAK_MC_SHARE` the truth's error dominates and ``ite_judged_weak`` is true.
    ``ite_coverage_treated`` / ``_control``: the judged kind of coverage among treated and control
    users (``t`` 1/0), where a conformal interval's assumption failing shows."""
    c, lo, hi = (effects[k].to_numpy(np.float64)[keep] for k in ("ite_point", "ite_lower", "ite_upper"))
    has = np.isfinite(lo) & np.isfinite(hi)
    covered = (lo <= tau) & (tau <= hi)
    out: dict[str, Any] = {
        "ite_coverage": float(np.mean(covered[has])) if has.any() else None,
        "ite_coverage_n": int(has.sum()),
        "ite_interval_width": float(np.mean(hi[has] - lo[has])) if has.any() else None}
    se = None if truth_se is None or replications < 2 else np.asarray(truth_se, dtype=np.float64)[keep]

    def judged(m: np.ndarray) -> dict[str, Any] | None:
        if not m.any():
            return None
        if se is None:
            return {"coverage": float(np.mean(covered[m]))}
        return truth_mc_error(c[m], tau[m], lo[m], hi[m], se[m], replications, level)
    overall = judged(has)
    if overall is not None and se is not None:
        out.update({f"ite_{k}": overall[k] for k in ("coverage_mc", "mc_variance_share", "error_variance_ratio",
                                                     "coverage_deconvolved")})
    kind, out["ite_judged_on"] = ("coverage_mc", "coverage_mc") if se is not None else ("coverage", "raw")
    out["ite_coverage_judged"] = None if overall is None else overall[kind]
    share = out.get("ite_mc_variance_share")
    out["ite_judged_weak"] = bool(share is not None and share > ITE_WEAK_MC_SHARE)
    for name, value in (("treated", 1), ("control", 0)):
        arm = judged(has & (t == value)) if t is not None else None
        out[f"ite_coverage_{name}"] = None if arm is None else arm[kind]
    return out


def score_estimates_cate(estimates: list[Any], user_truth: pd.DataFrame | None, outcomes: pd.DataFrame,
                         replications: int = 0) -> tuple[list[dict[str, Any]], pd.DataFrame, pd.DataFrame]:
    """Score every ``cate`` estimate with ``user_effects`` against ``user_truth``, using the A/B
    world's ``outcomes`` (columns ``user``, ``arm``, the metrics) for the estimated uplift curves.
    ``replications``: the truth's noise replications (the Monte Carlo-corrected scores of
    :func:`truth_mc_error` when >= 2 and scored against the conditional effect).
    Returns (one score row per estimate, uplift curves, every estimate's user effects), all keyed by
    ``estimator``, ``metric``, ``arm``, ``control``. Estimates without truth rows get a row with
    ``truth_estimand`` None. Each scored estimate also gets ``diagnostics["cate_scores"]``
    (:data:`SUMMARY_KEYS` and ``truth_estimand``)."""
    rows, curves, effects = [], [], []
    for e in estimates:
        if e.estimand != "cate" or e.user_effects is None:
            continue
        key = {"estimator": e.estimator, "metric": e.metric, "arm": e.arm, "control": e.control}
        ue = e.user_effects.reset_index(drop=True)
        effects.append(ue.assign(**key))
        users = ue["user"].to_numpy()
        found = truth_vector(user_truth, users, e.metric, e.arm, e.control) if user_truth is not None else None
        if found is None:
            rows.append({**key, "truth_estimand": None, "level": e.level})
            continue
        tau, which = found
        ab = outcomes.set_index("user").reindex(users)
        arm = ab["arm"].to_numpy()
        t = np.where(arm == e.arm, 1, np.where(arm == e.control, 0, -1))
        y = pd.to_numeric(ab[e.metric], errors="coerce").to_numpy(np.float64) if e.metric in ab else None
        try:
            se = _truth_column(user_truth, users, e, "conditional_se") if which == "conditional" else None
            real = _truth_column(user_truth, users, e, "realised") if "ite_lower" in ue else None
            s, c = score_cate(ue, tau, average=e.point, y=y, t=t, truth_se=se, replications=replications,
                              level=e.level, realised=real)
        except ValueError:
            rows.append({**key, "truth_estimand": which, "level": e.level, "n_users": 0})
            continue
        rows.append({**key, "truth_estimand": which, "level": e.level, **s})
        e.diagnostics["cate_scores"] = {"truth_estimand": which, **{k: s[k] for k in SUMMARY_KEYS},
                                        **{k: s[k] for k in MC_KEYS + ITE_KEYS if k in s}}
        curves.append(c.assign(**key))
    cat = lambda parts: pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()  # noqa: E731
    return rows, cat(curves), cat(effects)


def _truth_column(user_truth: pd.DataFrame, users: np.ndarray, e: Any, column: str) -> np.ndarray | None:
    """``column`` of ``user_truth`` for estimate ``e``'s comparison, in the order of ``users``."""
    t = user_truth[(user_truth["metric"] == e.metric) & (user_truth["arm"] == e.arm)
                   & (user_truth["control"] == e.control)].drop_duplicates("user").set_index("user")
    return t[column].reindex(users).to_numpy(np.float64) if column in t else None




def write_cate_scores(directory: Path, rows: list[dict[str, Any]], curves: pd.DataFrame,
                      effects: pd.DataFrame) -> None:
    """Write ``cate_scores.json`` (strict JSON), ``cate_curves.parquet`` and ``cate_effects.parquet``."""
    directory = Path(directory)
    (directory / SCORES_FILE).write_text(json.dumps(clean(rows), indent=1, allow_nan=False))
    if len(curves):
        curves.to_parquet(directory / CURVES_FILE, index=False)
    if len(effects):
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(effects, preserve_index=False)
        meta = {**(table.schema.metadata or {}),
                b"counterfeed.estimands": json.dumps({c: d for c, d in EFFECT_COLUMNS.items() if c in effects}).encode()}
        pq.write_table(table.replace_schema_metadata(meta), directory / EFFECTS_FILE)
