"""Per-user truth: each user's effect of an arm, from the counterfactual worlds (never seen by estimators).

Two estimands, one table (:data:`USER_TRUTH_COLUMNS`, one row per user, metric and treatment arm):

``realised``
    the user's **realised** effect in this run: ``Y_u(all-arm) - Y_u(all-control)``, the difference
    between the user's outcome in the world where everyone got ``arm`` and in the world where everyone
    got the control. Both worlds share the keyed noise (common random numbers), so this is one
    realisation of the user's choice/visit noise: the effect this user *had*, not the effect a user
    like them *has on average*.
``conditional``
    the user's **conditional** effect ``tau(u) = E[Y_u(arm) - Y_u(control) | user u]``: the mean of the
    realised difference over ``R`` independent noise replications of the same population (same users,
    preferences, segments and catalog; the world's noise streams re-keyed per replication, see
    :class:`ReplicationKeys`), with its Monte Carlo standard error ``conditional_se`` (the standard
    deviation of the ``R`` differences over ``sqrt(R)``; NaN for ``R < 2``). This is the quantity a
    CATE estimator targets, so it is what PEHE and per-user interval coverage are scored against.

Metrics: every analysed per-user metric except ratio metrics, whose per-user value is not additive;
a ratio metric contributes rows for its numerator and its denominator (e.g. ``ctr`` -> ``clicks`` and
``impressions``), each once.
"""

from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np
import pandas as pd

from counterfeed.core.contracts import MetricInfo
from counterfeed.core.experiment import counterfactual_world

__all__ = ["USER_TRUTH_COLUMNS", "user_effects", "user_metrics"]

#: the columns of the per-user truth table (``RunResult.user_truth``, ``user_truth.parquet``)
USER_TRUTH_COLUMNS = ["user", "metric", "arm", "control", "realised", "conditional", "conditional_se"]


def user_metrics(infos: Mapping[str, MetricInfo]) -> list[str]:
    """The per-user metrics of the truth table: non-ratio metrics, and each ratio metric's numerator
    and denominator instead of the ratio (in the order met, each once)."""
    out: list[str] = []
    for name, info in infos.items():
        if getattr(info, "level", "user") == "population":
            continue
        parts: Iterable[str | None] = (info.numerator, info.denominator) if info.kind == "ratio" else (name,)
        for p in parts:
            if p is not None and p not in out:
                out.append(p)
    return out


def user_effects(outcomes: pd.DataFrame, arms: list[str], control: str,
                 infos: Mapping[str, MetricInfo]) -> pd.DataFrame:
    """Each user's realised effect of every non-control arm: ``Y_u(all-arm) - Y_u(all-control)``.

    Parameters
    ----------
    outcomes : per-user outcomes of every world (columns ``world``, ``user`` and one per metric, as
        the runner concatenates them); the worlds ``all-<arm>`` and ``all-<control>`` are used.
    arms, control : the arm names and the control arm.
    infos : metric name -> :class:`MetricInfo` of the analysed metrics (see :func:`user_metrics`).

    Returns
    -------
    DataFrame with columns :data:`USER_TRUTH_COLUMNS`, one row per (arm, metric, user), sorted by arm
    (scenario order), metric and user; ``conditional`` and ``conditional_se`` are NaN (filled by
    :func:`conditional_effects` when noise replications ran). Empty (with the columns) when a
    counterfactual world is missing.

    Raises
    ------
    KeyError : a metric column is missing from a counterfactual world's outcomes.
    """
    by_world = {w: f for w, f in outcomes.groupby("world", sort=False)}
    ctrl = by_world.get(counterfactual_world(control))
    names = user_metrics(infos)
    frames = []
    if ctrl is not None:
        ctrl = ctrl.sort_values("user")
        users = ctrl["user"].to_numpy(np.int64)
        for arm in arms:
            treat = by_world.get(counterfactual_world(arm))
            if arm == control or treat is None:
                continue
            treat = treat.sort_values("user")
            if not np.array_equal(treat["user"].to_numpy(np.int64), users):
                raise ValueError(f"worlds all-{arm} and all-{control} have different users")
            for name in names:
                diff = treat[name].to_numpy(np.float64) - ctrl[name].to_numpy(np.float64)
                frames.append(pd.DataFrame({"user": users, "metric": name, "arm": arm, "control": control,
                                            "realised": diff, "conditional": np.nan,
                                            "conditional_se": np.nan}))
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in _DTYPES.items()})
    return pd.concat(frames, ignore_index=True).astype(_DTYPES)


_DTYPES = {"user": "int64", "metric": "str", "arm": "str", "control": "str",
           "realised": "float64", "conditional": "float64", "conditional_se": "float64"}
