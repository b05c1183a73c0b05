"""Diagnostics of an off-policy estimate and the warnings raised when they leave their safe ranges.

The safe ranges (documented in docs/ope.md, section "Warnings"):

- ``mean_weight``: the mean raw importance weight :math:`\\bar w = \\frac1N\\sum_i w_i` has expectation
  :math:`1 - u` under the logging policy, where :math:`u` is the target's probability mass outside the
  log's support. Warned when :math:`|\\bar w - 1| > 0.1` and more than 3 standard errors (clustered by
  round) from 1: missing support or wrong propensities (IPS is then scaled by about :math:`\\bar w`).
- ``ess``: Kish's effective sample size :math:`(\\sum w)^2 / \\sum w^2` of the weights the estimator uses.
  Warned below 30 or below 1% of the impressions.
- ``zero_support_share``: share of impressions with weight 0. Warned at 0.99 or more (fewer than 1%
  of the impressions say anything about the target).
- ``unsupported_target_mass``: the target's mean probability on items the log never shows. Warned
  above 0.01: weighting estimators cannot see those items (bias); DM extrapolates to them.
- ``clipped_share``: share of weights clipped at ``clip``. Warned above 0.01 (a downward bias).
- ``reward_events`` (binary rewards only): impressions with reward 1 among those carrying weight under the
  target (the ones that inform every estimate; for DM, the cells the target plays), and
  ``reward_nonevents`` with reward 0 among them. Warned, on an estimate that reports an interval, when either is below 10: with so few events
  the normal/t and bootstrap intervals do not keep their level (for one binomial proportion: Brown, Cai
  & DasGupta 2001, *Statistical Science* 16(2); the same holds for the weighted means here).
- ``switched_share`` (switch-dr): share of positive weights above ``tau``, replaced by DM. When no
  weight is left (``uses_weights`` false: switch-dr with every positive weight above ``tau``, DR-OS with
  ``lam = 0``) the estimator *is* DM here: said in a warning, and it gets DM's interval.

Reference for ESS: Kish (1965), *Survey Sampling*; for the mean-weight check: Owen (2013), *Monte
Carlo theory, methods and examples*, ch. 9 (the importance weights' mean is 1 under support).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from counterfeed.ope.estimators import OffPolicyEstimator, SwitchDoublyRobust, Units

__all__ = ["diagnostics", "warnings_for", "rare_events_warning", "SAFE", "kish_ess"]

#: documented safe ranges (see module docstring)
SAFE = {"mean_weight_tol": 0.1, "mean_weight_z": 3.0, "ess_min": 30.0, "ess_share_min": 0.01,
        "zero_support_max": 0.99, "unsupported_mass_max": 0.01, "clipped_max": 0.01, "events_min": 10}


def _mean_weight_se(u: Units, scale: float) -> float:
    """Round-clustered standard error of the mean raw weight (delta method over rounds), computed on the
    weights divided by ``scale`` (their maximum) and scaled back, so huge weights do not overflow."""
    n = float(u.w.size)
    if u.n_rounds < 2 or n == 0 or not scale > 0:
        return float("nan")
    ws = u.w / scale
    m = float(ws.mean())
    e = (u.per_round(ws) - m * u.counts) / n
    return scale * math.sqrt(u.n_rounds / (u.n_rounds - 1) * float(e @ e))


def kish_ess(w: np.ndarray) -> float:
    """Kish's effective sample size ``(sum w)^2 / sum w^2`` (0 for all-zero weights), computed on ``w / max(w)``:
    it is scale-invariant, and the scaled form cannot overflow whatever the weights' magnitude."""
    top = float(np.max(w)) if w.size else 0.0
    if not top > 0:
        return 0.0
    ws = w / top
    return float(ws.sum() ** 2 / (ws @ ws))


