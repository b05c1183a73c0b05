"""Per-user outcomes from events (metrics plug in here), the truth from the counterfactual worlds,
and daily time series per arm."""

from __future__ import annotations

import numpy as np
import pandas as pd

from counterfeed.core.contracts import Metric, MetricInfo, Population, WorldEvents
from counterfeed.core.experiment import counterfactual_world

__all__ = ["world_outcomes", "truth_table", "timeseries", "group_value", "DAILY_SERIES"]

#: the metrics :func:`timeseries` gives per day
DAILY_SERIES = ("sessions", "impressions", "clicks", "dwell", "ctr", "active")


def world_outcomes(events: WorldEvents, metrics: dict[str, Metric], population: Population,
                   pre_period: float, end: float) -> pd.DataFrame:
    """One row per user: world, user, arm, segment, each metric, and ``pre_<metric>`` with a pre-period."""
    from counterfeed.core.simulation import call_plugin

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
        v = _as_values(m, call_plugin(m, "compute", m.compute, events, pre_period, end), n)
        cols[name] = v
        if pre_period > 0:
            pv = _as_values(m, call_plugin(m, "compute", m.compute, events, 0.0, pre_period), n)
            cols[f"pre_{name}"] = pv
    return pd.DataFrame(cols)


def _as_values(m: Metric, raw: object, n: int) -> np.ndarray:
    """The metric's per-user values as float64, or a PluginError naming the metric and the rule."""
    from counterfeed.errors import PluginError

    try:
        v = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError):
        raise PluginError(f"compute must return numbers, got {type(raw).__name__}", plugin=m.name,
                          hook="compute") from None
    _check_metric(m, v, n)
    return v


def _check_metric(m: Metric, v: np.ndarray, n: int) -> None:
    from counterfeed.errors import PluginError

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


def truth_table(outcomes: pd.DataFrame, arms: list[str], control: str,
                infos: dict[str, MetricInfo]) -> pd.DataFrame:
    """True effects of each arm vs control from the counterfactual worlds, overall and per segment.

    ``difference``: value(all-arm) - value(all-control); ``relative``: value(all-arm)/value(all-control) - 1,
    where a value is the mean over all users (or the ratio of sums for ratio metrics).
    """
    rows = []
    by_world = {w: f for w, f in outcomes.groupby("world", sort=False)}
    ctrl = by_world.get(counterfactual_world(control))
    if ctrl is None:
        return pd.DataFrame(columns=["metric", "arm", "control", "estimand", "segment", "value"])
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
    return pd.DataFrame(rows, columns=["metric", "arm", "control", "estimand", "segment", "value"])


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
    first = np.unique(key * 0 + (s["user"].astype(np.int64) * size + key))  # unique (user, arm, day)
    active = np.bincount(first % size, minlength=size).reshape(n_arms, n_days)
    denom = np.maximum(group_size, 1)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        ctr = np.where(impressions > 0, clicks / np.where(impressions > 0, impressions, 1), np.nan)
    frames = []
    for mname, arr in (("sessions", sessions / denom), ("impressions", impressions / denom),
                       ("clicks", clicks / denom), ("dwell", dwell / denom), ("ctr", ctr),
                       ("active", active / denom)):
        for a in range(n_arms):
            if group_size[a] == 0:
                continue
            frames.append(pd.DataFrame({"world": events.world, "arm": events.arms[a],
                                        "day": np.arange(n_days), "metric": mname, "value": arr[a]}))
    if not frames:
        return pd.DataFrame(columns=["world", "arm", "day", "metric", "value"])
    return pd.concat(frames, ignore_index=True)

