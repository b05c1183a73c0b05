r"""Running the estimators on a log and a target, with intervals clustered by round.

Analytic intervals: every estimate is :math:`\hat V = \sum_t \hat A_t / \hat B_t` with
:math:`\hat A_t = \sum_r A_{t,r}`, sums of per-unit terms over the units of round ``r``. Rounds are
independent (units inside a round are not), so the delta method on the per-round sums gives

.. math:: \widehat{\mathrm{se}}^2 = \frac{R}{R-1}\sum_r e_r^2,\qquad
          e_r = \sum_t \frac{A_{t,r} - \hat V_t B_{t,r}}{\hat B_t},

and the interval :math:`\hat V \pm t_{n_\mathrm{eff}-1,(1+\text{level})/2}\,\widehat{\mathrm{se}}`: a CLT over
rounds with Student's t quantile on :math:`n_\mathrm{eff} - 1` degrees of freedom, where :math:`n_\mathrm{eff}`
is the number of effective independent units (:func:`effective_units`: Kish's effective sample size of the
per-round sums of the weights the estimator uses, or the number of rounds for DM). The t quantile is the
usual small-sample correction of a weighted mean's interval (Kish 1965, *Survey Sampling*, sec. 11.7; Owen
2013, *Monte Carlo theory, methods and examples*, sec. 9.3 on the effective sample size of weighted
estimates); it tends to z as :math:`n_\mathrm{eff}` grows.
Bootstrap intervals resample rounds with replacement (percentile interval). For the estimators that use
the reward model (DM, DR, SNDR, Switch-DR, DR-OS) every bootstrap draw refits the cross-fitted reward
model on the resampled rounds (same folds), so the interval includes the model's estimation error.

The analytic interval of DR-type estimators is valid with a cross-fitted model only where the target
stays on the log's support (the weighted correction term then carries the model's error; Chernozhukov
et al. 2018). DM, Switch-DR or DR-OS when no weight is left (they are DM then), and every DR-type
estimator when the target puts probability where the log has none (items the log never shows, or a mean
raw weight clearly below 1: items the logger never shows in those rounds; the model alone extrapolates
there, and no correction term sees its error) get the refit bootstrap (``model_bootstrap`` draws when
``bootstrap`` is 0), and so does every DR-type estimator whose correction uses other weights than the raw
ones on some weighted unit (DR-OS's shrunk weights, Switch-DR's dropped ones, clipped ones): the weighted
term then corrects only part of the model's error (:func:`_partial_correction`). Neither interval covers
a misspecified model's bias. Binary rewards with fewer than 10 events or non-events get a warning on every
interval (:func:`~counterfeed.ope.diagnostics.rare_events_warning`).

No interval is reported (null bounds, with a warning naming the counts) from fewer than 2 rounds, from
fewer than :data:`MIN_SUPPORTED_ROUNDS` rounds or an ESS under 2 among the impressions the estimator
weights, from fewer than :data:`MIN_EFFECTIVE_UNITS` effective independent units (analytic or bootstrap:
below that a weighted sum of a few heavy terms is far from normal, and neither the t interval nor the
percentile bootstrap, which is too narrow by about :math:`\sqrt{(n-1)/n}` and misses skewness, keeps its
level; Owen 2013, sec. 9.3, treats an ESS this small as a failed importance sample), or when the computed interval has zero width (the estimator's terms do not vary across rounds,
e.g. every weighted impression has reward 0: zero observed variance, whatever the truth). Zero width means
narrower than :data:`ROUNDING_TOL` times the size of the terms (:func:`_rounding_scale`): floating-point
rounding of sums that cancel is no variance. When every reward equals a constant ``c`` the default reward
model predicts ``c`` exactly, so DM and every DR variant estimate ``c`` (exactly for ``c`` = 0 and 1; to
rounding of the target's probabilities, which sum to 1, otherwise), with no interval. With binary rewards the value lies in
[0, 1] and the interval is intersected with [0, 1] (which cannot lower its coverage); a point outside
[0, 1] (a DR-type correction that overshoots), with or without an interval, is reported as its
projection onto [0, 1], with a warning and the raw value in ``diagnostics["point_raw"]``. Bounds that are
not finite (float64 overflow under extreme weights) are no interval, with a warning.

Percentile bootstrap intervals need at least :func:`min_bootstrap_draws` draws: fewer leave no draw
beyond an endpoint (the endpoint is then the extreme draw, or an interpolation toward it).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

from counterfeed.core.scoring import interval_quantile
from counterfeed.errors import DataError
from counterfeed.ope.diagnostics import diagnostics, kish_ess, rare_events_warning, warnings_for
from counterfeed.ope.estimators import (DoublyRobust, DoublyRobustWithShrinkage, OffPolicyEstimator,
                                        SelfNormalizedDoublyRobust, SwitchDoublyRobust, Units, make_estimator)
from counterfeed.ope.logs import OPELog
from counterfeed.ope.reward import MAX_FOLDS, LogisticRewardModel, RewardModel, _cells, cross_fit, fit_folds_on_cells
from counterfeed.ope.target import Target

__all__ = ["OPEResult", "evaluate", "analytic_interval", "bootstrap_interval", "refit_bootstrap_interval",
           "min_bootstrap_draws", "bootstrap_problem", "effective_units", "MIN_SUPPORTED_ROUNDS", "MIN_EFFECTIVE_UNITS"]

#: fewest rounds with a positive weight an interval of a weighting estimator is computed from
MIN_SUPPORTED_ROUNDS = 2
#: fewest effective independent units (:func:`effective_units`) any interval is reported from
MIN_EFFECTIVE_UNITS = 10


def min_bootstrap_draws(level: float) -> int:
    """The fewest draws a percentile interval at ``level`` needs: ``1 + ceil(2 / (1 - level))``.

    With B draws the lower endpoint is the order statistic at position ``(B - 1)(1 - level)/2``
    (numpy's linear quantile); below 1 it interpolates between the smallest draw and the next, so the
    tail is not estimated at all. B >= 1 + 2/(1 - level) puts at least one draw beyond each endpoint
    (41 at 95%); Efron & Tibshirani (1993, ch. 13) recommend 1000 or more for percentile intervals.
    """
    return 1 + math.ceil(2.0 / (1.0 - level) - 1e-9)


def bootstrap_problem(bootstrap: int, level: float) -> str | None:
    """Why ``bootstrap`` draws cannot give a percentile interval at ``level`` (0 draws: analytic intervals,
    fine), or None. Shared by :func:`evaluate`, the ``ope`` estimator's ``check_scenario`` (so ``validate``
    refuses what the run would) and the ``ope`` command, so all three say the same."""
    need = min_bootstrap_draws(level)
    if bootstrap and bootstrap < need:
        return (f"{bootstrap} draws are too few for a {level:.3g} percentile interval; at least {need} are "
                "needed (1 + 2/(1 - level): fewer leave no draw beyond an endpoint), 1000 or more recommended; "
                "use 0 for analytic intervals")
    return None


@dataclass
class OPEResult:
    """One estimator's estimate of the target policy's value (mean reward per impression)."""

    estimator: str
    value: float
    lower: float
    upper: float
    se: float
    level: float
    logging_value: float
    interval: str = "analytic"
    diagnostics: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _value(sums) -> tuple[float, list[float]]:
    parts = []
    for ar, br in sums:
        den = br.sum()
        parts.append(float(ar.sum() / den) if den > 0 else float("nan"))
    return float(sum(parts)), parts


def analytic_interval(sums, level: float, df: float | None = None) -> tuple[float, float, float, float]:
    """(value, se, lower, upper) by the delta method on per-round sums (see module docstring): the interval
    uses Student's t quantile on ``df`` degrees of freedom (None: ``R - 1`` for ``R`` rounds; ``inf``: z)."""
    value, parts = _value(sums)
    n_rounds = sums[0][0].size
    e = np.zeros(n_rounds)
    with np.errstate(divide="ignore", invalid="ignore"):  # an all-zero denominator gives nan, not a warning
        for (ar, br), v in zip(sums, parts):
            e += (ar - v * br) / br.sum()
    se = math.sqrt(n_rounds / max(n_rounds - 1, 1) * float(e @ e)) if n_rounds > 1 else float("nan")
    dof = float(n_rounds - 1) if df is None else float(df)
    q = interval_quantile(level, dof if math.isinf(dof) else max(dof, 1.0))
    return value, se, value - q * se, value + q * se


