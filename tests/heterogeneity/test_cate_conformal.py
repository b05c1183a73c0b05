"""Conformal intervals for each user's own effect (``individual_intervals: conformal``,
counterfeed.analysis.cate_conformal): the realised effect covered by randomization alone, the expected
effect covered where a user's noise has the same law in both arms (even when the effect is correlated
with the untreated outcome, where the variance modes fail), the documented direction of error and its
warning when the arms' noise differs, the conformal quantile itself, and small cells."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from counterfeed.analysis.cate_conformal import ASSUMPTION_CONFORMAL, weighted_conformal_quantile
from counterfeed.core.estimation import CATE, AnalysisData
from counterfeed.plugins.estimators.cate import DRLearnerCATE, LinearInteractionCATE
from tests.heterogeneity.daily_users import RecordingSection, daily_data

PRE, DAYS = 5, 7
TAU = {"a": -2.0, "b": 4.0}  # the segment's average effect on the 7-day total
SIGMA_U = {"a": 3.0, "b": 6.0}  # sd of the individual effect around it


def _world(n: int, seed: int, rho: float = 0.0, day_noise: tuple[float, float] = (0.0, 0.0),
           shares: dict[str, float] | None = None, propensity=None) -> tuple[AnalysisData, dict]:
    """Users with a hidden activity ``h``: untreated daily Poisson rate ``lam0 = exp(1.5 + 0.2 x + 0.15 h)``;
    individual effect ``tau_i = TAU[segment] + u_i``, ``u = sigma (rho h + sqrt(1 - rho^2) z)`` (``rho < 0``:
    users who do worse untreated than predicted gain more, which breaks the variance modes' assumption).
    ``day_noise = (s0, s1)``: each day's rate of arm ``a`` is multiplied by an independent
    ``exp(s_a w - s_a^2 / 2)`` (mean 1: ``tau_i`` unchanged, the arm's noise larger). Both potential weeks
    are drawn independently; ``propensity``: a function of ``x`` giving each user's probability of
    treatment (default 0.5).
    Returns the data and ``{"tau", "realised", "t", "segment"}``."""
    rng = np.random.default_rng(seed)
    shares = shares or {"a": 0.6, "b": 0.4}
    seg = rng.choice(list(shares), size=n, p=list(shares.values()))
    x, h, z = rng.normal(size=(3, n))
    lam0 = np.exp(1.5 + 0.2 * x + 0.15 * h)
    u = np.vectorize(SIGMA_U.get)(seg) * (rho * h + np.sqrt(1 - rho ** 2) * z)
    lam1 = np.maximum(lam0 + (np.vectorize(TAU.get)(seg) + u) / DAYS, 0.05)
    e = np.full(n, 0.5) if propensity is None else propensity(x)
    t = rng.random(n) < e
    pre = rng.poisson(lam0[:, None], size=(n, PRE))

    def week(lam: np.ndarray, s: float) -> np.ndarray:
        return rng.poisson(lam[:, None] * np.exp(s * rng.normal(size=(n, DAYS)) - s ** 2 / 2))
    w0, w1 = week(lam0, day_noise[0]), week(lam1, day_noise[1])
    post = np.where(t[:, None], w1, w0)
    data = daily_data(pre, post, t, seg, x, seed, e)
    truth = {"tau": DAYS * (lam1 - lam0), "realised": (w1.sum(axis=1) - w0.sum(axis=1)).astype(np.float64),
             "t": t, "segment": seg}
    return data, truth


def _estimate(data: AnalysisData, cls=LinearInteractionCATE, modifiers=("segment",)):
    est = cls(cls.Options(modifiers=list(modifiers) if modifiers else None, individual_intervals="conformal"))
    return next(e for e in est.estimate(data) if e.estimand == CATE)


def _covered(e, target: np.ndarray) -> np.ndarray:
    lo, hi = (e.user_effects[c].to_numpy() for c in ("ite_lower", "ite_upper"))
    return (lo <= target) & (target <= hi)


def test_conformal_covers_individual_effects_where_the_variance_modes_assumption_fails():
    # rho = -0.9 breaks (A1) (test_cate_individual: the posterior mode undercovers < 0.85 there). The
    # conformal intervals do not need it. 8,000 users: each arm's calibration half holds about 1,200
    # users of segment a and 800 of b, so the calibrated quantile's own coverage has sd
    # sqrt(0.05 * 0.95 / 800) = 0.008 (b) and the per-user Bernoulli error over about 1,600 users
    # 0.005: +-0.03 around 0.95 is more than three combined sd
    data, truth = _world(8_000, seed=11, rho=-0.9)
    e = _estimate(data)
    seg = truth["segment"]
    for target in ("tau", "realised"):
        cov = _covered(e, truth[target])
        assert 0.92 <= cov.mean() <= 0.98, (target, cov.mean())
        for s in ("a", "b"):
            assert 0.915 <= cov[seg == s].mean() <= 0.985, (target, s, cov[seg == s].mean())
    d = e.diagnostics["individual_intervals"]
    assert d["mode"] == "conformal" and d["assumption"] == ASSUMPTION_CONFORMAL and d["mondrian"] is True
    assert "realised effect" in d["estimand"] and not d["warnings"], d["warnings"]
    assert {c["modifiers"]["segment=b"] for c in d["cells"]} == {0.0, 1.0}
    assert [r["users"] for r in d["noise_check"]] == ["in segment a", "in segment b"]
    for r in d["noise_check"]:  # Poisson noise alike in both arms: the day-to-day ratio is near 1, no warning
        assert 0.85 < r["noise_ratio"] < 1 / 0.85, r
    # an interval per user, the midpoint as its point, finite and ordered
    ue = e.user_effects
    assert np.allclose(ue["ite_point"], (ue["ite_lower"] + ue["ite_upper"]) / 2)
    assert np.all(ue["ite_lower"] < ue["ite_upper"])


def test_noisier_treated_days_undercover_the_treated_and_warn_while_the_realised_effect_stays_covered():
    # the documented direction: treated days 1.5-2x as variable (lognormal day shocks, s = 0.5) -> a
    # treated user's own noise is wider than the control users' that calibrate their interval:
    # treated users undercover tau_i (about 0.86 by a normal approximation), control users
    # overcover it (about 0.99); the realised effect (which includes that noise) is still covered
    data, truth = _world(8_000, seed=12, day_noise=(0.0, 0.5))
    e = _estimate(data)
    t = truth["t"]
    cov = _covered(e, truth["tau"])
    assert cov[t].mean() < 0.92 and cov[~t].mean() > 0.975, (cov[t].mean(), cov[~t].mean())
    assert 0.92 <= _covered(e, truth["realised"]).mean() <= 0.98
    warned = " ".join(e.diagnostics["individual_intervals"]["warnings"])
    assert "the treated users' intervals there undercover" in warned and "day-to-day" in warned


def test_unequal_design_propensities_are_weighted():
    # treatment probability 0.25 for x < 0 and 0.75 above: the control users' covariates differ from
    # the treated users'; the calibration users are weighted by the likelihood ratio (Tibshirani et al.
    # 2019) and the coverage holds
    data, truth = _world(8_000, seed=13, propensity=lambda x: np.where(x < 0, 0.25, 0.75))
    e = _estimate(data)
    d = e.diagnostics["individual_intervals"]
    assert d["weighted"] is True
    for target in ("tau", "realised"):
        assert 0.92 <= _covered(e, truth[target]).mean() <= 0.98, target


def test_a_cell_too_small_to_calibrate_falls_back_to_one_calibration_and_a_tiny_arm_is_not_identified():
    # segment b has about 40 users: about 10 per arm would calibrate it, fewer than the 19 a 95%
    # interval needs, so one calibration over all users serves (marginal guarantee), with intervals
    data, truth = _world(2_000, seed=14, shares={"a": 0.98, "b": 0.02})
    e = _estimate(data)
    d = e.diagnostics["individual_intervals"]
    assert d["mondrian"] is False and d["users_not_identified"] == 0
    assert np.isfinite(e.user_effects["ite_lower"].to_numpy()).all()
    fallback = " ".join(d["warnings"])  # said, with the cell and the reason
    assert "calibrated once over all users, not per cell" in fallback and "in the cell [segment=b]" in fallback
    assert "fewer than the 19 the level needs" in fallback
    assert 0.91 <= _covered(e, truth["realised"]).mean() <= 0.985
    # a treatment arm of about 30 users: about 15 calibrate the control users' intervals: NOT IDENTIFIED
    data, truth = _world(2_000, seed=16, propensity=lambda x: np.full(x.size, 0.015))
    e = _estimate(data)
    t, lo = truth["t"], e.user_effects["ite_lower"].to_numpy()
    assert np.isnan(lo[~t]).all() and np.isfinite(lo[t]).all()
    warned = " ".join(e.diagnostics["individual_intervals"]["warnings"])
    assert "NOT IDENTIFIED" in warned and "too few for a 95% interval (at least 19 needed)" in warned
    assert "control users over all users (one calibration)" in warned


def test_continuous_modifiers_calibrate_over_all_users_and_check_the_noise_there():
    # every covariate as a modifier (pre_clicks, feature_0 continuous): no Mondrian cells, one "all
    # users" cell; the noise check still runs per segment (a pooled ratio can cancel opposite ones)
    data, truth = _world(4_000, seed=20, day_noise=(0.0, 0.5))
    e = _estimate(data, modifiers=None)
    d = e.diagnostics["individual_intervals"]
    assert d["mondrian"] is False and len(d["cells"]) == 1 and d["cells"][0]["modifiers"] == {}
    assert [r["users"] for r in d["noise_check"]] == ["in segment a", "in segment b"]
    assert all(r["noise_ratio"] > 1 / 0.85 for r in d["noise_check"])
    assert "in segment b, the treated users' day-to-day variation" in " ".join(d["warnings"])
    # without segments the check runs over the one calibration
    data.outcomes = data.outcomes.drop(columns="segment")
    d = _estimate(data, modifiers=None).diagnostics["individual_intervals"]
    assert [r["users"] for r in d["noise_check"]] == ["over all users (one calibration)"]
    assert 0.92 <= _covered(e, truth["realised"]).mean() <= 0.98


def test_without_per_day_data_the_assumption_is_said_not_checked():
    data, _ = _world(2_000, seed=17)
    data.events = None
    warned = " ".join(_estimate(data).diagnostics["individual_intervals"]["warnings"])
    assert "NOT CHECKED" in warned and "realised effect does not depend on it" in warned


def test_three_arms_each_treatment_is_compared_with_the_control():
    # users of the third arm are outside a comparison: they get a fold and an effect prediction, and
    # null individual intervals (fold_ids once left them without a fold: non-finite effects)
    # (a structural check: 1,200 users, 400 an arm, are enough for every cell's calibration)
    data, truth = _world(1_200, seed=18)
    rng = np.random.default_rng(0)
    third = rng.random(1_200) < 1 / 3
    data.outcomes.loc[third, "arm"] = "third"
    data.arms = ["control", "treatment", "third"]
    p = np.full((1_200, 3), 1 / 3)
    data.assignment_probabilities = p
    for cls in (LinearInteractionCATE, DRLearnerCATE):
        est = cls(cls.Options(modifiers=["segment"], individual_intervals="conformal"))
        cates = [e for e in est.estimate(data) if e.estimand == CATE]
        assert sorted(e.arm for e in cates) == ["third", "treatment"]
        for e in cates:
            lo = e.user_effects["ite_lower"].to_numpy()
            arm = data.outcomes["arm"].to_numpy()
            assert np.isfinite(e.user_effects["point"]).all()
            assert np.isnan(lo[(arm != e.arm) & (arm != "control")]).all()
            assert np.isfinite(lo[(arm == e.arm) | (arm == "control")]).all()


def test_a_zero_width_conformal_interval_is_kept_and_a_learners_is_nulled():
    # a conformal interval of zero width is a valid answer (a binary outcome predicted exactly, as the
    # tester saw with `retained`); a zero-width CATE interval is a learner's unmeasured variance
    from counterfeed.plugins.estimators._cate_data import null_unidentified

    def frame():
        return pd.DataFrame({"user": [0, 1], "point": [0.1, 0.2], "lower": [0.1, 0.0], "upper": [0.1, 0.5],
                             "ite_point": [1.0, 0.0], "ite_lower": [1.0, -1.0], "ite_upper": [1.0, 1.0]})
    bad = np.zeros(2, dtype=bool)
    kept = frame()
    warns = null_unidentified(kept, bad, "retained", conformal=True)
    assert kept["ite_lower"].notna().all() and np.isnan(kept.loc[0, "lower"]) and len(warns) == 1
    nulled = frame()
    null_unidentified(nulled, bad, "retained")
    assert np.isnan(nulled.loc[0, "ite_lower"]) and np.isnan(nulled.loc[0, "lower"])


@pytest.mark.slow  # five CATE fits on 3,000 users, 12 s
def test_the_intervals_are_reproducible_and_do_not_depend_on_the_learner_but_on_its_key():
    data, _ = _world(3_000, seed=15)
    a, b = _estimate(data), _estimate(data)
    cols = ["ite_lower", "ite_upper", "ite_point"]
    pd.testing.assert_frame_equal(a.user_effects[cols], b.user_effects[cols])
    dr = _estimate(data, DRLearnerCATE)  # its own split (keyed by the estimator's name): close, not equal
    w_lin = (a.user_effects["ite_upper"] - a.user_effects["ite_lower"]).mean()
    w_dr = (dr.user_effects["ite_upper"] - dr.user_effects["ite_lower"]).mean()
    assert abs(w_lin / w_dr - 1) < 0.15


def test_the_conformal_quantile():
    s = np.arange(1.0, 41.0)  # 40 scores: the ceil(41 * 0.95) = 39th smallest
    assert weighted_conformal_quantile(s, np.ones(40), np.ones(3), 0.95).tolist() == [39.0] * 3
    assert weighted_conformal_quantile(s[:19], np.ones(19), np.ones(1), 0.95)[0] == 19.0  # 19 is enough
    assert np.isinf(weighted_conformal_quantile(s[:18], np.ones(18), np.ones(1), 0.95)[0])  # 18 is not
    assert np.isinf(weighted_conformal_quantile(s[:0], np.ones(0), np.ones(1), 0.95)[0])
    # weights: zero-weight scores do not count; a heavy test point pushes the quantile to infinity
    w = np.r_[np.ones(20), np.zeros(20)]
    assert weighted_conformal_quantile(s, w, np.ones(1), 0.95)[0] == 20.0
    q = weighted_conformal_quantile(s, np.ones(40), np.array([1.0, 3.0]), 0.95)
    assert q[0] == 39.0 and np.isinf(q[1])  # 40 / 43 < 0.95
    # order of the scores does not matter
    perm = np.random.default_rng(0).permutation(40)
    assert weighted_conformal_quantile(s[perm], np.ones(40), np.ones(1), 0.9)[0] == \
        weighted_conformal_quantile(s, np.ones(40), np.ones(1), 0.9)[0]


@pytest.mark.parametrize("duration", ["1d", "3d"])
def test_conformal_needs_no_per_day_data_so_validate_accepts_it_where_the_variance_modes_are_rejected(duration):
    from pathlib import Path

    from counterfeed.core.plan import resolve
    from counterfeed.core.scenario import load_scenario

    targeting = Path(__file__).resolve().parents[2] / "scenarios" / "targeting.yaml"
    lin = {"estimator": "linear-cate", "metrics": ["retained"], "modifiers": ["segment"],
           "individual_intervals": "conformal"}
    sc = load_scenario(targeting).with_overrides({
        "population.users": 200, "experiment.duration": duration, "truth.replications": 2,
        "metrics": ["clicks", "retained"], "targeting.metric": "retained", "analysis": [lin]})
    resolve(sc)  # a non-sum metric and a 1-day experiment: fine for the conformal mode


def test_scores_judge_coverage_mc_and_split_it_by_arm():
    # the deconvolved figure's normal model misreads intervals whose errors differ by arm (treated
    # users undercover, control users overcover): the judged figure is coverage_mc (the interval
    # widened by the truth's Monte Carlo error), overall and by arm
    from counterfeed.analysis.cate_scores import score_estimates_cate

    data, truth = _world(8_000, seed=12, day_noise=(0.0, 0.5))
    e = _estimate(data)
    frame = pd.DataFrame({"user": data.outcomes["user"], "metric": "clicks", "arm": "treatment",
                          "control": "control", "realised": truth["realised"], "conditional": truth["tau"],
                          "conditional_se": 0.3})
    r = score_estimates_cate([e], frame, data.outcomes, replications=8)[0][0]
    assert r["ite_judged_on"] == "coverage_mc" and r["ite_coverage_judged"] == r["ite_coverage_mc"]
    assert r["ite_judged_weak"] is False
    assert r["ite_coverage_treated"] < 0.92 and r["ite_coverage_control"] > 0.975
    assert 0.92 <= r["ite_coverage_realised"] <= 0.98
    # a truth dominated by its Monte Carlo error: the same figure, flagged weak
    r = score_estimates_cate([e], frame.assign(conditional_se=60.0), data.outcomes, replications=8)[0][0]
    assert r["ite_judged_on"] == "coverage_mc" and r["ite_judged_weak"] is True
    # a truth without Monte Carlo error (realised only): the raw coverage
    r = score_estimates_cate([e], frame.drop(columns=["conditional", "conditional_se"]), data.outcomes)[0][0]
    assert r["ite_judged_on"] == "raw" and r["ite_coverage_judged"] == r["ite_coverage"]
    assert r["ite_coverage_treated"] == pytest.approx(_covered(e, truth["realised"])[truth["t"]].mean())


@pytest.mark.parametrize("share", [0.1, 0.2, 0.4])
def test_exact_intervals_are_judged_near_their_level_whatever_the_truths_error(share):
    # 20,000 users with exact 95% normal intervals for tau and a truth tau + N(0, se^2): the raw
    # coverage of the noisy truth falls with the share of its error (0.910 at 0.25); coverage_mc stays
    # at the level (Bernoulli sd 0.0015; +-0.015 is ten of them)
    from counterfeed.analysis.cate_scores import score_cate

    rng = np.random.default_rng(21)
    n, s = 20_000, 1.0
    se = np.sqrt(share / (1 - share)) * s  # share = se^2 / (s^2 + se^2)
    tau = rng.normal(size=n)
    point = tau + s * rng.normal(size=n)
    half = 1.959964 * s
    effects = pd.DataFrame({"point": point, "lower": point - half, "upper": point + half, "ite_point": point,
                            "ite_lower": point - half, "ite_upper": point + half})
    noisy = tau + se * rng.normal(size=n)
    scores, _ = score_cate(effects, noisy, truth_se=np.full(n, se), replications=8, level=0.95)
    assert scores["ite_mc_variance_share"] == pytest.approx(share, abs=0.01)
    assert abs(scores["ite_coverage_judged"] - 0.95) <= 0.015, scores["ite_coverage_judged"]
    if share >= 0.2:
        assert scores["ite_coverage"] < 0.935  # what judging the raw figure would have read



@pytest.mark.parametrize("level, judged, treated, warned", [
    (0.95, 0.93, 0.94, []), (0.95, 0.85, 0.80, ["0.850 of the time (coverage_mc), outside the 0.90-0.97", "treated"]),
    (0.95, 0.93, 0.80, ["the treated users' true conditional effects only 0.800"]),
    (0.5, 0.51, 0.49, []), (0.5, 0.93, 0.93, ["outside the 0.45-0.52 expected of 50% intervals"])])
def test_the_report_judges_against_the_intervals_level_and_by_arm(level, judged, treated, warned):
    from counterfeed.plugins.estimators._cate_report import _individual_table

    sec = RecordingSection()
    _individual_table(sec, [{"estimator": "linear-cate", "metric": "clicks", "arm": "treatment", "level": level,
                             "ite_coverage": judged, "ite_coverage_judged": judged, "ite_judged_on": "coverage_mc",
                             "ite_coverage_deconvolved": 0.96, "ite_coverage_treated": treated,
                             "ite_coverage_control": 0.99, "ite_coverage_realised": 0.95, "ite_interval_width": 40.0}])
    warns = " | ".join(t for t, k in sec.paragraphs if k == "warn")
    assert "realised" in sec.headers and "treated" in sec.headers
    if not warned:
        assert not warns
    for text in warned:
        assert text in warns, warns


def test_scores_written_before_the_judged_figure_are_read_on_the_raw_coverage():
    # a run directory scored by an earlier version has no ite_judged_on: the raw coverage (0.855), not
    # the deconvolved one (0.972, which called these intervals conservative), is held against the level
    from counterfeed.plugins.estimators._cate_report import _individual_table

    sec = RecordingSection()
    _individual_table(sec, [{"estimator": "linear-cate", "metric": "clicks", "arm": "treatment", "level": 0.95,
                             "ite_coverage": 0.855, "ite_coverage_deconvolved": 0.972, "ite_interval_width": 40.0}])
    warns = " | ".join(t for t, k in sec.paragraphs if k == "warn")
    assert "0.855 of the time (raw)" in warns and "below" in warns and "conservative" not in warns


def test_a_constant_arm_gives_its_constant_as_the_prediction_set():
    # every control user with the same outcome (every one retained, say): the control arm's outcome is
    # predicted exactly, so a treated user's interval is their own outcome minus that constant
    data, truth = _world(1_000, seed=22)
    data.events = None
    t = truth["t"]
    data.outcomes.loc[~t, "clicks"] = 30.0
    e = _estimate(data)
    ue = e.user_effects
    assert np.allclose(ue["ite_lower"][t], data.outcomes["clicks"][t] - 30.0)
    assert np.allclose(ue["ite_upper"][t], ue["ite_lower"][t])
    assert e.diagnostics["individual_intervals"]["users_not_identified"] == 0


@pytest.mark.slow  # 20 worlds of DR-learner fits, 32 s
def test_empty_conformal_sets_at_a_low_level_become_midpoints_and_are_said():
    # at level 0.2 the calibration can narrow the quantile band past zero width: an empty set (a second
    # tester measured 3.5% inverted intervals in this world before the fix); it is kept as the
    # zero-width interval at its midpoint (covering at least as often), never inverted. 20 worlds of
    # 600 Poisson users: realised coverage 0.2 +- 0.03 (its sd over worlds was about 0.03, so the mean
    # of 20 has sd 0.007)
    from counterfeed.analysis.cate_conformal import conformal_intervals

    covered, empty, warned = [], 0, 0
    for r in range(20):
        rng = np.random.default_rng(100 + r)
        n = 600
        x = rng.normal(size=(n, 3))
        seg = (rng.random(n) < 0.3).astype(float)
        x = np.c_[x, seg]
        mu0 = np.exp(2 + 0.5 * x[:, 0])
        mu1 = mu0 * (1 + 0.3 * seg) - 0.5
        y0, y1 = rng.poisson(np.maximum(mu0, 0.1)), rng.poisson(np.maximum(mu1, 0.1))
        t = (rng.random(n) < 0.5).astype(int)
        res = conformal_intervals(x, np.where(t == 1, y1, y0).astype(float), t, np.full(n, 0.5), seg[:, None],
                                  ["segment=niche"], 0.2, r, "s")
        assert np.all(res.lower <= res.upper)
        d = (y1 - y0).astype(float)
        covered.append(np.mean((res.lower <= d) & (d <= res.upper)))
        empty += res.diagnostics["empty_sets"]
        warned += any("conformal sets are empty" in w for w in res.diagnostics["warnings"])
    assert empty > 0 and warned > 0
    assert abs(np.mean(covered) - 0.2) <= 0.03, np.mean(covered)


def test_calibrate_judges_the_band_at_each_estimates_level():
    from counterfeed.calibration.cate_summary import cate_summary

    def rec(level, judged):
        return {"estimates": [{"estimand": "cate", "estimator": "linear-cate", "metric": "clicks",
                               "arm": "treatment", "level": level,
                               "cate": {"pehe": 1.0, "pehe_baseline": 2.0, "ite_coverage": judged,
                                        "ite_coverage_judged": judged, "ite_coverage_treated": judged,
                                        "ite_coverage_control": judged}}]}
    at_half = cate_summary([rec(0.5, 0.51), rec(0.5, 0.49), rec(0.5, 0.30)]).iloc[0]
    assert at_half["ite_in_band"] == pytest.approx(2 / 3)
    at_95 = cate_summary([rec(0.95, 0.93), rec(0.95, 0.99)]).iloc[0]
    assert at_95["ite_in_band"] == pytest.approx(1 / 2) and at_95["ite_coverage_upper"] <= 1.0


def test_cells_whose_propensity_weights_cannot_reach_the_level_fall_back_to_one_calibration():
    # treatment probability 0.9 for x > 1: such a treated user's weight is 9, so a cell's control
    # calibration needs a total weight of at least 19 x 9 = 171; segment b's (about 50) cannot reach it,
    # all users' (about 500) can: one calibration serves instead of null intervals (tester s9 #8)
    data, truth = _world(2_000, seed=24, shares={"a": 0.9, "b": 0.1},
                         propensity=lambda x: np.where(x > 1.0, 0.9, 0.5))
    e = _estimate(data)
    d = e.diagnostics["individual_intervals"]
    assert d["mondrian"] is False and d["weighted"] is True and d["users_not_identified"] == 0
    assert any("the propensity weights left" in w for w in d["warnings"])
    assert 0.91 <= _covered(e, truth["realised"]).mean() <= 0.985
