"""Truth of the estimands of non-randomized designs, appended to the truth table.

With ``Y_i(a)`` user ``i``'s outcome in the counterfactual world ``all-a`` (common random numbers:
the same user sees the same noise in every world), ``b`` the treatment and ``c`` the control arm:

- ``att`` (selection, encouragement): the effect on the treated,
  ``value(all-b | T) - value(all-c | T)`` over the set ``T`` of users who took ``b`` in the A/B world,
  where a value is a mean over users (a ratio of sums for ratio metrics, as for ``difference``);
  overall and per segment. Reference: Imbens & Rubin (2015), *Causal Inference*, ch. 1.
- ``late`` (encouragement): the same over the compliers (users whose opt-in the nudge changes,
  known from both potential opt-ins; Angrist, Imbens & Rubin 1996).
- staggered rollouts (Callaway & Sant'Anna 2021, J. Econometrics 225(2)): a user adopting at day
  ``g`` has, in period ``t``, the treated outcome ``Y_it(g)`` -- what the A/B world realised, since
  that world *is* the rollout -- and the never-treated outcome ``Y_it(inf)`` -- the ``all-c`` world's
  value in the same period. Over the treated user-periods ``S = {(i, t): g_i <= start_t}``:

  * ``att(e=k)``: mean of ``Y_it(g_i) - Y_it(inf)`` over the cells of ``S`` with
    ``start_t - g_i = k`` days (a ratio of sums per world for ratio metrics);
  * ``att``: the same over all of ``S``, every treated user-period weighted equally (Callaway &
    Sant'Anna's "simple" aggregation of ``ATT(g, t)`` with group-size weights). Its unit is the
    metric per user per panel period.

  * ``att[identified]`` and ``att(e=k)[identified]`` (:func:`identified_estimand`): the same means
    over the identified cells of ``S`` only (:func:`counterfeed.core.panel.identified_cells`: the
    cohort has a period before adoption, and some user is still untreated in the period). Written
    only when some treated cells are not identified -- no never-treated users, so nobody is left
    untreated from the latest cohort's adoption on, or a cohort adopting in the panel's first period
    -- and only for the estimands whose cells are partly identified (where nothing is dropped they
    equal ``att`` / ``att(e=k)``; where everything is, there is nothing to score). ``did-staggered``
    then estimates these, not the ATT over all of ``S``, and is scored against them (its
    ``diagnostics["point_estimand"]``); R's ``did`` drops the same cells (``pre_process_did``).

  The ``all-b`` world (everyone adopting at the experiment start) is not the rollout's treated
  outcome when effects depend on time since adoption; it still gives ``difference`` (the ATE of
  shipping to everyone at the start).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd

from counterfeed.core.contracts import Metric, MetricInfo, WorldEvents
from counterfeed.core.estimation import ATT, LATE, event_time_estimand
from counterfeed.core.experiment import AB_WORLD, counterfactual_world
from counterfeed.core.panel import identified_cells, panel_cohorts, world_panel
from counterfeed.core.truth import TRUTH_COLUMNS, effect_truth

__all__ = ["observational_truth", "subset_truth", "staggered_truth", "identified_estimand", "IDENTIFIED"]

#: the suffix of a staggered estimand restricted to the identified (cohort, period) cells
IDENTIFIED = "[identified]"


def identified_estimand(estimand: str) -> str:
    """``att`` -> ``att[identified]``, ``att(e=2)`` -> ``att(e=2)[identified]``: the estimand over
    the identified cells only (see the module docstring)."""
    return f"{estimand}{IDENTIFIED}"


def observational_truth(outcomes: pd.DataFrame, events: Mapping[str, WorldEvents], arms: list[str],
                        control: str, infos: dict[str, MetricInfo], mechanism: dict[str, Any] | None,
                        metrics: dict[str, Metric] | None = None, horizon: float | None = None
                        ) -> pd.DataFrame:
    """Truth rows for ``att``, ``late`` and ``att(e=k)`` of the A/B world's mechanism record
    (``Assignment.record()["mechanism"]``); empty for a randomized design (None).

    ``outcomes`` holds every world's per-user outcomes (column ``world``); ``metrics`` (every computed
    metric plugin) and ``horizon`` (days) are needed for a staggered rollout's panels.
    """
    if not mechanism:
        return pd.DataFrame(columns=TRUTH_COLUMNS)
    if mechanism["mechanism"] == "staggered":
        if metrics is None or horizon is None:
            raise ValueError("a staggered rollout's truth needs the metric plugins and the horizon")
        return staggered_truth(events, arms, control, infos, metrics, mechanism["adoption"],
                               float(mechanism["period"]), float(horizon))
    ab = outcomes[outcomes["world"] == AB_WORLD].sort_values("user")
    frames = []
    for arm in arms:
        if arm == control:
            continue
        treated = ab["user"].to_numpy()[ab["arm"].to_numpy() == arm]
        frames.append(subset_truth(outcomes, [arm, control], control, infos, treated, ATT))
    if mechanism.get("compliance") is not None:
        compliers = np.nonzero(np.asarray(mechanism["compliance"]) == "complier")[0]
        frames.append(subset_truth(outcomes, arms, control, infos, compliers, LATE))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=TRUTH_COLUMNS)


def subset_truth(outcomes: pd.DataFrame, arms: list[str], control: str, infos: dict[str, MetricInfo],
                 users: np.ndarray, estimand: str) -> pd.DataFrame:
    """``difference`` truth (:func:`~counterfeed.core.truth.effect_truth`) over ``users`` only,
    labelled ``estimand``; no rows when ``users`` is empty."""
    users = np.asarray(users, dtype=np.int64)
    if users.size == 0:
        return pd.DataFrame(columns=TRUTH_COLUMNS)
    part = outcomes[outcomes["user"].isin(users)]
    rows = effect_truth(part, arms, control, infos)
    rows = rows[rows["estimand"] == "difference"].copy()
    rows["estimand"] = estimand
    return rows.reset_index(drop=True)


def _cell_value(frame: pd.DataFrame, info: MetricInfo) -> float:
    if info.kind == "ratio":
        den = float(frame[info.denominator].sum())
        return float(frame[info.numerator].sum()) / den if den > 0 else float("nan")
    return float(frame[info.name].mean())


def staggered_truth(events: Mapping[str, WorldEvents], arms: list[str], control: str,
                    infos: dict[str, MetricInfo], metrics: dict[str, Metric], adoption: np.ndarray,
                    period: float, horizon: float) -> pd.DataFrame:
    """``att``, ``att(e=k)`` and, where some treated cells are not identified, their
    ``[identified]`` versions, of a staggered rollout (see the module docstring).

    ``adoption``: (n_users,) adoption day (``inf``: never); ``period``, ``horizon``: days. Rows of
    :data:`~counterfeed.core.truth.TRUTH_COLUMNS`, in the metric's units per user per period."""
    ab, never = events.get(AB_WORLD), events.get(counterfactual_world(control))
    if ab is None or never is None:
        return pd.DataFrame(columns=TRUTH_COLUMNS)
    adoption = np.asarray(adoption, dtype=np.float64)
    p_ab = world_panel(ab, metrics, adoption, period, horizon)
    p_c = world_panel(never, metrics, adoption, period, horizon)
    treated = p_ab["treated"].to_numpy() == 1
    if not treated.any():
        return pd.DataFrame(columns=TRUTH_COLUMNS)
    coh = panel_cohorts(p_ab)
    first_period = float(p_ab["period"].min())
    p_ab, p_c = p_ab[treated], p_c[treated]
    event_time = np.rint(p_ab["start"].to_numpy() - adoption[p_ab["user"].to_numpy()]).astype(np.int64)
    ident = identified_cells(coh.loc[p_ab["user"].to_numpy()].to_numpy(), p_ab["period"].to_numpy(),
                             coh.to_numpy(), first_period)
    partial = bool(ident.any() and not ident.all())
    arm = next(a for a in arms if a != control)
    rows = []

    def add(name: str, info: MetricInfo, estimand: str, sel: np.ndarray) -> None:
        rows.append((name, arm, control, estimand, None, _cell_value(p_ab[sel], info) - _cell_value(p_c[sel], info)))

    everything = np.ones(len(p_ab), dtype=bool)
    for name, info in infos.items():
        add(name, info, ATT, everything)
        if partial:
            add(name, info, identified_estimand(ATT), ident)
        for k in np.unique(event_time):
            sel = event_time == k
            add(name, info, event_time_estimand(int(k)), sel)
            if (sel & ident).any() and (sel & ~ident).any():
                add(name, info, identified_estimand(event_time_estimand(int(k))), sel & ident)
    return pd.DataFrame(rows, columns=TRUTH_COLUMNS)
