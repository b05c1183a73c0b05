"""Relative lift intervals (Fieller's, bounded or not) and CUPED without a covariate."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from estimator_data import analysis, frame
from counterfeed.core.contracts import MetricInfo
from counterfeed.core.results import _clean
from counterfeed.plugins.estimators._stats import ArmStats, mean_stats, relative_lift
from counterfeed.plugins.estimators.bayesian_ab import BayesianAB
from counterfeed.plugins.estimators.classical import CUPED, DifferenceInMeans

pytestmark = pytest.mark.filterwarnings("error")


def _rel(estimates, arm="treatment"):
    hits = [e for e in estimates if e.estimand == "relative" and e.arm == arm and e.segment is None]
    assert len(hits) == 1, hits
    return hits[0]


def _fieller_by_hand(mt, vt, mc, vc, q):
    """Roots in rho of (mt - rho mc)^2 - q^2 (vt + rho^2 vc) = 0 (Fieller 1954), by numpy.roots."""
    roots = np.sort(np.roots([mc**2 - q**2 * vc, -2 * mt * mc, mt**2 - q**2 * vt]).real)
    return roots - 1.0


def test_fieller_when_the_means_are_negative():
    rng = np.random.default_rng(21)
    c, t = rng.normal(-5.0, 3.0, 60), rng.normal(-4.0, 4.0, 45)
    r = _rel(DifferenceInMeans().estimate(analysis(frame({"control": c, "treatment": t}))))
    mc, mt = c.mean(), t.mean()
    vc, vt = c.var(ddof=1) / c.size, t.var(ddof=1) / t.size
    ref = stats.ttest_ind(t, c, equal_var=False)
    q = stats.t.ppf(0.975, ref.df)
    lo, hi = _fieller_by_hand(mt, vt, mc, vc, q)
    assert (r.lower, r.upper) == pytest.approx((lo, hi), rel=1e-9)
    # the bounds solve Fieller's defining equation, and it rejects exactly when Welch does
    for rho in (r.lower + 1, r.upper + 1):
        assert (mt - rho * mc) ** 2 == pytest.approx(q**2 * (vt + rho**2 * vc), rel=1e-9)
    assert r.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert r.lower < r.point < r.upper


def test_skewed_arms_give_an_asymmetric_interval_that_agrees_with_its_p_value():
    rng = np.random.default_rng(3)
    c, t = rng.lognormal(0.0, 1.5, 200), rng.lognormal(0.2, 1.5, 200)
    r = _rel(DifferenceInMeans().estimate(analysis(frame({"control": c, "treatment": t}))))
    assert r.upper - r.point > r.point - r.lower > 0
    # p < 0.05 exactly when the 95% interval excludes 0 (Fieller inverts the same Welch test)
    excludes = not (r.lower <= 0.0 <= r.upper)
    assert (r.p_value < 0.05) == excludes


@pytest.mark.parametrize("cls", [DifferenceInMeans, BayesianAB])
def test_control_mean_indistinguishable_from_zero_is_unbounded(cls):
    rng = np.random.default_rng(5)
    c, t = rng.normal(0.0, 1.0, 40), rng.normal(1.0, 1.0, 40)
    c = c - c.mean() + 0.1
    assert abs(c.mean()) / (c.std(ddof=1) / math.sqrt(40)) < 1.96  # control not distinguishable from 0
    est = cls().estimate(analysis(frame({"control": c, "treatment": t})))
    r = _rel(est)
    assert (r.lower, r.upper) == (-math.inf, math.inf)
    assert any("no bounded" in w and "control mean" in w for w in r.diagnostics["warnings"])
    diff = next(e for e in est if e.estimand == "difference")
    assert "warnings" not in diff.diagnostics  # the difference itself is fine
    doc = json.loads(json.dumps(_clean(r.to_dict()), allow_nan=False))  # strict JSON: null bounds
    assert doc["lower"] is None and doc["upper"] is None and doc["point"] == pytest.approx(r.point)


def test_bayesian_relative_uses_welch_t_quantiles():
    # bayesian-ab's non-binary model is the unknown-variance (Jeffreys) t posterior with the
    # Welch-Satterthwaite df, so Fieller's set uses that t quantile (it used the normal one)
    rng = np.random.default_rng(8)
    c, t = rng.gamma(0.5, 4.0, 150), rng.gamma(0.5, 4.6, 170)
    r = _rel(BayesianAB().estimate(analysis(frame({"control": c, "treatment": t}))))
    mc, mt = c.mean(), t.mean()
    vc, vt = c.var(ddof=1) / c.size, t.var(ddof=1) / t.size
    df = (vt + vc) ** 2 / (vt ** 2 / (t.size - 1) + vc ** 2 / (c.size - 1))
    lo, hi = _fieller_by_hand(mt, vt, mc, vc, stats.t.ppf(0.975, df))
    assert (r.lower, r.upper) == pytest.approx((lo, hi), rel=1e-9)
    assert r.point == pytest.approx(mt / mc - 1, rel=1e-12)


@pytest.mark.parametrize("mt, vt, mc, vc", [
    (2.0, 0.04, 1.0, 0.01),
    (-2.0, 0.04, 1.0, 0.01),
    (2.0, 0.04, -1.0, 0.01),
    (0.0, 0.04, 1.0, 0.01),  # a true ratio of 0
])
def test_the_interval_contains_the_point_and_has_level_coverage_under_normal_means(mt, vt, mc, vc):
    t, c = ArmStats(10**6, mt, vt, 1.0), ArmStats(10**6, mc, vc, 1.0)
    comp, warn = relative_lift(t, c, 0.95)
    assert warn == [] and comp.lower <= comp.point <= comp.upper
    # Fieller is exact for independent normal means with known variances:
    # coverage over 2000 draws within 4 binomial sd of 95%
    rng = np.random.default_rng(1)
    rho = mt / mc
    draws_t = rng.normal(mt, math.sqrt(vt), 2000)
    draws_c = rng.normal(mc, math.sqrt(vc), 2000)
    hits = 0
    for a, b in zip(draws_t, draws_c):
        res = relative_lift(ArmStats(10**6, a, vt, 1.0), ArmStats(10**6, b, vc, 1.0), 0.95)
        hits += res[0].lower <= rho - 1 <= res[0].upper
    assert abs(hits / 2000 - 0.95) <= 4 * math.sqrt(0.95 * 0.05 / 2000)


def test_zero_control_mean_has_no_relative_lift_and_constant_arms_are_exact():
    assert relative_lift(ArmStats(5, 1.0, 0.1, 1.0), ArmStats(5, 0.0, 0.1, 1.0), 0.95) is None
    comp, warn = relative_lift(mean_stats(np.full(4, 3.0), ctx="t"), mean_stats(np.full(4, 2.0), ctx="c"), 0.95)
    assert (comp.point, comp.lower, comp.upper, comp.p_value, warn) == (0.5, 0.5, 0.5, 0.0, [])


def _no_covariate(segments=None):
    rng = np.random.default_rng(12)
    df = frame({"control": rng.exponential(2.0, 80), "treatment": rng.exponential(2.5, 90)},
               segments=segments, pre_y=np.full(170, np.nan))
    return df


def test_cuped_without_any_covariate_value_falls_back_to_diff_in_means():
    df = _no_covariate()
    with pytest.warns(UserWarning, match="covariate 'pre_y' has no observed value"):
        cuped = CUPED().estimate(analysis(df))
    dim = DifferenceInMeans().estimate(analysis(df.drop(columns="pre_y")))
    assert len(cuped) == len(dim) == 2
    for a, b in zip(cuped, dim):
        assert (a.estimand, a.point, a.lower, a.upper, a.p_value) == (b.estimand, b.point, b.lower,
                                                                      b.upper, b.p_value)
        assert a.diagnostics["adjusted"] is False and a.diagnostics["covariate"] == "pre_y"
        assert any("'pre_y'" in w and "unadjusted" in w for w in a.diagnostics["warnings"])
    json.dumps(_clean(cuped[0].to_dict()), allow_nan=False)


def test_cuped_falls_back_only_in_the_segment_without_covariate():
    seg = np.where(np.arange(170) % 2 == 0, "a", "b")
    df = _no_covariate(seg)
    rng = np.random.default_rng(2)
    df.loc[df.segment == "a", "pre_y"] = df.loc[df.segment == "a", "y"] + rng.normal(0, 0.5, 85)
    with pytest.warns(UserWarning, match="pre_y' has no observed value in segment 'b'"):
        est = CUPED(segments=True, relative=False).estimate(analysis(df))
    by_seg = {e.segment: e for e in est}
    assert by_seg["a"].diagnostics["adjusted"] is True and "warnings" not in by_seg["a"].diagnostics
    assert by_seg[None].diagnostics["adjusted"] is True
    b = df[df.segment == "b"]
    ref = stats.ttest_ind(b.y[b.arm == "treatment"], b.y[b.arm == "control"], equal_var=False)
    assert by_seg["b"].diagnostics["adjusted"] is False
    assert by_seg["b"].p_value == pytest.approx(ref.pvalue, rel=1e-9)