def effective_units(est: OffPolicyEstimator, u: Units, uses_weights: bool = True) -> float:
    """The number of effective independent units behind ``est``'s estimate: Kish's effective sample size
    ``(sum_r W_r)^2 / sum_r W_r^2`` of the per-round sums ``W_r`` of the weights the estimator uses (rounds
    are the independent units; Kish 1965, sec. 11.7), or the number of rounds when it uses no weight (DM,
    or a DR variant that is DM here). At most the number of rounds that carry weight."""
    w = est.weights(u)
    if w is None or not uses_weights:
        return float(u.n_rounds)
    return kish_ess(u.per_round(w))


def bootstrap_interval(sums, level: float, n_boot: int, rng: np.random.Generator) -> tuple[float, float, float, float]:
    """(value, se, lower, upper): percentile bootstrap over rounds (resampled with replacement)."""
    value, _ = _value(sums)
    n_rounds = sums[0][0].size
    A = np.stack([s[0] for s in sums])
    B = np.stack([s[1] for s in sums])
    draws = np.empty(n_boot)
    for b in range(n_boot):
        c = np.bincount(rng.integers(0, n_rounds, n_rounds), minlength=n_rounds).astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            draws[b] = float(np.sum((A @ c) / (B @ c)))
    return _percentile(value, draws, level)


