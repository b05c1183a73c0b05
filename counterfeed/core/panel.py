"""Per-period per-user outcomes (a long panel) for staggered rollouts.

The simulation (pre-period and experiment) is cut into periods of ``period`` days starting at day 0;
period ``p`` covers ``[p * period, (p + 1) * period)``. Each per-user metric is the metric plugin's
own ``compute`` over that window, so a panel cell means exactly what the outcome table's cell means,
over a shorter window. A user-period is ``treated`` when the period starts at or after the user's
adoption day (adoption days fall on period starts, which the scenario's validation enforces).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from counterfeed.core.contracts import Metric, WorldEvents
from counterfeed.core._guard import call_plugin

__all__ = ["world_panel", "period_starts"]


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
