"""Identical arms give identical per-user outcomes in every world (issue 14, item 2).

The recommender here is built to notice a single missing or extra training row: its slates are a
rotation of the catalog by a fingerprint of everything it was fitted and updated on (rows and
clicks). So two arms get the same per-user sessions only if their models saw exactly the same data at
the same moments.

The randomized built-ins (random, epsilon-greedy, thompson, matrix factorization's random init and
exploration) draw on policy streams and seeds keyed by the arm's canonical recommender configuration
(``plan.arm_key``), never its name; the second half runs them as two and three identical arms.
"""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from counterfeed.core.contracts import Batch, CatalogContext, Log, Recommender, Slates
from counterfeed.core.experiment import FixedAssignment, assign, everyone_on
from counterfeed.core.population import build_population
from counterfeed.core.randomness import Keys
from counterfeed.core.runner import WorldTask, resolve, simulate_world
from counterfeed.core.simulation import SimWorld, WorldConfig
from counterfeed.core.scenario import Scenario
from tests.conftest import SMALL, small_scenario

COLUMNS = ("session", "time", "clicks", "dwell", "churned")


class Fingerprint(Recommender):
    """Deterministic slates that depend on every row the model has seen (test only)."""

    name = "test-fingerprint"

    def setup(self, ctx):
        super().setup(ctx)
        self.rows_, self.clicks_ = 0, 0

    def fit(self, log: Log) -> None:
        self.rows_, self.clicks_ = len(log), int(np.sum(log.click))

    def update(self, feedback: Log) -> None:
        self.rows_ += len(feedback)
        self.clicks_ += int(np.sum(feedback.click))

    def recommend(self, batch: Batch) -> Slates:
        n_items = self.ctx_.items.n
        offset = (self.rows_ * 31 + self.clicks_ * 7) % n_items
        k = min(batch.slate_size, n_items)
        items = (offset + 3 * batch.users[:, None] + np.arange(k)[None, :]) % n_items
        return Slates(items=items.astype(np.int64), propensities=np.ones(items.shape))


@pytest.fixture(scope="module")
def parts():
    sc = small_scenario(**{"population.users": 60, "catalog.items": 40})
    plan = resolve(sc)
    keys = Keys(sc.seed)
    items = plan.catalog().build(CatalogContext(keys=keys, stream=keys.stream("catalog"), dimensions=8))
    assert not np.any(items.arrival > 0)  # the fingerprint slates ignore availability
    return plan, keys, items, build_population(sc.population, keys)


def _sessions(parts, arms, assignment, training, pre, window, retrain):
    plan, keys, items, pop = parts
    cfg = WorldConfig(name="w", arms=arms, control=0, assignment=None, pre_period=pre, duration=2.0,
                      batch_window=window, retrain_every=retrain, slate_size=4, training=training)
    world = SimWorld(cfg, items, pop, keys, plan.user_model(), lambda arm: Fingerprint(), assignment)
    s = world.run().sessions
    order = np.lexsort((s["session"], s["user"]))
    return {c: s[c][order] for c in ("user",) + COLUMNS}


def _assert_same(a, b, what):
    for c in ("user",) + COLUMNS:
        assert np.array_equal(a[c], b[c]), f"{what}: per-user sessions differ in '{c}'"


