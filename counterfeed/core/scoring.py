"""Scoring: an estimate against the truth of its estimand (the one copy of that logic).

Used by the runner right after the analysis; the report and calibration read the scored estimates
(``truth``, ``error``, ``covered``) it leaves. The truth itself comes from :mod:`counterfeed.core.truth`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Iterable, Mapping

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from counterfeed.core.estimation import Estimate

__all__ = ["TruthKey", "COVER_ULPS", "covers", "interval_quantile", "score_values", "truth_lookup", "truth_of", "score_estimates"]

#: ``(metric, arm, estimand, segment)``; ``segment`` is None for the whole population
TruthKey = tuple[str, str, str, "str | None"]


#: tolerance of the coverage check, in units of the float64 spacing (ulps) at the numbers' scale
COVER_ULPS = 8


def interval_quantile(level: float, df: float = math.inf) -> float:
    """The quantile ``q`` of a two-sided ``level`` interval ``point +- q se``: Student's t on ``df``
    degrees of freedom, or the standard normal when ``df`` is infinite (scipy.special ``stdtrit`` /
    ``ndtri``). The one quantile every interval of counterfeed uses (classical estimators, OPE, offline
    ranking metrics)."""
    from scipy import special

    q = 0.5 + level / 2.0
    return float(special.ndtri(q) if math.isinf(df) else special.stdtrit(df, q))


def covers(lower: float, upper: float, truth: float) -> bool:
    """``lower <= truth <= upper`` up to a few ulps relative to their scale (``COVER_ULPS`` times
    ``eps * max(|lower|, |upper|, |truth|)``): an interval and a truth computed by different sums of the
    same numbers (e.g. both 1/3) differ in the last bits, which is rounding, not a miss."""
    tol = COVER_ULPS * 2.220446049250313e-16 * max(abs(lower), abs(upper), abs(truth))
    return bool(lower - tol <= truth <= upper + tol)


def score_values(point: float | None, lower: float | None, upper: float | None,
                 truth: float | None, gap: Any = None) -> tuple[float | None, float | None, bool | None]:
    """``(truth, error, covered)`` of one estimate: ``error = point - truth`` and ``covered`` is
    ``lower <= truth <= upper`` up to rounding (:func:`covers`); all None when the truth is unknown (None or
    not finite), and ``error`` / ``covered`` None where the point / the interval is missing (None or NaN).

    ``gap``: ``(r0, r1)`` when the confidence set is two rays, ``(-inf, r0] U [r1, inf)`` (an
    Anderson-Rubin set, ``diagnostics.ar_rays``): a truth strictly between them is not covered,
    although the reported bounds are the whole line."""
    if truth is None or not math.isfinite(truth):
        return None, None, None
    t = float(truth)
    nan = lambda v: v is None or math.isnan(v)  # noqa: E731 -- NaN: not estimated (e.g. NOT IDENTIFIED)
    error = None if nan(point) else float(point - t)
    covered = None if nan(lower) or nan(upper) else covers(float(lower), float(upper), t)
    if covered and gap is not None and len(gap) == 2:
        r0, r1 = float(gap[0]), float(gap[1])
        tol = COVER_ULPS * 2.220446049250313e-16 * max(abs(r0), abs(r1), abs(t))  # rounding, as in covers
        covered = not (r0 + tol < t < r1 - tol)
    return t, error, covered


def _segment(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return str(value)


def truth_lookup(truth: "pd.DataFrame | None") -> dict[TruthKey, float]:
    """``{(metric, arm, estimand, segment): value}`` from a truth table (see :mod:`counterfeed.core.truth`)."""
    if truth is None or len(truth) == 0 or not {"metric", "arm", "estimand", "value"} <= set(truth.columns):
        return {}
    segments = truth["segment"] if "segment" in truth.columns else [None] * len(truth)
    return {(str(m), str(a), str(k), _segment(s)): v
            for m, a, k, s, v in zip(truth["metric"], truth["arm"], truth["estimand"], segments, truth["value"])}


def truth_of(lookup: Mapping[TruthKey, float], metric: str, arm: str, estimand: str,
             segment: str | None) -> float | None:
    """The true value of one estimand, or None when the truth stage did not compute it."""
    return lookup.get((metric, arm, estimand, segment))


def score_estimates(estimates: Iterable["Estimate"], truth: "pd.DataFrame") -> None:
    """Score every estimate that carries no truth yet, in place.

    A ``difference`` estimate against the run's control also gets
    ``diagnostics["interference_bias"]``: its error against the global effect (all-arm vs
    all-control worlds), which differs from the A/B world's effect under interference. An estimate
    whose ``diagnostics["truth_beside"]`` names an estimand (a proxy such as an offline metric, whose
    own estimand has no truth) gets that estimand's truth for its metric and arm in
    ``diagnostics["online_effect"]``.
    """
    if truth is None or len(truth) == 0:
        return
    lookup = truth_lookup(truth)
    control = str(truth["control"].iloc[0])
    for e in estimates:
        if e.truth is None:
            # ``point_estimand``: the estimand of the point when it differs from the row's (a CATE row's point
            # is the average effect)
            e.score(truth_of(lookup, e.metric, e.arm, e.diagnostics.get("point_estimand", e.estimand), e.segment))
        elif e.diagnostics.get("ar_rays") or e.diagnostics.get("rays"):  # scored by the two rays' gap
            e.score(e.truth)
        beside = e.diagnostics.get("truth_beside")  # a proxy (an offline metric) read against this truth
        if isinstance(beside, str):
            e.diagnostics.setdefault("online_effect", truth_of(lookup, e.metric, e.arm, beside, e.segment))
        if e.estimand == "difference" and e.error is not None and e.control == control:
            e.diagnostics.setdefault("interference_bias", e.error)
