"""Population-level metrics in a run, and metrics over time.

A per-user metric has one value per user; its effect is a difference of means that a
user-randomized A/B test identifies. A **population-level** metric (``level = "population"``:
catalog coverage, the Gini coefficient of exposure, homogenization of users, ...) is one number for a
whole group of users. Comparing the arms of an A/B world does not estimate its global effect: an
arm's coverage depends on how many users the arm has (half the users see fewer distinct items), and
feedback loops (popularity, retraining) couple the arms. Only the counterfactual worlds (everyone on
the arm vs everyone on the control) give it. So a run reports, for each population-level metric,

- its value in every world (and per arm group in the A/B world),
- the **true global effect** ``value(world all-arm) - value(world all-control)``,
- the **naive A/B claim** ``value(arm's users in the A/B world) - value(control's users there)``,

and estimators never see population-level metrics: naming one in an estimator's ``metrics`` is a
scenario error (:func:`check_estimator_metrics`).

:func:`metric_series` computes metrics per period (default weekly) for each world and arm group:
the trajectories of a long-horizon run (feedback loops, filter bubbles).
"""

from __future__ import annotations

import math
from abc import abstractmethod
from dataclasses import replace
from typing import Any

import numpy as np

from counterfeed._lazy import lazy_module
from counterfeed.core.contracts import Metric, MetricInfo, WorldEvents
from counterfeed.core.plan import NOT_IDENTIFIED, POPULATION_NOTE, check_estimator_metrics, is_population

pd = lazy_module("pandas")  # plugins subclass PopulationMetric: importing this module stays light

__all__ = ["PopulationMetric", "is_population", "population_values", "population_effects",
           "metric_series", "window_events", "check_estimator_metrics", "NOT_IDENTIFIED"]


class PopulationMetric(Metric):
    """A population-level outcome: one number for a group of users (``level = "population"``).

    ``compute_group`` returns the value for the users where ``users`` (a boolean (n_users,) mask) is
    True, over events with ``start <= time < end``; NaN where it is undefined (e.g. no impressions).
    It has no per-user value, so it never enters the per-user outcome table or an estimator.
    """

    level = "population"
    aggregation = "mean"

    @abstractmethod
    def compute_group(self, events: WorldEvents, start: float, end: float, users: np.ndarray) -> float:
        """The value for the users where ``users`` is True, over ``start <= time < end``."""

    def compute(self, events: WorldEvents, start: float, end: float) -> np.ndarray:
        raise TypeError(f"metric '{self.name}' is population-level: it has no per-user value "
                        "(call compute_group)")


def world_long_term(events: WorldEvents, metrics: dict[str, Metric], analysed: list[str], start: float,
                    end: float) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """A world's time series and its population-level metric rows.

    The series is the daily engagement series plus :func:`metric_series` of the analysed metrics it
    lacks (weekly from 4 weeks on, else daily); the rows are :func:`population_values`."""
    from counterfeed.core.outcomes import DAILY_SERIES, timeseries

    rows = population_values(events, metrics, start, end)
    daily = timeseries(events)
    names = [n for n in analysed if n not in DAILY_SERIES]
    if not names or end - start < 2:
        return daily, rows
    infos = {n: m.info() for n, m in metrics.items()}
    extra = metric_series(events, metrics, infos, names, start, end, 7.0 if end - start >= 28 else 1.0)
    return (pd.concat([daily, extra], ignore_index=True) if len(daily) else extra), rows


def population_report(scenario: Any, values: list[dict[str, Any]]) -> dict[str, Any]:
    """``{"values": rows, "effects": rows}`` for the manifest (see :func:`population_effects`);
    ``values`` are every world's :func:`population_values` rows."""
    from counterfeed.core.experiment import AB_WORLD, counterfactual_world

    cf = {a: counterfactual_world(a) for a in scenario.arms}
    return {"values": values, "note": POPULATION_NOTE[0],
            "effects": population_effects(values, scenario.arms, scenario.control, AB_WORLD, cf)}


