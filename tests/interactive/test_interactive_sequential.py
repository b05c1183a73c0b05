"""The sequential estimator: confidence-sequence formula, peeking on synthetic A/A data, engine run."""

import math

import numpy as np
import pytest
from scipy import stats

from counterfeed.core.runner import run
from counterfeed.plugins.estimators.sequential import cs_radius, cs_rho, sequential_path
from tests.conftest import small_scenario


def test_cs_radius_matches_the_published_formula_and_is_wider_than_the_fixed_interval():
    level, n_star = 0.95, 10_000
    rho = cs_rho(level, n_star)
    a = 0.05
    assert rho ** 2 == pytest.approx((-2 * math.log(a) + math.log(-2 * math.log(a) + 1)) / n_star)
    for n in (100, 1_000, 10_000, 100_000):
        r = cs_radius(1.0, n, level, rho)
        expected = math.sqrt(2 * (n * rho ** 2 + 1) / (n ** 2 * rho ** 2) * math.log(math.sqrt(n * rho ** 2 + 1) / a))
        assert r == pytest.approx(expected)
        assert r > stats.norm.ppf(0.975) / math.sqrt(n)
    # near the planned size the CS costs a factor of about 1.2-1.6 in width, not more
    assert cs_radius(1.0, n_star, level, rho) * math.sqrt(n_star) / 1.96 < 1.7
    assert cs_radius(1.0, 1, level, rho) == math.inf


def _synthetic_aa(rng, n=1_000, days=14):
    """Users arrive over the first week; each adds Poisson(rate_i) events per day once arrived."""
    arrival = rng.integers(0, 7, n)
    rate = rng.gamma(1.0, 1.0, n)
    daily = rng.poisson(rate[None, :] * np.ones((days, 1)))
    daily[np.arange(days)[:, None] < arrival[None, :]] = 0
    values = np.cumsum(daily, axis=0).astype(float)
    exposed = np.arange(days)[:, None] >= arrival[None, :]
    arm = (rng.random(n) < 0.5).astype(int)
    return values, arm, exposed


def test_daily_peeking_inflates_the_naive_false_positive_rate_but_not_the_confidence_sequence():
    rng = np.random.default_rng(20261127)
    reps = 300
    naive = cs = 0
    for _ in range(reps):
        values, arm, exposed = _synthetic_aa(rng)
        path = sequential_path(values, arm, exposed, 1, 0, 0.95, planned_n=1_000)
        naive += any(r["naive_lower"] > 0 or r["naive_upper"] < 0 for r in path)
        cs += any(r["lower"] > 0 or r["upper"] < 0 for r in path)
    # 300 replications: the SD of an estimated rate near 0.05 is 0.0126, so 0.05 + 2 SD = 0.075
    # bounds the CS rate; with 14 correlated looks the naive rate is about 0.15-0.25, and 0.10 is
    # more than 3.5 SD above 0.05.
    assert cs / reps <= 0.075
    assert naive / reps >= 0.10


def test_sequential_estimator_on_the_engine():
    sc = small_scenario(**{"analysis": [{"estimator": "sequential", "metrics": ["clicks", "ctr"]}],
                           "experiment.duration": "4d"})
    res = run(sc, write=False, workers=1)
    by_metric = {e.metric: e for e in res.estimates}
    assert set(by_metric) == {"clicks", "ctr"}
    for e in res.estimates:
        path = e.diagnostics["path"]
        assert [r["day"] for r in path] == [1.0, 2.0, 3.0, 4.0]
        assert e.point == path[-1]["point"] and e.lower == path[-1]["lower"]
        for r in path:
            assert r["lower"] <= r["naive_lower"] <= r["point"] <= r["naive_upper"] <= r["upper"]
        assert e.diagnostics["rejected_any_day"] == any(r["lower"] > 0 or r["upper"] < 0 for r in path)
        assert e.truth is not None
    # the final look of a sum metric: the difference of arm means over the users who visited in the
    # experiment, times their share of all users
    ab = res.outcomes[res.outcomes.world == "ab"]
    seen = ab[ab.sessions > 0]
    diff = seen[seen.arm == "treatment"].clicks.mean() - seen[seen.arm == "control"].clicks.mean()
    assert by_metric["clicks"].point == pytest.approx(diff * len(seen) / len(ab), rel=1e-9)
