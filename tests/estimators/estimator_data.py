"""Synthetic outcome tables for the estimator tests (fixed seeds, no simulation needed)."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import pandas as pd

from counterfeed.core.contracts import AnalysisData, MetricInfo

SUM = MetricInfo("y", "sum")


def analysis(df: pd.DataFrame, metrics: dict[str, MetricInfo] | None = None,
             arms: tuple[str, ...] = ("control", "treatment"), control: str = "control",
             seed: int = 0, level: float = 0.95) -> AnalysisData:
    """AnalysisData over ``df`` (metric ``y`` of kind sum by default)."""
    return AnalysisData(outcomes=df, arms=list(arms), control=control,
                        metrics=metrics or {"y": SUM}, level=level, seed=seed)


def frame(groups: dict[str, np.ndarray], segments: np.ndarray | None = None, **extra) -> pd.DataFrame:
    """Outcome table with one row per value: ``arm`` from the dict key, metric column ``y``."""
    arms = np.concatenate([[a] * len(v) for a, v in groups.items()])
    y = np.concatenate([np.asarray(v, dtype=float) for v in groups.values()])
    n = y.size
    seg = segments if segments is not None else np.array(["all"] * n)
    return pd.DataFrame({"user": np.arange(n), "arm": arms, "segment": seg, "y": y, **extra})


def ratio_users(rng: np.random.Generator, n: int, base_ctr: float = 0.1, lift: float = 0.0,
                concentration: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """Per-user (clicks, impressions) with a user-level CTR ~ Beta: clicks of a user are correlated."""
    imps = rng.poisson(8.0, n) + rng.geometric(0.1, n)  # heavy-ish tail of impressions per user
    a = concentration * base_ctr * (1 + lift)
    p = rng.beta(a, concentration - a, n)
    clicks = rng.binomial(imps, p)
    return clicks.astype(float), imps.astype(float)


RATIO_METRICS = {
    "ctr": MetricInfo("ctr", "ratio", numerator="clicks", denominator="impressions"),
    "clicks": MetricInfo("clicks", "sum"),
    "impressions": MetricInfo("impressions", "sum"),
}


def ratio_frame(rng: np.random.Generator, n_per_arm: int, lift: float = 0.0) -> pd.DataFrame:
    """control/treatment table with clicks, impressions and the per-user ctr column."""
    c_clicks, c_imps = ratio_users(rng, n_per_arm)
    t_clicks, t_imps = ratio_users(rng, n_per_arm, lift=lift)
    df = frame({"control": c_clicks, "treatment": t_clicks}).drop(columns="y")
    df["clicks"] = np.concatenate([c_clicks, t_clicks])
    df["impressions"] = np.concatenate([c_imps, t_imps])
    df["ctr"] = df["clicks"] / df["impressions"]
    return df
