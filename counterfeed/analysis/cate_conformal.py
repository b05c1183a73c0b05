"""Conformal intervals for each user's own effect: ``individual_intervals: conformal``.

A user is seen in one arm only. Their outcome in the other arm is predicted by a conformal prediction
interval fitted on the other arm's users, and their effect's interval is the difference (the nested
approach of Lei & Candes 2021, JRSS-B 83, Sec. 4, for the units of the experiment):

- a treated user: ``[Y_i - U0(X_i), Y_i - L0(X_i)]``, with ``[L0, U0]`` the level-``1 - alpha``
  conformalized quantile regression interval (CQR; Romano, Patterson & Candes 2019, NeurIPS) for
  ``Y(0)`` given the covariates, fitted on control users;
- a control user: ``[L1(X_i) - Y_i, U1(X_i) - Y_i]``, ``[L1, U1]`` fitted on treated users.

**CQR, split** (per arm): the arm's users are split in halves at random (stratified by cell); scikit-
learn's ``HistGradientBoostingRegressor`` with the pinball loss fits the ``alpha / 2`` and
``1 - alpha / 2`` quantiles on one half; on the other (calibration) half the conformity score is
``s_j = max(q_lo(X_j) - Y_j, Y_j - q_hi(X_j))`` and ``[L, U] = [q_lo - Q, q_hi + Q]`` with ``Q`` the
``ceil((n + 1)(1 - alpha))``-th smallest score of the ``n`` calibration users. **Mondrian**: when the
effect modifiers take at most 20 distinct values (segment indicators) and every cell has enough
calibration users in each arm, ``Q`` is computed per cell from that cell's calibration users only
(Vovk, Gammerman & Shafer 2005, Ch. 4), so the guarantee holds within every cell, not only over all
users. **Unequal design propensities**: the calibration
users are weighted by the likelihood ratio of the target arm's covariates, ``e / (1 - e)`` for
``Y(0)`` and ``(1 - e) / e`` for ``Y(1)`` (weighted conformal prediction under covariate shift,
Tibshirani, Barber, Candes & Ramdas 2019, NeurIPS; Lei & Candes 2021, Sec. 3); with a constant
propensity every weight is equal and ``Q`` is the order statistic above.

**What is guaranteed, and what is assumed.**

- *The realised effect* ``Y_i(1) - Y_i(0)`` (the user's effect in this world, with this world's noise)
  lies in the interval with probability at least ``1 - alpha`` over the randomization and the split,
  marginally over the users (of each cell): a treated user's ``Y_i(0)`` is exchangeable with the
  control users' outcomes because assignment is random (Lei & Candes 2021, Thm. 3). This needs no
  model to be right, only randomization and no interference between users.
- *The user's own expected effect* ``tau_i = mu1_i - mu0_i`` (over the world's noise; what the
  simulator's conditional truth is): the treated user's interval covers ``tau_i`` exactly when
  ``mu0_i + eps1_i`` lies in ``[L0, U0]``, where ``eps1_i = Y_i(1) - mu1_i`` is the user's noise in the
  treated arm, while ``[L0, U0]`` is calibrated on ``mu0_j + eps0_j``. **Assumed** (stated in every
  output): a user's noise around their own expected outcome has the same law in both arms, given the
  covariates and the user's expected untreated outcome. If the treatment makes outcomes noisier
  (more clicks, more Poisson-like noise), treated users' intervals undercover ``tau_i`` and control
  users' overcover, and conversely; the two partly cancel in the overall rate. Unlike the
  ``covariates``/``posterior`` modes (:mod:`counterfeed.analysis.cate_individual`), this does not
  need the unidentified variance of individual effects given the covariates: the user's own outcome
  carries their effect, and the other arm's users calibrate the noise around it.

The intervals are wide: they hold one period of one user's noise (on ``scenarios/targeting.yaml``
about 40 clicks against within-segment effect spreads of 2-5). That is what a single user's data
can say about their own effect without an untestable assumption on how effects vary within the
covariates. ``point`` is the interval's midpoint.

Raises nothing for small data: when a cell's calibration half of an arm would hold fewer users than
the level needs (``ceil(level / (1 - level))``, 19 at 95%) the calibration is one over all users
(``mondrian: false``); when even that is too small, or unequal propensities' weights leave the
quantile infinite, those users get null intervals and a ``NOT IDENTIFIED`` warning naming the cause.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np

from counterfeed.analysis.cate_individual import IndividualIntervals
from counterfeed.core.randomness import Keys
from counterfeed.core.scoring import interval_quantile

__all__ = ["ESTIMAND_CONFORMAL", "ASSUMPTION_CONFORMAL", "conformal_intervals", "weighted_conformal_quantile",
           "MAX_CELLS"]

#: the estimand, named in every output of the conformal mode
ESTIMAND_CONFORMAL = ("individual effect interval (conformal): covers the user's realised effect Y_i(1) - Y_i(0) "
                      "with probability >= the level by randomization alone (Lei & Candes 2021), and the user's "
                      "own expected effect tau_i under the stated assumption")
#: the assumption under which it covers tau_i, stated in every output
ASSUMPTION_CONFORMAL = ("ASSUMED for tau_i (not for the realised effect): a user's noise around their own expected "
                        "outcome has the same law in both arms, given the covariates; if the treatment makes "
                        "outcomes noisier, treated users' intervals undercover tau_i and control users' overcover")
#: Mondrian calibration per cell of the effect modifiers when they take at most this many values
MAX_CELLS = 20


def weighted_conformal_quantile(scores: np.ndarray, weights: np.ndarray, test_weights: np.ndarray,
                                level: float) -> np.ndarray:
    """The conformal quantile of each test point (Tibshirani et al. 2019, eq. (7)): the ``level``
    quantile of ``sum_j p_j delta(s_j) + p_test delta(+inf)``, ``p_j = w_j / (sum w + w_test)``.

    scores, weights : (n,) calibration scores and their (non-negative) weights.
    test_weights : (m,) each test point's weight. Returns (m,) quantiles; ``inf`` where the
    calibration mass cannot reach ``level``. With equal weights this is the
    ``ceil((n + 1) level)``-th smallest score (Romano et al. 2019)."""
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(scores, kind="stable")
    s, w = scores[order], np.asarray(weights, dtype=np.float64)[order]
    cum = np.cumsum(w)
    tw = np.asarray(test_weights, dtype=np.float64)
    total = cum[-1] + tw if s.size else tw
    # smallest k with cum[k] / (W + w_test) >= level; a tiny tolerance keeps equal weights exact
    need = level * total - 1e-12 * np.maximum(total, 1.0)
    k = np.searchsorted(cum, need, side="left") if s.size else np.zeros(tw.size, dtype=np.int64)
    out = np.full(tw.size, np.inf)
    ok = k < s.size
    out[ok] = s[k[ok]]
    return out


def _quantile_models(x: np.ndarray, y: np.ndarray, alpha: float, seed: int) -> tuple[Any, Any]:
    from sklearn.ensemble import HistGradientBoostingRegressor

    if np.ptp(y) == 0:  # a constant outcome (every user retained, say): its quantiles are that constant
        from sklearn.dummy import DummyRegressor
        return DummyRegressor(strategy="median").fit(x, y), DummyRegressor(strategy="median").fit(x, y)

    def model(q: float) -> Any:
        return HistGradientBoostingRegressor(loss="quantile", quantile=q, max_iter=200, learning_rate=0.05,
                                             min_samples_leaf=20, random_state=seed)
    return model(alpha / 2).fit(x, y), model(1 - alpha / 2).fit(x, y)


def conformal_intervals(x: np.ndarray, y: np.ndarray, t: np.ndarray, e: np.ndarray, modifiers: np.ndarray,
                        names: list[str], level: float, seed: int, *parts: object,
                        noise: np.ndarray | None = None, groups: np.ndarray | None = None) -> IndividualIntervals:
    """Nested split-CQR intervals for every compared user's own effect (see the module).

    Parameters
    ----------
    x : (n, p) covariates; y : (n,) outcome; t : (n,) 1 treated / 0 control; e : (n,) design
        probability of the treatment arm (given one of the two arms).
    modifiers : (n, q) the effect modifiers (Mondrian cells when they take <= ``MAX_CELLS`` values);
        ``names`` their names. level : the intervals' level (e.g. 0.95).
    seed, parts : the split's keyed random stream (``Keys(seed).numpy_generator("cate-conformal", *parts)``)
        and the quantile models' ``random_state``.
    noise : (n,) optional, each user's day-to-day noise variance
        (:func:`counterfeed.analysis.cate_individual.noise_variance`): per segment (``groups``, when it
        has two levels or more; else per calibration cell), the treated users' mean over the control
        users' (``noise_check``: ``noise_ratio``) checks the assumption under which the intervals cover
        ``tau_i``; a ratio outside [0.85, 1 / 0.85] and more than two standard errors from 1 warns.
    groups : (n,) optional segment labels of the users, for that check.

    Returns an :class:`IndividualIntervals` (``variance``: ``((upper - lower) / (2 z))^2``) whose
    diagnostics hold the estimand, the assumption, the cells (calibration users per arm and their
    conformal quantiles) and the warnings.
    """
    n = y.size
    rows, cell, small = _cells(modifiers, t, _needed(level), names)
    mondrian = rows is not None
    if not mondrian:  # one calibration over all users (marginal guarantee)
        rows, cell = np.zeros((1, 0)), np.zeros(n, dtype=np.int64)
    e = np.clip(np.asarray(e, dtype=np.float64), 1e-12, 1 - 1e-12)
    equal = bool(np.ptp(e) == 0)
    warnings: list[str] = []
    if not mondrian and small is not None:
        warnings.append(_pooled_warning(small))
    calibrate = partial(_calibrate, x, y, t, e, equal, names, level, seed, parts)
    lower, upper, cells, found, collapsed, by_weight = calibrate(rows, cell)
    if mondrian and by_weight:  # per-cell weights left users without an interval: one calibration serves
        pooled = calibrate(np.zeros((1, 0)), np.zeros(n, dtype=np.int64))
        if int(np.isnan(pooled[0]).sum()) < int(np.isnan(lower).sum()):
            lower, upper, cells, found, collapsed, _ = pooled
            mondrian, cell = False, np.zeros(n, dtype=np.int64)
            warnings.append(_pooled_warning(f"per cell, the propensity weights left {by_weight} users without an "
                                            "interval"))
    warnings += found
    has = np.isfinite(lower)
    if collapsed:
        warnings.append(f"individual intervals (conformal): {collapsed} users' conformal sets are empty (the "
                        "calibration narrowed the quantile band past zero width, which a low level allows); each is "
                        "given as the zero-width interval at its midpoint (covering more than the empty set would)")
    checked: list[dict[str, Any]] = []
    if noise is not None:  # per segment when there are segments (they may pool in one calibration), else per cell
        labels = None if groups is None else np.asarray(groups)
        units = ([(f"in segment {g}", labels == g) for g in np.unique(labels)]
                 if labels is not None and np.unique(labels).size >= 2 else
                 [(_label(c), cell == j) for j, c in enumerate(cells)])
        checked, found = _noise_check(np.asarray(noise, dtype=np.float64), t, units, has)
        warnings += found
    else:
        warnings.append("individual intervals (conformal): the assumption under which they cover each user's "
                        "expected effect (a user's noise has the same law in both arms) was NOT CHECKED: the check "
                        "reads per-day values of a per-session sum metric (clicks, impressions, dwell, sessions) "
                        "over at least 2 days; their coverage of the realised effect does not depend on it")
    point = (lower + upper) / 2
    z = interval_quantile(level)
    diag: dict[str, Any] = {
        "estimand": ESTIMAND_CONFORMAL, "assumption": ASSUMPTION_CONFORMAL, "mode": "conformal",
        "method": "split conformalized quantile regression (Romano et al. 2019), nested for individual effects "
                  "(Lei & Candes 2021); quantile models: scikit-learn HistGradientBoostingRegressor (pinball loss)",
        "mondrian": mondrian, "weighted": not equal,
        "mean_width": float(np.mean(upper[has] - lower[has])) if has.any() else None,
        "cells": cells, "users_not_identified": int((~has).sum()), "empty_sets": collapsed,
        "noise_check": checked,
        "warnings": warnings,
    }
    return IndividualIntervals(point, lower, upper, ((upper - lower) / (2 * z)) ** 2, diag)


def _pooled_warning(why: str) -> str:
    return (f"individual intervals (conformal): calibrated once over all users, not per cell of the effect "
            f"modifiers: {why}; the coverage guarantee holds over all users, not within each cell")


def _needed(level: float) -> int:
    """Calibration users a finite ``level`` conformal quantile needs: ``ceil(level / (1 - level))``, 19 at 95%."""
    return int(np.ceil(level / (1.0 - level) - 1e-9))


def _calibrate(x: np.ndarray, y: np.ndarray, t: np.ndarray, e: np.ndarray, equal: bool, names: list[str],
               level: float, seed: int, parts: tuple, rows: np.ndarray, cell: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]], list[str], int, int]:
    """The split-CQR calibration of both arms over the cells ``rows`` (their modifier values; ``cell``:
    each user's), repeatable (the keyed split is drawn afresh each call). Returns (lower, upper,
    cells, warnings, empty sets collapsed, users left null by the propensity weights)."""
    n, alpha = y.size, 1.0 - level
    need = _needed(level)
    rng = Keys(seed).numpy_generator("cate-conformal", *parts)
    lower, upper = np.full(n, np.nan), np.full(n, np.nan)
    warnings: list[str] = []
    cells: list[dict[str, Any]] = [{"modifiers": {nm: float(v) for nm, v in zip(names, rows[j])},
                                    "users": int((cell == j).sum())} for j in range(rows.shape[0])]
    collapsed = by_weight = 0
    for arm in (0, 1):  # calibrate on this arm's users; predict the other arm's users' outcome in this arm
        src = np.flatnonzero(t == arm)
        half = np.zeros(src.size, dtype=bool)
        for j in range(rows.shape[0]):  # a random half of each cell trains, the other calibrates
            idx = np.flatnonzero(cell[src] == j)
            half[idx[rng.permutation(idx.size)[: idx.size // 2]]] = True
        train, cal = src[half], src[~half]
        tgt = np.flatnonzero(t != arm)
        if train.size < 2:
            q_lo_m = q_hi_m = None
        else:
            fit_seed = Keys(seed).derive_seed("cate-fit", "conformal", arm, *parts) % (2 ** 32 - 1)
            q_lo_m, q_hi_m = _quantile_models(x[train], y[train], alpha, fit_seed)
        # likelihood ratio of the target arm's covariates to this arm's
        ratio = (lambda p: p / (1 - p)) if arm == 0 else (lambda p: (1 - p) / p)
        key = "control" if arm == 0 else "treatment"
        for j in range(rows.shape[0]):
            cj, tj = cal[cell[cal] == j], tgt[cell[tgt] == j]
            cells[j][f"calibration_{key}"] = int(cj.size)
            if tj.size == 0:
                continue
            if q_lo_m is None or cj.size == 0:
                qhat = np.full(tj.size, np.inf)
            else:
                ql, qh = _band(q_lo_m, q_hi_m, x[cj])
                s = np.maximum(ql - y[cj], y[cj] - qh)
                w = np.ones(cj.size) if equal else ratio(e[cj])
                tw = np.ones(tj.size) if equal else ratio(e[tj])
                qhat = weighted_conformal_quantile(s, w, tw, level)
            finite = np.isfinite(qhat)
            cells[j][f"quantile_{key}"] = float(np.median(qhat[finite])) if finite.any() else None
            if not finite.all():
                why = (f"{cj.size} {key} users calibrate it, too few for a {100 * level:g}% interval (at least "
                       f"{need} needed)" if cj.size < need or equal else
                       f"its {cj.size} {key} calibration users are weighted by the likelihood ratio of unequal "
                       f"design propensities (treatment probability {e[tj].min():.3g}-{e[tj].max():.3g} among "
                       f"these users, Tibshirani et al. 2019), and their weight cannot reach the "
                       f"{100 * level:g}% level against these users' own")
                by_weight += 0 if cj.size < need or equal else int((~finite).sum())
                warnings.append(f"individual intervals (conformal): NOT IDENTIFIED for {int((~finite).sum())} "
                                f"{'treated' if arm == 0 else 'control'} users {_label(cells[j])}: {why}; "
                                "their intervals are null")
            if not finite.any():
                continue
            ql, qh = _band(q_lo_m, q_hi_m, x[tj])
            lo_p, hi_p = ql - qhat, qh + qhat
            empty = lo_p > hi_p  # a negative Q narrower than the band: an empty set, kept as its midpoint
            lo_p[empty] = hi_p[empty] = (lo_p[empty] + hi_p[empty]) / 2
            collapsed += int((empty & finite).sum())
            if arm == 0:  # treated users: tau_i in Y_i - [L0, U0]
                lower[tj[finite]], upper[tj[finite]] = (y[tj] - hi_p)[finite], (y[tj] - lo_p)[finite]
            else:  # control users: tau_i in [L1, U1] - Y_i
                lower[tj[finite]], upper[tj[finite]] = (lo_p - y[tj])[finite], (hi_p - y[tj])[finite]
    return lower, upper, cells, warnings, collapsed, by_weight

def _cells(modifiers: np.ndarray, t: np.ndarray, need: int, names: list[str]
           ) -> tuple[np.ndarray | None, np.ndarray, str | None]:
    """The Mondrian cells (distinct rows of the modifiers), each user's cell, and None; or (None, _,
    why) when the modifiers take more than ``MAX_CELLS`` values (why: None, continuous modifiers) or a
    cell's calibration half of an arm would hold fewer than ``need`` users (why names it: then one
    calibration over all users serves better than null intervals)."""
    if not modifiers.size or modifiers.shape[1] == 0:
        return None, np.zeros(t.size, dtype=np.int64), None
    rows, cell = np.unique(modifiers, axis=0, return_inverse=True)
    cell = np.asarray(cell).ravel()
    if rows.shape[0] > MAX_CELLS:
        return None, cell, None
    for j in range(rows.shape[0]):
        for arm in (0, 1):
            cal = (int(((cell == j) & (t == arm)).sum()) + 1) // 2  # the calibration half
            if cal < need:
                label = _label({"modifiers": dict(zip(names, rows[j]))})
                return None, cell, (f"{label} only {cal} {'treated' if arm else 'control'} users would calibrate, "
                                    f"fewer than the {need} the level needs")
    return rows, cell, None


def _band(q_lo: Any, q_hi: Any, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The two fitted quantiles at ``x``, rearranged where they cross (Chernozhukov, Fernandez-Val &
    Galichon 2010: sorting crossing quantile estimates can only improve them)."""
    a, b = q_lo.predict(x), q_hi.predict(x)
    return np.minimum(a, b), np.maximum(a, b)


