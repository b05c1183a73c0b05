"""The shared machinery of the CATE estimators (:mod:`counterfeed.plugins.estimators.cate`): the
covariate matrix, the outer cross-fitting folds, the design propensity, the nuisance models and the
doubly robust mean effect. The learners themselves come from EconML and statsmodels.

Cross-fitting (Chernozhukov et al. 2018; Kennedy 2023): the users of one comparison (treatment arm
vs control) are split into ``K`` folds stratified by arm; for each fold the learner is fitted on the
other folds and predicts the held-out users, so every user's effect is an out-of-fold prediction.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Literal

import numpy as np
import pandas as pd

from counterfeed.core.estimation import AnalysisData
from counterfeed.core.randomness import Keys
from counterfeed.core.scoring import interval_quantile
from counterfeed.errors import DataError
from counterfeed.plugins.estimators.cate import Nuisance

__all__ = ["Comparison", "covariate_matrix", "comparison", "fold_ids", "fold_seed", "nuisance_regressor",
           "nuisance_classifier", "dr_mean", "caught_warnings", "per_user_metrics", "modifier_columns", "Nuisance",
           "modifier_support", "null_unidentified", "null_cells",
           "check_cate_scenario", "scenario_covariates", "declared_segments", "PER_SESSION_SUMS"]


def covariate_matrix(data: AnalysisData, who: str,
                     declared: dict[str, float] | None = None) -> tuple[np.ndarray, list[str]]:
    """``data.covariates`` as a float matrix ``(n_users, p)`` and its column names: the design of
    :func:`counterfeed.core.covariates.covariate_matrix` (numeric columns but ``user``, then one
    indicator per ``segment`` level after the first), checked first. Raises :class:`DataError` when
    the covariates are missing, misaligned with ``outcomes``, have a non-numeric column other than
    ``segment``, non-finite values or no column at all.

    ``declared``: the scenario's segments (name -> share, :func:`declared_segments`). A declared level
    that no user drew gets an indicator too (all zeros, after the first level that has users), so the
    design is the one ``validate`` checked (:func:`scenario_covariates`) and the level is reported NOT
    IDENTIFIED (:func:`modifier_support`) instead of ``segment`` vanishing from the covariates.
    """
    from counterfeed.core.covariates import covariate_matrix as design

    cov = data.covariates
    if cov is None:
        raise DataError(f"{who}: needs data.covariates (pre-treatment covariates per user); none were given")
    if len(cov) != len(data.outcomes):
        raise DataError(f"{who}: data.covariates has {len(cov)} rows, outcomes {len(data.outcomes)}")
    if "user" in cov and not np.array_equal(cov["user"].to_numpy(), data.outcomes["user"].to_numpy()):
        raise DataError(f"{who}: data.covariates rows are not in outcomes' user order")
    numeric = cov.drop(columns=["user", "segment"], errors="ignore")
    other = [str(c) for c in numeric.columns if not pd.api.types.is_numeric_dtype(numeric[c])]
    if other:
        raise DataError(f"{who}: covariate(s) {other} are not numeric (only 'segment' may be text)")
    bad = [str(c) for c in numeric.columns if not np.all(np.isfinite(numeric[c].to_numpy(np.float64)))]
    if bad:
        raise DataError(f"{who}: covariate '{bad[0]}' has missing or non-finite values")
    names = [str(c) for c in numeric.columns]
    x = design(cov)
    if "segment" in cov:
        present = sorted(cov["segment"].astype(str).unique())
        empty = [s for s in (declared or {}) if s not in present]
        names += [f"segment={s}" for s in sorted(present[1:] + empty)]
        if empty:  # the indicators of every level but the first with users, the empty ones all zero
            seg = cov["segment"].astype(str).to_numpy()
            x = np.hstack([x[:, :numeric.shape[1]]] + [(seg == nm.removeprefix("segment="))[:, None].astype(np.float64)
                                                       for nm in names[numeric.shape[1]:]])
    if x.shape[1] == 0:
        raise DataError(f"{who}: data.covariates has no usable column besides 'user'")
    return x, names


def modifier_columns(names: list[str], modifiers: list[str] | None, who: str,
                     covariates: pd.DataFrame | None = None) -> np.ndarray:
    """(p,) bool: the covariate columns that are effect modifiers (all when ``modifiers`` is None).

    A modifier names a column exactly, or ``segment`` for every ``segment=<level>`` indicator. Raises
    :class:`DataError` naming a modifier that matches no column (for ``segment`` in ``covariates`` with
    one level and no declared other: every user is in that level)."""
    if modifiers is None:
        return np.ones(len(names), dtype=bool)
    out = np.zeros(len(names), dtype=bool)
    for m in modifiers:
        hit = np.array([n == m or n.startswith(f"{m}=") for n in names], dtype=bool)
        if not hit.any():
            if m == "segment" and covariates is not None and "segment" in covariates:
                levels = sorted(covariates["segment"].astype(str).unique())
                raise DataError(f"{who}: modifiers: 'segment' has one level among the users ({', '.join(levels)}): "
                                "every user is in it, so the effect cannot vary with it (the scenario's other "
                                "segments, if any, drew no users)")
            raise DataError(f"{who}: modifiers: '{m}' is not a covariate (covariates: {', '.join(names)})")
        out |= hit
    return out


def per_user_metrics(metrics: dict[str, Any], chosen: list[str] | None, who: str) -> list[str]:
    """The analysed metrics (name -> ``MetricInfo``, e.g. ``data.metrics``) with a per-user effect (ratio
    metrics have none: their numerator and denominator do); naming a ratio metric in ``metrics`` is a
    :class:`DataError`."""
    if chosen:
        unknown = [m for m in chosen if m not in metrics]
        if unknown:
            raise DataError(f"{who}: unknown metric(s) {unknown}; the data have {list(metrics)}")
        ratio = [m for m in chosen if metrics[m].kind == "ratio"]
        if ratio:
            raise DataError(f"{who}: ratio metric(s) {', '.join(ratio)} have no per-user effect; analyse their "
                            "numerator and denominator metrics instead")
        return list(chosen)
    return [m for m, info in metrics.items() if info.kind != "ratio" and info.level == "user"]


#: the metrics whose per-day values the individual intervals read (the sessions' sums and their count,
#: :func:`counterfeed.analysis.cate_individual.period_totals`)
PER_SESSION_SUMS = ("clicks", "impressions", "dwell", "sessions")


def declared_segments(scenario: Any) -> dict[str, float] | None:
    """The scenario's segments, name -> declared share (None for a twin population, whose one level
    ``all`` every user has)."""
    pop = scenario.population
    if pop.twin:
        return None
    return {str(name): float(spec.share) for name, spec in pop.segments.items()}


def scenario_covariates(scenario: Any) -> list[str]:
    """The covariate design's column names a run of ``scenario`` gives (:func:`covariate_matrix`'s
    ``names``): the pre-period and tenure columns, ``feature_<k>``, then one ``segment=<level>`` per
    declared segment after the first (a twin population has one segment)."""
    from counterfeed.core.covariates import COVARIATE_COLUMNS

    pop = scenario.population
    levels = ["all"] if pop.twin else sorted(str(s) for s in pop.segments)
    names = [c for c in COVARIATE_COLUMNS if c not in ("user", "segment")]
    names += [f"feature_{k}" for k in range(pop.features.dimensions)] if pop.features is not None else []
    return names + [f"segment={s}" for s in levels[1:]]


def check_cate_scenario(scenario: Any, metrics: dict[str, Any], options: Any, who: str, individual: bool) -> None:
    """What a CATE estimator's ``estimate`` rejects, checked from the scenario before anything is
    simulated (:class:`DataError`, located at the analysis entry by ``validate``/``run``): a ratio
    metric, a modifier that is not a covariate, individual intervals of a mode that reads per-day data
    (not ``conformal``) on a metric that is not a per-session sum or on an experiment shorter than 2 days."""
    chosen = per_user_metrics(metrics, options.metrics, who)
    modifier_columns(scenario_covariates(scenario), getattr(options, "modifiers", None), who)
    if not individual or getattr(options, "individual_intervals", "none") in ("none", "conformal"):
        return  # the conformal intervals read only the outcomes and covariates
    other = [m for m in chosen if m not in PER_SESSION_SUMS]
    if other:
        raise DataError(f"{who}: individual_intervals: metric '{other[0]}' is not a per-session sum "
                        f"({', '.join(PER_SESSION_SUMS)}); its per-day values, which measure the users' noise, "
                        "are unknown (set metrics to per-session sums, or individual_intervals: conformal or none)")
    days = scenario.experiment.duration
    if round(days) < 2:
        raise DataError(f"{who}: individual_intervals: the experiment lasts {days:g} days; the users' noise is "
                        "estimated from their per-day variation, which needs at least 2 days (experiment.duration; "
                        "individual_intervals: conformal needs no per-day data)")


@dataclass
class Comparison:
    """The users of one treatment arm and the control: outcome, treatment indicator, covariates,
    design propensity and the positions of these users in ``outcomes``."""

    rows: np.ndarray  # (m,) int positions in data.outcomes
    y: np.ndarray  # (m,) float outcome
    t: np.ndarray  # (m,) int 0/1 (1 = treatment arm)
    x: np.ndarray  # (m, p) covariates
    e: np.ndarray  # (m,) probability of the treatment arm given one of the two arms
    propensity_source: str


def comparison(data: AnalysisData, x: np.ndarray, metric: str, arm: str, folds: int, who: str) -> Comparison | None:
    """The users in ``arm`` or the control with a finite ``metric``; None when the metric is constant
    there (no effect to learn). Raises :class:`DataError` when an arm has fewer than ``2 * folds`` users."""
    arms = data.outcomes["arm"].to_numpy()
    y_all = pd.to_numeric(data.outcomes[metric], errors="coerce").to_numpy(np.float64)
    rows = np.flatnonzero(((arms == arm) | (arms == data.control)) & np.isfinite(y_all))
    t = (arms[rows] == arm).astype(np.int64)
    n1, n0 = int(t.sum()), int((1 - t).sum())
    if min(n1, n0) < 2 * folds:
        raise DataError(f"{who}: metric '{metric}': {n1} users in '{arm}' and {n0} in '{data.control}'; "
                        f"cross-fitting with {folds} folds needs at least {2 * folds} in each")
    y = y_all[rows]
    if np.ptp(y) == 0.0:
        return None
    probs = data.assignment_probabilities
    if probs is not None:
        p = np.asarray(probs, dtype=np.float64)[rows]
        pa, pc = p[:, data.arms.index(arm)], p[:, data.arms.index(data.control)]
        e, source = pa / (pa + pc), "design (data.assignment_probabilities)"
    else:
        e, source = np.full(rows.size, n1 / rows.size), "arm share (no assignment probabilities given)"
    if not np.all((e > 0) & (e < 1)):
        raise DataError(f"{who}: some users had probability 0 or 1 of '{arm}' vs '{data.control}'; "
                        "their effect is not identified")
    return Comparison(rows, y, t, x[rows], e, source)


def fold_ids(t: np.ndarray, folds: int, seed: int, *parts: object) -> np.ndarray:
    """Fold index ``0..folds-1`` of each user, stratified by ``t`` (each value's users split evenly:
    the two compared arms, and any other users, e.g. a third arm's), drawn from
    ``Keys(seed).numpy_generator("cate-folds", *parts)``."""
    rng = Keys(seed).numpy_generator("cate-folds", *parts)
    out = np.full(t.size, -1, dtype=np.int64)
    for value in np.unique(t):  # 0 and 1 first (the compared arms), then any other group of users
        idx = np.flatnonzero(t == value)
        out[idx[rng.permutation(idx.size)]] = np.arange(idx.size) % folds
    return out


def fold_seed(seed: int, *parts: object) -> int:
    """The ``random_state`` handed to a library for one fit (32-bit, as scikit-learn requires)."""
    return Keys(seed).derive_seed("cate-fit", *parts) % (2 ** 32 - 1)


def nuisance_regressor(kind: Nuisance, random_state: int, max_iter: int = 100) -> Any:
    """An outcome model: scikit-learn's ``HistGradientBoostingRegressor``, LightGBM's ``LGBMRegressor``
    or ``RidgeCV`` (``linear``)."""
    if kind == "hist_gradient_boosting":
        from sklearn.ensemble import HistGradientBoostingRegressor
        return HistGradientBoostingRegressor(max_iter=max_iter, random_state=random_state)
    if kind == "lightgbm":
        from lightgbm import LGBMRegressor
        return LGBMRegressor(n_estimators=max_iter, random_state=random_state, n_jobs=1, verbose=-1)
    from sklearn.linear_model import RidgeCV
    return RidgeCV()


def nuisance_classifier(kind: Literal["design", "learned"], nuisance: Nuisance, random_state: int,
                        max_iter: int = 100) -> Any:
    """The propensity model: ``design`` is scikit-learn's ``DummyClassifier(strategy="prior")`` (the
    arm share of the training fold: assignment is randomized, so it does not depend on covariates);
    ``learned`` fits the nuisance kind's classifier (or a logistic regression for ``linear``)."""
    if kind == "design":
        from sklearn.dummy import DummyClassifier
        return DummyClassifier(strategy="prior")
    if nuisance == "hist_gradient_boosting":
        from sklearn.ensemble import HistGradientBoostingClassifier
        return HistGradientBoostingClassifier(max_iter=max_iter, random_state=random_state)
    if nuisance == "lightgbm":
        from lightgbm import LGBMClassifier
        return LGBMClassifier(n_estimators=max_iter, random_state=random_state, n_jobs=1, verbose=-1)
    from sklearn.linear_model import LogisticRegression
    return LogisticRegression(max_iter=1000)


