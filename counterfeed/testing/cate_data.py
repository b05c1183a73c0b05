"""Synthetic A/B data with known per-user effects, for CATE estimators and their scores.

:func:`make_cate_data` draws users with the covariates of ``AnalysisData.covariates``, randomizes
them to two arms and draws one outcome ``value`` whose true conditional effect is a known function of
the observable ``feature_0`` (plus, with ``hidden``, of an unobserved trait). Deterministic for its
``seed``; fast enough for 100k users.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from counterfeed.core.contracts import MetricInfo
from counterfeed.core.estimation import AnalysisData

__all__ = ["CateWorld", "make_cate_data"]


@dataclass
class CateWorld:
    """``data`` for the estimators; per user (``outcomes`` order) the true ``conditional`` effect
    ``tau(x)`` and the ``realised`` one (``tau(x)`` plus the user's own noise difference between the
    two potential outcomes)."""

    data: AnalysisData
    conditional: np.ndarray
    realised: np.ndarray

    def user_truth(self, metric: str = "value") -> pd.DataFrame:
        """The truth in the shape of ``RunResult.user_truth`` (one arm vs the control)."""
        d = self.data
        return pd.DataFrame({"user": d.outcomes["user"].to_numpy(), "metric": metric, "arm": d.treatments[0],
                             "control": d.control, "realised": self.realised, "conditional": self.conditional,
                             "conditional_se": 0.0})


def make_cate_data(n_users: int = 2000, seed: int = 0, *, effect: float = 0.5, heterogeneity: float = 1.0,
                   shape: str = "linear", noise: float = 1.0, hidden: float = 0.0,
                   split: float = 0.5, level: float = 0.95) -> CateWorld:
    """Two arms (``control``, ``treatment``, treatment with probability ``split``) and one metric ``value``.

    ``tau(x) = effect + heterogeneity * g(feature_0) + hidden * u`` with ``g(z) = z`` (``linear``) or
    ``g(z) = 1[z > 0] - 0.5`` (``step``) and ``u`` an unobserved standard normal trait. Potential
    outcomes ``Y(0) = 1 + 0.8 feature_1 + 0.5 pre_ctr * 10 + noise * e0``, ``Y(1) = Y(0)_mean + tau(x)
    + noise * e1`` with independent standard normal ``e0, e1``; the realised per-user effect is
    ``Y(1) - Y(0)``.
    """
    rng = np.random.default_rng(seed)
    n = int(n_users)
    segment = np.where(rng.random(n) < 0.3, "loyal", "new")
    pre_impr = rng.poisson(np.where(segment == "loyal", 30.0, 12.0)).astype(np.float64)
    base = rng.beta(2.0, 20.0, n)
    pre_clicks = rng.binomial(pre_impr.astype(np.int64), base).astype(np.float64)
    pre_ctr = np.divide(pre_clicks, pre_impr, out=np.zeros(n), where=pre_impr > 0)
    f0, f1, u = rng.normal(size=n), rng.normal(size=n), rng.normal(size=n)
    if shape not in ("linear", "step"):
        raise ValueError(f"unknown shape {shape!r}; expected 'linear' or 'step'")
    g = f0 if shape == "linear" else (f0 > 0) - 0.5
    tau = effect + heterogeneity * g + hidden * u
    mu0 = 1.0 + 0.8 * f1 + 5.0 * pre_ctr
    y0 = mu0 + noise * rng.normal(size=n)
    y1 = mu0 + tau + noise * rng.normal(size=n)
    t = rng.random(n) < split
    arms = ["control", "treatment"]
    outcomes = pd.DataFrame({"user": np.arange(n, dtype=np.int64), "arm": np.where(t, arms[1], arms[0]).astype(object),
                             "segment": segment, "value": np.where(t, y1, y0), "pre_value": mu0 + noise * rng.normal(size=n)})
    covariates = pd.DataFrame({"user": outcomes["user"].to_numpy(), "segment": segment,
                               "pre_sessions": np.ceil(pre_impr / 4.0), "pre_impressions": pre_impr,
                               "pre_clicks": pre_clicks, "pre_dwell": pre_clicks * rng.gamma(2.0, 10.0, n),
                               "pre_ctr": pre_ctr, "tenure": rng.uniform(0.0, 90.0, n),
                               "feature_0": f0, "feature_1": f1})
    probs = np.column_stack([np.full(n, 1.0 - split), np.full(n, split)])
    data = AnalysisData(outcomes=outcomes, arms=arms, control="control",
                        metrics={"value": MetricInfo("value", "mean")}, level=level, seed=seed,
                        assignment_probabilities=probs, covariates=covariates)
    return CateWorld(data, tau, y1 - y0)
