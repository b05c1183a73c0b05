"""Per-period per-user outcomes (a long panel) for staggered rollouts.

The simulation (pre-period and experiment) is cut into periods of ``period`` days starting at day 0;
period ``p`` covers ``[p * period, (p + 1) * period)``. Each per-user metric is the metric plugin's
own ``compute`` over that window, so a panel cell means exactly what the outcome table's cell means,
over a shorter window. A user-period is ``treated`` when the period starts at or after the user's
adoption day (adoption days fall on period starts, which the scenario's validation enforces).

:func:`identified_cells` says which treated (cohort, period) cells a difference in differences can
identify at all: the estimator (``did-staggered``) and the truth stage share it, so that an estimate
that leaves cells out is scored against the truth over the cells it keeps.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from counterfeed.core.contracts import Metric, WorldEvents
from counterfeed.core._guard import call_plugin

__all__ = ["world_panel", "period_starts", "comparison_end", "identified_cells", "panel_cohorts"]


def period_starts(horizon: float, period: float) -> np.ndarray:
    """(P,) start day of every whole period in ``[0, horizon)``."""
    n = int(round(horizon / period))
    return np.arange(n, dtype=np.float64) * float(period)


def world_panel(events: WorldEvents, metrics: dict[str, Metric], adoption: np.ndarray, period: float,
                horizon: float) -> pd.DataFrame:
    """Long panel of one world: ``user``, ``period``, ``start`` (day), one column per per-user metric
    (``metrics``, population-level ones skipped), ``treated`` (0/1), rows ordered by period then user.

    ``adoption`` is (n_users,) adoption day (``inf``: never); metric values are float64.
    """
    n = events.n_users
    starts = period_starts(horizon, period)
    users = np.arange(n, dtype=np.int64)
    cols: dict[str, np.ndarray] = {
        "user": np.tile(users, starts.size),
        "period": np.repeat(np.arange(starts.size, dtype=np.int64), n),
        "start": np.repeat(starts, n),
    }
    for name, m in metrics.items():
        if getattr(m, "level", "user") == "population":
            continue
        cols[name] = np.concatenate([
            np.asarray(call_plugin(m, "compute", m.compute, events, float(s), float(s) + period),
                       dtype=np.float64) for s in starts]) if starts.size else np.zeros(0)
    cols["treated"] = (cols["start"] >= np.tile(np.asarray(adoption, dtype=np.float64), starts.size)
                       - 1e-9).astype(np.int64)
    return pd.DataFrame(cols)


def panel_cohorts(panel: pd.DataFrame) -> pd.Series:
    """Per user (index ``user``, sorted), the first ``period`` in which the panel has ``treated == 1``;
    NaN for a user never treated within the panel (adopting after its end included)."""
    users = pd.Index(np.sort(panel["user"].unique()), name="user")
    first = panel.loc[panel["treated"].to_numpy() == 1].groupby("user")["period"].min()
    return pd.Series(first, index=users, dtype=np.float64)


def comparison_end(cohorts: np.ndarray) -> float:
    """The first panel period in which nobody is untreated any more: ``inf`` when some user is never
    treated (a NaN or infinite cohort), else the latest cohort. ``cohorts``: (n_users,) first treated
    period per user (as :func:`panel_cohorts`)."""
    c = np.asarray(cohorts, dtype=np.float64)
    if c.size == 0 or not np.all(np.isfinite(c)):
        return float("inf")
    return float(c.max())


def identified_cells(cohort: np.ndarray, period: np.ndarray, cohorts: np.ndarray,
                     first_period: float = 0.0) -> np.ndarray:
    """(N,) bool: whether each post-adoption cell ``(cohort[i], period[i])`` (``period >= cohort``)
    has an effect ``ATT(g, t)`` that a difference in differences identifies.

    ``ATT(g, t)`` compares cohort ``g``'s change from its base period ``g - 1`` to ``t`` with that
    of users still untreated in ``t`` (never treated, or adopting after ``t``: Callaway & Sant'Anna
    2021, J. Econometrics 225(2), sec. 2-3). So a cell is identified only when

    - ``g > first_period``: the cohort has an untreated period to difference against, and
    - ``t < comparison_end(cohorts)``: someone is untreated in ``t``. Without never-treated users
      no cell from the latest cohort's adoption on has a comparison group: the latest cohort's own
      cells and every other cohort's cells from then on are not identified.

    This is what R's ``did`` does without never-treated users (``pre_process_did``: it keeps only
    the periods before the latest cohort adopts, which becomes the comparison group, and drops the
    cohorts treated in the first period; github.com/bcallaway11/did, R/pre_process_did.R), and what
    the ``differences`` package's ``ATTgt`` does (``pre_process_no_never_treated``).
    ``cohorts`` is every user's first treated period (NaN: never), ``first_period`` the panel's first.
    """
    g = np.asarray(cohort, dtype=np.float64)
    t = np.asarray(period, dtype=np.float64)
    return (g > float(first_period)) & (t < comparison_end(cohorts))