def dr_mean(c: Comparison, tau: np.ndarray, mu0: np.ndarray, level: float) -> tuple[float, float, float, float]:
    """The doubly robust (AIPW) mean effect from out-of-fold effects ``tau`` and control outcomes ``mu0``.

    ``psi_i = tau_i + t_i (y_i - mu0_i - tau_i) / e_i - (1 - t_i) (y_i - mu0_i) / (1 - e_i)``; the
    estimate is ``mean(psi)`` with standard error ``sd(psi) / sqrt(m)`` and a normal interval. With the
    design propensity ``e`` and out-of-fold ``tau``, ``mu0`` it is unbiased for the average effect
    whatever the learner (Robins, Rotnitzky & Zhao 1994; Kennedy 2023, the DR-learner's pseudo-outcome).
    Returns ``(point, lower, upper, se)``.
    """
    psi = tau + c.t * (c.y - mu0 - tau) / c.e - (1 - c.t) * (c.y - mu0) / (1 - c.e)
    point = float(psi.mean())
    se = float(psi.std(ddof=1) / np.sqrt(psi.size))
    z = interval_quantile(level)
    return point, point - z * se, point + z * se, se


@contextmanager
def caught_warnings(sink: list[str]) -> Iterator[None]:
    """Run library code with its warnings recorded into ``sink`` (deduplicated text) instead of escaping:
    the estimator reports them in ``diagnostics["warnings"]``."""
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        yield
    for r in records:
        text = f"{r.category.__name__}: {r.message}"
        if text not in sink:
            sink.append(text)