def _percentile(value: float, draws: np.ndarray, level: float) -> tuple[float, float, float, float]:
    if np.isnan(draws).all():
        return value, float("nan"), float("nan"), float("nan")
    alpha = (1 - level) / 2
    lo, hi = np.nanquantile(draws, [alpha, 1 - alpha])
    return value, float(np.nanstd(draws, ddof=1)), float(lo), float(hi)


def refit_bootstrap_interval(est: OffPolicyEstimator, u: Units, log: OPELog, target: Target,
                             reward_model: RewardModel | None, fold: np.ndarray, level: float, n_boot: int,
                             rng: np.random.Generator, cache: dict | None = None) -> tuple[float, float, float, float]:
    """(value, se, lower, upper): percentile bootstrap over rounds, refitting the reward model per draw.

    Each draw counts round ``r`` ``c_r`` times (multinomial), refits the cross-fitted model on those
    counts (the folds of the rounds stay fixed) and recomputes ``q``, ``dm`` and the estimate
    :math:`\sum_t (A_t \cdot c) / (B_t \cdot c)`. Efron & Tibshirani (1993), ch. 6 and 13.
    """
    value, _ = _value(est.terms(u))
    n_rounds = u.n_rounds
    model = reward_model if reward_model is not None else LogisticRewardModel()
    form = None if est.weights_used(u) else "dm"
    if form is None:
        form = _CORRECTION_DENOMINATOR.get(type(est))
    if form is not None and isinstance(model, LogisticRewardModel) and model.context_free \
            and target.support.per_position:
        return _percentile(value, _cell_draws(est, u, form, log, target, model, fold, n_boot, rng, cache), level)
    draws = np.empty(n_boot)
    for b in range(n_boot):
        c = np.bincount(rng.integers(0, n_rounds, n_rounds), minlength=n_rounds).astype(np.float64)
        model = cross_fit(log, reward_model, fold=fold, round_weights=c)
        ub = u.with_model(model.predict_logged(log), model.expected_under(log, target.support))
        with np.errstate(divide="ignore", invalid="ignore"):
            draws[b] = float(sum((a @ c) / (bb @ c) for a, bb in est.terms(ub)))
    return _percentile(value, draws, level)


#: The built-in DR-type estimators, :math:`\hat V = \mathrm{DM} + \sum_i \tilde w_i (r_i - \hat q_i) / D`, by their
#: correction's denominator ``D``: the number of impressions, or :math:`\sum_i \tilde w_i` (SNDR). Exact
#: types: a subclass may change :meth:`~OffPolicyEstimator.terms`, and then takes the generic refit.
_CORRECTION_DENOMINATOR: dict[type, str] = {DoublyRobust: "impressions", DoublyRobustWithShrinkage: "impressions",
                                            SwitchDoublyRobust: "impressions", SelfNormalizedDoublyRobust: "weights"}


