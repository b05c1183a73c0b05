"""The conformance suite catches broken plugins with messages naming the plugin and the rule."""

from __future__ import annotations

import re

import numpy as np
import pytest

from counterfeed.testing import (RULES, ConformanceError, RecommenderConformance, check_catalog,
                                 check_estimator, check_metric, check_plugin, check_recommender,
                                 check_user_model, parametrize_with_checks, recommender_checks)
from counterfeed.testing.fixtures import make_analysis_data, make_context, make_log, make_world_events
from tests.testing import broken_plugins as bp

# (plugin class, check function, broken rule, message pattern)
BROKEN = [
    (bp.WrongShapeRecommender, check_recommender, "slate_shape",
     r"recommender 'wrong-shape' .*broke rule 'slate_shape'.*shape \(40, 4\).*expected \(40, 5\)"),
    (bp.BadPropensityRecommender, check_recommender, "propensities_valid",
     r"recommender 'bad-propensity' .*broke rule 'propensities_valid'.*in \(0, 1\], got values from 2 to 2"),
    (bp.RaisingUpdateRecommender, check_recommender, "setup_fit_update_empty",
     r"recommender 'raising-update' .*broke rule 'setup_fit_update_empty'.*update raised ValueError: update exploded"),
    (bp.RepeatingRecommender, check_recommender, "no_repeated_items",
     r"recommender 'repeating' .*broke rule 'no_repeated_items'.*shows the same item twice"),
    (bp.BatchDependentRecommender, check_recommender, "batch_independent",
     r"recommender 'batch-dependent' .*broke rule 'batch_independent'.*depends on the other requests"),
    (bp.LyingStochasticRecommender, check_recommender, "propensities_match_frequencies",
     r"recommender 'lying-stochastic' .*'propensities_match_frequencies'.*sum to 1\.8000 > 1"),
    (bp.MiscalibratedStochasticRecommender, check_recommender, "propensities_match_frequencies",
     r"'miscalibrated-stochastic' .*'propensities_match_frequencies'.*propensity 0\.5000 but was shown in \d+ of 1500 draws \(expected 750\.0"),
    (bp.EagerRecommender, check_recommender, "constructor_stores_options",
     r"recommender 'eager' .*'constructor_stores_options'.*learned state \['popularity_'\]"),
    (bp.WarningEstimator, check_estimator, "degenerate_one_user_per_arm",
     r"estimator 'warning-estimator' .*'degenerate_one_user_per_arm'.*emitted a warning: RuntimeWarning"),
    (bp.NotSeparableEstimator, check_estimator, "for_metrics",
     r"estimator 'not-separable' .*'for_metrics'.*for_metrics\(\['impressions'\]\) gives .* the full run .*"
     r"separable_metrics needs the same estimates"),
    (bp.UndeclaredLogEstimator, check_estimator, "returns_estimates",
     r"estimator 'undeclared-log' .*'returns_estimates'.*estimate raised AttributeError"),
    (bp.SilentLogEstimator, check_estimator, "missing_input_is_clear",
     r"estimator 'silent-log' .*'missing_input_is_clear'.*without its declared input data.events estimate still "
     r"returned"),
    (bp.LeakyMetric, check_metric, "respects_window",
     r"metric 'leaky' .*'respects_window'.*uses events outside \[start, end\)"),
    (bp.WrongDimCatalog, check_catalog, "build_shapes",
     r"catalog 'wrong-dim' .*'build_shapes'.*items.vectors has shape \(20, 4\), expected \(20, 6\)"),
    (bp.DwellWithoutClickUser, check_user_model, "clicks_and_dwell",
     r"user-model 'dwell-without-click' .*'clicks_and_dwell'.*dwell must be 0 at positions without a click"),
]


@pytest.mark.parametrize("cls, check, rule, pattern", BROKEN, ids=[b[0].name for b in BROKEN])
def test_broken_plugin_is_caught(cls, check, rule, pattern):
    with pytest.raises(ConformanceError) as info:
        check(cls)
    err = info.value
    assert isinstance(err, AssertionError)
    assert err.plugin == cls.name
    assert rule in err.rules
    assert re.search(pattern, str(err), re.S), str(err)


@pytest.mark.parametrize("cls", [bp.GoodRecommender, bp.HonestStochasticRecommender])
def test_good_recommenders_pass_every_rule(cls):
    status = check_recommender(cls)
    assert set(status) == {r.name for r in RULES["recommender"]}
    stochastic_rule = status["propensities_match_frequencies"]
    assert (stochastic_rule == "passed") == cls.stochastic


def test_only_the_broken_rule_fails():
    with pytest.raises(ConformanceError) as info:
        check_recommender(bp.BadPropensityRecommender)
    # fit_then_recommend validates the whole slate too, so it reports the same problem
    assert set(info.value.rules) == {"propensities_valid", "fit_then_recommend"}
    assert "broke 2 rules" in str(info.value)


