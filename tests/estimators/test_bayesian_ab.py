"""BayesianAB against scipy's Beta distribution and closed-form Normal results."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, stats

from estimator_data import analysis, frame
from counterfeed.core.contracts import MetricInfo
from counterfeed.errors import ModelError
from counterfeed.plugins.estimators.bayesian_ab import BayesianAB

pytestmark = pytest.mark.filterwarnings("error")

BINARY = {"y": MetricInfo("y", "binary")}


def _binary_data(s_c=30, n_c=200, s_t=45, n_t=210, seed=0, higher=True):
    yc = np.r_[np.ones(s_c), np.zeros(n_c - s_c)]
    yt = np.r_[np.ones(s_t), np.zeros(n_t - s_t)]
    return analysis(frame({"control": yc, "treatment": yt}),
                    {"y": MetricInfo("y", "binary", higher_is_better=higher)}, seed=seed)


def test_beta_binomial_posterior_matches_scipy():
    est = BayesianAB().estimate(_binary_data())
    d = next(e for e in est if e.estimand == "difference")
    post_c, post_t = stats.beta(1 + 30, 1 + 170), stats.beta(1 + 45, 1 + 165)
    assert d.diagnostics["posterior_control"] == [31.0, 171.0]
    assert d.diagnostics["posterior_treatment"] == [46.0, 166.0]
    assert d.point == pytest.approx(post_t.mean() - post_c.mean(), rel=1e-12)
    # P(p_t > p_c) = integral of f_t(x) F_c(x) dx; Monte Carlo SD with 20000 draws <= 0.0036
    exact, _ = integrate.quad(lambda x: post_t.pdf(x) * post_c.cdf(x), 0, 1)
    assert d.prob_better == pytest.approx(exact, abs=0.015)
    # credible interval against an independent 400k-draw sample from scipy; the 20000-draw
    # quantile has SD ~0.02 posterior SDs, so 0.1 posterior SD is a 5-sigma tolerance
    rng = np.random.default_rng(123)
    ref = post_t.rvs(400_000, random_state=rng) - post_c.rvs(400_000, random_state=rng)
    lo, hi = np.quantile(ref, [0.025, 0.975])
    sd = ref.std()
    assert d.lower == pytest.approx(lo, abs=0.1 * sd) and d.upper == pytest.approx(hi, abs=0.1 * sd)
    # expected loss of shipping the treatment: E[max(p_c - p_t, 0)]
    assert d.diagnostics["expected_loss"] == pytest.approx(np.mean(np.maximum(-ref, 0)), abs=0.1 * sd)
    rel = next(e for e in est if e.estimand == "relative")
    rel_draws = post_t.rvs(400_000, random_state=rng) / post_c.rvs(400_000, random_state=rng) - 1
    ref_rel = np.quantile(rel_draws, [0.025, 0.5, 0.975])
    assert [rel.lower, rel.point, rel.upper] == pytest.approx(ref_rel, abs=0.1 * rel_draws.std())


def test_prior_option_and_determinism():
    a = BayesianAB(prior_alpha=2.0, prior_beta=8.0).estimate(_binary_data(seed=4))[0]
    assert a.diagnostics["posterior_control"] == [32.0, 178.0]
    b = BayesianAB(prior_alpha=2.0, prior_beta=8.0).estimate(_binary_data(seed=4))[0]
    c = BayesianAB(prior_alpha=2.0, prior_beta=8.0).estimate(_binary_data(seed=5))[0]
    assert (a.lower, a.upper, a.prob_better) == (b.lower, b.upper, b.prob_better)
    assert (a.lower, a.upper) != (c.lower, c.upper)


def test_lower_is_better_flips_prob_better():
    up = BayesianAB().estimate(_binary_data(higher=True))[0]
    down = BayesianAB().estimate(_binary_data(higher=False))[0]
    assert down.prob_better == pytest.approx(1 - up.prob_better, abs=1e-12)
    assert down.diagnostics["expected_loss"] == pytest.approx(up.diagnostics["expected_loss_control"])


def test_normal_model_closed_form():
    # the non-binary model is the Jeffreys-prior (unknown variance) posterior: Student-t with the
    # Welch-Satterthwaite df for the difference (it was N(d, se^2) with the variance plugged in,
    # which undercovered at small n; see test_bayesian_ab_small_n.py)
    rng = np.random.default_rng(8)
    yc, yt = rng.normal(10, 3, 150), rng.normal(10.6, 3, 170)
    est = BayesianAB().estimate(analysis(frame({"control": yc, "treatment": yt})))
    d = next(e for e in est if e.estimand == "difference")
    diff = yt.mean() - yc.mean()
    vt, vc = yt.var(ddof=1) / 170, yc.var(ddof=1) / 150
    se = np.sqrt(vt + vc)
    df = (vt + vc) ** 2 / (vt ** 2 / 169 + vc ** 2 / 149)
    post = stats.t(df, diff, se)
    assert d.diagnostics["df"] == pytest.approx(df, rel=1e-12)
    assert d.point == pytest.approx(diff, rel=1e-12)
    assert (d.lower, d.upper) == pytest.approx(post.interval(0.95), rel=1e-9)
    assert d.prob_better == pytest.approx(post.sf(0.0), rel=1e-9)
    loss, _ = integrate.quad(lambda x: -x * post.pdf(x), -np.inf, 0)
    assert d.diagnostics["expected_loss"] == pytest.approx(loss, rel=1e-6)
    gain, _ = integrate.quad(lambda x: x * post.pdf(x), 0, np.inf)
    assert d.diagnostics["expected_loss_control"] == pytest.approx(gain, rel=1e-6)
    assert d.diagnostics["model"] == "student-t" and d.p_value is None


@pytest.mark.parametrize("values, pattern", [
    (np.array([0.0, 1.0, 2.0]), "values other than 0 and 1"),
    (np.array([0.0, 0.5, 1.0]), "values other than 0 and 1"),
])
def test_binary_metric_must_be_zero_one(values, pattern):
    data = analysis(frame({"control": values, "treatment": np.array([0.0, 1.0, 1.0])}), BINARY)
    with pytest.raises(ModelError, match=pattern):
        BayesianAB().estimate(data)


def test_degenerate_binary_and_normal():
    zeros = frame({"control": np.zeros(5), "treatment": np.zeros(5)})
    d = BayesianAB().estimate(analysis(zeros, BINARY))[0]
    assert d.point == 0.0 and 0.4 < d.prob_better < 0.6 and d.lower < 0 < d.upper
    one_each = frame({"control": [1.0], "treatment": [0.0]})
    # one user per arm: the Beta prior alone would give a finite interval, but no interval comes from
    # fewer than two independent units (the Beta-Binomial model refuses as the t model does)
    with pytest.raises(ModelError, match="at least 2 users"):
        BayesianAB().estimate(analysis(one_each, BINARY))
    n = BayesianAB().estimate(analysis(zeros))
    assert [(e.point, e.lower, e.upper, e.prob_better) for e in n] == [(0.0, 0.0, 0.0, 0.5)]
    with pytest.raises(ModelError, match="at least 2 users"):
        BayesianAB().estimate(analysis(one_each))