def _cell_draws(est: OffPolicyEstimator, u: Units, form: str, log: OPELog, target: Target,
                model: LogisticRewardModel, fold: np.ndarray, n_boot: int, rng: np.random.Generator,
                cache: dict | None = None) -> np.ndarray:
    """Refit-bootstrap draws of DM (``form`` "dm") or of a built-in DR-type estimator (``form`` its
    correction's denominator, :data:`_CORRECTION_DENOMINATOR`) for a context-free model and a per-position
    target, from sufficient statistics.

    Per draw, sparse (cells x rounds) products give the refit's cell counts and reward sums, and

    - DM is ``sum_{f,j} T[f, j] * (weighted impressions of fold f at position j) / (weighted impressions)``,
      ``T[f, j]`` the target's expected prediction at position ``j`` under fold ``f``'s model;
    - the correction ``sum_i w_i (r_i - q_i)`` is ``sum_r c_r sum_{i in r} w_i r_i - sum_{f,cell} Q[f, cell]
      * (weighted sum of w_i over fold f's impressions in the cell)``, ``Q`` the fold models' predictions.

    The same draws as the generic path (same multinomial counts, same refits; the sums in another order),
    O(N) sparse work per draw instead of a refit through :func:`cross_fit` and the estimator's terms.

    ``cache`` (a dict shared by the estimators of one :func:`evaluate` call, whose refit bootstraps draw from
    one keyed stream) keeps each draw's counts, fold models and ``T``: the refits, most of a draw's cost on
    a large catalog, are done once for DM and every DR variant that needs them. A cached draw is the draw
    ``rng`` would give (the same stream), so the result does not depend on the order of the estimators.
    """
    from scipy.sparse import csr_matrix

    cell, c_item, c_pos = _cells(log)
    size, n_folds, n_pos, n_rounds = c_item.size, int(fold.max()) + 1, log.n_positions, log.n_rounds
    key = fold[log.round] * size + cell
    ones = np.ones(len(log))
    S = csr_matrix((ones, (key, log.round)), shape=(n_folds * size, n_rounds))
    Y = csr_matrix((log.reward, (key, log.round)), shape=(n_folds * size, n_rounds))
    P = csr_matrix((ones, (fold[log.round] * n_pos + log.position, log.round)), shape=(n_folds * n_pos, n_rounds))
    per_round = np.bincount(log.round, minlength=n_rounds).astype(np.float64)
    if form != "dm":
        wt = est.weights(u)
        W = csr_matrix((wt, (key, log.round)), shape=(n_folds * size, n_rounds))
        wr_round = np.bincount(log.round, wt * log.reward, minlength=n_rounds)
        den_round = per_round if form == "impressions" else np.bincount(log.round, wt, minlength=n_rounds)
    sup = target.support
    refits = cache.setdefault(n_boot, []) if cache is not None else []
    draws = np.empty(n_boot)
    for b in range(n_boot):
        if b < len(refits):
            c, models, table = refits[b]
        else:
            c = np.bincount(rng.integers(0, n_rounds, n_rounds), minlength=n_rounds).astype(np.float64)
            models = fit_folds_on_cells(model, log, c_item, c_pos, (S @ c).reshape(n_folds, size),
                                        (Y @ c).reshape(n_folds, size))
            table = np.stack([np.bincount(sup.position, sup.weight * m.predict(log, sup.item_code, sup.position,
                                                                               None), minlength=n_pos)[:n_pos]
                              for m in models])
            if cache is not None:
                refits.append((c, models, table))
        value = float(table.ravel() @ (P @ c)) / float(per_round @ c)
        if form != "dm":
            q = np.concatenate([m.predict(log, c_item, c_pos, None) for m in models])
            with np.errstate(divide="ignore", invalid="ignore"):
                value += (float(wr_round @ c) - float(q @ (W @ c))) / float(den_round @ c)
        draws[b] = value
    return draws


