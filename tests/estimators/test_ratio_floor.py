"""Ratio comparisons of unbalanced arms: the smaller arm's variance floored at the larger arm's.

The data generator is the one of the simulation study behind the change (a kurtosis-aware df studied with
it was not kept: see ``welch``'s docstring): per-user impression
intensities lognormal with mean 20 (sigma sets the tails), impressions Poisson, clicks binomial with
beta(1.5, 28.5) per-user click rates (mean 0.05).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special

from counterfeed.plugins.estimators._stats import (ArmStats, mean_stats, ratio_stats,
                                                   ratio_variance_floor, relative_lift,
                                                   unbalanced_ratio_warning, welch)

P = 0.05


def gen_arm(rng: np.random.Generator, n: int, sigma: float, p_mean: float = P, conc: float = 30.0):
    """One arm of the study's A/A data: (clicks, impressions) per user."""
    lam = 20.0 * np.exp(sigma * rng.standard_normal(n) - sigma ** 2 / 2)
    y = rng.poisson(lam).astype(float)
    p = rng.beta(p_mean * conc, (1 - p_mean) * conc, n)
    return rng.binomial(y.astype(np.int64), p).astype(float), y


def _usable(x, y) -> bool:
    return y.sum() > 0 and (y > 0).sum() >= 2


def old_df(t: ArmStats, c: ArmStats) -> float:
    """The df ratio comparisons used before: min(active users) - 1."""
    return float(max(min(t.units, c.units) - 1, 1))


def test_mean_metrics_keep_plain_welch():
    rng = np.random.default_rng(3)
    t, c = mean_stats(rng.exponential(size=30) ** 3, ctx="t"), mean_stats(rng.normal(size=50), ctx="c")
    w = welch(t, c, 0.95)
    assert w.df == pytest.approx((t.var + c.var) ** 2 / (t.var ** 2 / 29 + c.var ** 2 / 49), rel=1e-12)


# ---------------------------------------------------------------------------------------------
# (c) the variance floor for unbalanced arms
# ---------------------------------------------------------------------------------------------
def _quiet_small_arm():
    """10 users whose clicks track their impressions (tiny jackknife variance) against 1,000 noisy ones."""
    y_s = np.array([20.0, 22, 18, 25, 19, 21, 20, 23, 17, 24])
    x_s = np.round(0.05 * y_s)
    rng = np.random.default_rng(7)
    x_l, y_l = gen_arm(rng, 1000, 1.0)
    return ratio_stats(x_s, y_s, ctx="t"), ratio_stats(x_l, y_l, ctx="c")


def test_the_floor_binds_for_a_quiet_small_arm_and_widens_the_interval():
    t, c = _quiet_small_arm()
    assert t.var > 0.0 and c.sd ** 2 / t.n > t.var  # the floor is above the small arm's own variance
    w = welch(t, c, 0.95)
    assert w.df == c.units - 1
    assert w.se == pytest.approx(math.sqrt(c.sd ** 2 / t.n + c.var), rel=1e-12)
    # without the floor (the arms' own variances, t on min(active) - 1) the interval is narrower
    se_own = math.sqrt(t.var + c.var)
    q_own = special.stdtrit(old_df(t, c), 0.975)
    assert w.upper - w.lower > 1.5 * 2 * q_own * se_own
    ft, fc, df = ratio_variance_floor(t, c)
    assert df == c.units - 1 and fc is c and ft.var == pytest.approx(c.sd ** 2 / t.n) and ft.point == t.point
    msg = unbalanced_ratio_warning(t, c)[0]
    assert msg.startswith("unbalanced arms for a ratio metric: 10 active users in the smaller arm against")
    assert "variance was floored at the larger arm's" in msg and "conservative" in msg
    # the arms swapped: the same interval mirrored
    w2 = welch(c, t, 0.95)
    assert (w2.df, w2.se) == (w.df, pytest.approx(w.se, rel=1e-12))


