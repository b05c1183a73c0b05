"""The truth stage: the true value of every estimand, computed once from the counterfactual worlds.

Estimators never see the counterfactual worlds; the runner scores their estimates against this
table (:mod:`counterfeed.core.scoring`). One row per ``(metric, arm, control, estimand, segment)``:

- ``difference``: ``value(all-arm) - value(all-control)`` and ``relative``:
  ``value(all-arm) / value(all-control) - 1``, overall and per segment, where a value is the mean over
  all users (the ratio of sums for ratio metrics) of the world where every user gets that arm;
- ``policy-value`` (when an estimator returns it): the arm's click rate per impression
  (:data:`~counterfeed.core.estimation.POLICY_VALUE_METRIC`) in its counterfactual world over the
  experiment period, the quantity off-policy evaluation estimates.
"""

from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np
import pandas as pd

from counterfeed.core.contracts import MetricInfo, WorldEvents
from counterfeed.core.estimation import POLICY_VALUE, POLICY_VALUE_METRIC
from counterfeed.core.experiment import counterfactual_world
from counterfeed.core.outcomes import group_value

__all__ = ["TRUTH_COLUMNS", "truth_table", "effect_truth", "policy_value_truth", "click_rate"]

TRUTH_COLUMNS = ["metric", "arm", "control", "estimand", "segment", "value"]


def truth_table(outcomes: pd.DataFrame, events: Mapping[str, WorldEvents], arms: list[str], control: str,
                infos: dict[str, MetricInfo], estimands: Iterable[str] = (), start: float = 0.0
                ) -> pd.DataFrame:
    """Every estimand's truth: the effects (always) and the policy values (when in ``estimands``).

    ``outcomes`` has every world's per-user outcomes (column ``world``); ``events`` the worlds' event
    logs by world name; ``start`` is the experiment start (days).
    """
    table = effect_truth(outcomes, arms, control, infos)
    if POLICY_VALUE in set(estimands):
        extra = policy_value_truth(events, arms, control, start)
        if len(extra):
            table = pd.concat([table, extra], ignore_index=True) if len(table) else extra
    return table


def effect_truth(outcomes: pd.DataFrame, arms: list[str], control: str,
                 infos: dict[str, MetricInfo]) -> pd.DataFrame:
    """True effects of each arm vs control from the counterfactual worlds, overall and per segment.

    ``difference``: value(all-arm) - value(all-control); ``relative``: value(all-arm)/value(all-control) - 1,
    where a value is the mean over all users (or the ratio of sums for ratio metrics).
    """
    rows = []
    by_world = {w: f for w, f in outcomes.groupby("world", sort=False)}
    ctrl = by_world.get(counterfactual_world(control))
    if ctrl is None:
        return pd.DataFrame(columns=TRUTH_COLUMNS)
    segments = sorted(ctrl["segment"].unique())
    for arm in arms:
        if arm == control:
            continue
        treat = by_world[counterfactual_world(arm)]
        for name, info in infos.items():
            groups: list[tuple[str | None, pd.DataFrame, pd.DataFrame]] = [(None, treat, ctrl)]
            if len(segments) > 1:
                groups += [(s, treat[treat["segment"] == s], ctrl[ctrl["segment"] == s]) for s in segments]
            for seg, t_f, c_f in groups:
                vt, vc = group_value(t_f, info), group_value(c_f, info)
                rows.append((name, arm, control, "difference", seg, vt - vc))
                rel = vt / vc - 1.0 if vc not in (0.0,) and np.isfinite(vc) else float("nan")
                rows.append((name, arm, control, "relative", seg, rel))
    return pd.DataFrame(rows, columns=TRUTH_COLUMNS)


def policy_value_truth(events: Mapping[str, WorldEvents], arms: list[str], control: str,
                       start: float) -> pd.DataFrame:
    """Each arm's policy value: :func:`click_rate` of its counterfactual world from ``start``."""
    rows = []
    for arm in arms:
        value = click_rate(events.get(counterfactual_world(arm)), start)
        if value is not None:
            rows.append((POLICY_VALUE_METRIC, arm, control, POLICY_VALUE, None, value))
    return pd.DataFrame(rows, columns=TRUTH_COLUMNS)


def click_rate(events: WorldEvents | None, start: float = 0.0) -> float | None:
    """Clicks per impression of a world from ``start`` to its end (impression log, else session counts);
    None when the world is missing or showed nothing."""
    if events is None:
        return None
    imp = events.impressions
    if imp is not None and len(imp):
        m = imp.time >= start
        return float(np.mean(imp.click[m])) if m.any() else None
    s = events.sessions
    m = s["time"] >= start
    if "impressions" in s and "clicks" in s and float(np.sum(s["impressions"][m])) > 0:
        return float(np.sum(s["clicks"][m]) / np.sum(s["impressions"][m]))
    return None
