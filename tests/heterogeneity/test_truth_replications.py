"""The per-user conditional effect from R noise replications: same population and catalog, new noise;
identical whichever executor ran the worlds."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pandas as pd
import pytest

from counterfeed.core.executors import get_executor
from counterfeed.core.plan import resolve
from counterfeed.core.population import build_population
from counterfeed.core.randomness import Keys
from counterfeed.core.runner import WorldTask, run, simulate_world
from counterfeed.core.user_truth import (ReplicationKeys, conditional_effects, replication_worlds,
                                         split_replication, user_effects)
from counterfeed.errors import ScenarioError
from tests.conftest import small_scenario

R = 3


def test_replication_keys_keep_population_and_catalog_and_rekey_the_noise():
    base, rep = Keys(5), ReplicationKeys(5, 2)
    users = np.arange(50)
    for name in ("population:segment", "population:preference", "population:text", "catalog"):
        assert np.array_equal(base.stream(name).uniform(users), rep.stream(name).uniform(users))
    assert base.derive_seed("catalog", "synthetic") == rep.derive_seed("catalog", "synthetic")
    for name in ("user:choice", "user:visit", "policy:treatment", "training:weight"):
        a, b = base.stream(name).uniform(users), rep.stream(name).uniform(users)
        assert not np.any(a == b)
    assert base.derive_seed("mf", "a", 0) != rep.derive_seed("mf", "a", 0)
    assert not np.array_equal(ReplicationKeys(5, 1).stream("user:choice").uniform(users),
                              rep.stream("user:choice").uniform(users))
    with pytest.raises(ValueError):
        ReplicationKeys(5, 0)


def test_world_names_round_trip():
    names = replication_worlds(["a", "b"], 2)
    assert names == ["all-a@r1", "all-b@r1", "all-a@r2", "all-b@r2"]
    assert [split_replication(n) for n in names][1] == ("all-b", 1)
    assert split_replication("all-b") == ("all-b", 0) and split_replication("ab") == ("ab", 0)


def _parquet_digest(frame: pd.DataFrame) -> str:
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    return hashlib.sha256(buf.getvalue()).hexdigest()


def test_run_fills_the_conditional_effect_and_its_standard_error():
    sc = small_scenario(**{"truth": {"replications": R}})
    res = run(sc, write=False)
    ut = res.user_truth
    assert ut.conditional.notna().all() and ut.conditional_se.notna().all()
    assert res.manifest["truth"] == {"replications": R}
    assert not any("@r" in w for w in res.outcomes.world.unique())  # replications stay out of outcomes
    clicks = ut[ut.metric == "clicks"]
    # replications are new noise: conditional differs from realised, and its se is positive somewhere
    assert (clicks.conditional != clicks.realised).mean() > 0.5 and (clicks.conditional_se > 0).mean() > 0.5
    # the population is the same: the conditional effects average to about the realised average effect
    # (both estimate the ATE of 300 users; 4-day click counts of ~1, so the difference is ~ +-0.3)
    assert abs(clicks.conditional.mean() - clicks.realised.mean()) < 0.5


def test_identical_arms_have_zero_conditional_effect():
    sc = small_scenario(**{"truth": {"replications": 2},
                           "experiment.arms": {"control": {"recommender": "popularity"},
                                               "treatment": {"recommender": "popularity"}}})
    ut = run(sc, write=False).user_truth
    assert (ut.realised == 0).all() and (ut.conditional == 0).all() and (ut.conditional_se == 0).all()


def test_no_replications_unless_asked():
    res = run(small_scenario(), write=False)
    assert res.user_truth.conditional.isna().all() and "truth" not in res.manifest


def _conditional_by(executor_kind: str | None, workers: int = 2) -> pd.DataFrame:
    """The conditional truth with the replication worlds run by one executor."""
    sc = small_scenario(**{"truth": {"replications": R}})
    plan = resolve(sc)
    keys = Keys(sc.seed)
    from counterfeed.core.contracts import CatalogContext

    items = plan.catalog().build(CatalogContext(keys=keys, stream=keys.stream("catalog"),
                                                dimensions=sc.population.dimensions, base_dir="."))
    population = build_population(sc.population, keys)
    names = [f"all-{a}" for a in sc.arms] + replication_worlds(sc.arms, R)
    tasks = [WorldTask(sc, w, items, population) for w in names]
    outs: dict[int, object] = {}
    with get_executor(executor_kind, workers=workers) as ex:
        for i, res in ex.submit_all(simulate_world, tasks):
            assert not isinstance(res, BaseException), res
            outs[i] = res
    frames = [outs[i].outcomes for i in range(len(tasks))]
    infos = {n: plan.metrics[n].info() for n in plan.analysed}
    main = pd.concat([f for f, w in zip(frames, names) if "@r" not in w], ignore_index=True)
    reps = pd.concat([f for f, w in zip(frames, names) if "@r" in w], ignore_index=True)
    return conditional_effects(user_effects(main, sc.arms, sc.control, infos), reps, sc.arms, sc.control, infos)


def test_conditional_truth_is_identical_whichever_executor_ran_it():
    serial = _conditional_by("serial")
    pool = _conditional_by("local", workers=2)
    dask = _conditional_by("dask", workers=2)
    assert serial.conditional.notna().all()
    assert _parquet_digest(serial) == _parquet_digest(pool) == _parquet_digest(dask)


def test_run_user_truth_is_identical_in_one_process_and_in_a_pool():
    sc = small_scenario(**{"truth": {"replications": 2}})
    one = run(sc, write=False, workers=1).user_truth
    pool = run(sc, write=False, workers=2).user_truth
    assert _parquet_digest(one) == _parquet_digest(pool)


@pytest.mark.parametrize("section, field, pattern", [
    ({"truth": {"replications": -1}}, "truth.replications", "greater than or equal to 0"),
    ({"truth": {"replication": 3}}, "truth.replication", "not allowed|unknown|Extra"),
    ({"targeting": {"metric": "clicks", "arm": "nope"}}, "targeting.arm", "not one of the arms"),
    ({"targeting": {"metric": "clicks", "arm": "control"}}, "targeting.arm", "is the control"),
    ({"targeting": {"metric": "nope"}}, "targeting.metric", "not one of the scenario's metrics"),
    ({"targeting": {"metric": "clicks", "rule": "top-fraction"}}, "targeting", "needs a fraction"),
    ({"targeting": {"metric": "clicks"}, "truth": {"replications": 1}}, "truth.replications", ">= 2"),
    ({"population": {"users": 50, "features": {"dimensions": 0}}}, "population.features.dimensions",
     "greater than or equal to 1"),
    ({"population": {"users": 50, "features": {"kind": "exact"}}}, "population.features.kind", "noisy-preferences"),
])
def test_bad_heterogeneity_sections_are_located_errors(section, field, pattern):
    from tests.conftest import SMALL
    from counterfeed.core.scenario import Scenario

    with pytest.raises(ScenarioError, match=pattern) as info:
        Scenario.from_dict({**SMALL, **section})
    assert info.value.field == field


def test_ratio_targeting_metric_is_rejected_at_resolve():
    with pytest.raises(ScenarioError, match="ratio") as info:
        resolve(small_scenario(**{"targeting": {"metric": "ctr"}}))
    assert info.value.field == "targeting.metric"


def test_sections_absent_unless_used_and_round_trip():
    sc = small_scenario()
    d = sc.to_dict()
    assert "truth" not in d and "targeting" not in d and "features" not in d["population"]
    sc2 = small_scenario(**{"truth": {"replications": 4}, "targeting": {"metric": "clicks", "rule": "top-fraction",
                                                                       "fraction": 0.3},
                            "population.features": {"dimensions": 3}})
    from counterfeed.core.scenario import Scenario

    again = Scenario.from_dict(sc2.to_dict())
    assert again.truth.replications == 4 and again.targeting.fraction == 0.3
    assert again.population.features.dimensions == 3
