"""The covariates an analyst would have: pre-treatment facts about each user, never latent state.

:func:`user_covariates` fills :attr:`counterfeed.core.estimation.AnalysisData.covariates` from the A/B
world's event log and the population, one row per user in ``outcomes`` order:

``user``, ``segment``
    the user's id and segment name (an analyst's user attributes).
``pre_sessions``, ``pre_impressions``, ``pre_clicks``, ``pre_dwell``, ``pre_ctr``
    the user's activity over the pre-period ``[0, start)``, when everyone was served by the control
    (so these are pre-treatment in every world); ``pre_ctr`` is clicks per impression, 0 without
    impressions. All 0 for a scenario without pre-period.
``tenure``
    days from the user's arrival (their first session) to the experiment start; 0 for a user first
    seen at or after the start.
``feature_<k>``
    the scenario's observable features (``population.features``, see :func:`observable_features`).

The latent preference vectors never appear: features are noisy projections of them, by design.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from counterfeed.core.contracts import Population, WorldEvents
from counterfeed.core.randomness import Keys
from counterfeed.core.scenario_heterogeneity import FeaturesSpec

__all__ = ["COVARIATE_COLUMNS", "user_covariates", "observable_features", "covariate_matrix"]

#: the columns every covariate table has (``feature_<k>`` columns follow when features are declared)
COVARIATE_COLUMNS = ["user", "segment", "pre_sessions", "pre_impressions", "pre_clicks", "pre_dwell",
                     "pre_ctr", "tenure"]


def user_covariates(events: WorldEvents, population: Population, start: float, users: np.ndarray,
                    features: FeaturesSpec | None = None, keys: Keys | None = None) -> pd.DataFrame:
    """The covariate table of ``users`` (the ``user`` column of the outcomes, in that order).

    Parameters
    ----------
    events : the A/B world's events (only sessions before ``start`` are read).
    population : the simulated users (segments; preferences only through ``features``).
    start : the experiment start in days (the end of the pre-period).
    users : (n,) int user ids, the order of the rows.
    features, keys : the scenario's ``population.features`` and the run's keys (both or neither).
    """
    n = population.n
    users = np.asarray(users, dtype=np.int64)
    s = events.sessions
    pre = s["time"] < start
    u = s["user"][pre].astype(np.int64)

    def total(col: str | None) -> np.ndarray:
        w = None if col is None else np.asarray(s[col][pre], dtype=np.float64)
        return np.bincount(u, weights=w, minlength=n).astype(np.float64)

    sessions, impressions, clicks, dwell = total(None), total("impressions"), total("clicks"), total("dwell")
    first = np.full(n, np.inf)
    np.minimum.at(first, u, s["time"][pre])
    tenure = np.where(np.isfinite(first), start - first, 0.0)
    ctr = np.divide(clicks, impressions, out=np.zeros(n), where=impressions > 0)
    cols: dict[str, object] = {
        "user": users,
        "segment": np.asarray(population.segment_names, dtype=object)[population.segment[users]],
        "pre_sessions": sessions[users], "pre_impressions": impressions[users], "pre_clicks": clicks[users],
        "pre_dwell": dwell[users], "pre_ctr": ctr[users], "tenure": tenure[users],
    }
    if features is not None:
        if keys is None:
            raise ValueError("observable features need the run's keys")
        f = observable_features(population, features, keys)
        for k in range(f.shape[1]):
            cols[f"feature_{k}"] = f[users, k]
    return pd.DataFrame(cols)


def observable_features(population: Population, spec: FeaturesSpec, keys: Keys) -> np.ndarray:
    """(n_users, K) observable features: ``standardize(P W) + noise * E``.

    ``P`` (n, d) are the latent preferences, ``W`` (d, K) a keyed standard normal projection
    (stream ``population:features:projection``), each projected column standardized to mean 0 and
    standard deviation 1 over the population (a column without spread stays 0), and ``E`` keyed
    standard normal noise per (user, feature) (stream ``population:features:noise``). A user's noise
    depends only on the user, so features are the same in every world and every replication.
    """
    d, k = population.preferences.shape[1], spec.dimensions
    w = keys.stream("population:features:projection").normal(np.arange(d)[:, None], 0, np.arange(k)[None, :])
    z = population.preferences @ w
    sd = z.std(axis=0)
    z = np.divide(z - z.mean(axis=0), sd, out=np.zeros_like(z), where=sd > 0)
    if spec.noise > 0:
        e = keys.stream("population:features:noise").normal(population.ids[:, None], 0, np.arange(k)[None, :])
        z = z + spec.noise * e
    return z


def covariate_matrix(covariates: pd.DataFrame) -> np.ndarray:
    """(n, p) float design of a covariate table for scikit-learn models: every numeric column but
    ``user``, and one indicator per segment after the first (sorted names)."""
    num = covariates.drop(columns=["user", "segment"], errors="ignore").select_dtypes("number")
    parts = [num.to_numpy(np.float64)]
    if "segment" in covariates:
        seg = covariates["segment"].astype(str)
        for name in sorted(seg.unique())[1:]:
            parts.append((seg == name).to_numpy(np.float64)[:, None])
    return np.hstack(parts) if parts[0].size or len(parts) > 1 else np.zeros((len(covariates), 0))
