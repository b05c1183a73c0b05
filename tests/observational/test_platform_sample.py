"""benchmarks/observational_platform.py: a study that analyses a random sample of n users of a
simulated platform of K n users, scored against the platform's ATE and the sample's (issue 16)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from counterfeed.core.runner import run
from counterfeed.core.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[2]
N_STUDY, K = 40, 3
SMALL = {"population.users": N_STUDY, "experiment.pre_period": "2d", "experiment.duration": "3d",
         "analysis": [{"estimator": "diff-in-means", "relative": False, "metrics": ["clicks"]}]}


@pytest.fixture(scope="module")
def platform_module():
    spec = importlib.util.spec_from_file_location("observational_platform",
                                                  ROOT / "benchmarks" / "observational_platform.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def study():
    return load_scenario(ROOT / "scenarios" / "observational_selection.yaml").with_overrides(SMALL)


@pytest.fixture(scope="module")
def platform_run(platform_module, study):
    sc = platform_module.platform_scenario(study, K)
    return sc, run(sc, write=False, quiet=True, workers=1, keep_events=True)


def test_the_sample_is_n_distinct_platform_users_keyed_by_the_seed(platform_module):
    a = platform_module.study_sample(11, 600, 60)
    assert a.size == 60 and np.unique(a).size == 60 and a.min() >= 0 and a.max() < 600
    assert np.array_equal(a, np.sort(a))
    assert np.array_equal(a, platform_module.study_sample(11, 600, 60))
    assert not np.array_equal(a, platform_module.study_sample(12, 600, 60))
    with pytest.raises(ValueError, match="cannot be sampled"):
        platform_module.study_sample(11, 50, 60)


def test_the_analysis_sees_exactly_the_sampled_users(platform_module, study, platform_run):
    sc, result = platform_run
    assert sc.population.users == K * N_STUDY and result.manifest["n_users"] == K * N_STUDY
    users = platform_module.study_sample(sc.seed, K * N_STUDY, N_STUDY)
    data, estimators = platform_module.study_data(sc, result, users)
    assert np.array_equal(data.outcomes["user"].to_numpy(), users)
    assert np.array_equal(data.covariates["user"].to_numpy(), users)
    assert data.events is None and data.assignment_probabilities is None
    ab = result.outcomes[result.outcomes["world"] == "ab"].set_index("user").loc[users]
    assert np.array_equal(data.outcomes["clicks"].to_numpy(), ab["clicks"].to_numpy())
    assert [e.name for e in estimators] == ["diff-in-means"]


def test_platform_truth_is_every_users_mean_effect_and_a_replication_is_deterministic(
        platform_module, study, platform_run):
    sc, result = platform_run
    users = platform_module.study_sample(sc.seed, K * N_STUDY, N_STUDY)
    records = platform_module.platform_records(sc, result, users)
    # a second, independent replication under the same seed (its own platform run) is the same
    assert records == platform_module.replicate_platform(study.to_dict(), sc.seed, K)
    ut = result.user_truth
    tau = ut[(ut["metric"] == "clicks") & (ut["arm"] == "treatment")].sort_values("user")
    sampled = tau["realised"].to_numpy()[users]
    by = {r["estimator"]: r for r in records if r["metric"] == "clicks" and r["estimand"] == "difference"
          and r["segment"] is None}
    assert tau["user"].tolist() == list(range(K * N_STUDY))
    assert by["diff-in-means"]["truth"] == pytest.approx(tau["realised"].mean(), abs=1e-9)
    assert by["diff-in-means:vs-sample"]["truth"] == pytest.approx(sampled.mean(), abs=1e-9)
    assert by["truth:sample_minus_platform"]["point"] == pytest.approx(sampled.mean() - tau["realised"].mean(),
                                                                        abs=1e-9)
    s2 = np.var(tau["realised"].to_numpy(), ddof=1)
    assert by["truth:platform_fpc_variance"]["point"] == pytest.approx((1 - 1 / K) * s2 / N_STUDY, rel=1e-9)
    assert by["truth:sampling_variance"]["point"] == pytest.approx(np.var(sampled, ddof=1) / N_STUDY, rel=1e-9)
    # the study's estimate is the difference in means of the sampled users' A/B-world clicks
    ab = result.outcomes[result.outcomes["world"] == "ab"].set_index("user").loc[users]
    means = ab.groupby("arm")["clicks"].mean()
    assert by["diff-in-means"]["point"] == pytest.approx(means["treatment"] - means["control"], abs=1e-9)


def test_only_the_selection_design_can_be_sampled(platform_module, platform_run):
    sc, result = platform_run
    staggered = load_scenario(ROOT / "scenarios" / "staggered_rollout.yaml")
    with pytest.raises(ValueError, match="only built for"):
        platform_module.study_data(staggered, result, np.arange(N_STUDY))
