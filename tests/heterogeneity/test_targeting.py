"""Targeting as an intervention: rules from CATE estimates deployed as worlds, scored against
all-control, all-arm and the oracle; off-policy IPW/DR values with influence-function intervals."""

from __future__ import annotations

import numpy as np
import pytest

from counterfeed.analysis.policy_value import PolicyValue, cross_fit_outcomes, design_value, policy_scores
from counterfeed.core.plugins import get_registry
from counterfeed.core.runner import run
from counterfeed.core.scenario_heterogeneity import TargetingSpec
from counterfeed.core.targeting import ORACLE, rule_treats
from counterfeed.errors import DataError
from tests.conftest import small_scenario
from tests.plugins.cate_fake import HeterogeneityTestPlugin, PresetCate


@pytest.mark.parametrize("spec, improvement, expected", [
    (dict(rule="threshold", threshold=0.0), [0.5, -1.0, 0.0, np.nan, 2.0], [1, 0, 0, 0, 1]),
    (dict(rule="threshold", threshold=1.0), [0.5, -1.0, 0.0, np.nan, 2.0], [0, 0, 0, 0, 1]),
    (dict(rule="top-fraction", fraction=0.4), [0.5, -1.0, 0.7, np.nan, 2.0], [0, 0, 1, 0, 1]),
    (dict(rule="top-fraction", fraction=0.4, threshold=1.0), [0.5, -1.0, 0.7, np.nan, 2.0], [0, 0, 0, 0, 1]),
    (dict(rule="top-fraction", fraction=0.5), [1.0, 1.0, 1.0, 1.0], [1, 1, 0, 0]),  # ties: user order
])
def test_rule_treats(spec, improvement, expected):
    got = rule_treats(np.array(improvement), TargetingSpec(metric="clicks", **spec))
    assert got.astype(int).tolist() == expected


def _experiment(rng, n, tau_scale=1.0):
    x = rng.normal(size=(n, 2))
    arm = (rng.random(n) < 0.5).astype(np.int64)
    mu0 = 1.0 + x[:, 0]
    tau = tau_scale * x[:, 1]
    y = mu0 + arm * tau + rng.normal(size=n)
    return x, arm, y, mu0, tau


def test_ipw_and_dr_intervals_cover_the_true_value_of_a_fixed_rule():
    # 300 randomized experiments of 2,000 users; the rule "treat iff x1 > 0" has value
    # E[mu0] + E[tau 1{x1 > 0}] = 1 + E[x1; x1 > 0] = 1 + 1/sqrt(2 pi). Coverage of 95% intervals over
    # 300 replications has sd 0.0126: [0.91, 0.99] is +-3 sd.
    rng = np.random.default_rng(4)
    truth = 1.0 + 1.0 / np.sqrt(2 * np.pi)
    covered = {"ipw": 0, "dr": 0}
    widths = {"ipw": [], "dr": []}
    for _ in range(300):
        x, arm, y, _, _ = _experiment(rng, 2000)
        rule = (x[:, 1] > 0).astype(np.int64)
        mu = cross_fit_outcomes(x[:, :0], y, arm, 2, 5, rng)  # no covariates: arm means per fold
        s = policy_scores(rule, arm, y, np.full((2000, 2), 0.5), mu)
        for k, v in (("ipw", PolicyValue.from_scores(s.ipw, 0.95)), ("dr", PolicyValue.from_scores(s.dr, 0.95))):
            covered[k] += v.covers(truth)
            widths[k].append(v.upper - v.lower)
    for k in covered:
        assert 0.91 <= covered[k] / 300 <= 0.99, (k, covered[k])
    assert np.mean(widths["dr"]) < np.mean(widths["ipw"])  # the augmentation removes outcome variance


