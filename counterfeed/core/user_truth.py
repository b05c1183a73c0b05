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
from counterfeed.core.randomness import Keys

__all__ = ["USER_TRUTH_COLUMNS", "user_effects", "user_metrics", "conditional_effects", "ReplicationKeys",
           "replication_keys", "replication_world", "split_replication", "replication_worlds"]

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


# ------------------------------------------------------------------------------------------------
# Noise replications: the same population and catalog, every other stream re-keyed
# ------------------------------------------------------------------------------------------------

#: stream names (prefixes) that define the population and the catalog: never re-keyed
PRESERVED_STREAMS = ("population:", "catalog")
_SEP = "@r"


class ReplicationKeys(Keys):
    """The keys of noise replication ``replication`` (>= 1) of a run with ``seed``.

    Streams that define the population and the catalog (:data:`PRESERVED_STREAMS`) keep their keys,
    so the users, their segments, preferences and text tastes, and the items are those of the run;
    every other stream (visits, examination, choice, dwell, churn, the policies' and the training's
    randomness) is a new independent stream ``<name>#replication-<r>``. Common random numbers still
    hold *within* a replication: its ``all-<arm>`` worlds share its noise, as the run's worlds share
    theirs, so the replication's per-user difference is one more draw of the user's realised effect.
    """

    __slots__ = ("replication",)

    def __init__(self, seed: int, replication: int):
        super().__init__(seed)
        if int(replication) < 1:
            raise ValueError(f"a noise replication is numbered from 1, got {replication}")
        self.replication = int(replication)

    def stream(self, name: str):
        if name.startswith(PRESERVED_STREAMS):
            return super().stream(name)
        return super().stream(f"{name}#replication-{self.replication}")

    def derive_seed(self, *parts: object) -> int:
        if parts and str(parts[0]).startswith(PRESERVED_STREAMS):
            return super().derive_seed(*parts)
        return super().derive_seed(*parts, f"replication-{self.replication}")


def replication_keys(seed: int, replication: int) -> Keys:
    """``Keys(seed)`` for the run's own worlds (``replication == 0``), else :class:`ReplicationKeys`."""
    return Keys(seed) if replication == 0 else ReplicationKeys(seed, replication)


def replication_world(world: str, replication: int) -> str:
    """The name of noise replication ``replication`` of ``world`` (``all-B@r3``)."""
    return f"{world}{_SEP}{int(replication)}"


def split_replication(name: str) -> tuple[str, int]:
    """``(world, replication)`` of a world name (replication 0 for the run's own worlds)."""
    world, sep, r = name.rpartition(_SEP)
    if sep and r.isdigit():
        return world, int(r)
    return name, 0


def replication_worlds(arms: list[str], replications: int) -> list[str]:
    """The replication worlds of a run: every arm's counterfactual world, replications 1..R."""
    return [replication_world(counterfactual_world(a), r) for r in range(1, replications + 1) for a in arms]


def conditional_effects(table: pd.DataFrame, replicated: pd.DataFrame, arms: list[str], control: str,
                        infos: Mapping[str, MetricInfo]) -> pd.DataFrame:
    """Fill ``conditional`` and ``conditional_se`` of :func:`user_effects`'s ``table``.

    ``replicated`` holds the per-user outcomes of the replication worlds (column ``world`` named by
    :func:`replication_world`). ``conditional`` is the mean over the R replications of the user's
    realised difference, ``conditional_se`` its Monte Carlo standard error ``sd / sqrt(R)`` (sample
    standard deviation, ``ddof=1``; NaN when ``R < 2``). The replications are independent of the
    run's own noise, so the truth's error is independent of what the estimators saw. Returns a new
    table; raises ValueError when a replication lacks a world or its rows do not match ``table``.
    """
    if not len(replicated):
        return table
    split = [split_replication(w) for w in replicated["world"]]
    reps = sorted({r for _, r in split})
    frame = replicated.assign(world=[w for w, _ in split], _r=[r for _, r in split])
    draws = []
    for r in reps:
        d = user_effects(frame[frame["_r"] == r].drop(columns="_r"), arms, control, infos)
        if len(d) != len(table) or not (d["user"].to_numpy() == table["user"].to_numpy()).all():
            raise ValueError(f"noise replication {r} does not match the run's per-user truth")
        draws.append(d["realised"].to_numpy(np.float64))
    stack = np.stack(draws)
    out = table.copy()
    out["conditional"] = stack.mean(axis=0)
    out["conditional_se"] = stack.std(axis=0, ddof=1) / np.sqrt(len(reps)) if len(reps) > 1 else np.nan
    return out
