"""Which metrics an observational estimator analyses: the per-user ones.

A ratio metric (``MetricInfo.kind == "ratio"``) has no per-user value: its estimand is a ratio of
means. Named in an estimator's ``metrics`` it is refused; left to the default (the scenario's analysed
metrics) it is skipped, and the run's report notes nothing for it. This module is the one place that
decides it, for ``check_metrics`` (``validate`` and ``run``, before simulating) and for ``estimate``
(:func:`counterfeed.plugins.estimators._obs_data.analysable_metrics`) alike; it imports nothing heavy,
so that ``validate`` stays light.
"""

from __future__ import annotations

from typing import Any, Mapping

from counterfeed.errors import ModelError

__all__ = ["per_user_metrics"]


def per_user_metrics(metrics: Mapping[str, Any], chosen: list[str] | None, estimator: str) -> list[str]:
    """The per-user (non-ratio) metrics among ``chosen`` (or, when unset, among ``metrics``: name ->
    ``MetricInfo``), in order. Raises ModelError for a ratio metric named in ``chosen``, or when no
    per-user metric is left. Names unknown to ``metrics`` are the caller's to check first."""
    names = list(chosen) if chosen else list(metrics)
    ratios = [m for m in names if m in metrics and getattr(metrics[m], "kind", None) == "ratio"]
    if chosen and ratios:
        raise ModelError(f"{estimator}: metric '{ratios[0]}' is a ratio metric; observational estimators "
                         "analyse per-user metrics (analyse its numerator and denominator instead)")
    out = [m for m in names if m not in ratios]
    if not out:
        raise ModelError(f"{estimator}: no per-user (non-ratio) metric to analyse")
    return out
