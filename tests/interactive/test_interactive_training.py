"""Training-data regimes (own, pooled, weighted) and the interference-bias diagnostic."""

import numpy as np
import pytest

from counterfeed.core.contracts import Batch, Log, Recommender, Slates
from counterfeed.core.experiment import assign
from counterfeed.core.population import build_population
from counterfeed.core.randomness import Keys
from counterfeed.core.runner import resolve, run
from counterfeed.core.scenario import load_scenario
from counterfeed.core.simulation import SimWorld, WorldConfig
from counterfeed.plugins.recommenders._slates import uniform_slates
from tests.conftest import small_scenario


class Recorder(Recommender):
    """Random slates; remembers the arm labels of every row it is given (test only)."""

    name = "test-recorder"

    def setup(self, ctx):
        super().setup(ctx)
        self.fits_: list[np.ndarray] = []
        self.updates_: list[tuple[float, np.ndarray, np.ndarray, np.ndarray]] = []

    def fit(self, log: Log) -> None:
        # experiment-period rows only: a request made just before the pre-period ends can be served
        # (and logged with its request time) after the switch
        self.fits_.append(np.asarray(log.arm)[log.time >= 2.0].copy())

    def update(self, feedback: Log) -> None:
        if len(feedback):
            self.updates_.append((float(feedback.time.max()), np.asarray(feedback.arm).copy(),
                                  feedback.user.copy(), feedback.position.copy()))

    def recommend(self, batch: Batch) -> Slates:
        return uniform_slates(batch, self.ctx_.items.n)


def _world(training: str, split=(0.5, 0.5), users=400):
    sc = small_scenario(**{"population.users": users})
    plan = resolve(sc)
    keys = Keys(sc.seed)
    from counterfeed.core.contracts import CatalogContext

    items = plan.catalog().build(CatalogContext(keys=keys, stream=keys.stream("catalog"), dimensions=8))
    pop = build_population(sc.population, keys)
    assignment = assign(pop.n, {"control": split[0], "treatment": split[1]}, "t", sc.seed)
    cfg = WorldConfig(name="ab", arms=["control", "treatment"], control=0, assignment=assignment,
                      pre_period=2.0, duration=3.0, batch_window=1 / 12, retrain_every=1.0, slate_size=5,
                      training=training)
    world = SimWorld(cfg, items, pop, keys, plan.user_model(), lambda arm: Recorder())
    world.run()
    return world, assignment


def test_own_and_pooled_feed_the_expected_arms():
    own, _ = _world("own")
    pooled, _ = _world("pooled")
    for arm in (0, 1):
        exp_updates = [u for u in own.policies[arm].updates_ if u[0] > 2.0]
        assert exp_updates and all(np.all(a == arm) for _, a, _, _ in exp_updates)
        # each retraining log: the pre-period plus the arm's own experiment rows only
        assert all(set(np.unique(f).tolist()) <= {arm} for f in own.policies[arm].fits_)
    both = [set(np.unique(a)) for t, a, _, _ in pooled.policies[1].updates_ if t > 2.0]
    assert {0, 1} in both


@pytest.mark.parametrize("split", [(0.5, 0.5), (0.8, 0.2)])
def test_weighted_repeats_own_rows_by_one_over_the_share(split):
    world, assignment = _world("weighted", split)
    shares = np.bincount(assignment, minlength=2) / assignment.size
    for arm in (0, 1):
        w = 1.0 / shares[arm]
        rows = [(a.size, np.unique(np.stack([u, p]), axis=1).shape[1])
                for t, a, u, p in world.policies[arm].updates_ if t > 2.0]
        given = sum(r[0] for r in rows)
        distinct = sum(r[1] for r in rows)
        # stochastic rounding: E[copies] = w per impression; over thousands of impressions the
        # relative error of the total is well below 2% (Bernoulli sd <= 0.5 per row)
        assert given / distinct == pytest.approx(w, rel=0.02)
        # the last retraining: pre-period rows once, experiment rows ~w times
        last = world.policies[arm].fits_[-1]
        assert last.size > 0


def test_weighted_is_reproducible():
    a, _ = _world("weighted", (0.7, 0.3), users=200)
    b, _ = _world("weighted", (0.7, 0.3), users=200)
    assert [x[1].size for x in a.policies[1].updates_] == [x[1].size for x in b.policies[1].updates_]


def test_interference_bias_is_estimate_minus_truth_for_differences():
    res = run(small_scenario(**{"experiment.training": "pooled"}), write=False, workers=1)
    diffs = [e for e in res.estimates if e.estimand == "difference" and e.truth is not None]
    assert diffs
    for e in diffs:
        assert e.diagnostics["interference_bias"] == pytest.approx(e.point - e.truth)
    assert all("interference_bias" not in e.diagnostics for e in res.estimates if e.estimand == "relative")
    assert res.manifest["training"] == "pooled"


def test_pooled_training_biases_the_ab_estimate_and_weighting_removes_most_of_it():
    """The interference scenario at 800 users: one seed; the pooled bias (about -10 clicks per
    user at 1,500 users) is more than 15 standard errors, so the comparison cannot flip by chance."""
    sc = load_scenario("scenarios/interference_pooled.yaml").with_overrides(
        {"population.users": 800, "experiment.duration": "5d", "metrics": ["clicks"]})
    bias = {}
    for regime in ("pooled", "weighted"):
        res = run(sc.with_overrides({"experiment.training": regime}), write=False, workers=1)
        e = next(e for e in res.estimates if e.metric == "clicks" and e.estimand == "difference")
        bias[regime] = (e.diagnostics["interference_bias"], (e.upper - e.lower) / 3.92)
    pooled, se = bias["pooled"]
    assert abs(pooled) > 6 * se
    assert abs(bias["weighted"][0]) < 0.5 * abs(pooled)
