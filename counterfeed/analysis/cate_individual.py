"""Individual conditional effect intervals: intervals for each user's own effect ``tau_i``, not for
the conditional average effect ``tau(x) = E[tau_i | X = x]`` that a CATE interval covers.

A CATE learner's per-user interval covers ``tau(X_i)``. Users with the same covariates can still
differ in their effect, ``tau_i = tau(X_i) + u_i``, and an interval for ``tau_i`` must also hold
``u_i``. ``Var(u | X)`` is **not identified** from a cross-sectional two-arm experiment: the joint
law of ``(Y(0), Y(1))`` is not, and the variance of the doubly robust pseudo-outcome around
``tau(X)`` is ``Var(Y(1) | X) / e + Var(Y(0) | X) / (1 - e)``, in which ``Var(tau_i | X)`` does not
appear (Heckman, Smith & Clements 1997, Rev. Econ. Stud. 64: bounds on the distribution of effects;
Ding, Feller & Miratrix 2019, JASA 114: the unidentified variance of individual effects; Lei &
Candes 2021, JRSS-B 83: intervals for individual effects need more than CATE intervals). What is
added here is per-user repeated measurements and a **stated assumption**:

**Assumption (stated in every output).** (A1) A user's individual effect is uncorrelated, given
the covariates ``X`` (pre-period outcomes among them), with the user's untreated outcome's
deviation from its prediction, ``d_i = E[Y_i(0) | user i] - mu0(X_i)``:
``Cov(u_i, d_i | X) = 0`` (a user-level, variance form of parallel trends: the users who would
have done better without the treatment than their pre-period predicts are not the ones it helps
more or less). (A2) Within the experiment the user's per-period outcomes (days) vary around their
mean independently, so ``P * var(per-period values)`` (``P`` periods) estimates the noise variance
``v_i`` of the user's total, up to a bias common to both arms.

**Estimator** (method of moments; per (metric, arm), on the compared users). With the learner's
out-of-fold effect ``tau_hat_i`` and the out-of-fold control-outcome model ``mu0_i`` (on every
covariate), a treated user's residual is ``m_i = Y_i - mu0_i - tau_hat_i = (tau_i - tau_hat_i) +
d_i + eps_i`` and a control user's ``r_i = Y_i - mu0_i = d_i + eps_i``. Under (A1)-(A2)

    E[m^2 - v | T=1, X] - E[r^2 - v | T=0, X] = E[(tau_i - tau_hat_i)^2 | X] =: V(X),

the mean squared error of the CATE prediction for individual users: the CATE's own error plus the
unexplained heterogeneity ``Var(u | X)`` (plus any misspecification of the final stage). ``A(X)``
and ``B(X)`` are OLS fits of ``m^2 - v`` (treated) and ``r^2 - v`` (control) on the effect
modifiers (per-cell means when the modifiers are indicators), HC1 covariance (statsmodels);
``V(X) = A(X) - B(X)``. A user's variance is ``max(V(X_i), s_i^2)``, ``s_i`` the CATE interval's
standard error: never narrower than the CATE interval; where ``V`` is below it (the unexplained
variance estimated negative) the interval is the CATE interval and a warning says so.

- ``mode="covariates"``: ``tau_hat_i +- z sqrt(max(V(X_i), s_i^2))`` for every compared user.
- ``mode="posterior"`` (empirical Bayes; Morris 1983, JASA 78): a treated user's own outcome is a
  second, independent measurement of ``tau_i``: ``m_i + tau_hat_i = tau_i + d_i + eps_i`` with
  noise variance ``W_i = max(B(X_i), 0) + v_i``. With the prior ``N(tau_hat_i, P_i)``,
  ``P_i = max(V(X_i), s_i^2)``, the posterior is ``N(tau_hat_i + k_i m_i, k_i W_i)``,
  ``k_i = P_i / (P_i + W_i)``; control users (no measurement of ``tau_i``) keep the prior interval.
  Normal-normal posterior intervals have the nominal coverage on average over the users when prior
  and noise are right (Morris 1983), the property the per-user coverage score measures.

**What the data alone identify** (``mode="bounds"``; Heckman, Smith & Clements 1997, Sec. 3:
Frechet-Hoeffding bounds on the joint law of the potential outcomes). Without (A1), the treated
users' residual signal ``a_i = (tau_i - tau_hat_i) + d_i`` and the control users' ``b_i = d_i`` are
known only in their second moments ``A(X) = E[a^2 | X]`` and ``B(X) = E[b^2 | X]`` (under A2), and
``V(X) = E[(a - b)^2 | X]``; by Cauchy-Schwarz every coupling of the two gives

    (sqrt(A) - sqrt(B))^2 <= V(X) <= (sqrt(A) + sqrt(B))^2,

sharp given only these second moments (the ends are perfectly correlated couplings; the
Frechet-Hoeffding couplings of the two marginal laws can only narrow it when their shapes differ). (A1) picks
``V = A - B`` inside this set when ``A >= B``; when ``A < B`` it lies below the set, so the data
contradict (A1) or (A2). ``mode="bounds"`` uses the upper end: ``tau_hat_i +- z sqrt(max(V_hi(X_i),
s_i^2))``, an interval for ``tau_i`` valid without (A1) whenever the noise is not overestimated
(daily variation that misses multi-day dependence underestimates it, which only widens the bounds);
it is as wide as the users' untreated spread allows, which is the price of not assuming (A1). The
bounds are in every output (``identified_bounds``).

**Direction of error when (A1) fails.** A negative ``Cov(u, d | X)`` (users who do worse untreated
than predicted gain more) lowers ``V``: the intervals undercover; a positive one widens them.
**Precision.** ``V`` is a difference of two variances each dominated by the users' own noise, so
its standard error is about ``sqrt(2 / n_arm) (Var(Y | X) + ...)`` per cell: for heterogeneity
small against a user's noise it is wider than ``V`` itself, and the output says so
(``weakly_identified`` warning).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from counterfeed.core.contracts import WorldEvents
from counterfeed.core.scoring import interval_quantile
from counterfeed.errors import DataError

__all__ = ["ASSUMPTION", "ASSUMPTION_BOUNDS", "ESTIMAND", "variance_bounds", "IndividualIntervals", "period_totals",
           "noise_variance", "individual_intervals"]

#: the estimand, named in every output
ESTIMAND = ("individual conditional effect interval: covers the user's own expected effect tau_i "
            "(over the noise of the world), not only tau(X) = E[tau_i | X]")
#: the identifying assumption, stated in every output (diagnostics, report, docs)
ASSUMPTION = ("ASSUMED, NOT TESTABLE FROM THE EXPERIMENT: a user's individual effect is uncorrelated, given "
              "the covariates (pre-period outcomes among them), with the user's untreated outcome's deviation "
              "from its prediction (variance form of user-level parallel trends), and per-period (daily) "
              "outcomes vary independently around the user's mean; if users who do worse untreated than "
              "predicted gain more, the intervals undercover")
#: the assumption of ``mode="bounds"`` (no assumption on how a user's effect relates to their untreated outcome)
ASSUMPTION_BOUNDS = ("ASSUMED: per-period (daily) outcomes vary independently around the user's mean (if they are "
                     "positively dependent, the noise is underestimated and the bounds only widen); nothing is assumed "
                     "about how a user's effect relates to their untreated outcome: the interval uses the largest "
                     "unexplained effect variance the data allow (Frechet-Hoeffding bound, Heckman, Smith & Clements "
                     "1997), so it is valid but wide")


@dataclass
class IndividualIntervals:
    """Per compared user: the interval's centre and bounds, the variance of the CATE's error for the
    individual (``V(X_i)`` floored at ``s_i^2``), and the diagnostics (strict-JSON-able)."""

    point: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    variance: np.ndarray
    diagnostics: dict[str, Any] = field(default_factory=dict)


def period_totals(events: WorldEvents, metric: str, users: np.ndarray, start: float, end: float) -> np.ndarray:
    """(n, P) per-period totals of ``metric`` for ``users`` over ``[start, end)`` cut into
    ``P = round(end - start)`` equal periods (days for a whole-day experiment).

    The metric must be a per-session sum (a column of ``events.sessions``: clicks, impressions,
    dwell) or ``sessions`` (the count). Raises :class:`DataError` for another metric or fewer than 2
    periods."""
    s = events.sessions
    p = int(round(end - start))
    if p < 2:
        raise DataError(f"individual intervals: the experiment lasts {end - start:g} days; the users' noise "
                        "is estimated from their per-day variation, which needs at least 2 days")
    if metric in s and metric not in ("user", "session", "time", "arm", "churned"):
        w = np.asarray(s[metric], dtype=np.float64)
    elif metric == "sessions":
        w = np.ones(len(s["user"]), dtype=np.float64)
    else:
        raise DataError(f"individual intervals: metric '{metric}' is not a per-session sum (clicks, impressions, "
                        "dwell or sessions); its per-day values, which measure the users' noise, are unknown")
    t = np.asarray(s["time"], dtype=np.float64)
    inside = (t >= start) & (t < end)
    period = np.minimum(((t[inside] - start) / ((end - start) / p)).astype(np.int64), p - 1)
    out = np.zeros((events.n_users, p))
    np.add.at(out, (np.asarray(s["user"], dtype=np.int64)[inside], period), w[inside])
    return out[np.asarray(users, dtype=np.int64)]


def noise_variance(totals: np.ndarray, outcome: np.ndarray, metric: str) -> np.ndarray:
    """(n,) noise variance of each user's total, ``P * var(per-period values, ddof=1)`` (independent
    periods, assumption A2). Raises :class:`DataError` when the periods do not add up to ``outcome``
    (the metric is not the per-session sum that :func:`period_totals` assumed)."""
    if not np.allclose(totals.sum(axis=1), outcome, rtol=1e-9, atol=1e-6):
        raise DataError(f"individual intervals: metric '{metric}': the per-day values do not add up to the "
                        "users' outcomes, so the metric is not a per-session sum")
    return totals.shape[1] * totals.var(axis=1, ddof=1)


def variance_bounds(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sharp bounds on ``E[(a - b)^2]`` given only ``E[a^2] = a`` and ``E[b^2] = b`` (each floored at
    0): ``((sqrt(a) - sqrt(b))^2, (sqrt(a) + sqrt(b))^2)`` (Cauchy-Schwarz; attained by perfectly
    correlated couplings; Heckman, Smith & Clements 1997 for such bounds on the distribution of
    effects). Arrays of any equal shape; returns two arrays of that shape."""
    ra, rb = np.sqrt(np.maximum(a, 0.0)), np.sqrt(np.maximum(b, 0.0))
    return (ra - rb) ** 2, (ra + rb) ** 2


