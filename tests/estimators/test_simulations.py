"""Operating characteristics on synthetic outcome tables (fixed seeds).

Tolerances: with R = 400 replications the binomial SD of an estimated rate near 5% is
sqrt(0.05 * 0.95 / 400) = 1.1%, so an A/A false-positive rate is asserted within [2%, 8.5%]
(about -2.7 and +3.2 SD); a 95% coverage is asserted within [91.5%, 98.5%] (+-3.2 SD).
Each replication reuses one table layout and only replaces the value columns, to stay fast.
"""

from __future__ import annotations

import numpy as np
import pytest

from estimator_data import RATIO_METRICS, analysis, frame, ratio_users
from counterfeed.plugins.estimators.classical import (CUPED, DifferenceInMeans,
                                                      RatioDeltaMethod)

R = 400
FPR = (0.02, 0.085)
COVERAGE = (0.915, 0.985)


def _layout(n_control: int, n_treatment: int):
    return frame({"control": np.zeros(n_control), "treatment": np.zeros(n_treatment)})


def test_aa_false_positive_rate_diff_in_means():
    # skewed (log-normal) outcomes, unequal arm sizes: Welch should still hold its level
    rng = np.random.default_rng(2024)
    est = DifferenceInMeans(relative=False)
    df = _layout(150, 250)
    data = analysis(df)
    flags = []
    for _ in range(R):
        df["y"] = rng.lognormal(0, 1, 400)
        flags.append(est.estimate(data)[0].p_value < 0.05)
    assert FPR[0] <= np.mean(flags) <= FPR[1]


def _ratio_replication(rng, df, n, lift=0.0):
    c_clicks, c_imps = ratio_users(rng, n)
    t_clicks, t_imps = ratio_users(rng, n, lift=lift)
    df["clicks"] = np.r_[c_clicks, t_clicks]
    df["impressions"] = np.r_[c_imps, t_imps]
    return c_clicks, c_imps, t_clicks, t_imps


def test_aa_false_positive_rate_ratio_and_naive_contrast():
    # user-level CTRs vary (Beta, concentration 2): clicks of one user are correlated, so a naive
    # test that treats impressions as independent Bernoulli trials rejects far too often
    rng = np.random.default_rng(7)
    est = RatioDeltaMethod(relative=False)
    df = _layout(200, 200).rename(columns={"y": "ctr"})
    data = analysis(df, RATIO_METRICS)
    flags, naive = [], []
    for _ in range(R):
        cc, ci, tc, ti = _ratio_replication(rng, df, 200)
        flags.append(est.estimate(data)[0].p_value < 0.05)
        pooled = (cc.sum() + tc.sum()) / (ci.sum() + ti.sum())
        z = (tc.sum() / ti.sum() - cc.sum() / ci.sum()) / np.sqrt(
            pooled * (1 - pooled) * (1 / ci.sum() + 1 / ti.sum()))
        naive.append(abs(z) > 1.96)
    assert FPR[0] <= np.mean(flags) <= FPR[1]
    assert np.mean(naive) > 0.15  # the clustering in the data is real: the naive test is broken


def test_coverage_of_a_known_effect():
    rng = np.random.default_rng(99)
    est = DifferenceInMeans()
    df = _layout(300, 300)
    data = analysis(df)
    cov_d, cov_r = [], []
    for _ in range(R):
        # control mean 2, treatment mean 2.5: difference 0.5, relative 0.25
        df["y"] = np.r_[rng.gamma(2.0, 1.0, 300), rng.gamma(2.5, 1.0, 300)]
        d, r = est.estimate(data)
        cov_d.append(d.lower <= 0.5 <= d.upper)
        cov_r.append(r.lower <= 0.25 <= r.upper)
    assert COVERAGE[0] <= np.mean(cov_d) <= COVERAGE[1]
    assert COVERAGE[0] <= np.mean(cov_r) <= COVERAGE[1]


def test_ratio_coverage_of_a_known_lift():
    rng = np.random.default_rng(17)
    est = RatioDeltaMethod()
    df = _layout(300, 300).rename(columns={"y": "ctr"})
    data = analysis(df, RATIO_METRICS)
    truth = 0.1 * 0.2  # population CTR 0.1 (Beta mean) lifted by 20%, independent of impressions
    covered = []
    for _ in range(R):
        _ratio_replication(rng, df, 300, lift=0.2)
        d = est.estimate(data)[0]
        covered.append(d.lower <= truth <= d.upper)
    assert COVERAGE[0] <= np.mean(covered) <= COVERAGE[1]


@pytest.mark.parametrize("rho", [0.8, pytest.param(0.5, marks=pytest.mark.slow)])
def test_cuped_variance_reduction_and_coverage(rho):
    # (pre, post) bivariate normal with correlation rho, effect 0.1 in SD units: the adjusted
    # variance is (1 - rho^2) of the raw one. With n = 2 x 500 the SD of the estimated rho^2 is
    # about 2 rho (1 - rho^2) / sqrt(1000) <= 0.024, so 0.06 is a ~2.5-sigma tolerance for one
    # replication and the mean over 400 is held to 0.01 (SD ~0.0012).
    rng = np.random.default_rng(int(rho * 100))
    est, raw = CUPED(relative=False), DifferenceInMeans(relative=False)
    n, effect = 500, 0.1
    df = _layout(n, n)
    df["pre_y"] = 0.0
    data = analysis(df)
    vr, se_ratio, covered, covered_raw = [], [], [], []
    for _ in range(R):
        pre = rng.normal(0, 1, 2 * n)
        df["pre_y"] = pre
        df["y"] = rho * pre + np.sqrt(1 - rho**2) * rng.normal(0, 1, 2 * n) + np.r_[np.zeros(n), np.full(n, effect)]
        c = est.estimate(data)[0]
        d = raw.estimate(data)[0]
        vr.append(c.diagnostics["variance_reduction"])
        se_ratio.append((c.diagnostics["se"] / d.diagnostics["se"]) ** 2)
        covered.append(c.lower <= effect <= c.upper)
        covered_raw.append(d.lower <= effect <= d.upper)
    assert vr[0] == pytest.approx(rho**2, abs=0.06)
    assert np.mean(vr) == pytest.approx(rho**2, abs=0.01)
    assert np.mean(se_ratio) == pytest.approx(1 - rho**2, abs=0.01)
    assert COVERAGE[0] <= np.mean(covered) <= COVERAGE[1]
    assert np.mean(covered) >= np.mean(covered_raw) - 0.03  # no loss of coverage from the adjustment