def test_design_based_intervals_cover_the_realised_value_of_fixed_users():
    # one population of 2,000 users with FIXED potential outcomes (noise included); only the
    # assignment is re-drawn, 400 times. The realised value of "treat iff x1 > 0" is the mean of
    # Y_i(rule_i) over these users. The design-based intervals cover it at 95% (sd of the coverage
    # over 400 replications 0.011: [0.91, 0.99] is about +-3.5 sd), while the influence-function
    # intervals (made for the population value) are wider and over-cover; the design-based standard
    # error matches the spread of the estimates (within 15%; the sd of an sd from 400 draws is 3.5%).
    rng = np.random.default_rng(7)
    n = 2000
    x = rng.normal(size=(n, 2))
    y0 = 1.0 + x[:, 0] + rng.normal(size=n)
    y1 = y0 + x[:, 1] + rng.normal(size=n)
    rule = (x[:, 1] > 0).astype(np.int64)
    realised = float(np.where(rule == 1, y1, y0).mean())
    covered = {"dr": 0, "ipw": 0, "dr_if": 0}
    points, ses = [], []
    for _ in range(400):
        arm = (rng.random(n) < 0.5).astype(np.int64)
        y = np.where(arm == 1, y1, y0)
        p = np.full((n, 2), 0.5)
        mu = cross_fit_outcomes(x[:, :0], y, arm, 2, 2, rng)  # no covariates: arm means per fold (fast)
        s = policy_scores(rule, arm, y, p, mu)
        dr = design_value(s.dr, rule, arm, y, p, mu, 0.95)
        covered["dr"] += dr.covers(realised)
        covered["ipw"] += design_value(s.ipw, rule, arm, y, p, None, 0.95).covers(realised)
        covered["dr_if"] += PolicyValue.from_scores(s.dr, 0.95).covers(realised)
        points.append(dr.point)
        ses.append(dr.se)
    assert 0.91 <= covered["dr"] / 400 <= 0.99 and 0.91 <= covered["ipw"] / 400 <= 0.99, covered
    assert covered["dr_if"] > covered["dr"]
    assert np.mean(ses) == pytest.approx(np.std(points, ddof=1), rel=0.15)


def test_cross_fitted_outcome_models_predict_held_out_users():
    rng = np.random.default_rng(1)
    x, arm, y, mu0, tau = _experiment(rng, 3000)
    mu = cross_fit_outcomes(x, y, arm, 2, 3, np.random.default_rng(2))
    # the gradient-boosting fits recover mu_0 = 1 + x0 and mu_1 = mu_0 + x1 (noise sd 1): R^2 of the
    # held-out predictions well above 0.5 (0.67 is the noiseless limit share of the variance)
    for a, target in ((0, mu0), (1, mu0 + tau)):
        r2 = 1 - np.mean((mu[:, a] - target) ** 2) / np.var(target)
        assert r2 > 0.8, (a, r2)
    again = cross_fit_outcomes(x, y, arm, 2, 3, np.random.default_rng(2))
    np.testing.assert_array_equal(mu, again)


def test_a_rule_with_an_impossible_arm_is_not_identified():
    with pytest.raises(DataError, match="not identified"):
        policy_scores(np.array([1, 1]), np.array([0, 0]), np.ones(2), np.array([[1.0, 0.0], [1.0, 0.0]]),
                      np.zeros((2, 2)))


@pytest.fixture
def preset():
    reg = get_registry()
    name = reg.register_plugin(HeterogeneityTestPlugin(), name="test-heterogeneity-plugin")
    try:
        yield PresetCate
    finally:
        PresetCate.predictions = {}
        reg.unregister_plugin(name)


def _targeting_scenario(**more):
    return small_scenario(**{"population.features": {"dimensions": 3},
                             "experiment.arms": {"control": {"recommender": "popularity"},
                                                 "treatment": {"recommender": "random"}},
                             "truth": {"replications": 2}, **more})


def test_the_oracle_estimate_deploys_the_oracle_rule(preset, tmp_path):
    # a stand-in estimator that predicts the true conditional effects makes exactly the oracle rule:
    # its world is the oracle's world, so its value equals the oracle's and its regret is 0
    sc = _targeting_scenario()
    truth = run(sc, write=False).user_truth
    cond = truth[(truth.metric == "clicks")].sort_values("user").conditional.to_numpy()
    preset.predictions = {"clicks": cond}
    sc = _targeting_scenario(analysis=[{"estimator": "test-preset-cate"}, {"estimator": "diff-in-means"}],
                             targeting={"metric": "clicks"})
    res = run(sc, output_dir=tmp_path)
    t = res.manifest["targeting"]
    rules = {r["rule"]: r for r in t["rules"]}
    assert set(rules) == {"test-preset-cate", ORACLE.removeprefix("targeting:")}
    mine, oracle = rules["test-preset-cate"], rules["oracle"]
    assert mine["value"] == oracle["value"] and mine["regret"] == 0.0
    assert mine["treated_share"] == pytest.approx(float(np.mean(cond > 0)))
    world = res.outcomes[res.outcomes.world == "all-control"]
    assert mine["all_control"] == pytest.approx(float(world.clicks.mean()))
    assert mine["gain_vs_control"] == pytest.approx(mine["value"] - mine["all_control"])
    ope = mine["ope"]
    assert ope["dr"]["lower"] <= ope["dr"]["point"] <= ope["dr"]["upper"] and ope["n_covariates"] >= 8
    assert isinstance(ope["dr_covers"], bool)
    from counterfeed.core.report import write_report

    write_report(res.run_dir)
    md = (res.run_dir / "report.md").read_text()
    assert "## Targeting" in md and "test-preset-cate" in md and "Regret vs oracle" in md


