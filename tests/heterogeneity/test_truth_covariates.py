"""Covariates an analyst would have: pre-period activity, tenure, segment and observable features,
filled by the runner for every estimator; never the latent preferences."""

from __future__ import annotations

import numpy as np
import pytest

from counterfeed.core.covariates import COVARIATE_COLUMNS, covariate_matrix, observable_features
from counterfeed.core.plugins import get_registry
from counterfeed.core.population import build_population
from counterfeed.core.randomness import Keys
from counterfeed.core.runner import run
from counterfeed.core.scenario_heterogeneity import FeaturesSpec
from tests.conftest import small_scenario
from tests.plugins.cate_fake import CovariateRecorder, HeterogeneityTestPlugin


@pytest.fixture
def recorder():
    reg = get_registry()
    name = reg.register_plugin(HeterogeneityTestPlugin(), name="test-heterogeneity-plugin")
    CovariateRecorder.seen.clear()
    try:
        yield CovariateRecorder
    finally:
        reg.unregister_plugin(name)


def test_runner_fills_pre_treatment_covariates(recorder):
    sc = small_scenario(**{"analysis": [{"estimator": "test-covariate-recorder"}],
                           "population.features": {"dimensions": 3, "noise": 0.5}})
    res = run(sc, write=False, keep_events=True)
    cov, outcomes = recorder.seen[0]
    assert list(cov.columns) == COVARIATE_COLUMNS + ["feature_0", "feature_1", "feature_2"]
    assert np.array_equal(cov.user.to_numpy(), outcomes.user.to_numpy())
    assert list(cov.segment) == list(outcomes.segment)
    # the pre-period columns are the pre-period metrics of the same users
    for m in ("sessions", "impressions", "clicks", "dwell"):
        np.testing.assert_allclose(cov[f"pre_{m}"], outcomes[f"pre_{m}"], rtol=1e-12)
    assert ((cov.tenure >= 0) & (cov.tenure <= sc.experiment.pre_period)).all()
    assert (cov.tenure[cov.pre_sessions == 0] == 0).all() and (cov.tenure[cov.pre_sessions > 0] > 0).all()
    expected_ctr = np.where(cov.pre_impressions > 0, cov.pre_clicks / cov.pre_impressions.clip(lower=1), 0)
    np.testing.assert_allclose(cov.pre_ctr, expected_ctr)
    # the pre-period is the same in every world (everyone on the control): pre-treatment
    ev = res.events["all-treatment"]
    pre = ev.sessions["time"] < sc.experiment.pre_period
    assert np.bincount(ev.sessions["user"][pre], minlength=300).sum() == cov.pre_sessions.sum()


def test_features_are_a_noisy_projection_of_the_preferences_never_the_preferences():
    sc = small_scenario(**{"population.users": 4000, "population.dimensions": 8})
    pop = build_population(sc.population, Keys(3))
    exact = observable_features(pop, FeaturesSpec(dimensions=4, noise=0.0), Keys(3))
    noisy = observable_features(pop, FeaturesSpec(dimensions=4, noise=0.5), Keys(3))
    np.testing.assert_allclose(exact.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(exact.std(axis=0), 1, atol=1e-12)
    # exact features are linear in the preferences (R^2 = 1); noise 0.5 leaves R^2 = 1/1.25 = 0.8
    # (+-0.02: 4,000 users)
    for f, r2 in ((exact, 1.0), (noisy, 0.8)):
        coef, *_ = np.linalg.lstsq(pop.preferences, f, rcond=None)
        resid = f - pop.preferences @ coef
        got = 1 - resid.var(axis=0) / f.var(axis=0)
        np.testing.assert_allclose(got, r2, atol=0.02)
    assert noisy.shape == (4000, 4) and not np.array_equal(noisy[:, :1], pop.preferences[:, :1])
    np.testing.assert_array_equal(noisy, observable_features(pop, FeaturesSpec(dimensions=4, noise=0.5), Keys(3)))


def test_covariate_matrix_one_hot_segments():
    import pandas as pd

    cov = pd.DataFrame({"user": [0, 1, 2], "segment": ["b", "a", "b"], "pre_clicks": [1.0, 2.0, 3.0]})
    x = covariate_matrix(cov)
    assert x.shape == (3, 2) and list(x[:, 1]) == [1.0, 0.0, 1.0]