def _label(cell: dict[str, Any]) -> str:
    """A cell's name for messages: its indicators (``segment=niche``, ``not segment=niche``) and values."""
    parts = [(nm if v == 1 else f"not {nm}") if "=" in nm and v in (0.0, 1.0) else f"{nm}={v:g}"
             for nm, v in cell["modifiers"].items()]
    return f"in the cell [{', '.join(parts)}]" if parts else "over all users (one calibration)"


def _noise_check(v: np.ndarray, t: np.ndarray, units: list[tuple[str, np.ndarray]], has: np.ndarray
                 ) -> tuple[list[dict[str, Any]], list[str]]:
    """Per unit (a segment, or a calibration cell), ``noise_ratio``: the treated users' mean day-to-day
    noise variance over the control users' (a proxy for the arms' noise laws; its log's standard error
    by the delta method); a warning where it is outside [0.85, 1 / 0.85] and more than two standard
    errors from 1 (on scenarios/targeting.yaml ratios of 0.75 and 1.25 went with subgroup coverage of
    tau_i near 0.89 instead of 0.95). Units whose users all have null intervals (``has`` false) are
    not warned about. Returns (one record per unit checked, warnings)."""
    records: list[dict[str, Any]] = []
    out: list[str] = []
    for label, members in units:
        v1, v0 = v[members & (t == 1)], v[members & (t == 0)]
        if min(v1.size, v0.size) < 2 or v1.mean() <= 0 or v0.mean() <= 0:
            continue
        ratio = float(v1.mean() / v0.mean())
        se = float(np.sqrt(v1.var(ddof=1) / (v1.size * v1.mean() ** 2) + v0.var(ddof=1) / (v0.size * v0.mean() ** 2)))
        records.append({"users": label, "noise_ratio": ratio, "noise_ratio_log_se": se})
        if abs(np.log(ratio)) > max(-np.log(0.85), 2 * se) and has[members].any():
            under, over = ("treated", "control") if ratio > 1 else ("control", "treated")
            out.append(f"individual intervals (conformal): {label}, the treated users' day-to-day "
                       f"variation is {ratio:.2f}x the control users' (log standard error {se:.2f}): a user's noise "
                       f"is not alike in both arms there, so for tau_i the {under} users' intervals there undercover "
                       f"and the {over} users' overcover (the realised-effect coverage is unaffected)")
    return records, out