def window_events(events: WorldEvents, start: float, end: float) -> WorldEvents:
    """The events with ``start <= time < end`` (binary search when the times are sorted)."""
    sessions = {k: v[_window(events.sessions["time"], start, end)] for k, v in events.sessions.items()}
    imp = events.impressions
    if imp is not None:
        sl = _window(imp.time, start, end)
        imp = imp.select(sl) if not isinstance(sl, slice) else type(imp)(
            **{k: (None if v is None else v[sl]) for k, v in vars(imp).items()})
    return replace(events, sessions=sessions, impressions=imp)


def _window(t: np.ndarray, start: float, end: float) -> Any:
    if t.size > 1 and bool(np.all(t[1:] >= t[:-1])):
        return slice(int(np.searchsorted(t, start, "left")), int(np.searchsorted(t, end, "left")))
    return (t >= start) & (t < end)


def _groups(events: WorldEvents) -> list[tuple[str, np.ndarray]]:
    """(arm name, user mask) for every arm with users in this world."""
    out = []
    for a, arm in enumerate(events.arms):
        mask = events.assignment == a
        if mask.any():
            out.append((arm, mask))
    return out


def population_values(events: WorldEvents, metrics: dict[str, Metric], start: float,
                      end: float) -> list[dict[str, Any]]:
    """Rows ``{world, arm, metric, value}``: each population metric for each arm group of the world,
    plus ``arm = None`` for all the world's users together."""
    from counterfeed.core._guard import call_plugin

    pop = {n: m for n, m in metrics.items() if is_population(m)}
    if not pop:
        return []
    groups = [(None, np.ones(events.n_users, bool))] + _groups(events)
    rows = []
    for name, m in pop.items():
        for arm, mask in groups:  # a population metric reads only [start, end) (conformance rule)
            v = float(call_plugin(m, "compute_group", m.compute_group, events, start, end, mask))
            rows.append({"world": events.world, "arm": arm, "metric": name,
                         "value": v if math.isfinite(v) else None})
    return rows


def population_effects(values: list[dict[str, Any]], arms: list[str], control: str, ab_world: str,
                       counterfactual: dict[str, str]) -> list[dict[str, Any]]:
    """For each population metric and treatment arm: the true global effect (counterfactual worlds)
    next to the naive A/B comparison of the arm groups in the A/B world, and their difference."""
    look = {(r["world"], r["arm"], r["metric"]): r["value"] for r in values}
    out = []
    for metric in dict.fromkeys(r["metric"] for r in values):
        for arm in arms:
            if arm == control:
                continue
            vt = look.get((counterfactual[arm], None, metric))
            vc = look.get((counterfactual[control], None, metric))
            at, ac = look.get((ab_world, arm, metric)), look.get((ab_world, control, metric))
            true = None if vt is None or vc is None else vt - vc
            naive = None if at is None or ac is None else at - ac
            out.append({"metric": metric, "arm": arm, "control": control, "level": "population",
                        "world_arm": vt, "world_control": vc, "true_effect": true,
                        "ab_arm": at, "ab_control": ac, "naive_ab_claim": naive,
                        "naive_error": None if true is None or naive is None else naive - true,
                        "estimable_from_ab": False})
    return out