def test_with_frozen_models_the_rule_world_repeats_the_experiment_for_matched_users(preset):
    # updates: false freezes the popularity counts: a user's outcome depends only on their own arm, so
    # every user whose experiment arm is the rule's arm has the same outcome in the rule's world, and
    # the realised value is the finite-population estimand of the design-based interval
    sc = _targeting_scenario(**{"experiment.arms": {"control": {"recommender": "popularity", "updates": False},
                                                    "treatment": {"recommender": "random"}},
                                "experiment.retrain_every": None})
    truth = run(sc, write=False).user_truth
    cond = truth[(truth.metric == "clicks")].sort_values("user").conditional.to_numpy()
    preset.predictions = {"clicks": cond}
    res = run(sc.with_overrides({"analysis": [{"estimator": "test-preset-cate"}], "targeting": {"metric": "clicks"}}),
              write=False)
    rule = next(r for r in res.manifest["targeting"]["rules"] if r["rule"] == "test-preset-cate")
    ope = rule["ope"]
    assert ope["matched_identical"] == 1.0
    assert ope["dr_realised"]["point"] == pytest.approx(ope["dr"]["point"])
    assert 0 < ope["dr_realised"]["se"] < ope["dr"]["se"]
    assert isinstance(ope["dr_realised_covers"], bool) and isinstance(ope["ipw_realised_covers"], bool)


@pytest.mark.parametrize("estimator", ["linear-cate"])
def test_without_heterogeneity_targeting_is_no_better_than_treating_everyone(estimator):
    # identical users (no preference spread, one segment): every user has the same conditional effect,
    # so a rule learned from noise cannot beat the better of all-control and all-treatment. With
    # common noise, rule - best = -mean(1{rule gives the worse arm} * realised effect), whose sd is at
    # most sd(realised)/sqrt(n): the tolerance is 3 of those.
    sc = _targeting_scenario(**{"population.heterogeneity": 0.0, "population.users": 600,
                                "analysis": [{"estimator": estimator, "metrics": ["clicks"]}],
                                "targeting": {"metric": "clicks"}})
    res = run(sc, write=False)
    t = res.manifest["targeting"]
    rule = next(r for r in t["rules"] if r["rule"] == estimator)
    truth = res.user_truth[res.user_truth.metric == "clicks"].sort_values("user")
    realised = truth.realised
    tol = 3 * realised.std() / np.sqrt(len(realised))
    assert rule["value"] <= max(rule["all_control"], rule["all_arm"]) + tol
    assert not rule["beats_both"] or rule["value"] - max(rule["all_control"], rule["all_arm"]) <= tol
    # and the estimator's decile calibration in this simulated world is flat: the true (realised) mean
    # effect per decile of the predicted effect within 3.3 standard errors of the overall mean (a
    # two-sided 0.1% band per decile), the deciles' chi-square not significant at 0.1%
    from counterfeed.analysis.cate_scores import score_cate

    cate = next(e for e in res.estimates if e.estimand == "cate" and e.estimator == estimator)
    ue = cate.user_effects.set_index("user").loc[truth.user.to_numpy()].reset_index()
    s, _ = score_cate(ue, truth.realised.to_numpy())
    for d in s["deciles"]:
        assert abs(d["true"] - s["true_average"]) <= 3.3 * d["true_se"], d
    assert s["calibration_chi2_p"] > 1e-3, s["calibration_chi2_p"]
