"""Backdoor adjustment through DoWhy: regression, inverse propensity weighting, AIPW, matching.

Each function takes a comparison frame (``T``, ``Y`` and covariate columns) and the adjustment set
identified from the declared graph, estimates the ATE with DoWhy's estimator and returns a
:class:`BackdoorFit`: the point (DoWhy's value), its standard error and degrees of freedom, and the
DoWhy model, identified estimand and estimate (so the refuters can re-run the same estimator).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from counterfeed.errors import ModelError
from counterfeed.plugins.estimators._obs_data import in_column_order, quiet

__all__ = ["BackdoorFit", "standardized", "fit_regression", "fit_ipw", "fit_aipw", "fit_matching", "dowhy_model",
           "matching_variance", "hajek_se", "sample_ate_se", "overlap", "TRIM"]

#: Crump, Hotz, Imbens & Mitnik (2009, Biometrika 96(1)): with a homoskedastic outcome, the ATE is
#: estimated most precisely on the users whose propensity lies in ``[0.1, 0.9]`` (their rule of thumb)
TRIM = 0.1
#: the share of users outside ``[TRIM, 1 - TRIM]`` above which the overlap is called poor
POOR_OVERLAP_SHARE = 0.2
#: users of the smaller arm per propensity covariate below which the logistic propensity is unstable
#: (Peduzzi et al. 1996, J. Clin. Epidemiol. 49(12): ten events per variable)
EVENTS_PER_VARIABLE = 10
#: above this share of users outside the common support (and at least LACKS_SUPPORT_USERS of them) the
#: ATE over all users is not identified without extrapolation: a group the other arm never reaches.
#: In the shipped observational_selection 2-3% of users fall outside (the arms' extreme tails);
#: a break test's segment of 15% that was never treated gave backdoor-ipw 1.27 [1.05, 1.49] and
#: backdoor-matching 0.74 [0.29, 1.20] against a true 2, unwarned
LACKS_SUPPORT_SHARE = 0.05
LACKS_SUPPORT_USERS = 10
#: a user lacks support only when outside the common support *and* the fitted propensity all but rules
#: out the other arm (below EXTREME_PROPENSITY or above 1 - it): the arms' few most extreme users of a
#: smooth design are outside the range too, but at ordinary propensities (a second break test flagged
#: 20-70% of well-overlapping designs of 200 users on the range alone)
EXTREME_PROPENSITY = 0.01
#: printed under every matching estimate: its interval is measured to undercover (docs/observational.md)
MATCHING_WARNING = ("APPROXIMATE INTERVAL: one-nearest-neighbour matching's Abadie-Imbens interval covered "
                    "about 91-92% at a nominal 95% in counterfeed's calibration (docs/observational.md, "
                    "'Positivity'); use aipw for inference")


@dataclass
class BackdoorFit:
    """A backdoor estimate of the ATE: ``point``, ``se`` (``df``: t degrees of freedom, inf = normal)."""

    point: float
    se: float
    df: float
    diagnostics: dict[str, Any] = field(default_factory=dict)
    model: Any = None
    identified: Any = None
    estimate: Any = None


def dowhy_model(frame: pd.DataFrame, adjust: list[str]) -> tuple[Any, Any, pd.DataFrame]:
    """DoWhy's CausalModel of ``T -> Y`` with ``adjust`` as common causes, its identified estimand and
    the data frame it holds."""
    from dowhy import CausalModel

    data = frame[["T", "Y", *adjust]].copy()
    with quiet():
        model = CausalModel(data, "T", "Y", common_causes=list(adjust) or None)
        ident = in_column_order(model.identify_effect(proceed_when_unidentifiable=True), list(adjust))
    return model, ident, data


def _estimate(frame: pd.DataFrame, adjust: list[str], method: str, **params: Any) -> tuple[Any, Any, Any]:
    model, ident, data = dowhy_model(frame, adjust)
    columns = list(data.columns)
    with quiet():
        est = model.estimate_effect(ident, method_name=method, target_units="ate", **params)
    for col in [c for c in data.columns if c not in columns]:
        # DoWhy's propensity estimators write their propensities and weights into the model's data;
        # removed so that the refuters' re-estimates fit their own propensities
        del data[col]
    if est is None or est.value is None or not math.isfinite(float(est.value)):
        raise ModelError(f"DoWhy's {method} gave no finite estimate")
    return model, ident, est


def standardized(frame: pd.DataFrame, adjust: list[str]) -> pd.DataFrame:
    """``frame`` with each ``adjust`` column centred and scaled to sd 1 (a constant one only centred).
    Every back-door estimate is invariant to affine maps of its covariates, but their numerics are
    not: OLS with a covariate ``1e8 + x`` beside the intercept lost ``x`` to rank truncation and
    returned the unadjusted, confounded difference (a break test)."""
    out = frame.copy()
    for c in adjust:
        v = out[c].to_numpy(dtype=np.float64)
        sd = float(v.std())
        out[c] = (v - v.mean()) / (sd if sd > 0 and math.isfinite(sd) else 1.0)
    return out


def _design(frame: pd.DataFrame, adjust: list[str]) -> np.ndarray:
    return np.column_stack([np.ones(len(frame)), frame["T"].to_numpy(), frame[adjust].to_numpy(dtype=float)])


def overlap(frame: pd.DataFrame, adjust: list[str], folds: int = 0) -> tuple[dict[str, Any], list[str], bool]:
    """Positivity check for the propensity-based estimators (Imbens & Rubin 2015, "Causal Inference
    for Statistics, Social, and Biomedical Sciences", ch. 14): the logistic propensity ``e(W)`` of
    :func:`_propensity_model` on ``adjust``, and ``(diagnostics, warnings, none)``.

    ``none`` is True when the two arms' propensity ranges share fewer than two users of either arm
    (no common support: every comparison is an extrapolation and the ATE is not identified from these
    data; the caller then reports no interval). A warning (upper case, printed under the table) when
    more than ``POOR_OVERLAP_SHARE`` of the users have ``e`` outside ``[TRIM, 1 - TRIM]`` (Crump et al.
    2009), when the smaller arm has fewer than ``EVENTS_PER_VARIABLE`` users per covariate (Peduzzi
    et al. 1996), and, with ``folds`` (AIPW's cross-fitting), ModelError when an arm has fewer than
    ``2 * folds`` users (a held-out fold would hold fewer than two users of it). Diagnostics: the
    per-arm propensity ranges, ``outside_trim_share``, ``common_support_share`` and the Kish
    effective sample size of each arm's inverse propensity weights (``ess_treatment``, ``ess_control``).
    More than ``LACKS_SUPPORT_SHARE`` of the users (and at least ``LACKS_SUPPORT_USERS``) outside the
    common support with a propensity beyond ``EXTREME_PROPENSITY`` (``lacks_support_share``) is a
    "not identified" warning: the ATE over all users needs extrapolation there.
    """
    t = frame["T"].to_numpy(dtype=float)
    n1, n0 = int(t.sum()), int(len(t) - t.sum())
    if folds and min(n1, n0) < 2 * folds:
        raise ModelError(f"{folds}-fold cross-fitting needs at least {2 * folds} users in each arm "
                         f"(treated {n1}, control {n0}): too few users for the nuisance models")
    if not adjust or min(n1, n0) < 1:
        return {}, [], False
    with quiet():
        ps = _propensity_model().fit(frame[adjust].to_numpy(dtype=float), t).predict_proba(
            frame[adjust].to_numpy(dtype=float))[:, 1]
    p1, p0 = ps[t == 1], ps[t == 0]
    lo, hi = max(p1.min(), p0.min()), min(p1.max(), p0.max())
    inside = (ps >= lo) & (ps <= hi)
    w1, w0 = 1 / p1, 1 / (1 - p0)
    outside = float(np.mean((ps < TRIM) | (ps > 1 - TRIM)))
    lacking = ~inside & ((ps < EXTREME_PROPENSITY) | (ps > 1 - EXTREME_PROPENSITY))
    diag = {"propensity_treatment": [float(p1.min()), float(p1.max())],
            "propensity_control": [float(p0.min()), float(p0.max())],
            "common_support_share": float(inside.mean()), "outside_trim_share": outside,
            "lacks_support_share": float(lacking.mean()),
            "ess_treatment": float(w1.sum() ** 2 / (w1 ** 2).sum()), "ess_control": float(w0.sum() ** 2 / (w0 ** 2).sum())}
    none = min(int((inside & (t == 1)).sum()), int((inside & (t == 0)).sum())) < 2
    warns = []
    if none:
        warns.append(f"NO OVERLAP: the estimated propensities of treated users ({p1.min():.3g} to {p1.max():.3g}) and "
                     f"of control users ({p0.min():.3g} to {p0.max():.3g}) share fewer than two users of an arm; no "
                     "user has a comparable user in the other arm (positivity fails), so the ATE is not identified "
                     "from these data and no interval is given")
    elif lacking.mean() > LACKS_SUPPORT_SHARE and int(lacking.sum()) >= LACKS_SUPPORT_USERS:
        warns.append(f"not identified: {lacking.mean():.0%} of users ({int(lacking.sum())}) have an estimated "
                     f"propensity below {EXTREME_PROPENSITY:g} or above {1 - EXTREME_PROPENSITY:g} and outside the range "
                     f"both arms cover ({lo:.3g} to {hi:.3g}; treated {p1.min():.3g} to {p1.max():.3g}, control "
                     f"{p0.min():.3g} to {p0.max():.3g}): positivity fails for them (Imbens & Rubin 2015, ch. 14), so "
                     "the ATE over all users rests on extrapolating to users the other arm never reaches, an error "
                     "the interval does not include")
    if not none and outside > POOR_OVERLAP_SHARE:
        warns.append(f"POOR OVERLAP: {outside:.0%} of users have an estimated propensity outside [{TRIM:g}, "
                     f"{1 - TRIM:g}] (Crump et al. 2009); the estimate rests on few comparable users and on "
                     f"extrapolation (effective sample sizes: treated {diag['ess_treatment']:.1f}, control "
                     f"{diag['ess_control']:.1f}), so its interval may be too narrow")
    if min(n1, n0) < EVENTS_PER_VARIABLE * len(adjust):
        warns.append(f"FEW USERS PER ARM: the smaller arm has {min(n1, n0)} users for {len(adjust)} propensity "
                     f"covariate(s) (under {EVENTS_PER_VARIABLE} per covariate, Peduzzi et al. 1996): the "
                     "propensity model is unstable and the interval unreliable")
    return diag, warns, none


def fit_regression(frame: pd.DataFrame, adjust: list[str]) -> BackdoorFit:
    """OLS of ``Y`` on ``1, T, W`` (DoWhy's ``backdoor.linear_regression``); the coefficient of ``T``
    with a heteroskedasticity-robust (HC3, MacKinnon & White 1985) standard error, t with n - p df.

    Assumption: the effect is the same for every user (or the coefficient is read as a
    variance-weighted average of the effects, Angrist 1998); the outcome is linear in ``W``.
    """
    import statsmodels.api as sm

    model, ident, est = _estimate(frame, adjust, "backdoor.linear_regression")
    with quiet():
        ols = sm.OLS(frame["Y"].to_numpy(dtype=float), _design(frame, adjust)).fit(cov_type="HC3")
    se = float(ols.bse[1])
    return BackdoorFit(float(est.value), se if math.isfinite(se) else 0.0, float(ols.df_resid),
                       {"method": "regression", "se_type": "HC3"}, model, ident, est)


def _propensity_model() -> Any:
    """(Almost) unpenalized logistic maximum likelihood on standardized inputs. The MLE does not depend
    on the inputs' scale, but L-BFGS's convergence does: on raw counts such as ``pre_sessions`` it
    took about 500 iterations a fit (0.18 s); standardized, a few dozen."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=1e6, max_iter=2000))


def hajek_se(t: np.ndarray, y: np.ndarray, ps: np.ndarray) -> float:
    """Standard error of the Hajek (self-normalized) IPW difference from its influence function,
    ``phi_i = T w1 (Y - m1) / mean(T w1) - (1 - T) w0 (Y - m0) / mean((1 - T) w0)``, treating the
    propensities as known: conservative for the ATE when they are estimated by maximum likelihood
    (Hirano, Imbens & Ridder 2003; Lunceford & Davidian 2004)."""
    w1, w0 = t / ps, (1 - t) / (1 - ps)
    m1, m0 = np.sum(w1 * y) / np.sum(w1), np.sum(w0 * y) / np.sum(w0)
    phi = w1 * (y - m1) / np.mean(w1) - w0 * (y - m0) / np.mean(w0)
    return float(np.std(phi, ddof=1) / math.sqrt(len(y)))


def fit_ipw(frame: pd.DataFrame, adjust: list[str], clip: float) -> BackdoorFit:
    """DoWhy's ``backdoor.propensity_score_weighting`` (Hajek weights ``T/e + (1-T)/(1-e)``, the
    logistic propensity ``e(W)`` clipped to ``[clip, 1 - clip]``); standard error from :func:`hajek_se`.

    Reference: Hirano, Imbens & Ridder (2003), Econometrica 71(4).
    """
    model, ident, est = _estimate(frame, adjust, "backdoor.propensity_score_weighting",
                                  method_params={"propensity_score_model": _propensity_model(),
                                                 "min_ps_score": clip, "max_ps_score": 1 - clip})
    ps = np.clip(np.asarray(est.propensity_scores, dtype=float), clip, 1 - clip)
    t, y = frame["T"].to_numpy(dtype=float), frame["Y"].to_numpy(dtype=float)
    diag = {"method": "ipw", "clip": clip, "propensity_min": float(ps.min()), "propensity_max": float(ps.max()),
            "clipped_share": float(np.mean((ps <= clip) | (ps >= 1 - clip)))}
    return BackdoorFit(float(est.value), hajek_se(t, y, ps), math.inf, diag, model, ident, est)


def matching_variance(t: np.ndarray, y: np.ndarray, ps: np.ndarray) -> tuple[float, float]:
    """One-nearest-neighbour propensity matching with replacement: the ATE and its Abadie-Imbens
    (2006, Econometrica 74(1), Theorem 7) variance, ``V = (1/N^2) sum_i [(tau_i - tau)^2
    + (K_i^2 + K_i) sigma^2_i]`` with ``K_i`` the times unit ``i`` is used as a match and
    ``sigma^2_i = (Y_i - Y_j)^2 / 2`` from its nearest same-arm neighbour ``j`` (J = 1)."""
    from sklearn.neighbors import NearestNeighbors

    idx1, idx0 = np.flatnonzero(t == 1), np.flatnonzero(t == 0)

    def nearest(pool: np.ndarray, query: np.ndarray) -> np.ndarray:
        nn = NearestNeighbors(n_neighbors=1, algorithm="ball_tree").fit(ps[pool].reshape(-1, 1))
        return pool[nn.kneighbors(ps[query].reshape(-1, 1))[1][:, 0]]

    match = np.empty(len(y), dtype=np.int64)
    match[idx1], match[idx0] = nearest(idx0, idx1), nearest(idx1, idx0)
    tau_i = np.where(t == 1, y - y[match], y[match] - y)
    tau = float(tau_i.mean())
    k = np.bincount(match, minlength=len(y)).astype(float)
    own = np.empty(len(y), dtype=np.int64)
    own[idx1], own[idx0] = _nearest_other(idx1, ps), _nearest_other(idx0, ps)
    sigma2 = 0.5 * (y - y[own]) ** 2
    var = float(np.sum((tau_i - tau) ** 2 + (k ** 2 + k) * sigma2) / len(y) ** 2)
    return tau, var


def _nearest_other(pool: np.ndarray, ps: np.ndarray) -> np.ndarray:
    """For each unit of ``pool``, its nearest *other* unit of ``pool`` in ``ps``. A unit's own index is
    not always the first neighbour a tree search returns when propensities tie (discrete
    covariates), so the two nearest are taken and the unit itself dropped; taking the second blindly
    paired a unit with itself and gave it a zero conditional variance."""
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(n_neighbors=2, algorithm="ball_tree").fit(ps[pool].reshape(-1, 1))
    two = pool[nn.kneighbors(ps[pool].reshape(-1, 1))[1]]
    return np.where(two[:, 0] != pool, two[:, 0], two[:, 1])


def fit_matching(frame: pd.DataFrame, adjust: list[str]) -> BackdoorFit:
    """DoWhy's ``backdoor.propensity_score_matching`` (one nearest neighbour on the logistic
    propensity, with replacement, ATE = weighted ATT and ATC); Abadie-Imbens standard error
    (:func:`matching_variance`), treating the propensity as known (conservative for the ATE,
    Abadie & Imbens 2016, Econometrica 84(2))."""
    t = frame["T"].to_numpy(dtype=float)
    if min(t.sum(), (1 - t).sum()) < 2:
        raise ModelError("matching needs at least two users in each arm")
    model, ident, est = _estimate(frame, adjust, "backdoor.propensity_score_matching",
                                  method_params={"propensity_score_model": _propensity_model()})
    ps = np.asarray(est.propensity_scores, dtype=float)
    tau, var = matching_variance(t, frame["Y"].to_numpy(dtype=float), ps)
    return BackdoorFit(float(est.value), math.sqrt(max(var, 0.0)), math.inf,
                       {"method": "matching", "neighbours": 1, "se_type": "abadie-imbens",
                        "warnings": [MATCHING_WARNING]}, model, ident, est)


def fit_aipw(frame: pd.DataFrame, adjust: list[str], folds: int, outcome_model: str, seed: int) -> BackdoorFit:
    """Augmented IPW (doubly robust) through DoWhy's EconML method ``backdoor.econml.dr.LinearDRLearner``
    with ``folds``-fold cross-fitting, a logistic propensity and a linear (or gradient-boosted)
    outcome model; the ATE is the mean of the doubly robust pseudo-outcomes
    ``mu1 - mu0 + T (Y - mu1) / e - (1 - T)(Y - mu0) / (1 - e)``, its standard error EconML's
    (heteroskedasticity-robust, normal), for the population ATE. Consistent if either nuisance model
    is right. ``diagnostics["sample_se"]``: the standard error for the sample ATE
    (:func:`sample_ate_se`), ``diagnostics["heterogeneity_r2"]`` the share of the pseudo-outcomes'
    variance the covariates explain.

    Reference: Robins, Rotnitzky & Zhao (1994); Chernozhukov et al. (2018), Econometrics J. 21.
    """
    if not adjust:
        raise ModelError("AIPW needs at least one adjustment covariate (the declared graph gives none)")
    model, ident, est = _estimate(frame, adjust, "backdoor.econml.dr.LinearDRLearner",
                                  method_params={"init_params": aipw_params(folds, outcome_model, seed),
                                                 "fit_params": {}})
    with quiet():
        se = float(np.ravel(est.estimator.estimator.ate_inference().stderr_mean)[0])
    diag: dict[str, Any] = {"method": "aipw", "folds": folds, "outcome_model": outcome_model}
    sample_se = sample_ate_se(frame, adjust, folds, outcome_model, seed)
    if sample_se is not None:
        n = len(frame)
        diag["sample_se"] = sample_se
        # the share of the pseudo-outcomes' variance the covariates explain: 1 - RSS / TSS
        diag["heterogeneity_r2"] = (1.0 - sample_se ** 2 * (n - len(adjust) - 1) / (se ** 2 * (n - 1))) if se > 0 else 0.0
    return BackdoorFit(float(est.value), se, math.inf, diag, model, ident, est)


def sample_ate_se(frame: pd.DataFrame, adjust: list[str], folds: int, outcome_model: str, seed: int) -> float | None:
    """Standard error of the AIPW estimate of :func:`fit_aipw` as an estimate of the **sample** average
    treatment effect (the mean effect over these ``n`` users); None when it cannot be computed (the
    covariates are collinear), in which case no sample interval is reported.

    The usual standard error ``sd(psi) / sqrt(n)`` of the mean of the doubly robust pseudo-outcomes
    ``psi`` is for the population ATE: ``Var(psi) = E[sigma1^2/e + sigma0^2/(1-e)] + Var(tau(X))``.
    For the sample average the variance of the effects between users does not count: Imbens (2004,
    REStat 86(1), section 5) gives ``E[sigma1^2/e + sigma0^2/(1-e)] / n`` for the average effect
    conditional on the covariates, which exceeds the sample ATE's variance by ``E[Var(tau | X)] / n
    >= 0`` (Imbens & Wooldridge 2009, JEL 47(1), section 5.1): an interval on it still covers the
    sample ATE at least at its level. ``Var(tau(X))`` is estimated from below by the variance of the
    linear projection of ``psi`` on ``[1, X]``: EconML's ``LinearDRLearner`` with the covariates as
    effect modifiers (the same cross-fitted pseudo-outcomes, the linear DR-learner of the CATE:
    Semenova & Chernozhukov 2021, Econometrics J. 24(2)), whose ``ate_inference(X)`` standard error
    of the mean prediction over these users, HC1, is ``sqrt(RSS / (n - p) / n)``. So the interval is
    never narrower than the sample ATE needs, in expectation.
    """
    from econml.dr import LinearDRLearner

    x = frame[adjust].to_numpy(dtype=float)
    if len(frame) - len(adjust) - 1 < 1 or np.linalg.matrix_rank(np.column_stack([np.ones(len(x)), x])) < len(adjust) + 1:
        return None
    with quiet():
        learner = LinearDRLearner(**aipw_params(folds, outcome_model, seed)).fit(
            frame["Y"].to_numpy(dtype=float), frame["T"].to_numpy(), X=x, W=None)
        se = float(np.ravel(learner.ate_inference(X=x).stderr_mean)[0])
    return se if math.isfinite(se) and se > 0 else None


def aipw_params(folds: int, outcome_model: str, seed: int) -> dict[str, Any]:
    """The LinearDRLearner settings of :func:`fit_aipw`."""
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.linear_model import LinearRegression

    reg = (HistGradientBoostingRegressor(max_iter=100, random_state=seed) if outcome_model == "boosting"
           else LinearRegression())
    return {"model_propensity": _propensity_model(), "model_regression": reg, "cv": folds, "random_state": seed}