def _fit(target: np.ndarray, design: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """OLS of ``target`` on ``design`` (statsmodels, HC1 covariance): (parameters, their covariance)."""
    import statsmodels.api as sm

    res = sm.OLS(target, design).fit(cov_type="HC1")
    return np.asarray(res.params), np.asarray(res.cov_params())


def individual_intervals(point: np.ndarray, se: np.ndarray, y: np.ndarray, t: np.ndarray, mu0: np.ndarray,
                         v: np.ndarray, modifiers: np.ndarray, names: list[str], level: float,
                         mode: Literal["covariates", "posterior", "bounds"] = "posterior") -> IndividualIntervals:
    """Individual conditional effect intervals for the compared users (see the module).

    Parameters
    ----------
    point, se : (n,) out-of-fold CATE predictions and their interval's standard error.
    y, t, mu0 : (n,) outcome, treatment indicator (0/1) and out-of-fold control-outcome prediction.
    v : (n,) each user's noise variance of ``y`` (:func:`noise_variance`).
    modifiers : (n, q) the effect modifiers (the variance functions' regressors); ``names`` theirs.
    level : interval level; ``mode``: ``covariates``, ``posterior`` (empirical Bayes for treated users)
        or ``bounds`` (the upper Frechet-Hoeffding bound, no assumption (A1)).
    """
    n = point.size
    keep = np.ptp(modifiers, axis=0) > 0 if n else np.zeros(modifiers.shape[1], dtype=bool)
    design = np.column_stack([np.ones(n), modifiers[:, keep]])
    treated, control = t == 1, t == 0
    m = y - mu0 - point
    r = y - mu0
    pa, ca = _fit(m[treated] ** 2 - v[treated], design[treated])
    pb, cb = _fit(r[control] ** 2 - v[control], design[control])
    a_fit, b_fit = design @ pa, design @ pb
    big_v = a_fit - b_fit  # E[(tau_i - tau_hat_i)^2 | X] under (A1)
    v_lo, v_hi = variance_bounds(a_fit, b_fit)  # what the data allow without (A1)
    prior = np.maximum(v_hi if mode == "bounds" else big_v, se ** 2)
    z = interval_quantile(level)
    centre, var = point.copy(), prior.copy()
    if mode == "posterior":
        w = np.maximum(b_fit, 0.0) + v
        upd = treated & (w > 0)  # a measurement with no estimated noise is not trusted
        k = prior[upd] / (prior[upd] + w[upd])
        centre[upd] = point[upd] + k * m[upd]
        var[upd] = k * w[upd]
    half = z * np.sqrt(var)
    # the unexplained variance Var(u | X) = V(X) - s^2, averaged, with its standard error
    unexplained = big_v - se ** 2
    cov = ca + cb  # the two arms' fits are independent
    mean_row = design.mean(axis=0)
    se_mean = float(np.sqrt(max(mean_row @ cov @ mean_row, 0.0)))
    bounds = [float(np.mean(v_lo - se ** 2)), float(np.mean(v_hi - se ** 2))]
    diag: dict[str, Any] = {
        "estimand": ESTIMAND, "assumption": ASSUMPTION_BOUNDS if mode == "bounds" else ASSUMPTION, "mode": mode,
        "unexplained_variance": float(np.mean(unexplained)), "unexplained_variance_se": se_mean,
        "identified_bounds": bounds,
        "floored_share": float(np.mean((v_hi if mode == "bounds" else big_v) < se ** 2)),
        "cate_variance": float(np.mean(se ** 2)), "untreated_deviation_variance": float(np.mean(b_fit)),
        "noise_variance": float(np.mean(v)), "mean_width": float(np.mean(2 * half)),
        "cells": _cells(modifiers, design, names, unexplained, cov, (v_lo - se ** 2, v_hi - se ** 2)),
    }
    warnings: list[str] = []
    if mode != "bounds":
        warnings += _assumption_warnings(diag, se_mean, bounds)
    diag["warnings"] = warnings
    return IndividualIntervals(centre, centre - half, centre + half, prior, diag)


def _assumption_warnings(diag: dict[str, Any], se_mean: float, bounds: list[float]) -> list[str]:
    """The warnings of the (A1)-(A2) modes: floored users, a weakly identified variance, and the
    identified set that the assumption's point is chosen from."""
    warnings: list[str] = []
    if diag["floored_share"] > 0:
        warnings.append(f"individual intervals: the unexplained effect variance is estimated negative for "
                        f"{diag['floored_share']:.0%} of the users; their interval is the CATE interval (for "
                        "tau(X)), which undercovers individual effects if effects vary within X; a negative "
                        "estimate also arises when the assumption fails (effect negatively correlated with the "
                        "untreated outcome's deviation)")
    allowed = (f"without the assumption the data allow any unexplained effect variance in [{bounds[0]:.3g}, "
               f"{bounds[1]:.3g}] (Frechet-Hoeffding bounds, Heckman, Smith & Clements 1997); "
               "individual_intervals: bounds gives intervals valid without it (wide)")
    if not (diag["unexplained_variance"] > 2 * se_mean):
        warnings.append(f"individual intervals: WEAKLY IDENTIFIED: the unexplained effect variance "
                        f"{diag['unexplained_variance']:.3g} has standard error {se_mean:.3g} (users' own noise "
                        f"dominates); the interval widths are uncertain by that much; {allowed}")
    if diag["unexplained_variance"] < bounds[0] - 2 * se_mean:
        warnings.append(f"individual intervals: ASSUMPTION CONTRADICTED: its unexplained effect variance "
                        f"{diag['unexplained_variance']:.3g} lies more than two standard errors ({se_mean:.3g}) below "
                        f"the smallest the data allow; {allowed}")
    return warnings


def _cells(modifiers: np.ndarray, design: np.ndarray, names: list[str], unexplained: np.ndarray,
           cov: np.ndarray, bounds: tuple[np.ndarray, np.ndarray]) -> list[dict[str, Any]] | None:
    """Per distinct modifier row (at most 20; None otherwise): users, unexplained variance, its se and
    its identified bounds."""
    rows, inverse = np.unique(modifiers, axis=0, return_inverse=True)
    if rows.shape[0] > 20:
        return None
    inverse = inverse.ravel()
    out = []
    for j in range(rows.shape[0]):
        first = int(np.flatnonzero(inverse == j)[0])
        out.append({"modifiers": {nm: float(x) for nm, x in zip(names, rows[j])}, "users": int((inverse == j).sum()),
                    "unexplained_variance": float(unexplained[first]),
                    "identified_bounds": [float(bounds[0][first]), float(bounds[1][first])],
                    "se": float(np.sqrt(max(design[first] @ cov @ design[first], 0.0)))})
    return out