def modifier_support(data: AnalysisData, c: Comparison, folds: np.ndarray, k: int, modifiers: np.ndarray,
                     names: list[str], metric: str, arm: str,
                     declared: dict[str, float] | None = None) -> tuple[np.ndarray, list[str], list[str]]:
    """Which per-user effects the modifiers identify, from the users of one comparison and their
    outer folds ``folds`` (``0..k-1``).

    A ``segment`` level (when ``segment`` is a modifier) needs at least 2 users of each arm overall
    and in every training fold: with fewer, its effect is only extrapolated from the other levels (or
    fitted exactly, with a zero-width interval), so it is NOT IDENTIFIED; a declared level that drew no
    user at all (an all-zero indicator, :func:`covariate_matrix`; ``declared``: name -> share, for the
    warning) is NOT IDENTIFIED too, with no user to null. A numeric modifier that is
    constant among the compared users (or in a training fold) cannot modify the effect: it is unused.
    Returns ``((n_users,) bool: users whose effect is not identified, the modifier columns not used,
    warnings)``."""
    n = len(data.outcomes)
    bad = np.zeros(n, dtype=bool)
    unused: list[str] = []
    warns: list[str] = []
    trains = [folds != f for f in range(k)]
    cov = data.covariates
    if cov is not None and "segment" in cov and any(m and nm.startswith("segment=") for nm, m in zip(names, modifiers)):
        level_all = cov["segment"].astype(str).to_numpy()
        level = level_all[c.rows]
        drawn = set(level_all)
        for s in sorted(drawn | {nm.removeprefix("segment=") for nm in names if nm.startswith("segment=")}):
            if s not in drawn:  # declared, drawn by no user: an all-zero indicator, nothing to estimate or null
                unused.append(f"segment={s}")
                share = (declared or {}).get(s)
                warns.append(f"NOT IDENTIFIED: metric '{metric}': segment '{s}' drew no users of {n}"
                             f"{f' (share {share:g})' if share is not None else ''}, so it has no effect to estimate "
                             "and no user to predict one for; its indicator is not used as a modifier (raise "
                             "population.users or its share)")
                continue
            in_s = level == s
            n1, n0 = int((in_s & (c.t == 1)).sum()), int((in_s & (c.t == 0)).sum())
            fold_min = min(int((in_s & tr & (c.t == a)).sum()) for tr in trains for a in (0, 1))
            if min(n1, n0, fold_min) >= 2:
                continue
            users = level_all == s
            bad |= users
            unused += [f"segment={s}"] if f"segment={s}" in names else []
            fold = f" (a training fold of the {k}-fold cross-fitting has only {fold_min} of one arm)" \
                if min(n1, n0) >= 2 else ""
            warns.append(f"NOT IDENTIFIED: metric '{metric}': segment '{s}' has {n1} user(s) in '{arm}' and {n0} in "
                         f"'{data.control}'{fold}; its effect needs at least 2 users of each arm in every training "
                         f"fold, so the effects and intervals of its {int(users.sum())} user(s) are null (not "
                         "estimated; no learner extrapolates them from the other segments)")
    for j in np.flatnonzero(modifiers):
        nm = names[j]
        if nm.startswith("segment="):
            continue
        col = c.x[:, j]
        if np.ptp(col) == 0 or any(np.ptp(col[tr]) == 0 for tr in trains):
            unused.append(nm)
            where = "among the compared users" if np.ptp(col) == 0 else "in a training fold"
            warns.append(f"MODIFIER UNUSED: metric '{metric}': effect modifier '{nm}' is constant {where} "
                         f"(value {float(col[0]):g}), so the effect cannot vary with it; it is not used and "
                         "not listed in effect_modifiers")
    used = [nm for nm, m in zip(names, modifiers) if m and nm not in unused]
    if modifiers.any() and not used:
        warns.append(f"NO EFFECT MODIFIER: metric '{metric}': every effect modifier is constant or unidentified; "
                     "the per-user effects are the average effect (up to fold-to-fold noise), not heterogeneity")
    return bad, unused, warns


