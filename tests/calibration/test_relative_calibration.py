"""Relative-lift intervals are calibrated on small skewed and rare-event metrics.

A 400-user experiment (``skewed_data.py``): heavy-tailed dwell, rare churn, a long-tailed CTR.
Coverage of the true relative effect must lie in the binomial band of 95% and the A/A rejection
rate in that of 5%: with R replications the count of hits is Binomial(R, p) for a calibrated
interval, and the band holds its central 99.8% (``scipy.stats.binom``), fixed seeds. The fast
tests run the estimators' own arm summaries through the shared interval
(:func:`~counterfeed.plugins.estimators._stats.relative_lift`) for R = 2000; the slow test runs
every built-in estimator end to end (CUPED and the Beta-Binomial model included).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from skewed_data import LIFT, relative_intervals, summary_draws
from counterfeed.plugins.estimators._stats import relative_lift

R_FAST = 2000
ALPHA = 0.002  # the band's two-sided miss probability for a calibrated interval


def band(replications: int, p: float, alpha: float = ALPHA) -> tuple[float, float]:
    """Central (1 - alpha) range of Binomial(replications, p) / replications."""
    lo = stats.binom.ppf(alpha / 2, replications, p) / replications
    hi = stats.binom.isf(alpha / 2, replications, p) / replications
    return float(lo), float(hi)


@pytest.fixture(scope="module")
def draws():
    return {lift: summary_draws(seed=31 if lift else 32, replications=R_FAST, lift=lift)
            for lift in (LIFT, 0.0)}


def _rate(reps, metric, lift, welch_df):
    hits = 0
    for rep in reps:
        t, c = rep[metric]
        comp, _ = relative_lift(t, c, 0.95, welch_df=welch_df)
        hits += comp.lower <= lift <= comp.upper
    return hits / len(reps)


@pytest.mark.parametrize("welch_df", [True, False], ids=["classical", "bayesian-normal"])
@pytest.mark.parametrize("metric", ["dwell", "churn", "ctr"])
def test_relative_coverage_on_skewed_small_samples(draws, metric, welch_df):
    lo, hi = band(R_FAST, 0.95)
    assert lo <= _rate(draws[LIFT], metric, LIFT, welch_df) <= hi


@pytest.mark.parametrize("welch_df", [True, False], ids=["classical", "bayesian-normal"])
@pytest.mark.parametrize("metric", ["dwell", "churn", "ctr"])
def test_relative_aa_rejection_on_skewed_small_samples(draws, metric, welch_df):
    lo, hi = band(R_FAST, 0.05)
    assert lo <= 1.0 - _rate(draws[0.0], metric, 0.0, welch_df) <= hi


@pytest.mark.parametrize("metric, lift", [("ctr", LIFT), ("ctr", 0.0), ("churn", 0.0)])
def test_the_symmetric_delta_interval_fails_the_same_check(draws, metric, lift):
    """The checks have power: the old ``point +- z se`` interval falls outside the band here."""
    z = stats.norm.ppf(0.975)
    reps = draws[lift]
    hits = 0
    for rep in reps:
        t, c = rep[metric]
        comp, _ = relative_lift(t, c, 0.95)
        hits += abs(comp.point - lift) <= z * comp.se
    if lift == 0.0:
        assert 1.0 - hits / R_FAST > band(R_FAST, 0.05)[1]
    else:
        assert hits / R_FAST < band(R_FAST, 0.95)[0]


@pytest.mark.slow
def test_every_estimator_end_to_end():
    """diff-in-means, ratio, CUPED and bayesian-ab on 500 experiments with an effect and 500 A/A.

    The tight checks are the fast tests above (R = 2000); this one checks each estimator's own
    path (CUPED's adjusted means, the Beta-Binomial posterior for churn) within the wider band
    that 500 replications allow (about +-3 points around 95%).
    """
    r = 500
    eff = relative_intervals(seed=41, replications=r, lift=LIFT)
    aa = relative_intervals(seed=42, replications=r, lift=0.0)
    cov_lo, cov_hi = band(r, 0.95)
    rej_lo, rej_hi = band(r, 0.05)
    groups = sorted(set(zip(eff.estimator, eff.metric)))
    assert len(groups) == 8  # dim dwell+churn, ratio ctr, cuped dwell+churn, bayesian-ab x3
    failures = []
    for est, metric in groups:
        e = eff[(eff.estimator == est) & (eff.metric == metric)]
        a = aa[(aa.estimator == est) & (aa.metric == metric)]
        assert len(e) == len(a) == r
        cov = float(np.mean((e.lower <= LIFT) & (LIFT <= e.upper)))
        rej = float(np.mean(~((a.lower <= 0.0) & (0.0 <= a.upper))))
        if not (cov_lo <= cov <= cov_hi and rej_lo <= rej <= rej_hi):
            failures.append((est, metric, cov, rej))
    assert not failures, f"coverage band [{cov_lo}, {cov_hi}], A/A band [{rej_lo}, {rej_hi}]: {failures}"