def evaluate(log: OPELog, target: Target, estimators: Sequence["str | OffPolicyEstimator"] = ("ips", "snips", "dr"),
             *, clip: float | None = None, level: float = 0.95, bootstrap: int = 0, seed: int = 0,
             reward_model: RewardModel | None = None, folds: int = 5, tau: float = 10.0,
             lam: float = 100.0, timings: dict[str, float] | None = None,
             model_bootstrap: int = 200) -> list[OPEResult]:
    """Estimate the target policy's value with each estimator.

    Parameters
    ----------
    log, target : the validated log and the target's probabilities (aligned with the log's rows).
    estimators : names (``dm, ips, snips, dr, sndr, switch-dr, dr-os``) or estimator objects.
    clip : maximum weight M for IPS, SNIPS, DR, SNDR (None: no clipping).
    level : interval level. bootstrap : number of round-bootstrap draws (0: analytic intervals); for the
        estimators that use the reward model, each draw refits it.
    model_bootstrap : refit-bootstrap draws for DM (and DR variants with no weight left) when
        ``bootstrap`` is 0: their analytic interval would ignore the reward model's error.
    seed : seeds the cross-fitting folds and the bootstrap (``Keys(seed).numpy_generator``).
    reward_model, folds : the DM/DR reward model (default logistic) and its number of cross-fitting folds.
    tau, lam : Switch-DR threshold and DR-OS shrinkage for estimators given by name.
    timings : if given, filled with seconds per stage and per estimator.

    Returns one :class:`OPEResult` per estimator; ``diagnostics["warnings"]`` lists every diagnostic
    outside its safe range (:mod:`counterfeed.ope.diagnostics`). Raises :class:`DataError` for bad
    arguments and when no logged impression has support under the target (the value is not identified).
    """
    import time as _time

    from counterfeed.core.randomness import Keys

    if not 0 < level < 1:
        raise DataError(f"level must be in (0, 1), got {level}")
    if clip is not None and not (math.isfinite(clip) and clip > 0):
        raise DataError(f"clip must be a finite positive number, got {clip}")
    for name, x in (("tau", tau), ("lambda", lam)):
        if math.isnan(x) or x < 0:
            raise DataError(f"{name} must be a number >= 0 (inf allowed: DR), got {x}")
    if (problem := bootstrap_problem(bootstrap, level)) is not None:
        raise DataError(f"bootstrap: {problem}")
    if not 1 <= folds <= MAX_FOLDS:
        raise DataError(f"folds must be in [1, {MAX_FOLDS}] (each fold refits the reward model), got {folds}")
    if target.prob.shape != (len(log),):
        raise DataError(f"target probabilities have shape {target.prob.shape}; expected ({len(log)},)")
    ests = [make_estimator(e, tau=tau, lam=lam) for e in estimators]
    keys = Keys(seed)
    tm = timings if timings is not None else {}
    t0 = _time.perf_counter()
    with np.errstate(over="ignore"):  # an overflowing weight is reported just below
        w = target.prob / log.propensity
    u = Units(w=w, r=log.reward, rnd=log.round, n_rounds=log.n_rounds, clip=clip)
    unsupported = _unsupported_mass(log, target)
    if not np.isfinite(u.w).all():
        i = int(np.flatnonzero(~np.isfinite(u.w))[0])
        raise DataError(f"{log.source}: row {i + 1}: importance weight target/propensity = {target.prob[i]:.3g}/"
                        f"{log.propensity[i]:.3g} overflows float64; the propensity is too small to weight by")
    if not (u.w > 0).any():
        extra = (f"; it puts {unsupported:.0%} of its probability on items the log never shows"
                 if unsupported else "")
        raise DataError(f"{log.source}: no common support: the target gives probability 0 to every logged "
                        f"(item, position){extra}. The policy value is not identified from this log (IPS "
                        "would be 0 and SNIPS 0/0 whatever the truth); log with a policy that explores "
                        "what the target shows")
    fold = None
    if any(e.needs_model for e in ests):
        if target.support is None:
            raise DataError("the direct method and doubly robust estimators need the target's full "
                            f"distribution: {target.why_no_support or 'not available'}")
        model = cross_fit(log, reward_model, folds=folds, rng=keys.numpy_generator("ope", "folds"))
        fold = model.fold
        u.q = model.predict_logged(log)
        u.dm = model.expected_under(log, target.support)
    tm["reward_model"] = _time.perf_counter() - t0
    logging_value = log.observed_value
    out = []
    diag_cache: dict[str, dict[str, Any]] = {}
    refits: dict[int, list] = {}  # the refit bootstrap's draws, shared by the estimators (_cell_draws)
    binary = bool(np.isin(log.reward, (0.0, 1.0)).all())
    # events among the impressions the target weights: they, not the whole log, inform every estimate (for
    # DM, the cells the target plays); a rare event there is rare for the estimate however many the log has
    weighted = u.w > 0
    events = int(np.count_nonzero(log.reward[weighted] == 1.0)) if binary else None
    for i, est in enumerate(ests):
        t1 = _time.perf_counter()
        diag = diagnostics(est, u, len(log), log.n_rounds, unsupported, diag_cache)
        if events is not None:
            diag["reward_events"], diag["reward_nonevents"] = events, int(weighted.sum()) - events
        notes = list(target.warnings)
        model_only = est.needs_model and not diag["uses_weights"]  # DM, or a DR variant with no weight left
        n_boot = int(bootstrap) if bootstrap > 0 else (int(model_bootstrap) if model_only else 0)
        extrapolates = est.needs_model and not model_only and _off_support(unsupported, diag)
        if (extrapolates or _partial_correction(est, u)) and bootstrap <= 0:
            n_boot = int(model_bootstrap)
        # every refit bootstrap draws from one stream, so the estimators share the draws' refits
        # (``refits``); an estimator that is DM here reports DM's interval exactly
        shared = model_only or (est.needs_model and n_boot > 0)
        rng = keys.numpy_generator("ope", "bootstrap", *(("dm",) if shared else (est.name, i)))
        why_none = _no_interval_reason(est, u, log.n_rounds, diag)
        n_eff = diag["effective_units"] = effective_units(est, u, diag["uses_weights"])
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            if why_none:
                value, _ = _value(est.terms(u))
                se = lo = hi = float("nan")
                kind = "none"
                notes.append(why_none)
            elif n_boot > 0 and est.needs_model:
                value, se, lo, hi = refit_bootstrap_interval(est, u, log, target, reward_model, fold, level,
                                                             n_boot, rng, refits)
                kind = "bootstrap (reward model refitted per draw)"
            elif n_boot > 0:
                value, se, lo, hi = bootstrap_interval(est.terms(u), level, n_boot, rng)
                kind = "bootstrap"
            else:
                value, se, lo, hi = analytic_interval(est.terms(u), level, df=n_eff - 1)
                kind = "analytic"
                diag["interval_df"] = n_eff - 1
        if kind != "none" and not (math.isfinite(lo) and math.isfinite(hi)):
            se = lo = hi = float("nan")
            kind = "none"
            notes.append(f"no interval: its bounds are not finite numbers (float64 overflow): the weights (largest "
                         f"{diag['max_weight']:.3g}) are too extreme for this log")
        why_zero = _zero_width_reason(est, u, lo, hi, value) if kind != "none" else None
        if not why_zero and kind != "none" and n_eff < MIN_EFFECTIVE_UNITS:
            lo = hi = float("nan")  # the standard error is kept (reported, not used for an interval)
            kind = "none"
            notes.append(_small_sample_reason(est, u, n_eff, diag["uses_weights"]))
        if why_zero:
            se = lo = hi = float("nan")
            kind = "none"
            notes.append(why_zero)
        if not math.isfinite(value):
            notes.append("the estimate is not a finite number (float64 overflow or 0/0): the weights or rewards "
                         "are too extreme for this log")
        if binary:
            has_interval = kind != "none" and math.isfinite(lo) and math.isfinite(hi)
            if has_interval and not (lo <= 1.0 and hi >= 0.0):
                notes.append(f"the whole interval [{lo:.4g}, {hi:.4g}] lies outside [0, 1], where the mean of a "
                             "binary reward must lie: the weights do not describe the logging and target policies")
            else:
                if has_interval:
                    lo, hi = max(lo, 0.0), min(hi, 1.0)  # binary rewards: the value lies in [0, 1]
                if math.isfinite(value) and not 0.0 <= value <= 1.0:  # DR-type corrections can overshoot
                    diag["point_raw"] = value
                    value = min(max(value, 0.0), 1.0)  # the projection is closer to every value in [0, 1]
                    notes.append(f"the estimate {diag['point_raw']:.4g} lies outside [0, 1], where the mean of a "
                                 f"binary reward must lie; reported as {value:g}, its projection onto [0, 1]"
                                 + (", so that the interval (intersected with [0, 1]) contains it" if has_interval
                                    else "") + " (raw value: diagnostics point_raw)")
        rare = rare_events_warning(diag) if kind != "none" else None
        if rare and est.needs_model and min(diag["reward_events"], diag["reward_nonevents"]) < MIN_MODEL_EVENTS:
            # the reward model's L2 penalty pulls the few-event cells the target plays toward the other
            # cells' rate: a bias no bootstrap sees (1 click among 140 weighted impressions: DM's interval
            # covered 0 of 40 simulated logs, DR-OS's 58%, DR's 80%; with 3 clicks DM covered 82.5%)
            se = lo = hi = float("nan")
            kind = "none"
            notes.append(f"no interval: {est.name} rests on the reward model, and {rare}; the model's penalty "
                         "pulls those cells toward the rest of the log, a bias that no interval here would contain")
            rare = None
        diag["warnings"] = notes + warnings_for(est, diag) + ([rare] if rare else [])
        out.append(OPEResult(est.name, value, lo, hi, se, level, logging_value, kind, diag))
        tm[est.name] = _time.perf_counter() - t1
    return out