def null_unidentified(effects: Any, bad: np.ndarray, metric: str, conformal: bool = False) -> list[str]:
    """Null (NaN) the effects and intervals of the users ``bad`` (not identified), and any per-user
    interval of zero width (a learner's variance of 0: fitted exactly, not measured); the warnings.
    ``conformal``: the individual intervals are conformal prediction sets, for which zero width is a
    valid answer (a binary outcome predicted exactly), so theirs are kept."""
    cols = [c for c in ("point", "lower", "upper", "ite_point", "ite_lower", "ite_upper") if c in effects]
    effects.loc[bad, cols] = np.nan
    warns = []
    for lo, hi in (("lower", "upper"), ("ite_lower", "ite_upper")):
        if lo not in effects or (conformal and lo == "ite_lower"):
            continue
        zero = (effects[hi] - effects[lo] <= 0).to_numpy()
        if zero.any():
            effects.loc[zero, [lo, hi]] = np.nan
            warns.append(f"NOT IDENTIFIED: metric '{metric}': {int(zero.sum())} user(s) got a zero-width "
                         f"{lo}/{hi} interval (the learner fitted their cell exactly: no variance measured); "
                         "those intervals are null")
    return warns


#: the numbers of an individual-interval cell (variance modes and conformal) that a NOT IDENTIFIED cell nulls
_CELL_MEASURES = ("unexplained_variance", "identified_bounds", "se", "quantile_control", "quantile_treatment",
                  "noise_ratio", "noise_ratio_log_se")


def null_cells(individual: dict[str, Any] | None, xm: np.ndarray, bad: np.ndarray) -> None:
    """In the individual intervals' diagnostics (``cells``: one per distinct row of the modifiers
    ``xm`` of the compared users), null the numbers of a cell whose users are all NOT IDENTIFIED
    (``bad``, over the compared users): a variance from a cell without both arms is not a measurement."""
    for cell in (individual or {}).get("cells") or []:
        values = np.array(list(cell["modifiers"].values()), dtype=np.float64)
        users = np.all(xm == values, axis=1) if values.size else np.ones(len(xm), dtype=bool)  # {}: all users
        if users.any() and bad[users].all():
            cell.update({k: None for k in _CELL_MEASURES if k in cell}, identified=False)
