"""Instrumental variables: two-stage least squares for the LATE, with an Anderson-Rubin interval.

With a binary instrument ``Z`` (the randomized nudge), a binary treatment ``T`` (the arm taken) and no
covariates, 2SLS is the Wald estimator ``(E[Y|Z=1] - E[Y|Z=0]) / (E[T|Z=1] - E[T|Z=0])``, the local
average treatment effect on compliers under independence, exclusion, monotonicity and relevance
(Imbens & Angrist 1994; Angrist, Imbens & Rubin 1996). Covariates ``W``, when given, enter both
stages as exogenous regressors. The point and its heteroskedasticity-robust standard error are
linearmodels' ``IV2SLS(...).fit(cov_type="robust")``.

**The interval is the Anderson-Rubin confidence set** (Anderson & Rubin 1949; robust form: Andrews,
Stock & Sun 2019, "Weak instruments in IV regression: theory and practice", Annu. Rev. Econ. 11,
section 5.1), valid however weak the instrument. With ``pi_y`` and ``pi_t`` the coefficients of
``Z`` in the OLS regressions of ``Y`` and ``T`` on ``[1, W, Z]`` and ``V_yy, V_yt, V_tt`` their
heteroskedasticity-robust (HC0) variances and covariance, the test of ``LATE = b`` is the robust
t-test of ``Z`` in the regression of ``Y - b T`` on ``[1, W, Z]``, whose coefficient is
``pi_y - b pi_t``; the set is every ``b`` it does not reject at ``1 - level``::

    (pi_y - b pi_t)^2 <= q^2 (V_yy - 2 b V_yt + b^2 V_tt),   q = the normal quantile of the level

a quadratic inequality ``a b^2 + c1 b + c0 <= 0`` with ``a = pi_t^2 - q^2 V_tt``. When the robust
first-stage Wald statistic ``F = pi_t^2 / V_tt`` exceeds ``q^2`` (``a > 0``) the set is a bounded
interval around the 2SLS point (close to the Wald interval for a strong instrument). Otherwise it is
unbounded (the whole line, or two rays): the data cannot bound the LATE, the bounds are reported as
``-inf``/``inf`` (``null`` in JSON), ``diagnostics.identified`` is false (the data do not rule out a
zero first stage, so they do not identify the LATE; tables show the estimand as NOT IDENTIFIED) and a
loud warning says so; the 2SLS point is kept beside it but is not an estimate to act on.
The p-value is the Anderson-Rubin test of ``LATE = 0`` (the robust reduced-form test).

**Data that cannot identify the LATE** -- fewer than two nudged or two un-nudged users among those
compared (a rare nudge: with ``nudge_share`` 0.005 and 400 users, 0 or 1 nudged users is a 41% chance),
or treatment shares exactly equal with and without the nudge -- are a chance outcome of the draw, not a
configuration error (a ``nudge_share`` of 0 or 1 is refused at validation): the estimate is NOT
IDENTIFIED (NaN point and bounds, ``null`` in JSON; ``identified: false``; a warning naming the counts),
like a segment too small to compare (``_stats.not_identified_segment``), and the run keeps the other
estimators' results.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from counterfeed.core.scoring import interval_quantile
from counterfeed.errors import ModelError
from counterfeed.plugins.estimators._obs_data import quiet

__all__ = ["IVFit", "ARSet", "anderson_rubin", "fit_2sls", "wald"]


@dataclass
class ARSet:
    """An Anderson-Rubin confidence set: ``lower``/``upper`` (``-inf``/``inf`` when unbounded), its
    ``shape`` ("interval", "two rays" or "whole line"), the rays' inner ends, the first-stage robust
    Wald statistic ``first_stage_f`` and the p-value of ``LATE = 0``."""

    lower: float
    upper: float
    shape: str
    first_stage_f: float
    p_value: float
    rays: tuple[float, float] | None = None


@dataclass
class IVFit:
    point: float
    se: float
    ar: ARSet
    diagnostics: dict[str, Any] = field(default_factory=dict)


def _not_identified(why: str, n1: int, n0: int, shift: float | None = None) -> IVFit:
    """The fit of data that cannot identify the LATE (module docstring): NaN point, standard error and
    bounds, ``identified: false`` and a NOT IDENTIFIED warning ``why`` (the same diagnostics as
    ``_stats.not_identified_segment``'s rows), with the nudge counts ``n1`` (nudged) and ``n0``."""
    nan = math.nan
    diag: dict[str, Any] = {"method": "2sls", "interval": "anderson-rubin", "identified": False,
                            "n_nudged": int(n1), "n_not_nudged": int(n0),
                            "first_stage_shift": None if shift is None or not math.isfinite(shift) else float(shift),
                            "complier_share": None, "first_stage_f": None, "ar_set": "not identified",
                            "warnings": [f"LATE NOT IDENTIFIED: {why}; the LATE is not estimated (no point, no "
                                         "interval)"]}
    return IVFit(nan, nan, ARSet(nan, nan, "not identified", nan, nan), diag)


def wald(y: np.ndarray, t: np.ndarray, z: np.ndarray) -> float:
    """The Wald estimator (ratio of the reduced form to the first stage)."""
    return float((y[z == 1].mean() - y[z == 0].mean()) / (t[z == 1].mean() - t[z == 0].mean()))


def _design(z: np.ndarray, covariates: pd.DataFrame | None) -> np.ndarray:
    cols = [np.ones(len(z))]
    if covariates is not None and covariates.shape[1]:
        cols += [covariates[c].to_numpy(dtype=float) for c in covariates.columns]
    return np.column_stack(cols + [np.asarray(z, dtype=float)])


def anderson_rubin(y: np.ndarray, t: np.ndarray, z: np.ndarray, level: float,
                   covariates: pd.DataFrame | None = None) -> ARSet:
    """The robust Anderson-Rubin set of the module docstring for ``(n,)`` outcome ``y``, treatment ``t``
    and instrument ``z`` at interval level ``level``."""
    from scipy import stats

    x = _design(z, covariates)
    row = np.linalg.solve(x.T @ x, x.T)[-1]  # the weights of (X'X)^-1 X' that give Z's coefficient
    pi_y, pi_t = float(row @ y), float(row @ t)
    coef_y = np.linalg.lstsq(x, y, rcond=None)[0]
    coef_t = np.linalg.lstsq(x, np.asarray(t, dtype=float), rcond=None)[0]
    e_y, e_t = y - x @ coef_y, t - x @ coef_t
    w = row * row
    v_yy, v_yt, v_tt = float(w @ (e_y * e_y)), float(w @ (e_y * e_t)), float(w @ (e_t * e_t))
    q2 = interval_quantile(level) ** 2
    f = pi_t * pi_t / v_tt if v_tt > 0 else (math.inf if pi_t != 0 else 0.0)
    p = float(stats.chi2.sf(pi_y * pi_y / v_yy, 1)) if v_yy > 0 else (0.0 if pi_y != 0 else 1.0)
    a = pi_t * pi_t - q2 * v_tt
    b = -2.0 * (pi_y * pi_t - q2 * v_yt)
    c = pi_y * pi_y - q2 * v_yy
    disc = b * b - 4.0 * a * c
    if a > 0:
        h = math.sqrt(max(disc, 0.0))
        return ARSet((-b - h) / (2 * a), (-b + h) / (2 * a), "interval", f, p)
    if a < 0 and disc > 0:
        h = math.sqrt(disc)
        r = sorted(((-b - h) / (2 * a), (-b + h) / (2 * a)))
        return ARSet(-math.inf, math.inf, "two rays", f, p, (r[0], r[1]))
    return ARSet(-math.inf, math.inf, "whole line", f, p)


def fit_2sls(y: np.ndarray, t: np.ndarray, z: np.ndarray, covariates: pd.DataFrame | None = None,
             min_first_stage_f: float = 10.0, level: float = 0.95) -> IVFit:
    """linearmodels ``IV2SLS(Y, [1, W], T, Z).fit(cov_type="robust")`` (the coefficient of ``T`` and its
    standard error) and the Anderson-Rubin set at ``level`` (:func:`anderson_rubin`).

    Data that cannot identify the LATE (fewer than two users with, or without, the nudge; a nudge that
    leaves the treatment share exactly unchanged) give a NOT IDENTIFIED fit (:func:`_not_identified`:
    NaN point and bounds, a warning naming the counts), not an error: it is a chance outcome of the
    draw, and the run keeps the other estimates. A first stage that is clearly negative (the nudge
    lowers opt-in; robust Wald statistic above ``q^2``) contradicts monotonicity: the set is reported
    unbounded (``ar_set`` "not identified", ``identified`` false), the p-value NaN, with a loud warning. ``complier_share`` is None
    whenever the first stage is not positive (a share cannot be negative; ``first_stage_shift`` keeps it). A first-stage F below ``min_first_stage_f`` (Staiger & Stock 1997) is a
    warning; an unbounded Anderson-Rubin set sets ``identified`` false with a warning that says the LATE
    is not bounded (NOT IDENTIFIED by these data) and names the signed first-stage shift (a complier
    share only when positive).
    """
    from linearmodels.iv import IV2SLS

    z = np.asarray(z, dtype=float)
    if not np.isin(z, (0.0, 1.0)).all():
        raise ModelError("the instrument must be 0/1")
    n1, n0 = int((z == 1).sum()), int((z == 0).sum())
    if min(n1, n0) < 2:
        return _not_identified(f"the nudge (the instrument) reached {n1} of the {n1 + n0} users compared and "
                               f"missed {n0}; two-stage least squares needs at least 2 users with and 2 without "
                               "it (a rare nudge drew too few of one kind in this run)", n1, n0)
    shift = t[z == 1].mean() - t[z == 0].mean()
    if not math.isfinite(shift) or abs(shift) < 1e-12:
        return _not_identified(f"the nudge does not change the share of users taking the treatment "
                               f"({t[z == 1].mean():.4g} of the {n1} nudged users, {t[z == 0].mean():.4g} of the "
                               f"{n0} others), so there is no first stage", n1, n0, shift)
    exog = pd.DataFrame({"const": np.ones(len(y))})
    if covariates is not None and covariates.shape[1]:
        exog = pd.concat([exog, covariates.reset_index(drop=True)], axis=1)
    with quiet():
        res = IV2SLS(pd.Series(y, name="Y"), exog, pd.Series(t, name="T"), pd.Series(z, name="Z")).fit(cov_type="robust")
    ar = anderson_rubin(y, t, z, level, covariates)
    diag: dict[str, Any] = {"method": "2sls", "interval": "anderson-rubin", "se_type": "robust",
                            "first_stage_shift": float(shift), "complier_share": float(shift) if shift > 0 else None,
                            "first_stage_f": ar.first_stage_f if math.isfinite(ar.first_stage_f) else None,
                            "ar_set": ar.shape, "n_nudged": n1, "n_not_nudged": n0}
    warns = []
    if shift < 0 and ar.shape == "interval":
        # the first stage is clearly negative (its robust Wald statistic exceeds q^2). Under
        # monotonicity (the nudge never lowers anyone's opt-in) it is the complier share, which cannot
        # be negative (Imbens & Angrist 1994; Angrist, Imbens & Rubin 1996, section 3): defiers
        # outnumber compliers, the Wald ratio is no effect on compliers, and no interval is reported
        ar = ARSet(-math.inf, math.inf, "not identified", ar.first_stage_f, math.nan)
        diag["ar_set"], diag["identified"] = ar.shape, False
        warns.append(f"LATE NOT IDENTIFIED: the nudge lowers the share taking the treatment (first stage "
                     f"{shift:.3g}), so monotonicity fails: more users defy the nudge than comply with it, there "
                     "is no complier share to report, and the 2SLS ratio is not the effect on compliers (it "
                     "is the effect on defiers only if no user complies); no interval is given")
    elif ar.shape != "interval":
        # the data cannot reject a zero first stage: they do not identify the LATE. The signed shift is
        # named as such; only a positive one is the (estimated) complier share
        where = (f"(-inf, {ar.rays[0]:.4g}] and [{ar.rays[1]:.4g}, inf)" if ar.rays else "every value")
        share = ("the estimated complier share" if shift > 0 else
                 "negative, so there is no complier share")
        diag["identified"] = False
        warns.append(f"WEAK INSTRUMENT: the LATE is not bounded by these data (NOT IDENTIFIED by them). The "
                     f"nudge barely moves the treatment (first-stage F = {ar.first_stage_f:.2f}, first-stage "
                     f"shift {shift:.3g}: {share}), so the {level:.0%} Anderson-Rubin confidence set is "
                     f"unbounded ({where}); no interval is given and the 2SLS point is not an estimate to "
                     "act on")
    elif ar.first_stage_f < min_first_stage_f:
        warns.append(f"weak instrument: first-stage F = {ar.first_stage_f:.1f} < {min_first_stage_f:g}; the "
                     "interval is the weak-instrument-robust Anderson-Rubin set, wider than the Wald interval")
    if warns:
        diag["warnings"] = warns
    if ar.rays:
        diag["ar_rays"] = list(ar.rays)
    se = float(res.std_errors["T"])
    return IVFit(float(res.params["T"]), se if math.isfinite(se) else math.nan, ar, diag)