@settings(max_examples=16, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@example(training="own", pre=0.5, window=1 / 24, retrain=None, n_arms=2, salt="a")   # window ends at the
@example(training="weighted", pre=1.0, window=1 / 12, retrain=0.5, n_arms=3, salt="b")  # pre-period end
@example(training="weighted", pre=0.7, window=0.3, retrain=0.35, n_arms=3, salt="c")  # window straddles it
@example(training="pooled", pre=0.7, window=0.25, retrain=0.5, n_arms=2, salt="a")
@given(training=st.sampled_from(["own", "pooled", "weighted"]),
       pre=st.sampled_from([0.0, 0.5, 1.0, 0.7]),
       window=st.sampled_from([1 / 24, 1 / 12, 0.3, 0.25]),
       retrain=st.sampled_from([None, 0.5, 0.35, 1.0]),
       n_arms=st.integers(2, 3), salt=st.sampled_from(["a", "b", "c"]))
def test_identical_arms_give_identical_per_user_outcomes_in_every_world(parts, training, pre, window,
                                                                         retrain, n_arms, salt):
    arms = ["control", "t1", "t2"][:n_arms]
    n = parts[3].n
    run = lambda assignment: _sessions(parts, arms, assignment, training, pre, window, retrain)  # noqa: E731
    # counterfactual worlds: everyone on one arm; identical arms give identical worlds
    worlds = [run(everyone_on(arms, a, n)) for a in arms]
    for a, w in zip(arms[1:], worlds[1:]):
        _assert_same(worlds[0], w, f"all-control vs all-{a} ({training})")
    # the A/B world does not depend on which identical arm holds which users
    split = {a: 1.0 / n_arms for a in arms}
    arm_of = assign(n, split, salt, 7)
    ab = run(FixedAssignment(arms, arm_of, np.full(n_arms, 1.0 / n_arms)))
    shifted = (arm_of + 1) % n_arms
    _assert_same(ab, run(FixedAssignment(arms, shifted, np.full(n_arms, 1.0 / n_arms))),
                 f"A/B world with the arms' users permuted ({training})")
    if training == "pooled":  # every arm learns from every impression: the A/B world is the full world
        _assert_same(ab, worlds[0], "pooled A/B world vs all-control")


RANDOMIZED = [{"recommender": "random"}, {"recommender": "epsilon-greedy"}, {"recommender": "thompson"},
              {"recommender": "matrix-factorization", "epochs": 2, "exploration": "epsilon"}]


def _world_outcomes(sc, world):
    plan = resolve(sc)
    keys = Keys(sc.seed)
    items = plan.catalog().build(CatalogContext(keys=keys, stream=keys.stream("catalog"), dimensions=8))
    out = simulate_world(WorldTask(sc, world, items, build_population(sc.population, keys)))
    return out.outcomes.drop(columns=["world", "arm"]).sort_values("user").reset_index(drop=True)


#: every training regime with and without a pre-period (two arms), and three arms on the regime whose
#: training mixes the arms' logs most (weighted, with a pre-period)
REGIMES = ([(("control", "treatment"), t, p) for t in ("own", "pooled", "weighted") for p in ("0d", "1d")]
           + [(("control", "b", "c"), "weighted", "1d")])


@pytest.mark.parametrize("arm", RANDOMIZED, ids=lambda a: a["recommender"])
@pytest.mark.parametrize("names,training,pre", REGIMES,
                         ids=[f"{len(n)}-{t}-pre{p}" for n, t, p in REGIMES])
def test_identical_randomized_arms_have_identical_worlds_and_zero_true_effect(arm, names, training, pre):
    """Before the fix the tester's aa2.yaml (300 users, 4 days) had a true effect of -0.217 clicks/user
    for random, +0.287 for thompson: the policy streams were keyed by the arm's name. Issue 14: identical
    arms give identical per-user outcomes in all worlds for every training regime, with and without a
    pre-period."""
    spec = copy.deepcopy(SMALL)
    spec["population"]["users"], spec["catalog"]["items"] = 80, 40
    spec["experiment"].update(arms={a: dict(arm) for a in names}, duration="2d", pre_period=pre,
                              training=training)
    sc = Scenario.from_dict(spec)
    worlds = [_world_outcomes(sc, f"all-{a}") for a in names]
    assert worlds[0]["clicks"].sum() > 0
    for a, w in zip(names[1:], worlds[1:]):
        pd.testing.assert_frame_equal(worlds[0], w, obj=f"all-{names[0]} vs all-{a}")


def test_an_arm_that_spells_out_its_defaults_is_the_same_arm():
    """Spelling out a default (or writing 16.0 for 16) is the same configuration: the same random
    identity, so the same draws (before, the key was the options as written: 'warm_epochs: null'
    gave matrix factorization other initial factors and another policy)."""
    spec = copy.deepcopy(SMALL)
    spec["population"]["users"], spec["catalog"]["items"] = 80, 40
    plain = {"recommender": "matrix-factorization", "exploration": "epsilon"}
    spelled = {"recommender": "matrix-factorization", "exploration": "epsilon", "epochs": 4, "factors": 16.0,
               "warm_epochs": None, "epsilon": 0.1}
    spec["experiment"].update(arms={"control": plain, "treatment": spelled}, duration="2d", pre_period="0d")
    sc = Scenario.from_dict(spec)
    keys = resolve(sc).arm_keys()
    assert keys[0] == keys[1]
    other = copy.deepcopy(spec)
    other["experiment"]["arms"]["treatment"]["epochs"] = 3  # not a default: another arm
    assert len(set(resolve(Scenario.from_dict(other)).arm_keys())) == 2
    worlds = [_world_outcomes(sc, f"all-{a}") for a in ("control", "treatment")]
    assert worlds[0]["clicks"].sum() > 0
    pd.testing.assert_frame_equal(worlds[0], worlds[1])


def test_a_re_ranker_whose_base_spells_out_its_defaults_is_the_same_arm():
    """The wrapped recommender's options are made canonical with its own model (tester: base_options
    {epochs: 4, factors: 16.0} drew differently from none, a nonzero A/A truth)."""
    spec = copy.deepcopy(SMALL)
    plain = {"recommender": "mmr", "base": "matrix-factorization"}
    spelled = {"recommender": "mmr", "base": "matrix-factorization", "base_options": {"epochs": 4, "factors": 16.0}}
    spec["experiment"].update(arms={"control": plain, "treatment": spelled})
    keys = resolve(Scenario.from_dict(spec)).arm_keys()
    assert keys[0] == keys[1]
    spec["experiment"]["arms"]["treatment"]["base_options"]["epochs"] = 3  # another base: another arm
    assert len(set(resolve(Scenario.from_dict(spec)).arm_keys())) == 2


def test_arms_that_name_the_same_encoder_differently_are_the_same_arm():
    """The text recommenders' encoder aliases (``MiniLM``, ``all-MiniLM-L6-v2``, the hub name, a
    mapping with nothing but the model or nothing at all, the default left out) are one configuration, so one random
    identity; another encoder (``hashing``) is another arm (tester of 2026-12-01: the aliases were
    compared as written)."""
    spec = copy.deepcopy(SMALL)
    spec["catalog"] = {"plugin": "synthetic-text", "items": 40, "topics": 4, "embedder": "hashing"}
    same = [{"recommender": "text-embedding"},
            {"recommender": "text-embedding", "embedder": "MiniLM"},
            {"recommender": "text-embedding", "embedder": "all-MiniLM-L6-v2"},
            {"recommender": "text-embedding", "embedder": {"model": "sentence-transformers/all-MiniLM-L6-v2"}},
            {"recommender": "text-embedding", "embedder": {}},
            {"recommender": "text-two-tower", "model": "MiniLM"},
            {"recommender": "text-two-tower"}]
    spec["experiment"].update(arms={f"a{i}": arm for i, arm in enumerate(same)}, split=None)
    keys = resolve(Scenario.from_dict(spec)).arm_keys()
    assert keys[0] == keys[1] == keys[2] == keys[3] == keys[4] and keys[5] == keys[6]
    spec["experiment"]["arms"]["a1"]["embedder"] = "hashing"
    spec["experiment"]["arms"]["a3"]["embedder"] = {"model": "minilm", "batch_size": 8}
    keys = resolve(Scenario.from_dict(spec)).arm_keys()
    assert len({keys[0], keys[1], keys[3]}) == 3
