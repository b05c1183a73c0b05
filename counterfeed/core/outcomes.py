"""Per-user outcomes from events (metrics plug in here): over the experiment and the pre-period, at
each look of a sequential analysis, and as daily time series per arm. The truth from the
counterfactual worlds is :mod:`counterfeed.core.truth`."""

from __future__ import annotations

import numpy as np
import pandas as pd

from counterfeed.core.contracts import Metric, MetricInfo, Population, WorldEvents
from counterfeed.core.estimation import Looks
from counterfeed.errors import PluginError

__all__ = ["world_outcomes", "look_outcomes", "timeseries", "group_value", "DAILY_SERIES"]

#: the metrics :func:`timeseries` gives per day
DAILY_SERIES = ("sessions", "impressions", "clicks", "dwell", "ctr", "active")


def world_outcomes(events: WorldEvents, metrics: dict[str, Metric], population: Population,
                   pre_period: float, end: float,
                   reduced: dict[tuple[str, float, float], np.ndarray] | None = None) -> pd.DataFrame:
    """One row per user: world, user, arm, segment, each metric, and ``pre_<metric>`` with a pre-period.

    ``reduced``: values already computed (by a sharded world's shards), keyed ``(metric, start, end)``;
    the others are computed here from ``events``."""
    from counterfeed.core._guard import call_plugin

    def compute(name: str, m: Metric, start: float, stop: float) -> object:
        got = (reduced or {}).get((name, start, stop))
        return got if got is not None else call_plugin(m, "compute", m.compute, events, start, stop)

    n = events.n_users
    arms = np.asarray(events.arms, dtype=object)
    cols: dict[str, object] = {
        "world": np.full(n, events.world, dtype=object),
        "user": np.arange(n, dtype=np.int64),
        "arm": arms[events.assignment],
        "segment": np.asarray(population.segment_names, dtype=object)[population.segment],
    }
    for name, m in metrics.items():
        if getattr(m, "level", "user") == "population":  # one value per group: core.longterm
            continue
        v = _as_values(m, compute(name, m, pre_period, end), n)
        cols[name] = v
        if pre_period > 0:
            pv = _as_values(m, compute(name, m, 0.0, pre_period), n)
            cols[f"pre_{name}"] = pv
    return pd.DataFrame(cols)


def look_outcomes(events: WorldEvents, metrics: dict[str, Metric], start: float, times: np.ndarray) -> Looks:
    """Cumulative per-user outcomes at each look (see :class:`~counterfeed.core.estimation.Looks`).

    ``times`` (D,) are days from the experiment ``start``. A user is exposed at a look once they have
    visited since ``start``; each metric is computed over ``[start, start + times[d])``.
    """
    from counterfeed.core._guard import call_plugin

    times = np.asarray(times, dtype=np.float64)
    n = events.n_users
    s = events.sessions
    in_exp = s["time"] >= start
    first = np.full(n, np.inf)
    np.minimum.at(first, s["user"][in_exp], s["time"][in_exp])
    exposed = np.stack([first < start + t for t in times])
    values = {name: np.stack([_as_values(m, call_plugin(m, "compute", m.compute, events, start, start + t), n)
                              for t in times])
              for name, m in metrics.items() if getattr(m, "level", "user") != "population"}
    return Looks(times=times, exposed=exposed, values=values)


def _as_values(m: Metric, raw: object, n: int) -> np.ndarray:
    """The metric's per-user values as float64, or a PluginError naming the metric and the rule."""
    try:
        v = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError):
        raise PluginError(f"compute must return numbers, got {type(raw).__name__}", plugin=m.name,
                          hook="compute") from None
    _check_metric(m, v, n)
    return v


def _check_metric(m: Metric, v: np.ndarray, n: int) -> None:
    if v.shape != (n,):
        raise PluginError(f"compute must return one value per user ({n},), got shape {v.shape}",
                          plugin=m.name, hook="compute")
    if np.isinf(v).any():
        raise PluginError("compute returned an infinite value", plugin=m.name, hook="compute")


def group_value(frame: pd.DataFrame, info: MetricInfo) -> float:
    """The population value of a metric for a group of users: a mean, or a ratio of sums."""
    if info.kind == "ratio":
        den = frame[info.denominator].sum()
        return float(frame[info.numerator].sum() / den) if den > 0 else float("nan")
    return float(frame[info.name].mean()) if len(frame) else float("nan")


def timeseries(events: WorldEvents) -> pd.DataFrame:
    """Daily per-user values of each arm's users in a world (sessions, impressions, clicks, dwell,
    ctr, active share)."""
    s = events.sessions
    n_days = int(np.ceil(events.end))
    n_arms = len(events.arms)
    group_size = np.bincount(events.assignment, minlength=n_arms).astype(float)
    day = np.minimum(s["time"].astype(np.int64), max(n_days - 1, 0))
    arm = events.assignment[s["user"]]
    key = arm * n_days + day
    size = n_arms * n_days

    def per(weights):
        return np.bincount(key, weights=weights, minlength=size).reshape(n_arms, n_days)

    sessions = per(None)
    impressions = per(s["impressions"].astype(float))
    clicks = per(s["clicks"].astype(float))
    dwell = per(s["dwell"])
    active = _active(s["user"], day, events.assignment, n_arms, n_days).reshape(n_arms, n_days)
    denom = np.maximum(group_size, 1)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        ctr = np.where(impressions > 0, clicks / np.where(impressions > 0, impressions, 1), np.nan)
    names = ("sessions", "impressions", "clicks", "dwell", "ctr", "active")
    values = np.stack([sessions / denom, impressions / denom, clicks / denom, dwell / denom, ctr, active / denom])
    arms = np.flatnonzero(group_size > 0)
    if not arms.size:
        return pd.DataFrame(columns=["world", "arm", "day", "metric", "value"])
    per = arms.size * n_days  # rows by metric, then arm, then day (one frame, not one per metric and arm)
    return pd.DataFrame({"world": np.full(len(names) * per, events.world, dtype=object),
                         "arm": np.tile(np.repeat(np.asarray(events.arms, dtype=object)[arms], n_days), len(names)),
                         "day": np.tile(np.arange(n_days), len(names) * arms.size),
                         "metric": np.repeat(np.asarray(names, dtype=object), per),
                         "value": values[:, arms].reshape(-1)})


def _active(user: np.ndarray, day: np.ndarray, assignment: np.ndarray, n_arms: int, n_days: int,
            grid: bool | None = None) -> np.ndarray:
    """(n_arms * n_days,) distinct users with a session, per (arm, day) (a user's arm is its
    assignment); ``grid``: mark a (user, day) grid (default when it is small) rather than sort."""
    if grid is None:
        grid = assignment.size * n_days <= max(4 * user.size, 1 << 20)
    if grid:
        seen = np.zeros(assignment.size * n_days, bool)
        seen[user.astype(np.int64) * n_days + day] = True
        cell = np.flatnonzero(seen)
    else:
        ud = np.sort(user.astype(np.int64) * n_days + day)  # np.unique hashes: ~15x slower
        cell = ud[np.r_[True, ud[1:] != ud[:-1]]] if ud.size else ud
    return np.bincount(assignment[cell // n_days] * n_days + cell % n_days, minlength=n_arms * n_days)