def _partial_correction(est: OffPolicyEstimator, u: Units) -> bool:
    """Whether a DR-type estimator corrects the reward model with weights other than the raw ones on some
    weighted impression (DR-OS's shrunk weights, Switch-DR's dropped ones, clipped ones): there the model's
    own estimation error is only partly corrected, so the analytic interval, which treats the model as
    fixed, leaves it out (DR-OS's analytic 95% interval covered 50% in a simulation with a deterministic
    target)."""
    if not est.needs_model:
        return False
    w = est.weights(u)
    return w is not None and not np.array_equal(w, u.w)


def _off_support(unsupported: float | None, diag: dict[str, Any]) -> bool:
    """Whether the target puts probability where the log has none: on items the log never shows, or (mean
    raw weight clearly below 1, as in :mod:`counterfeed.ope.diagnostics`) on items the logging policy never
    shows in those rounds/positions, e.g. under a deterministic logger. The model alone covers that mass."""
    from counterfeed.ope.diagnostics import SAFE

    if unsupported:
        return True
    m, se = diag.get("mean_weight"), diag.get("mean_weight_se", float("nan"))
    return m is not None and 1 - m > SAFE["mean_weight_tol"] and not (1 - m <= SAFE["mean_weight_z"] * se)


def _no_interval_reason(est: OffPolicyEstimator, u: Units, n_rounds: int, diag: dict[str, Any]) -> str | None:
    """Why no interval can be computed honestly (see the module docstring), or None."""
    if n_rounds < 2:
        return (f"no interval: the log has {n_rounds} round; an interval needs at least 2 independent rounds")
    w = est.weights(u)
    if w is None or not diag.get("uses_weights", True):
        return None  # DM (or a DR variant that is DM here): the refit bootstrap over all rounds
    pos = w > 0
    n_imp = int(pos.sum())
    n_sup = int(np.unique(u.rnd[pos]).size)
    ess = diag.get("ess", 0.0)
    if n_sup < MIN_SUPPORTED_ROUNDS or ess < 2:
        return (f"no interval: only {n_imp} impression(s) in {n_sup} round(s) carry weight under the target "
                f"(ESS {ess:.2g}); an interval needs at least {MIN_SUPPORTED_ROUNDS} independent supported "
                "rounds and an ESS of 2")
    return None