def metric_series(events: WorldEvents, metrics: dict[str, Metric], infos: dict[str, MetricInfo],
                  names: list[str], start: float, end: float, period: float = 7.0) -> pd.DataFrame:
    """Metrics per period for each arm group: rows ``world, arm, day, metric, value``.

    ``day`` is the start of the period ``[day, day + period)``. A per-user metric's value is its
    group value (mean, or ratio of sums for ratio metrics); a population metric's is ``compute_group``.

    Every metric is handed the whole run's events and the period: a metric reads only events with
    ``start <= time < end`` (the conformance rules ``respects_window`` and ``population_group_value``),
    so the derived arrays it keeps per log (e.g. each slate's diversity,
    :mod:`counterfeed.plugins.metrics.impression_index`) are computed once for all periods. A
    cumulative metric (``MetricTags.cumulative``), which may look before ``start``, gets the events of
    the period only, as the series has always given it.
    """
    from counterfeed.core.outcomes import group_value
    from counterfeed.core._guard import call_plugin

    rows: list[tuple] = []
    groups = _groups(events)
    periods: list[tuple[float, float]] = []
    t = start
    while t < end - 1e-9:
        periods.append((t, min(t + period, end)))
        t = periods[-1][1]
    cut = _PeriodCut(events, periods)
    for i, (t, hi) in enumerate(periods):
        cols: dict[str, np.ndarray] = {}
        for name in names:
            m, info = metrics[name], infos[name]
            if is_population(m):
                for arm, mask in groups:
                    v = float(call_plugin(m, "compute_group", m.compute_group, events, t, hi, mask))
                    rows.append((events.world, arm, t, name, v))
                continue
            parts = [p for p in (info.numerator, info.denominator) if p] if info.kind == "ratio" else [name]
            for p in parts:
                if p not in cols:
                    mp = metrics[p]
                    ev = cut.events(i, mp) if getattr(getattr(mp, "tags", None), "cumulative", False) else events
                    cols[p] = np.asarray(mp.compute(ev, t, hi), dtype=np.float64)
            frame = pd.DataFrame({p: cols[p] for p in parts})
            for arm, mask in groups:
                rows.append((events.world, arm, t, name, group_value(frame[mask], info)))
    return pd.DataFrame(rows, columns=["world", "arm", "day", "metric", "value"])


class _PeriodCut:
    """The events of each of consecutive ``periods`` ``[t_i, t_{i+1})``, cut in one pass per table.

    Equal to :func:`window_events` of each period (the same rows in the same order: a row's period is
    found by a binary search on the period edges, ``t_i <= time < t_{i+1}`` exactly, and a stable sort
    by period keeps each period's rows in log order), for one sort of the run instead of one scan of
    it per period. A metric that declares ``per_user_sessions`` (it reads only the sessions) gets no
    impressions, as in a sharded world's shards (core.shard).
    """

    def __init__(self, events: WorldEvents, periods: list[tuple[float, float]]):
        self.ev = events
        self.edges = np.array([t for t, _ in periods] + [periods[-1][1]] if periods else [], dtype=np.float64)
        self._cuts: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._done: dict[tuple[int, bool], WorldEvents] = {}

    def _rows(self, table: str, times: np.ndarray, i: int) -> np.ndarray:
        """Indices of the rows of ``table`` in period ``i``, ascending."""
        got = self._cuts.get(table)
        if got is None:
            n = self.edges.size - 1
            p = np.searchsorted(self.edges, times, "right") - 1  # edges[p] <= time < edges[p + 1]
            p = np.where((p >= 0) & (p < n), p, n).astype(np.int16 if n < 32767 else np.int64)
            order = np.argsort(p, kind="stable")
            got = self._cuts[table] = (order, np.searchsorted(p[order], np.arange(n + 2)))
        order, offsets = got
        return order[offsets[i]:offsets[i + 1]]

    def events(self, i: int, metric: Metric) -> WorldEvents:
        """The events of period ``i`` for ``metric``."""
        sessions_only = bool(getattr(metric, "per_user_sessions", False))
        got = self._done.get((i, sessions_only))
        if got is None:
            if any(j != i for j, _ in self._done):
                self._done.clear()  # the periods are visited in order: one period's events at a time
            ev = self.ev
            rows = self._rows("sessions", ev.sessions["time"], i)
            sessions = {k: v[rows] for k, v in ev.sessions.items()}
            imp = None if sessions_only or ev.impressions is None else \
                ev.impressions.select(self._rows("impressions", ev.impressions.time, i))
            got = self._done[(i, sessions_only)] = replace(ev, sessions=sessions, impressions=imp)
        return got
