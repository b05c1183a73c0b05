"""Refutation (DoWhy's refuters) and sensitivity to unobserved confounding (Cinelli & Hazlett 2020).

:func:`refute` re-runs a backdoor estimate's own DoWhy estimator under three refuters: a placebo
treatment (the treatment permuted: the effect should vanish), a random common cause (an independent
covariate added to the adjustment set: the estimate should not move) and data subsets (80% of the
users: the estimate should not move). Each reports the refuted effect (mean over simulations), DoWhy's
p-value of the original estimate (0 for the placebo) under the simulations' distribution, and
``passed``: the refuted effect lies within the estimate's own interval half-width (``q se``) of what
it should be (0 for the placebo, the estimate for the others). DoWhy's p-value compares the estimate
with the spread of a handful of simulations, which is far narrower than the estimate's sampling
error, so a shift of a fraction of a standard error "fails" it; the half-width asks whether the
refutation moves the estimate by more than its own uncertainty.

:func:`sensitivity` is the omitted-variable-bias analysis of the linear outcome regression
``Y ~ 1 + T + W`` on the same adjustment set: the robustness values ``RV`` (a confounder explaining
``RV`` of the residual variance of both treatment and outcome brings the estimate to 0) and
``RV_alpha`` (to make it insignificant at ``1 - level``), and the bias-adjusted estimate under a
confounder ``k`` times as strong as the strongest observed covariate (the benchmark of Cinelli &
Hazlett 2020, section 6; the same formulas as DoWhy's ``LinearSensitivityAnalyzer``). The verdict is
"not robust" when that adjusted interval contains 0 (or the estimate is not significant to begin
with), else "robust".

Reference: Cinelli, C. & Hazlett, C. (2020). Making sense of sensitivity: extending omitted variable
bias. JRSS B 82(1), 39-67. Sharma, A. & Kiciman, E. (2020). DoWhy, arXiv:2011.04216.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from counterfeed.plugins.estimators._obs_data import quiet

__all__ = ["refute", "sensitivity", "robustness_value", "REFUTERS"]

#: DoWhy method name -> (short name, extra arguments)
REFUTERS: dict[str, tuple[str, dict[str, Any]]] = {
    "placebo_treatment_refuter": ("placebo treatment", {"placebo_type": "permute"}),
    "random_common_cause": ("random common cause", {}),
    "data_subset_refuter": ("data subset", {"subset_fraction": 0.8}),
}


def refute(fit: Any, simulations: int, seed: int, half_width: float) -> list[dict[str, Any]]:
    """Run each of :data:`REFUTERS` on a :class:`~._obs_backdoor.BackdoorFit` (``simulations`` each,
    random state keyed by ``seed``); one dict per refuter (see the module docstring; ``half_width``:
    the estimate's interval half-width)."""
    out = []
    for i, (method, (name, extra)) in enumerate(REFUTERS.items()):
        with quiet():
            res = fit.model.refute_estimate(fit.identified, fit.estimate, method_name=method,
                                            num_simulations=simulations,
                                            random_state=np.random.RandomState((seed * 7919 + i) % 2**32), **extra)
        p = res.refutation_result.get("p_value") if isinstance(res.refutation_result, dict) else None
        p = None if p is None or not math.isfinite(float(p)) else float(p)
        new = float(res.new_effect)
        target = 0.0 if method == "placebo_treatment_refuter" else float(fit.point)
        out.append({"refuter": name, "new_effect": new, "expected": target, "p_value": p,
                    "passed": bool(abs(new - target) <= half_width) if math.isfinite(new) else None})
    return out


def _t_quantile(q: float, df: float) -> float:
    from scipy import stats

    return float(stats.t.ppf(q, df))


def robustness_value(t_stat: float, df: float, alpha: float | None = None) -> float:
    """Cinelli & Hazlett's robustness value ``RV_q`` (q = 1) of a coefficient with t-statistic
    ``t_stat`` and residual ``df``; with ``alpha``, ``RV_{q,alpha}`` (eq. 18-19 of the paper)."""
    f = abs(t_stat) / math.sqrt(df)
    if alpha is None:
        return 0.5 * (math.sqrt(f ** 4 + 4 * f ** 2) - f ** 2)
    f_crit = abs(_t_quantile(alpha / 2, df - 1)) / math.sqrt(df - 1)
    fa = f - f_crit
    if fa < 0:
        return 0.0
    if f > 1 / f_crit:
        return (f ** 2 - f_crit ** 2) / (1 + f ** 2)
    return 0.5 * (math.sqrt(fa ** 4 + 4 * fa ** 2) - fa ** 2)


def _ols(y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Coefficients, classical t-statistics and residual df of OLS (x includes the constant)."""
    import statsmodels.api as sm

    with quiet():
        res = sm.OLS(y, x).fit()
    return np.asarray(res.params), np.asarray(res.tvalues), float(res.df_resid)


def _partial_r2(t: np.ndarray, df: float) -> np.ndarray:
    return t ** 2 / (t ** 2 + df)


def _pct(x: float) -> str:
    """A share as a percentage with three significant digits (0.0003 -> "0.03%", never "0.0%")."""
    return f"{100 * x:.3g}%"


def sensitivity(frame: pd.DataFrame, adjust: list[str], level: float, k: float = 1.0,
                of: str | None = None) -> dict[str, Any]:
    """The sensitivity analysis of the module docstring for the comparison ``frame`` (``T``, ``Y``,
    covariates) adjusted for ``adjust``; ``k`` scales the benchmark (a confounder k times as strong
    as the strongest observed covariate, in partial R2 with treatment and outcome). ``of``: the
    estimator it is reported with when that is not the linear regression itself; the message then
    says that the bounds are the regression's (``"of": "backdoor-regression"``)."""
    alpha = 1 - level
    y, t = frame["Y"].to_numpy(dtype=float), frame["T"].to_numpy(dtype=float)
    w = frame[adjust].to_numpy(dtype=float) if adjust else np.zeros((len(y), 0))
    x = np.column_stack([np.ones(len(y)), t, w])
    beta, tv, df = _ols(y, x)
    est, t_stat = float(beta[1]), float(tv[1])
    if not (math.isfinite(t_stat) and df > 1):
        return {"verdict": "not robust", "message": "not robust: the effect is not estimable from these data"}
    se = abs(est / t_stat) if t_stat != 0 else 0.0
    rv, rv_a = robustness_value(t_stat, df), robustness_value(t_stat, df, alpha)
    out: dict[str, Any] = {"method": "cinelli-hazlett", "estimate": est, "t": t_stat, "df": df,
                           "partial_r2_treatment": float(_partial_r2(np.array(t_stat), df)),
                           "robustness_value": rv, "robustness_value_alpha": rv_a, "benchmark_k": k}
    bench = _benchmark(y, t, w, adjust, tv, df, est, se, k, alpha)
    out.update(bench)
    rvs = (f"a confounder explaining {_pct(rv)} of the residual variance of treatment and outcome would bring the "
           f"estimate to 0 ({_pct(rv_a)} would make it insignificant at {level:.0%})")
    if rv_a == 0.0:
        out["verdict"] = "not robust"
        out["message"] = (f"not robust: the {level:.0%} interval already contains 0 "
                          f"(a confounder explaining {_pct(rv)} of the residual variance would bring the estimate to 0)")
    elif not bench:
        out["verdict"] = "not robust"
        out["message"] = f"not robust: {rvs} (no observed covariate to benchmark it against)"
    elif bench["adjusted_lower"] <= 0.0 <= bench["adjusted_upper"] or np.sign(bench["adjusted_estimate"]) != np.sign(est):
        out["verdict"] = "not robust"
        out["message"] = (f"not robust: a confounder {k:g}x as strong as '{bench['benchmark']}' would make it "
                          f"insignificant or reverse it; {rvs}")
    else:
        out["verdict"] = "robust"
        out["message"] = f"robust: a confounder {k:g}x as strong as '{bench['benchmark']}' would leave it significant; {rvs}"
    if of is not None:  # the Cinelli-Hazlett bounds are those of a linear regression, not of `of` itself
        out["of"] = "backdoor-regression"
        out["message"] = (f"(of the linear regression on the same adjustment set, estimate {est:.4g}, not of "
                          f"{of}'s own estimate) {out['message']}")
    return out


def _benchmark(y, t, w, adjust, tv, df, est, se, k, alpha) -> dict[str, Any]:
    """Bias-adjusted estimate and interval under the strongest ``k``-times-an-observed-covariate confounder."""
    if not adjust:
        return {}
    _, tv_t, df_t = _ols(t, np.column_stack([np.ones(len(t)), w]))
    r2y = _partial_r2(tv[2:], df)  # each covariate with the outcome, given T and the others
    r2t = _partial_r2(tv_t[1:], df_t)  # each covariate with the treatment, given the others
    best: dict[str, Any] = {}
    for j, name in enumerate(adjust):
        if not (np.isfinite(r2y[j]) and np.isfinite(r2t[j])) or k * r2t[j] >= 1 or r2y[j] >= 1:
            continue
        r2tu = k * r2t[j] / (1 - r2t[j])
        eta = k * r2t[j] ** 2 / ((1 - k * r2t[j]) * (1 - r2t[j]))
        if r2tu >= 1 or eta >= 1:
            continue
        r2yu = min(1.0, ((math.sqrt(k) + math.sqrt(eta)) / math.sqrt(1 - eta)) ** 2 * r2y[j] / (1 - r2y[j]))
        bias = math.sqrt(r2yu * r2tu / (1 - r2tu)) * se * math.sqrt(df)
        if best and bias <= best["bias"]:
            continue
        adj = float(np.sign(est) * (abs(est) - bias))  # the confounder pulls the estimate towards 0
        adj_se = math.sqrt((1 - r2yu) / (1 - r2tu)) * se * math.sqrt(df / (df - 1))
        q = abs(_t_quantile(alpha / 2, df))
        best = {"benchmark": name, "bias": bias, "r2_treatment_confounder": float(r2tu),
                "r2_outcome_confounder": float(r2yu), "adjusted_estimate": adj, "adjusted_se": adj_se,
                "adjusted_lower": adj - q * adj_se, "adjusted_upper": adj + q * adj_se}
    return best