def _rounding_scale(est: OffPolicyEstimator, u: Units) -> float:
    r"""The magnitude the estimate's floating-point rounding error is relative to.

    Every estimate is :math:`\sum_t \sum_r A_{t,r} / \sum_r B_{t,r}`, each :math:`A_{t,r}` a sum of per-unit
    terms built from :math:`\hat q^{\pi_e}_i`, :math:`\tilde w_i r_i` and :math:`\tilde w_i \hat q_i` with
    the estimator's own weights. The same terms on the units' magnitudes (:meth:`Units.magnitudes`:
    :math:`|\hat q^{\pi_e}|`, :math:`\tilde w |r|`, :math:`+\tilde w |\hat q|`) bound each term's
    contribution before any cancellation (DR's :math:`\tilde w_i r_i - \tilde w_i \hat q_i`, for one), term by
    term: a weight an estimator does not use (DM's) or divides out (SNIPS's, SNDR's correction) does not
    inflate it. The scale is :math:`\sum_t (\sum_r |A^{|\cdot|}_{t,r}| + |\hat V_t| \sum_r |B_{t,r}|) /
    |\sum_r B_{t,r}|`: what rounding of these sums, and of :math:`A_{t,r} - \hat V_t B_{t,r}`, is
    proportional to.
    """
    scale = 0.0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        _, parts = _value(est.terms(u))
        for (a, b), v in zip(est.terms(u.magnitudes()), parts):
            den = abs(float(b.sum()))
            scale += (float(np.abs(a).sum()) + abs(v) * float(np.abs(b).sum())) / den if den > 0 else 0.0
    return scale if math.isfinite(scale) else 0.0