def test_instance_and_options():
    rec = bp.GoodRecommender(boost=2.0)
    assert check_recommender(rec)["deterministic"] == "passed"
    with pytest.raises(ConformanceError, match=r"options .*'bost'.*invalid"):
        check_recommender(bp.GoodRecommender, {"bost": 1.0})


def test_conformance_options_are_used_when_none_given():
    assert check_recommender(bp.NeedsOptionsRecommender)["slate_shape"] == "passed"
    with pytest.raises(ConformanceError, match=r"'needs-options'.*mode"):
        check_recommender(bp.NeedsOptionsRecommender, {})


def test_tags_select_the_rules():
    """What a plugin declares selects its rules; there is no opt-out (conformance_skip is refused)."""
    from counterfeed.plugins.estimators.classical import DifferenceInMeans
    from counterfeed.plugins.metrics.engagement import Churned, Clicks

    churned, clicks = check_metric(Churned), check_metric(Clicks)
    assert churned["respects_end"] == "passed" and churned["respects_window"].startswith("skipped: cumulative")
    assert clicks["respects_window"] == "passed" and clicks["respects_end"].startswith("skipped:")
    dim = check_estimator(DifferenceInMeans)
    assert dim["missing_input_is_clear"].startswith("skipped:") and dim["no_global_randomness"].startswith("skipped:")
    assert sum(v == "passed" for v in dim.values()) == len(dim) - 2


def test_third_party_estimator_needing_logs_is_checked():
    status = check_estimator(bp.LogEstimator)
    assert status["missing_input_is_clear"] == "passed"
    # the rules its tags do not select (stochastic, separable_metrics) are skipped
    assert all(v == "passed" for k, v in status.items() if k not in ("no_global_randomness", "for_metrics")), status


def test_conformance_skip_is_refused():
    class Skipped(bp.WrongShapeRecommender):
        name = "all-skipped"
        conformance_skip = "needs a GPU"

    with pytest.raises(ConformanceError, match="declares conformance_skip, which is not supported"):
        check_plugin(Skipped)


def test_checks_list_for_parametrize():
    names = [n for n, _ in recommender_checks()]
    assert names == [r.name for r in RULES["recommender"]]
    check = dict(recommender_checks())["slate_shape"]
    check(bp.GoodRecommender)
    with pytest.raises(ConformanceError, match="slate_shape"):
        check(bp.WrongShapeRecommender)


@parametrize_with_checks([bp.GoodRecommender, bp.HonestStochasticRecommender])
def test_parametrize_with_checks(plugin, check):
    check(plugin)


class TestGoodRecommenderClass(RecommenderConformance):
    plugin_class = bp.GoodRecommender
    options = {"boost": 1.0}


def test_conformance_class_has_one_test_per_rule():
    tests = [n for n in dir(RecommenderConformance) if n.startswith("test_")]
    assert sorted(tests) == sorted(f"test_{r.name}" for r in RULES["recommender"])
    broken = type("TestBroken", (RecommenderConformance,), {"plugin_class": bp.WrongShapeRecommender})()
    with pytest.raises(ConformanceError, match="'wrong-shape'.*slate_shape"):
        broken.test_slate_shape()


def test_conformance_class_without_plugin_class_says_so():
    with pytest.raises(ConformanceError, match="set the class attribute plugin_class"):
        RecommenderConformance().test_slate_shape()


def test_not_a_plugin_is_a_type_error():
    with pytest.raises(TypeError, match="not a counterfeed plugin"):
        check_plugin(object)


class TestFixtures:
    def test_log_shapes_and_sessions(self):
        ctx = make_context()
        log = make_log(ctx, n_requests=50)
        assert len(log) == 50 * ctx.slate_size
        assert log.item.max() < ctx.items.n and (log.propensity > 0).all()
        assert not (log.dwell[~log.click] != 0).any()

    def test_world_events_times_in_range(self):
        ev = make_world_events(n_users=30, start=2.0, end=5.0)
        assert ((ev.sessions["time"] >= 2.0) & (ev.sessions["time"] < 5.0)).all()
        assert np.array_equal(ev.sessions["arm"], ev.assignment[ev.sessions["user"]])

    @pytest.mark.parametrize("case, n", [(None, 400), ("zeros", 400), ("one-per-arm", 2)])
    def test_analysis_data(self, case, n):
        data = make_analysis_data(degenerate=case)
        assert len(data.outcomes) == n
        assert {"clicks", "pre_clicks", "retained", "ctr", "impressions"} <= set(data.outcomes.columns)
        assert data.metrics["ctr"].numerator == "clicks"

    def test_unknown_degenerate_case(self):
        with pytest.raises(ValueError, match="unknown degenerate case"):
            make_analysis_data(degenerate="nope")