def diagnostics(est: OffPolicyEstimator, u: Units, n_impressions: int, n_rounds: int,
                unsupported_mass: float | None, cache: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The estimator's diagnostics (weights it uses, support, clipping); shared ones computed once."""
    w = est.weights(u)
    key = "clipped" if w is u.wc else ("none" if w is None else f"{type(est).__name__}{id(w)}")
    if key in cache:
        return dict(cache[key])
    d: dict[str, Any] = {"n_rounds": n_rounds, "n_impressions": n_impressions}
    if "raw" not in cache:
        top = float(u.w.max())
        mean = top * float((u.w / top).mean()) if top > 0 else 0.0  # the mean of w/max cannot overflow
        cache["raw"] = {"mean_weight": mean, "mean_weight_se": _mean_weight_se(u, top),
                        "max_weight": top, "zero_support_share": float(np.mean(u.w == 0))}
    d.update(cache["raw"])
    d["uses_weights"] = est.weights_used(u)
    if w is not None:
        d["ess"] = kish_ess(w)
    else:
        d["ess"] = float(n_impressions)
    d["clipped_share"] = float(np.mean(u.w > u.clip)) if (u.clip is not None and est.uses_clip) else 0.0
    if isinstance(est, SwitchDoublyRobust):
        pos = u.w > 0
        d["switched_share"] = float(np.mean(u.w[pos] > est.tau)) if pos.any() else 0.0
    if unsupported_mass is not None:
        d["unsupported_target_mass"] = unsupported_mass
    cache[key] = d
    return dict(d)


def warnings_for(est: OffPolicyEstimator, d: dict[str, Any]) -> list[str]:
    """One sentence per diagnostic outside its safe range (see the module docstring)."""
    out: list[str] = []
    m, se = d.get("mean_weight"), d.get("mean_weight_se", float("nan"))
    if m is not None and abs(m - 1) > SAFE["mean_weight_tol"] and not (abs(m - 1) <= SAFE["mean_weight_z"] * se):
        if m < 1:  # E[w] = 1 - the target's mass where the log shows nothing (Owen 2013, sec. 9.1)
            out.append(f"mean importance weight {m:.3g} (safe range 1 +- {SAFE['mean_weight_tol']:g}): about "
                       f"{1 - m:.0%} of the target's probability is on items the logging policy does not show at "
                       "that round and position (a deterministic logger shows one slate per round), or the "
                       "propensities are wrong. That part of the value is NOT IDENTIFIED from this log: weighting "
                       f"estimators cannot see it (IPS is scaled by about {m:.3g}, SNIPS rescales the part it sees) "
                       "and DM extrapolates to it, so the intervals leave out that bias")
        else:
            out.append(f"mean importance weight {m:.3g} (safe range 1 +- {SAFE['mean_weight_tol']:g}): the logged "
                       "propensities are too small for what the log shows (wrong propensities, or a log filtered "
                       f"after logging); IPS is scaled by about {m:.3g}")
    n = d["n_impressions"]
    if d.get("uses_weights", True):
        ess = d.get("ess", float(n))
        if ess < SAFE["ess_min"] or ess < SAFE["ess_share_min"] * n:
            out.append(f"effective sample size {ess:.0f} ({ess / max(n, 1):.2%} of {n} impressions; safe range "
                       f">= {SAFE['ess_min']:g} and >= {SAFE['ess_share_min']:.0%}): the estimate rests on few "
                       "(heavily weighted) impressions")
    z = d.get("zero_support_share", 0.0)
    if z >= SAFE["zero_support_max"]:
        out.append(f"{z:.2%} of impressions have weight 0 (safe range < {SAFE['zero_support_max']:.0%}): the "
                   "log rarely shows what the target would show")
    um = d.get("unsupported_target_mass")
    if um is not None and um > SAFE["unsupported_mass_max"]:
        out.append(f"the target puts {um:.1%} of its probability on items the log never shows (no common "
                   "support there): weighting estimators cannot see them and DM extrapolates to them")
    c = d.get("clipped_share", 0.0)
    if c > SAFE["clipped_max"]:
        out.append(f"{c:.1%} of the weights are clipped (safe range <= {SAFE['clipped_max']:.0%}): a downward "
                   "bias of unknown size")
    if est.needs_model and est.name != "dm" and not d.get("uses_weights", True):
        why = (f"no positive weight is at most tau = {est.tau:g} (max weight {d.get('max_weight', 0):.3g})"
               if isinstance(est, SwitchDoublyRobust) else "no weight is left")
        out.append(f"{est.name} equals DM here: {why}; its interval is DM's (reward model refitted per "
                   "bootstrap draw)")
    return out


def rare_events_warning(d: dict[str, Any]) -> str | None:
    """The warning for an interval from a binary reward with fewer than ``SAFE["events_min"]`` impressions of
    either outcome (``d["reward_events"]``, ``d["reward_nonevents"]``; see the module docstring), or None."""
    if "reward_events" not in d:
        return None
    ones, zeros = d["reward_events"], d["reward_nonevents"]
    k, outcome = (ones, 1) if ones <= zeros else (zeros, 0)
    if k >= SAFE["events_min"]:
        return None
    return (f"only {k} of the {ones + zeros} impressions carrying weight under the target have reward {outcome} "
            f"(safe range >= "
            f"{SAFE['events_min']:g} of each outcome for a binary reward): with so few events neither the "
            "t interval nor the bootstrap keeps its level (both undercover rare events), so read the interval "
            "as rough")
