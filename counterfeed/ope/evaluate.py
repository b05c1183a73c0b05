r"""Running the estimators on a log and a target, with intervals clustered by round.

Analytic intervals: every estimate is :math:`\hat V = \sum_t \hat A_t / \hat B_t` with
:math:`\hat A_t = \sum_r A_{t,r}`, sums of per-unit terms over the units of round ``r``. Rounds are
independent (units inside a round are not), so the delta method on the per-round sums gives

.. math:: \widehat{\mathrm{se}}^2 = \frac{R}{R-1}\sum_r e_r^2,\qquad
          e_r = \sum_t \frac{A_{t,r} - \hat V_t B_{t,r}}{\hat B_t},

and the interval :math:`\hat V \pm z_{(1+\text{level})/2}\,\widehat{\mathrm{se}}` (a CLT over rounds).
Bootstrap intervals resample rounds with replacement (percentile interval), with the reward model held
fixed (it was cross-fitted once).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np
from scipy.special import ndtri

from counterfeed.errors import DataError
from counterfeed.ope.estimators import OffPolicyEstimator, Units, make_estimator
from counterfeed.ope.logs import OPELog
from counterfeed.ope.reward import RewardModel, cross_fit
from counterfeed.ope.target import Target

__all__ = ["OPEResult", "evaluate", "analytic_interval", "bootstrap_interval"]


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


def analytic_interval(sums, level: float) -> tuple[float, float, float, float]:
    """(value, se, lower, upper) by the delta method on per-round sums (see module docstring)."""
    value, parts = _value(sums)
    n_rounds = sums[0][0].size
    e = np.zeros(n_rounds)
    with np.errstate(divide="ignore", invalid="ignore"):  # an all-zero denominator gives nan, not a warning
        for (ar, br), v in zip(sums, parts):
            e += (ar - v * br) / br.sum()
    se = math.sqrt(n_rounds / max(n_rounds - 1, 1) * float(e @ e)) if n_rounds > 1 else float("nan")
    z = float(ndtri(0.5 + level / 2))
    return value, se, value - z * se, value + z * se


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
    alpha = (1 - level) / 2
    if np.isnan(draws).all():
        return value, float("nan"), float("nan"), float("nan")
    lo, hi = np.nanquantile(draws, [alpha, 1 - alpha])
    return value, float(np.nanstd(draws, ddof=1)), float(lo), float(hi)


def _diagnostics(est: OffPolicyEstimator, u: Units, log: OPELog, cache: dict[str, dict[str, Any]]) -> dict[str, Any]:
    w = est.weights(u)
    # estimators that share the clipped weights share their diagnostics (computed once)
    key = "clipped" if w is u.wc else ("none" if w is None else f"{type(est).__name__}{id(w)}")
    if key is not None and key in cache:
        return dict(cache[key])
    d: dict[str, Any] = {"n_rounds": log.n_rounds, "n_impressions": len(log)}
    if w is not None:
        s2 = float(w @ w)
        d["ess"] = float(w.sum() ** 2 / s2) if s2 > 0 else 0.0
        d["mean_weight"] = float(w.mean())
    else:
        d["ess"] = float(len(log))
    d["max_weight"] = float(u.w.max())
    d["clipped_share"] = float(np.mean(u.w > u.clip)) if (u.clip is not None and est.uses_clip) else 0.0
    d["zero_support_share"] = float(np.mean(u.w == 0))
    if key is not None:
        cache[key] = d
    return dict(d)


def evaluate(log: OPELog, target: Target, estimators: Sequence["str | OffPolicyEstimator"] = ("ips", "snips", "dr"),
             *, clip: float | None = None, level: float = 0.95, bootstrap: int = 0, seed: int = 0,
             reward_model: RewardModel | None = None, folds: int = 5, tau: float = 10.0,
             lam: float = 100.0, timings: dict[str, float] | None = None) -> list[OPEResult]:
    """Estimate the target policy's value with each estimator.

    Parameters
    ----------
    log, target : the validated log and the target's probabilities (aligned with the log's rows).
    estimators : names (``dm, ips, snips, dr, sndr, switch-dr, dr-os``) or estimator objects.
    clip : maximum weight M for IPS, SNIPS, DR, SNDR (None: no clipping).
    level : interval level. bootstrap : number of round-bootstrap draws (0: analytic intervals).
    seed : seeds the cross-fitting folds and the bootstrap (``Keys(seed).numpy_generator``).
    reward_model, folds : the DM/DR reward model (default logistic) and its number of cross-fitting folds.
    tau, lam : Switch-DR threshold and DR-OS shrinkage for estimators given by name.
    timings : if given, filled with seconds per stage and per estimator.
    """
    import time as _time

    from counterfeed.core.randomness import Keys

    if not 0 < level < 1:
        raise DataError(f"level must be in (0, 1), got {level}")
    if clip is not None and clip <= 0:
        raise DataError(f"clip must be positive, got {clip}")
    if target.prob.shape != (len(log),):
        raise DataError(f"target probabilities have shape {target.prob.shape}; expected ({len(log)},)")
    ests = [make_estimator(e, tau=tau, lam=lam) for e in estimators]
    keys = Keys(seed)
    tm = timings if timings is not None else {}
    t0 = _time.perf_counter()
    u = Units(w=target.prob / log.propensity, r=log.reward, rnd=log.round, n_rounds=log.n_rounds, clip=clip)
    if any(e.needs_model for e in ests):
        if target.support is None:
            raise DataError("the direct method and doubly robust estimators need the target's full "
                            f"distribution: {target.why_no_support or 'not available'}")
        model = cross_fit(log, reward_model, folds=folds, rng=keys.numpy_generator("ope", "folds"))
        u.q = model.predict_logged(log)
        u.dm = model.expected_under(log, target.support)
    tm["reward_model"] = _time.perf_counter() - t0
    logging_value = log.observed_value
    out = []
    diag_cache: dict[str, dict[str, Any]] = {}
    for i, est in enumerate(ests):
        t1 = _time.perf_counter()
        sums = est.terms(u)
        if bootstrap > 0:
            rng = keys.numpy_generator("ope", "bootstrap", est.name, i)
            value, se, lo, hi = bootstrap_interval(sums, level, int(bootstrap), rng)
            kind = "bootstrap"
        else:
            value, se, lo, hi = analytic_interval(sums, level)
            kind = "analytic"
        diag = _diagnostics(est, u, log, diag_cache)
        out.append(OPEResult(est.name, value, lo, hi, se, level, logging_value, kind, diag))
        tm[est.name] = _time.perf_counter() - t1
    return out