def test_the_relative_lift_uses_the_floored_variance_and_rejects_with_the_difference():
    t, c = _quiet_small_arm()
    w = welch(t, c, 0.95)
    rel, _ = relative_lift(t, c, 0.95)
    assert rel.df == w.df and rel.p_value == w.p_value
    q = special.stdtrit(w.df, 0.975)
    vt = c.sd ** 2 / t.n  # the floored variance of the small treatment arm
    for lift in (rel.lower, rel.upper):  # Fieller's edges solve (m_t - rho m_c)^2 = q^2 (v_t + rho^2 v_c)
        rho = lift + 1.0
        assert (t.point - rho * c.point) ** 2 == pytest.approx(q * q * (vt + rho * rho * c.var), rel=1e-9)


def test_the_floor_leaves_balanced_and_noisy_small_arms_alone():
    rng = np.random.default_rng(8)
    t, c = (ratio_stats(*gen_arm(rng, 50, 1.0), ctx=a) for a in "tc")
    assert ratio_variance_floor(t, c)[2] is None and welch(t, c, 0.95).df == old_df(t, c)
    assert not unbalanced_ratio_warning(t, c)
    # a small arm noisier than the large one: its own variance wins the max
    y_s = np.array([5.0, 60, 2, 40, 3, 1, 30, 4, 80, 2])
    x_s = np.array([3.0, 0, 2, 9, 0, 1, 0, 3, 1, 2])
    s, big = ratio_stats(x_s, y_s, ctx="t"), ratio_stats(*gen_arm(rng, 1000, 0.5), ctx="c")
    assert s.var > big.sd ** 2 / s.n
    w = welch(s, big, 0.95)
    assert w.df == old_df(s, big) and w.se == pytest.approx(math.sqrt(s.var + big.var))
    assert "did not widen" in unbalanced_ratio_warning(s, big)[0]


# ---------------------------------------------------------------------------------------------
# (d) Monte Carlo coverage (the study's generator, fixed seeds)
# ---------------------------------------------------------------------------------------------
R = 2000
MIN_COVERAGE = 0.95 - 2.6 * math.sqrt(0.95 * 0.05 / R)  # 0.937: one-sided 0.5% binomial slack at 0.95


def _coverage(seed, nt, nc, sigma, reps):
    rng = np.random.default_rng(seed)
    hit_new = hit_old = used = 0
    for _ in range(reps):
        xt, yt = gen_arm(rng, nt, sigma)
        xc, yc = gen_arm(rng, nc, sigma)
        if not (_usable(xt, yt) and _usable(xc, yc)):
            continue
        t, c = ratio_stats(xt, yt, ctx="t"), ratio_stats(xc, yc, ctx="c")
        w = welch(t, c, 0.95)
        used += 1
        hit_new += w.lower <= 0.0 <= w.upper  # A/A: the true difference is 0
        q_old = special.stdtrit(old_df(t, c), 0.975)
        se_old = math.sqrt(t.var + c.var)
        hit_old += abs(w.point) <= q_old * se_old
    return hit_new / used, hit_old / used, used


@pytest.mark.parametrize("nt,nc,sigma", [(10, 1000, 1.0), (20, 200, 2.0)])
def test_coverage_of_unbalanced_ratio_arms(nt, nc, sigma):
    new, old, used = _coverage([20261202, nt, nc, int(sigma)], nt, nc, sigma, R)
    assert used >= 0.99 * R
    assert new >= MIN_COVERAGE, (new, old)
    assert new > old  # and better than the arms' own variances (0.888 and 0.915 in the study)


def test_balanced_arms_are_unchanged():
    """The floor applies to unbalanced arms only: balanced ones keep their interval exactly."""
    rng = np.random.default_rng(22)
    for _ in range(50):
        t, c = (ratio_stats(*gen_arm(rng, 200, 2.0), ctx=a) for a in "tc")
        w = welch(t, c, 0.95)
        assert w.df == old_df(t, c) and w.se == math.sqrt(t.var + c.var)
