"""Synthetic observational inputs beside :func:`~counterfeed.testing.fixtures.make_analysis_data`'s outcomes.

:func:`observational_inputs` builds, for given per-user outcomes and arms, the inputs an estimator
declaring ``requires_covariates`` / ``requires_graph`` / ``requires_instrument`` / ``requires_panel``
reads beside the covariates (:func:`~counterfeed.testing.fixtures.make_covariates`): a declared graph
(every covariate a common cause of ``treatment`` and ``outcome``), a randomized encouragement that moves the arm taken, and a
staggered rollout's per-period panel with each user's adoption day. Deterministic for ``seed``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["observational_inputs", "declared_graph", "PANEL_PERIODS"]

#: periods of the synthetic panel (equal lengths over the analysis window)
PANEL_PERIODS = 4


def declared_graph(covariates: list[str], treatment: str = "treatment", outcome: str = "outcome") -> Any:
    """A ``networkx.DiGraph``: every covariate -> treatment and -> outcome, treatment -> outcome."""
    import networkx as nx

    g = nx.DiGraph()
    g.add_edge(treatment, outcome)
    for c in covariates:
        g.add_edge(c, treatment)
        g.add_edge(c, outcome)
    return g


def observational_inputs(outcomes: pd.DataFrame, covariates: pd.DataFrame, arm_idx: np.ndarray,
                         metrics: list[str], seed: int, window: tuple[float, float], *,
                         zeros: bool = False) -> dict[str, Any]:
    """``graph``, ``instrument``, ``adoption`` and ``panel`` for the outcomes' users.

    The graph's common causes are the covariates' columns (``user`` aside). The instrument agrees
    with the arm taken for 80% of users. Treated users adopt at the start of period 1 or 2 of :data:`PANEL_PERIODS`; each per-user
    metric in ``metrics`` is split across the periods with noise (all zero when ``zeros``).
    """
    rng = np.random.default_rng(seed + 11)
    n = len(outcomes)
    treated = np.asarray(arm_idx) > 0
    graph = declared_graph([c for c in covariates.columns if c != "user"])
    instrument = np.where(rng.random(n) < 0.8, treated, ~treated).astype(np.int64)
    start, end = window
    length = (end - start) / PANEL_PERIODS
    period_of = np.where(treated, rng.integers(1, 3, n), -1)
    adoption = np.where(treated, start + period_of * length, np.inf)
    rows = []
    for p in range(PANEL_PERIODS):
        on = treated & (p >= period_of)
        frame = {"user": outcomes["user"].to_numpy(), "period": np.full(n, p, np.int64),
                 "start": np.full(n, start + p * length), "treated": on.astype(np.int64)}
        for m in metrics:
            base = outcomes[m].to_numpy(dtype=float) / PANEL_PERIODS
            frame[m] = np.zeros(n) if zeros else base + rng.normal(0.0, 0.1 + 0.1 * base.std(), n) + 0.05 * p
        rows.append(pd.DataFrame(frame))
    panel = pd.concat(rows, ignore_index=True)
    return {"graph": graph, "instrument": instrument, "adoption": adoption, "panel": panel}