#: fewer events (or non-events) of a binary reward among the impressions the target weights than this: no
#: interval from an estimator on the reward model (its penalty's bias there is not in any interval; a tester
#: measured DM covering 0 of 40 logs with 1 event, 82.5% with 3); below ``SAFE["events_min"]`` a warning
MIN_MODEL_EVENTS = 3

#: an interval narrower than this times :func:`_rounding_scale` is floating-point rounding, not variance.
#: Double rounding is about 1e-16 per operation, so sums of up to millions of terms stay far below it,
#: and a real spread of the estimator's terms a billion times smaller than the terms is not resolved.
ROUNDING_TOL = 1e-9


def _zero_width_reason(est: OffPolicyEstimator, u: Units, lo: float, hi: float, value: float) -> str | None:
    """A zero-width interval (no observed variation of the estimator's terms across rounds) is no interval.

    Zero width is judged relative to the size of the terms (:func:`_rounding_scale`), so rounding noise
    of sums that cancel (e.g. DR's correction when every reward is the same constant) counts as zero.
    """
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi - lo > ROUNDING_TOL * _rounding_scale(est, u):
        return None
    w = est.weights(u)
    if w is not None and bool(np.any(w)):
        pos = w > 0
        r = u.r[pos]
        what = (f"the {int(pos.sum())} impressions carrying weight under the target (in "
                f"{np.unique(u.rnd[pos]).size} rounds) have rewards {r.min():g}..{r.max():g}")
    else:
        what = f"the reward model's prediction does not vary across the {u.n_rounds} rounds"
    return (f"no interval: {est.name} does not vary across the resampled rounds ({what}): zero observed variance, "
            "so any interval would have zero width whatever the truth")


def _small_sample_reason(est: OffPolicyEstimator, u: Units, n_eff: float, uses_weights: bool) -> str:
    """Fewer than :data:`MIN_EFFECTIVE_UNITS` effective independent units: no interval (module docstring)."""
    w = est.weights(u)
    if w is None or not uses_weights:
        what = f"the log has {u.n_rounds} rounds"
    else:
        pos = w > 0
        what = (f"{int(pos.sum())} impression(s) in {np.unique(u.rnd[pos]).size} round(s) carry weight under "
                f"the target, {n_eff:.3g} effective independent units (Kish's ESS of the per-round weights)")
    return (f"no interval: {what}; an interval needs at least {MIN_EFFECTIVE_UNITS} effective independent "
            "units (below that neither a t interval nor the bootstrap keeps its level)")


def _unsupported_mass(log: OPELog, target: Target) -> float | None:
    """The target's mean probability (per impression) on items the log never shows; None if unknown."""
    sup = target.support
    if sup is None:
        return None
    off = sup.item_code < 0
    if sup.per_position:
        n_pos = max(log.n_positions, int(sup.position.max()) + 1)
        mass = np.bincount(sup.position[off], sup.weight[off], minlength=n_pos)
        return float(mass[log.position].mean())
    return float(sup.weight[off].sum() / len(log))
