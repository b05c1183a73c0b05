"""Classical estimators against independent computations on fixed data."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from scipy import stats

from estimator_data import RATIO_METRICS, analysis, frame, ratio_frame
from counterfeed.analysis.multiple import adjust_pvalues
from counterfeed.core.contracts import MetricInfo
from counterfeed.core.plugins import Registry
from counterfeed.plugins.estimators.classical import (CUPED, DifferenceInMeans,
                                                      RatioDeltaMethod)

pytestmark = pytest.mark.filterwarnings("error")


def _by(estimates, arm=None, estimand="difference", segment=None, metric=None):
    hits = [e for e in estimates if (arm is None or e.arm == arm) and e.estimand == estimand
            and e.segment == segment and (metric is None or e.metric == metric)]
    assert len(hits) == 1, hits
    return hits[0]


@pytest.fixture
def two_arms():
    rng = np.random.default_rng(11)
    return rng.exponential(2.0, 57), rng.exponential(2.6, 83)


def test_registered_through_the_hook():
    # each module registers the estimators it defines (bayesian-ab lives in its own module)
    reg = Registry(load_entry_points=False, builtins=["counterfeed.plugins.estimators.classical",
                                                      "counterfeed.plugins.estimators.bayesian_ab"])
    assert set(reg.names("estimator")) == {"diff-in-means", "ratio", "cuped", "bayesian-ab"}
    est = reg.create("estimator", "diff-in-means", {"correction": "holm", "segments": True})
    assert isinstance(est, DifferenceInMeans) and est.options.correction == "holm"


@pytest.mark.parametrize("options, pattern", [
    ({"correction": "bonferroni"}, "correction"),
    ({"relative": "maybe"}, "relative"),
    ({"level": 1.5}, "level"),
    ({"segmnts": True}, "segmnts"),
])
def test_bad_options(options, pattern):
    with pytest.raises(ValidationError, match=pattern):
        DifferenceInMeans(options)


def test_welch_matches_scipy(two_arms):
    c, t = two_arms
    est = DifferenceInMeans().estimate(analysis(frame({"control": c, "treatment": t})))
    d = _by(est)
    ref = stats.ttest_ind(t, c, equal_var=False)
    ci = ref.confidence_interval(0.95)
    assert d.point == pytest.approx(t.mean() - c.mean(), rel=1e-12)
    assert d.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert d.diagnostics["df"] == pytest.approx(ref.df, rel=1e-9)
    assert (d.lower, d.upper) == pytest.approx((ci.low, ci.high), rel=1e-9)
    assert d.diagnostics["n_control"] == 57 and d.diagnostics["n_treatment"] == 83
    assert d.truth is None and d.covered is None


def test_relative_lift_fieller_by_hand(two_arms):
    c, t = two_arms
    r = _by(DifferenceInMeans().estimate(analysis(frame({"control": c, "treatment": t}))),
            estimand="relative")
    mc, mt = c.mean(), t.mean()
    vc, vt = c.var(ddof=1) / c.size, t.var(ddof=1) / t.size
    # Var(mt/mc) = vt/mc^2 + mt^2 vc/mc^4 (first-order Taylor expansion, independent arms)
    se = math.sqrt(vt / mc**2 + mt**2 * vc / mc**4)
    assert r.point == pytest.approx(mt / mc - 1, rel=1e-12)
    assert r.diagnostics["se"] == pytest.approx(se, rel=1e-12)
    # Fieller (1954): the rho with (mt - rho mc)^2 <= q^2 (vt + rho^2 vc), q from Welch's df;
    # the quadratic's roots by numpy, the p-value that of Welch's test of the difference
    ref = stats.ttest_ind(t, c, equal_var=False)
    q = stats.t.ppf(0.975, ref.df)
    roots = np.sort(np.roots([mc**2 - q**2 * vc, -2 * mt * mc, mt**2 - q**2 * vt]).real)
    assert (r.lower, r.upper) == pytest.approx((roots[0] - 1, roots[1] - 1), rel=1e-9)
    assert r.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert r.diagnostics["df"] == pytest.approx(ref.df, rel=1e-9)
    assert r.upper - r.point > r.point - r.lower  # asymmetric: longer towards large ratios
    assert DifferenceInMeans(relative=False).estimate(
        analysis(frame({"control": c, "treatment": t})))[0].estimand == "difference"


def test_ratio_delta_method_hand_derived():
    # Four users per arm, worked out with the textbook form of the delta method
    # Var(R) = (1/n) (sx2/my^2 - 2 mx sxy/my^3 + mx^2 sy2/my^4) (Deng et al. 2018, eq. 4).
    x = {"control": np.array([1.0, 0.0, 3.0, 2.0]), "treatment": np.array([2.0, 1.0, 4.0, 1.0])}
    y = {"control": np.array([5.0, 2.0, 10.0, 7.0]), "treatment": np.array([6.0, 3.0, 9.0, 4.0])}
    df = frame(x).rename(columns={"y": "clicks"})
    df["impressions"] = np.concatenate([y["control"], y["treatment"]])
    df["ctr"] = df["clicks"] / df["impressions"]
    est = RatioDeltaMethod().estimate(analysis(df, RATIO_METRICS))
    var = {}
    for arm in ("control", "treatment"):
        cov = np.cov(x[arm], y[arm], ddof=1)
        mx, my, n = x[arm].mean(), y[arm].mean(), 4
        var[arm] = (cov[0, 0] / my**2 - 2 * mx * cov[0, 1] / my**3 + mx**2 * cov[1, 1] / my**4) / n
    rc, rt = 6 / 24, 8 / 22
    d = _by(est, metric="ctr")
    assert d.point == pytest.approx(rt - rc, rel=1e-12)
    for arm in ("control", "treatment"):  # the delta method is kept as a diagnostic
        assert d.diagnostics[f"se_delta_{arm}"] == pytest.approx(math.sqrt(var[arm]), rel=1e-10)
    # the interval's variance is the jackknife's (small-sample ratio intervals, break test 10):
    # leave-one-out ratios R_(i), v = (n - 1) / n sum (R_(i) - mean)^2, and t on min(n_t, n_c) - 1 df
    var = {}
    for arm in ("control", "treatment"):
        loo = (x[arm].sum() - x[arm]) / (y[arm].sum() - y[arm])
        var[arm] = 3 / 4 * np.sum((loo - loo.mean()) ** 2)
    se = math.sqrt(var["control"] + var["treatment"])
    assert d.diagnostics["se"] == pytest.approx(se, rel=1e-10)
    q = stats.t.ppf(0.975, 3)
    assert (d.lower, d.upper) == pytest.approx((d.point - q * se, d.point + q * se), rel=1e-9)
    rel = _by(est, metric="ctr", estimand="relative")
    se_rel = math.sqrt(var["treatment"] / rc**2 + rt**2 * var["control"] / rc**4)
    assert rel.point == pytest.approx(rt / rc - 1, rel=1e-12)
    assert rel.diagnostics["se"] == pytest.approx(se_rel, rel=1e-10)
    # only ratio metrics by default; diff-in-means on a ratio metric uses the same estimator
    assert {e.metric for e in est} == {"ctr"}
    dim = _by(DifferenceInMeans(metrics=["ctr"]).estimate(analysis(df, RATIO_METRICS)), metric="ctr")
    assert (dim.point, dim.lower, dim.upper, dim.p_value) == (d.point, d.lower, d.upper, d.p_value)
    assert dim.diagnostics["method"] == "delta-ratio"


def test_cuped_against_independent_adjustment():
    rng = np.random.default_rng(5)
    n = 300
    pre = rng.gamma(2.0, 1.5, 2 * n)
    y = 0.8 * pre + rng.normal(0, 1.0, 2 * n) + np.r_[np.zeros(n), np.full(n, 0.25)]
    df = frame({"control": y[:n], "treatment": y[n:]}, pre_y=pre)
    d = _by(CUPED().estimate(analysis(df)))
    # theta: slope of y on pre with arm fixed effects (ordinary least squares by lstsq)
    design = np.column_stack([np.r_[np.ones(n), np.zeros(n)], np.r_[np.zeros(n), np.ones(n)], pre])
    coef = np.linalg.lstsq(design, y, rcond=None)[0]
    theta = coef[2]
    assert d.diagnostics["theta"] == pytest.approx(theta, rel=1e-9)
    adj = y - theta * (pre - pre.mean())
    ref = stats.ttest_ind(adj[n:], adj[:n], equal_var=False)
    ci = ref.confidence_interval(0.95)
    assert d.point == pytest.approx(coef[1] - coef[0], rel=1e-9)
    assert (d.lower, d.upper) == pytest.approx((ci.low, ci.high), rel=1e-9)
    assert d.p_value == pytest.approx(ref.pvalue, rel=1e-6)
    resid_within = np.r_[adj[:n] - adj[:n].mean(), adj[n:] - adj[n:].mean()]
    raw_within = np.r_[y[:n] - y[:n].mean(), y[n:] - y[n:].mean()]
    assert d.diagnostics["variance_reduction"] == pytest.approx(
        1 - resid_within.var() / raw_within.var(), rel=1e-9)
    assert d.diagnostics["rho"] ** 2 == pytest.approx(d.diagnostics["variance_reduction"], rel=1e-9)
    raw = stats.ttest_ind(y[n:], y[:n], equal_var=False)
    assert d.diagnostics["se_unadjusted"] == pytest.approx(
        (y[n:].mean() - y[:n].mean()) / raw.statistic, rel=1e-9)


@pytest.mark.parametrize("method", ["holm", "bh"])
def test_correction_across_treatment_arms(method):
    rng = np.random.default_rng(3)
    groups = {"control": rng.normal(0, 1, 80), "b": rng.normal(0.1, 1, 80),
              "c": rng.normal(0.45, 1, 80), "d": rng.normal(0.3, 1, 80)}
    data = analysis(frame(groups), arms=tuple(groups))
    raw = {a: stats.ttest_ind(groups[a], groups["control"], equal_var=False) for a in "bcd"}
    est = DifferenceInMeans(correction=method).estimate(data)
    expected = adjust_pvalues([raw[a].pvalue for a in "bcd"], method)
    for a, p_adj in zip("bcd", expected):
        e = _by(est, arm=a)
        assert e.diagnostics["p_value_raw"] == pytest.approx(raw[a].pvalue, rel=1e-9)
        assert e.p_value == pytest.approx(p_adj, rel=1e-9)
        level = 1 - 0.05 / 3 if method == "holm" else 0.95
        ci = raw[a].confidence_interval(level)
        assert e.diagnostics["interval_level"] == pytest.approx(level)
        assert e.level == 0.95 and e.diagnostics["family_level"] == 0.95
        assert (e.lower, e.upper) == pytest.approx((ci.low, ci.high), rel=1e-9)
    rel = [_by(est, arm=a, estimand="relative") for a in "bcd"]
    assert [r.p_value for r in rel] == pytest.approx(
        adjust_pvalues([r.diagnostics["p_value_raw"] for r in rel], method))


def test_segments_match_subset_analysis():
    rng = np.random.default_rng(9)
    n = 240
    arm = np.where(np.arange(n) % 2 == 0, "control", "treatment")
    seg = np.where(np.arange(n) % 3 == 0, "new", "returning")
    df = pd.DataFrame({"user": np.arange(n), "arm": arm, "segment": seg,
                       "y": rng.normal(0, 1, n) + (arm == "treatment") * (seg == "new") * 1.0})
    est = DifferenceInMeans(segments=True).estimate(analysis(df))
    assert {e.segment for e in est} == {None, "new", "returning"}
    for s in ("new", "returning"):
        sub = df[df.segment == s]
        ref = stats.ttest_ind(sub.y[sub.arm == "treatment"], sub.y[sub.arm == "control"], equal_var=False)
        e = _by(est, segment=s)
        assert e.p_value == pytest.approx(ref.pvalue, rel=1e-9)
        assert e.diagnostics["n_control"] + e.diagnostics["n_treatment"] == len(sub)
    assert len(DifferenceInMeans().estimate(analysis(df))) == 2


def test_nan_rows_are_left_out():
    y_c = np.array([1.0, np.nan, 2.0, 4.0])
    y_t = np.array([3.0, 5.0, np.nan, 6.0, 2.0])
    d = _by(DifferenceInMeans().estimate(analysis(frame({"control": y_c, "treatment": y_t}))))
    ref = stats.ttest_ind(y_t[~np.isnan(y_t)], y_c[~np.isnan(y_c)], equal_var=False)
    assert d.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert (d.diagnostics["n_control"], d.diagnostics["n_treatment"]) == (3, 4)


def test_metrics_option_and_binary_metric():
    rng = np.random.default_rng(2)
    df = ratio_frame(rng, 200)
    df["converted"] = (df["clicks"] > 0).astype(float)
    metrics = {**RATIO_METRICS, "converted": MetricInfo("converted", "binary")}
    est = DifferenceInMeans(metrics=["converted", "clicks"]).estimate(analysis(df, metrics))
    assert {e.metric for e in est} == {"converted", "clicks"}
    assert len(DifferenceInMeans().estimate(analysis(df, metrics))) == 2 * len(metrics)


def test_estimates_are_plain_json():
    import json

    from counterfeed.plugins.estimators.bayesian_ab import BayesianAB

    rng = np.random.default_rng(4)
    df = ratio_frame(rng, 100)
    df["segment"] = np.where(np.arange(len(df)) % 2 == 0, "a", "b")
    df["pre_clicks"] = df["clicks"] + rng.normal(0, 1, len(df))
    df["converted"] = (df["clicks"] > 0).astype(float)
    metrics = {**RATIO_METRICS, "converted": MetricInfo("converted", "binary")}
    data = analysis(df, metrics)
    ests = (DifferenceInMeans(correction="bh", segments=True).estimate(data)
            + RatioDeltaMethod(correction="holm").estimate(data)
            + CUPED(metrics=["clicks"]).estimate(data)
            + BayesianAB(segments=True).estimate(data))
    assert {e.estimator for e in ests} == {"diff-in-means", "ratio", "cuped", "bayesian-ab"}
    for e in ests:
        d = e.to_dict()
        json.dumps(d, allow_nan=False)
        assert all(type(v) in (str, int, float, bool, list, type(None)) for v in d["diagnostics"].values())
        assert type(e.point) is float and type(e.lower) is float and e.lower <= e.point <= e.upper


def test_a_declared_segment_that_drew_no_user_is_not_identified_not_dropped():
    """Break test 3: with ``segments: true`` a declared segment that no user drew vanished from the
    output, which read as "no such segment"; it is a NOT IDENTIFIED row like a segment too small to
    compare, for every classical estimator that reports per segment."""
    import dataclasses

    from counterfeed.plugins.estimators.bayesian_ab import BayesianAB

    rng = np.random.default_rng(9)
    n = 240
    arm = np.where(np.arange(n) % 2 == 0, "control", "treatment")
    df = pd.DataFrame({"user": np.arange(n), "arm": arm, "segment": np.where(np.arange(n) % 3 == 0, "new", "old"),
                       "y": rng.normal(0, 1, n), "pre_y": rng.normal(0, 1, n)})
    data = dataclasses.replace(analysis(df), segments=["new", "niche", "old"])
    for est in (DifferenceInMeans(segments=True, relative=True), CUPED(segments=True), BayesianAB(segments=True)):
        out = est.estimate(data)
        assert {e.segment for e in out} == {None, "new", "niche", "old"}, est.name
        niche = [e for e in out if e.segment == "niche"]
        assert niche and all(math.isnan(e.point) and e.diagnostics["identified"] is False for e in niche)
        assert all("segment 'niche'" in w and "no user drew this segment" in w
                   for e in niche for w in e.diagnostics["warnings"])
        assert {e.estimand for e in niche} == {e.estimand for e in out if e.segment == "new"}
    # without the declared list (e.g. a twin population), only the drawn segments are known
    assert {e.segment for e in DifferenceInMeans(segments=True).estimate(analysis(df))} == {None, "new", "old"}


def test_an_unbounded_ratio_names_the_critical_value_it_compares_with():
    """Break test 4: "the control mean 16 is within 12.3 standard errors of 0" read as a statement about
    the data alone; it is about the t critical value at the Welch degrees of freedom, and says so."""
    df = frame({"control": np.array([0.2, -0.3, 0.4]), "treatment": np.array([1.0, 2.0, 3.0])})
    (rel,) = [e for e in DifferenceInMeans(relative=True).estimate(analysis(df)) if e.estimand == "relative"]
    (w,) = [w for w in rel.diagnostics["warnings"] if w.startswith("relative lift")]
    q = stats.t.ppf(0.975, _welch_df(df))
    assert f"within {q:.3g} standard errors of 0 (the critical value of t with" in w and "degrees of freedom)" in w
    assert math.isinf(rel.lower) and math.isinf(rel.upper)


def _welch_df(df):
    t, c = df.y[df.arm == "treatment"].to_numpy(), df.y[df.arm == "control"].to_numpy()
    vt, vc = t.var(ddof=1) / t.size, c.var(ddof=1) / c.size
    return (vt + vc) ** 2 / (vt ** 2 / (t.size - 1) + vc ** 2 / (c.size - 1))
