"""Per-user scores of CATE estimates: PEHE, rank correlation, coverage, decile calibration, uplift curves."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from counterfeed.analysis.cate_scores import (score_cate, score_estimates_cate, truth_vector, uplift_curves,
                                              write_cate_scores)
from counterfeed.plugins.estimators.cate import DRLearnerCATE, TLearnerCATE
from counterfeed.testing.cate_data import make_cate_data


def _effects(point, lower=None, upper=None):
    n = len(point)
    return pd.DataFrame({"user": np.arange(n), "point": point,
                         "lower": np.full(n, np.nan) if lower is None else lower,
                         "upper": np.full(n, np.nan) if upper is None else upper})


def test_scores_by_hand():
    tau = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0])
    point = tau + np.array([1.0, -1.0] * 5)
    s, curves = score_cate(_effects(point, point - 0.5, point + 1.5), tau, average=4.0)
    assert s["pehe"] == pytest.approx(1.0)
    assert s["pehe_baseline"] == pytest.approx(np.std(tau))
    assert s["pehe_baseline_estimate"] == pytest.approx(np.sqrt(np.mean((tau - 4.0) ** 2)))
    assert s["coverage"] == pytest.approx(0.5)  # tau = p + 1 lies in [p - 0.5, p + 1.5], tau = p - 1 does not
    assert s["interval_width"] == pytest.approx(2.0)
    assert s["spearman"] == pytest.approx(np.corrcoef(np.argsort(np.argsort(point)), tau)[0, 1])
    assert [d["n"] for d in s["deciles"]] == [1] * 10
    # the oracle curve bounds the estimator's true curve; both end at the mean effect
    assert (curves["oracle"] >= curves["true"] - 1e-12).all()
    assert curves["true"].iloc[-1] == pytest.approx(tau.mean()) == curves["oracle"].iloc[-1]
    assert np.isnan(curves["estimated"]).all()  # no outcomes given


def test_no_per_user_interval_gives_no_coverage():
    s, _ = score_cate(_effects(np.arange(20.0)), np.arange(20.0))
    assert s["coverage"] is None and s["coverage_n"] == 0 and s["pehe"] == 0.0


def test_uplift_curve_estimated_from_the_experiment():
    """With every user's outcome = effect when treated and 0 in control, the estimated curve equals the
    true one up to the sampling of arms; at q=1 it is the difference in means times 1."""
    rng = np.random.default_rng(0)
    n = 4000
    tau = rng.normal(1.0, 1.0, n)
    t = (rng.random(n) < 0.5).astype(int)
    y = np.where(t == 1, tau, 0.0) + rng.normal(0, 0.1, n)
    c = uplift_curves(tau, tau, y, t)
    last = c.iloc[-1]
    assert last["estimated"] == pytest.approx(y[t == 1].mean() - y[t == 0].mean())
    # the estimate is within 4 standard errors of the truth at every point with q >= 0.2
    ok = c[c.q >= 0.2]
    assert (np.abs(ok["estimated"] - ok["true"]) <= 4 * ok["estimated_se"]).all()


@pytest.mark.filterwarnings("ignore")
def test_no_heterogeneity_gives_flat_decile_calibration():
    """A world with one effect for everyone (0.5, no heterogeneity) scored against the realised
    per-user effects (0.5 + noise, sd 1.4): the true mean effect per decile of the DR-learner's
    predicted effect is flat -- each decile within 3.3 standard errors of the overall mean (a
    two-sided 0.1% band per decile) and the chi-square of the ten deciles not significant at 0.1%
    (fixed seed; under flatness a false failure has probability < 1%)."""
    w = make_cate_data(4000, seed=11, heterogeneity=0.0)
    (cate, _) = DRLearnerCATE(DRLearnerCATE.Options()).estimate(w.data)
    s, _ = score_cate(cate.user_effects, w.realised, average=cate.point)
    overall = s["true_average"]
    for d in s["deciles"]:
        assert abs(d["true"] - overall) <= 3.3 * d["true_se"], d
    assert s["calibration_chi2_p"] > 1e-3, s["calibration_chi2_p"]
    # against this, the same estimator in a world with heterogeneity finds it: deciles far from flat
    w2 = make_cate_data(4000, seed=11, heterogeneity=1.0)
    (cate2, _) = DRLearnerCATE(DRLearnerCATE.Options()).estimate(w2.data)
    s2, _ = score_cate(cate2.user_effects, w2.conditional, average=cate2.point)
    assert s2["calibration_chi2_p"] < 1e-6
    assert abs(s2["calibration_slope"] - 1.0) < 4 * s2["calibration_slope_se"] + 0.1
    assert s2["auuc_normalised"] > 0.8 and s2["spearman"] > 0.8


def test_score_estimates_uses_the_conditional_truth_and_says_so(tmp_path):
    w = make_cate_data(600, seed=2)
    ests = TLearnerCATE(TLearnerCATE.Options(nuisance="linear")).estimate(w.data)
    truth = w.user_truth()
    rows, curves, effects = score_estimates_cate(ests, truth, w.data.outcomes)
    assert len(rows) == 1 and rows[0]["truth_estimand"] == "conditional"
    assert rows[0]["coverage"] is None  # T-learner: no per-user intervals
    assert len(effects) == 600 and set(curves.columns) >= {"q", "estimated", "true", "oracle", "random"}
    # without the conditional effect the realised one is used, and the row says so
    rows2, _, _ = score_estimates_cate(ests, truth.assign(conditional=np.nan), w.data.outcomes)
    assert rows2[0]["truth_estimand"] == "realised" and rows2[0]["pehe"] != rows[0]["pehe"]
    assert truth_vector(truth, np.arange(3), "value", "nope", "control") is None
    write_cate_scores(tmp_path, rows, curves, effects)
    text = (tmp_path / "cate_scores.json").read_text()
    assert "NaN" not in text and json.loads(text)[0]["coverage"] is None
    assert len(pd.read_parquet(tmp_path / "cate_effects.parquet")) == 600


def test_monte_carlo_corrected_scores_recover_the_exact_truth():
    # 20,000 users: exact conditional effects tau, an estimate with N(0, 0.5^2) error and exact 95%
    # intervals, and a truth measured with R = 8 noisy draws of sd 2 per user (se ~ 0.71). Against
    # the noisy truth the raw PEHE and coverage are badly off; the corrected ones match the exact
    # PEHE (0.5, to 0.03) and the nominal coverage (0.95; binomial sd 0.0015, tolerance 0.01 for
    # the t approximation), and the constant baseline (sd(tau) = 1, to 0.03).
    rng = np.random.default_rng(3)
    n, r = 20_000, 8
    tau = rng.normal(size=n)
    point = tau + rng.normal(0, 0.5, size=n)
    draws = tau[:, None] + rng.normal(0, 2.0, size=(n, r))
    noisy, se = draws.mean(axis=1), draws.std(axis=1, ddof=1) / np.sqrt(r)
    eff = _effects(point, point - 1.959964 * 0.5, point + 1.959964 * 0.5)
    s, _ = score_cate(eff, noisy, truth_se=se, replications=r)
    assert s["coverage"] < 0.75 and s["pehe"] > 0.8  # the raw scores see the truth's noise
    assert s["pehe_mc"] == pytest.approx(0.5, abs=0.03)
    assert s["pehe_baseline_mc"] == pytest.approx(1.0, abs=0.03)
    assert abs(s["coverage_mc"] - 0.95) < 0.01
    assert 0.6 < s["mc_variance_share"] < 0.7  # 0.5 / (0.5 + 0.25)
    # the deconvolved coverage: the error variance matches the intervals' (ratio 1; its sampling sd
    # here is about 0.03), so the coverage is the level
    assert s["error_variance_ratio"] == pytest.approx(1.0, abs=0.1)
    assert abs(s["coverage_deconvolved"] - 0.95) < 0.01
    # intervals far too narrow (a tenth of the width; expected corrected coverage 0.89) are caught
    narrow = _effects(point, point - 0.2 * 0.5, point + 0.2 * 0.5)
    s2, _ = score_cate(narrow, noisy, truth_se=se, replications=r)
    assert s2["coverage_mc"] < 0.92
    # ...but as a coverage estimate coverage_mc is pulled towards 0.95; the deconvolved one recovers
    # the true coverage of tau, P(|N(0, 0.5^2)| <= 1.96 * 0.05) = 0.155 (ratio 100, to 10%)
    exact = float(np.mean(np.abs(point - tau) <= 0.2 * 0.5))
    assert s2["error_variance_ratio"] == pytest.approx(100.0, rel=0.1)
    assert s2["coverage_deconvolved"] == pytest.approx(exact, abs=0.02)
    # without replications (or fewer than 2) the corrected scores are absent
    s3, _ = score_cate(eff, noisy)
    assert "pehe_mc" not in s3
