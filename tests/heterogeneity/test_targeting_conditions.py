"""Targeting and CATE inputs whose stated conditions fail (tester: targeting/CATE defects 1-3):

1. the design-based "DR, these users" interval is for the rule's realised value only when every user
   who had the rule's arm in the experiment has the same outcome in the rule's world
   (``matched_identical`` = 1); with interference through training/updates it is not scored
   (``*_realised_covers`` null, ``realised_valid`` false), the rule warns and the report says so;
2. ``validate`` (and ``run`` before simulating) rejects a ``targeting.metric`` that no CATE estimator
   analyses, instead of a run with the oracle rule only;
3. a declared segment that draws no user is an unidentified level (warned, as with 1 user), not a
   run that fails with "'segment' is not a covariate".
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from counterfeed.core.plan import resolve
from counterfeed.core.population import build_population
from counterfeed.core.randomness import Keys
from counterfeed.core.runner import run
from counterfeed.core.scenario import load_scenario
from counterfeed.errors import DataError, ScenarioError
from counterfeed.plugins.estimators.cate import CausalForestCATE, DRLearnerCATE, LinearInteractionCATE
from counterfeed.plugins.targeting_report import targeting_rows
from counterfeed.testing.cate_data import make_cate_data
from tests.conftest import cli, small_scenario

TARGETING = Path(__file__).resolve().parents[2] / "scenarios" / "targeting.yaml"


def _targeting(**more):
    return small_scenario(**{"population.features": {"dimensions": 3},
                             "experiment.arms": {"control": {"recommender": "popularity"},
                                                 "treatment": {"recommender": "random"}},
                             "truth": {"replications": 2},
                             "analysis": [{"estimator": "linear-cate", "metrics": ["clicks"]}],
                             "targeting": {"metric": "clicks"}, **more})


# ------------------------------------------------------------------------------------------------
# 1. the realised-value interval's condition
# ------------------------------------------------------------------------------------------------

def test_with_interference_the_realised_value_interval_is_not_scored_and_warns(tmp_path):
    # both arms update online (the popularity counts, matrix factorization) and retrain daily: a user's
    # outcome depends on the other users' arms, so matched users differ in the rule's world (< 1)
    sc = _targeting(**{"experiment.arms": {"control": {"recommender": "popularity", "updates": True},
                                           "treatment": {"recommender": "matrix-factorization", "factors": 8,
                                                         "updates": True}}})
    res = run(sc, output_dir=tmp_path)
    rules = res.manifest["targeting"]["rules"]
    assert {r["rule"] for r in rules} == {"linear-cate", "oracle"}
    for r in rules:
        ope = r["ope"]
        assert ope["matched_identical"] < 1.0, r["rule"]
        assert ope["realised_valid"] is False
        assert ope["dr_realised_covers"] is None and ope["ipw_realised_covers"] is None
        assert "matched_identical" in ope["realised_note"] and "interference" in ope["realised_note"]
        warn = [w for w in r["warnings"] if w.startswith("DR, THESE USERS NOT VALID")]
        assert len(warn) == 1 and f"{ope['matched_identical']:.3g}" in warn[0]
        # the influence-function interval is still reported (for the population value)
        assert ope["dr"]["lower"] <= ope["dr"]["point"] <= ope["dr"]["upper"]
    # the report's table shows no interval and no coverage for "DR, these users", and the warning
    for row in targeting_rows(res.manifest["targeting"]):
        assert row[-2][0].startswith("not valid") and row[-1][0] == "—"
    from counterfeed.core.report import write_report

    write_report(res.run_dir)
    md = (res.run_dir / "report.md").read_text()
    assert md.count("DR, THESE USERS NOT VALID") == len(rules)
    assert "not valid (matched_identical" in md


def test_with_frozen_models_the_realised_value_interval_is_scored_without_a_warning():
    sc = _targeting(**{"experiment.arms": {"control": {"recommender": "popularity", "updates": False},
                                           "treatment": {"recommender": "random"}},
                       "experiment.retrain_every": None})
    res = run(sc, write=False)
    for r in res.manifest["targeting"]["rules"]:
        ope = r["ope"]
        assert ope["matched_identical"] == 1.0 and ope["realised_valid"] is True
        assert isinstance(ope["dr_realised_covers"], bool) and "realised_note" not in ope
        assert not any("NOT VALID" in w for w in r["warnings"])
    rows = targeting_rows(res.manifest["targeting"])
    assert all(row[-2][0].count("[") == 1 and row[-1][0] in ("yes", "no") for row in rows)


# ------------------------------------------------------------------------------------------------
# 2. a targeting metric no CATE estimator analyses
# ------------------------------------------------------------------------------------------------

def test_a_targeting_metric_no_cate_estimator_analyses_is_rejected_at_validate(capsys):
    with pytest.raises(ScenarioError, match=r"targeting.metric: no CATE estimator analyses 'sessions' "
                                            r"\(dr-learner, linear-cate analyse: clicks\)"):
        resolve(load_scenario(TARGETING).with_overrides({"targeting.metric": "sessions"}))
    rc, out, err = cli(capsys, "validate", str(TARGETING), "--set", "targeting.metric=sessions")
    assert rc == 2 and "ok:" not in out
    assert "targeting.metric: no CATE estimator analyses 'sessions'" in err and err.count("\n") == 1
    # an estimator without a `metrics` option analyses every per-user metric, sessions included
    resolve(load_scenario(TARGETING).with_overrides({
        "analysis": [{"estimator": "linear-cate", "modifiers": ["segment"]}], "targeting.metric": "sessions"}))


def test_run_rejects_it_before_simulating(tmp_path):
    sc = _targeting(**{"targeting.metric": "sessions"})
    with pytest.raises(ScenarioError, match="no CATE estimator analyses 'sessions' .linear-cate analyses: clicks."):
        run(sc, output_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_a_named_estimator_that_does_not_analyse_the_metric_is_rejected():
    sc = load_scenario(TARGETING).with_overrides({
        "analysis": [{"estimator": "dr-learner", "metrics": ["clicks"], "modifiers": ["segment"]},
                     {"estimator": "linear-cate", "metrics": ["dwell"], "modifiers": ["segment"]}],
        "targeting.estimators": ["dr-learner", "linear-cate"]})
    with pytest.raises(ScenarioError, match=r"targeting.estimators\[1\]: 'linear-cate' does not analyse 'clicks' "
                                            r"\(its metrics: dwell\)"):
        resolve(sc)
    with pytest.raises(ScenarioError, match=r"no CATE estimator analyses 'clicks' \(dr-learner analyses: dwell; "
                                            r"linear-cate analyses: sessions\)"):
        resolve(sc.with_overrides({"analysis": [{"estimator": "dr-learner", "metrics": ["dwell"]},
                                                {"estimator": "linear-cate", "metrics": ["sessions"]}],
                                   "targeting.estimators": None}))


# ------------------------------------------------------------------------------------------------
# 3. a declared segment that draws no user
# ------------------------------------------------------------------------------------------------

SEGMENTS = {"mainstream": {"share": 0.995}, "niche": {"share": 0.005}}


def _segmented(seed):
    return _targeting(**{"seed": seed, "population.segments": SEGMENTS,
                         "analysis": [{"estimator": "linear-cate", "metrics": ["clicks"], "modifiers": ["segment"]},
                                      {"estimator": "dr-learner", "metrics": ["clicks"], "modifiers": ["segment"],
                                       "nuisance_iterations": 20}]})


def _niche_users(sc):
    p = build_population(sc.population, Keys(sc.seed))
    return int(np.sum(p.segment == p.segment_names.index("niche")))


def test_a_segment_that_draws_no_user_is_not_identified_like_one_with_one_user():
    # seed 2 draws no niche user of 300, seed 1 draws one (documented: NOT IDENTIFIED, nulled); both run
    for seed, niche in ((2, 0), (1, 1)):
        sc = _segmented(seed)
        assert _niche_users(sc) == niche
        resolve(sc)  # validate accepts it: the run below works
        res = run(sc, write=False)
        for e in (e for e in res.estimates if e.estimand == "cate"):
            d = e.diagnostics
            assert d["users_not_identified"] == niche
            assert "segment=niche" in d["unused_modifiers"] and "segment=niche" not in d["effect_modifiers"]
            warns = [w for w in d["warnings"] if w.startswith("NOT IDENTIFIED") and "segment 'niche'" in w]
            assert len(warns) == 1
            if niche == 0:
                assert "drew no users of 300 (share 0.005)" in warns[0]
            assert any(w.startswith("NO EFFECT MODIFIER") for w in d["warnings"])
            assert int(e.user_effects["point"].notna().sum()) == 300 - niche  # every mainstream user has one
            assert np.isfinite(e.point)
        assert {r["rule"] for r in res.manifest["targeting"]["rules"]} == {"linear-cate", "dr-learner", "oracle"}


@pytest.mark.parametrize("cls", [LinearInteractionCATE, DRLearnerCATE, CausalForestCATE])
def test_an_empty_declared_segment_keeps_its_indicator_in_the_estimator(cls):
    data = make_cate_data(300, seed=3).data
    for frame in (data.outcomes, data.covariates):
        frame["segment"] = "new"  # the declared level 'loyal' drew no user
    opts = {"modifiers": ["segment", "feature_0"], "nuisance_iterations": 20}
    if cls is CausalForestCATE:
        opts["n_estimators"] = 40
    est = cls(opts)
    with pytest.raises(DataError, match=r"modifiers: 'segment' has one level among the users \(new\)"):
        est.estimate(data)  # without the scenario's segments: a clear error, not "'segment' is not a covariate"
    sc = small_scenario(**{"population.segments": {"loyal": {"share": 0.3}, "new": {"share": 0.7}},
                           "population.features": {"dimensions": 2}})
    est.check_metrics(sc, data.metrics)  # as validate and run do
    e = next(e for e in est.estimate(data) if e.estimand == "cate")
    assert "segment=loyal" in e.diagnostics["covariates"] and "segment=loyal" in e.diagnostics["unused_modifiers"]
    assert e.diagnostics["effect_modifiers"] == ["feature_0"]
    assert any("segment 'loyal' drew no users of 300 (share 0.3)" in w for w in e.diagnostics["warnings"])
    assert e.user_effects["point"].notna().all() and e.diagnostics["users_not_identified"] == 0
