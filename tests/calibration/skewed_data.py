"""Small skewed experiments for calibrating relative-lift intervals (no simulation needed).

A 400-user experiment (200 users per arm) with three metrics whose arm means are far from normal
at that size, each with a known true relative effect ``lift`` (the same for every metric):

- ``dwell`` (sum): seconds of dwell per user. A user-level heavy-tailed propensity
  ``u ~ LogNormal(0, 0.7)``, an activity indicator (30% of users idle) and per-period Gamma
  noise; ``pre_dwell`` is the same user over a pre-period, so CUPED has a covariate.
  Treatment multiplies dwell by ``1 + lift``.
- ``churn`` (binary, rare): a user-level risk ``r ~ Beta(0.5, 5.75)`` (mean 0.08);
  ``pre_churn ~ Bernoulli(r)`` and ``churn ~ Bernoulli(r (1 + lift))`` (``lift <= 0``), so
  ``E[churn | treatment] / E[churn | control] = 1 + lift`` exactly.
- ``ctr`` (ratio of ``clicks`` / ``impressions``): impressions ``Poisson(6) + Geometric(0.08)``
  (long tail), a user-level CTR ``~ Beta(1.5 p, 1.5 (1 - p))`` with mean ``p = 0.04 (1 + lift)``
  in the treatment arm, clicks ``~ Binomial(impressions, CTR)``; so the true ratio of sums
  ``E[clicks] / E[impressions] = p``.

Used by ``test_relative_calibration.py`` and ``benchmarks/calibration_relative.py``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from counterfeed.core.contracts import AnalysisData, MetricInfo
from counterfeed.plugins.estimators._stats import ArmStats, mean_stats, ratio_stats

METRICS = {
    "dwell": MetricInfo("dwell", "sum"),
    "churn": MetricInfo("churn", "binary", higher_is_better=False),
    "ctr": MetricInfo("ctr", "ratio", numerator="clicks", denominator="impressions"),
}
N_PER_ARM = 200
LIFT = -0.2  # the true relative effect of every metric when not an A/A test


def _arm(rng: np.random.Generator, n: int | tuple[int, int], lift: float) -> dict[str, np.ndarray]:
    """One arm's per-user columns; ``n`` may be ``(replications, users)`` for many arms at once."""
    u = rng.lognormal(0.0, 0.7, n)
    pre = (rng.random(n) < 0.7) * u * rng.gamma(2.0, 30.0, n)
    dwell = (rng.random(n) < 0.7) * u * rng.gamma(2.0, 30.0, n) * (1.0 + lift)
    r = rng.beta(0.5, 5.75, n)
    pre_churn = (rng.random(n) < r).astype(float)
    churn = (rng.random(n) < r * (1.0 + lift)).astype(float)
    imps = rng.poisson(6.0, n) + rng.geometric(0.08, n)
    p = 0.04 * (1.0 + lift)
    clicks = rng.binomial(imps, rng.beta(1.5 * p, 1.5 * (1.0 - p), n))
    return {"dwell": dwell, "pre_dwell": pre, "churn": churn, "pre_churn": pre_churn,
            "clicks": clicks.astype(float), "impressions": imps.astype(float)}


def experiment(rng: np.random.Generator, lift: float, n_per_arm: int = N_PER_ARM,
               seed: int = 0) -> AnalysisData:
    """One control/treatment experiment whose every metric has true relative effect ``lift``."""
    c, t = _arm(rng, n_per_arm, 0.0), _arm(rng, n_per_arm, lift)
    df = pd.DataFrame({k: np.concatenate([c[k], t[k]]) for k in c})
    df.insert(0, "arm", np.repeat(["control", "treatment"], n_per_arm))
    df.insert(0, "user", np.arange(2 * n_per_arm))
    df["segment"] = "all"
    with np.errstate(invalid="ignore", divide="ignore"):
        df["ctr"] = df["clicks"] / df["impressions"]
    return AnalysisData(outcomes=df, arms=["control", "treatment"], control="control",
                        metrics=METRICS, level=0.95, seed=seed)


def estimators():
    """(label, estimator) for every built-in estimator with a relative estimand on these metrics."""
    from counterfeed.plugins.estimators.bayesian_ab import BayesianAB
    from counterfeed.plugins.estimators.classical import CUPED, DifferenceInMeans, RatioDeltaMethod

    # diff-in-means on a ratio metric is the ratio estimator's code path, so ctr runs once, in ratio
    return [("diff-in-means", DifferenceInMeans(metrics=["dwell", "churn"])), ("ratio", RatioDeltaMethod()),
            ("cuped", CUPED(metrics=["dwell", "churn"])), ("bayesian-ab", BayesianAB(draws=4000))]


def summary_draws(seed: int, replications: int, lift: float,
                  n_per_arm: int = N_PER_ARM) -> list[dict[str, tuple[ArmStats, ArmStats]]]:
    """Per replication, per metric: (treatment, control) summaries as the estimators make them.

    The same draws as :func:`experiment`, summarized with the estimators' own
    :func:`~counterfeed.plugins.estimators._stats.mean_stats` (dwell, churn) and ``ratio_stats``
    (ctr), without building an outcome table: fast enough for thousands of replications.
    """
    rng = np.random.default_rng(seed)
    c, t = _arm(rng, (replications, n_per_arm), 0.0), _arm(rng, (replications, n_per_arm), lift)
    out = []
    for i in range(replications):
        rep = {m: (mean_stats(t[m][i], ctx=m), mean_stats(c[m][i], ctx=m)) for m in ("dwell", "churn")}
        rep["ctr"] = (ratio_stats(t["clicks"][i], t["impressions"][i], ctx="ctr"),
                      ratio_stats(c["clicks"][i], c["impressions"][i], ctx="ctr"))
        out.append(rep)
    return out


def relative_intervals(seed: int, replications: int, lift: float) -> pd.DataFrame:
    """One row per (replication, estimator, metric): the relative estimate's interval."""
    rng = np.random.default_rng(seed)
    ests = estimators()
    rows = []
    for rep in range(replications):
        data = experiment(rng, lift, seed=seed * 100_003 + rep)
        for label, est in ests:
            for e in est.estimate(data):
                if e.estimand == "relative":
                    rows.append((rep, label, e.metric, e.point, e.lower, e.upper,
                                 e.diagnostics.get("se", np.nan)))
    return pd.DataFrame(rows, columns=["rep", "estimator", "metric", "point", "lower", "upper", "se"])
