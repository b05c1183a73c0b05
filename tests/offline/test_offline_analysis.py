"""``offline-ranking`` as a scenario analysis: offline metrics on the pre-period log, beside the online truth."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import counterfeed
from counterfeed.core.contracts import Log
from counterfeed.errors import ScenarioError
from counterfeed.offline.evaluate import evaluate_offline, split_log
from counterfeed.offline.metrics import ratio_estimate
from tests.conftest import small_scenario

ANALYSIS = [{"estimator": "diff-in-means"},
            {"estimator": "offline-ranking", "metrics": ["clicks"], "ks": [5], "cutoff": 30}]


@pytest.fixture(scope="module")
def result():
    sc = small_scenario(**{"analysis": ANALYSIS,
                           "experiment.arms": {"control": {"recommender": "random"},
                                               "treatment": {"recommender": "popularity"}}})
    return sc, counterfeed.run(sc, write=False, keep_events=True, quiet=True)


def test_offline_metrics_are_reported_beside_the_online_truth(result):
    sc, res = result
    off = [e for e in res.estimates if e.estimator == "offline-ranking"]
    assert {e.estimand for e in off} == {f"offline:{m}:{w}" for m in ("recall@5", "ndcg@5", "mrr")
                                         for w in ("naive", "ipw")}
    truth = res.truth
    online = float(truth[(truth["metric"] == "clicks") & (truth["arm"] == "treatment")
                         & (truth["estimand"] == "difference") & truth["segment"].isna()]["value"].iloc[0])
    for e in off:
        assert e.metric == "clicks" and e.arm == "treatment" and e.control == "control"
        assert e.diagnostics["online_effect"] == pytest.approx(online)
        assert e.truth is None and e.covered is None  # an offline metric is not scored against an online truth
        assert e.lower < e.point < e.upper
        assert e.point == pytest.approx(e.diagnostics["arm_value"] - e.diagnostics["control_value"], abs=1e-12)
        assert e.diagnostics["split_time"] < sc.experiment.pre_period


def test_the_difference_is_a_direct_computation_on_the_pre_period_log(result):
    """The estimate equals evaluating both recommenders by hand on the A/B world's pre-period log."""
    sc, res = result
    ev = res.events["ab"]
    imp = ev.impressions
    pre: Log = imp.select(np.asarray(imp.time) < sc.experiment.pre_period)
    train, test, _ = split_log(pre, train_share=0.8)
    from counterfeed.core.plugins import get_registry

    from counterfeed.core.contracts import CatalogContext
    from counterfeed.core.randomness import Keys

    keys = Keys(sc.seed)  # the catalog exactly as the run built it
    cat = get_registry().create("catalog", sc.catalog.plugin, sc.catalog.options)
    items = cat.build(CatalogContext(keys=keys, stream=keys.stream("catalog"), dimensions=sc.population.dimensions))
    reps = {name: evaluate_offline(name, {}, train, test, items, sc.population.users, ks=[5], cutoff=30,
                                   seed=sc.seed) for name in ("random", "popularity")}
    c, t = reps["random"].clicks, reps["popularity"].clicks
    want = ratio_estimate("ndcg@5", "ipw", t["ndcg@5"] - c["ndcg@5"], c["weight"], c["user"])
    got = next(e for e in res.estimates if e.estimand == "offline:ndcg@5:ipw")
    assert got.point == pytest.approx(want.value, rel=1e-12)
    assert got.upper - got.lower == pytest.approx(want.upper - want.lower, rel=1e-9)


@pytest.mark.parametrize("entry, field, message", [
    ({"estimator": "offline-ranking", "ks": [50], "cutoff": 20}, "analysis[0]", "cutoff=20"),
    ({"estimator": "offline-ranking", "weighting": ["snips"]}, "analysis[0].weighting[0]", "naive"),
    ({"estimator": "offline-ranking", "train_share": 1.5}, "analysis[0].train_share", "less than 1"),
])
def test_validate_rejects_bad_options_with_a_located_message(tmp_path, entry, field, message):
    sc = small_scenario(**{"analysis": [entry]})
    path = tmp_path / "s.yaml"
    path.write_text(json.dumps(sc.to_dict(), indent=1))
    out = subprocess.run([sys.executable, "-m", "counterfeed", "validate", str(path)], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 2, out.stderr
    assert str(path.name) in out.stderr and field in out.stderr and message in out.stderr, out.stderr
    assert ":" in out.stderr.split(str(path.name), 1)[1][:8]  # file:line


def test_validate_rejects_a_missing_pre_period(tmp_path):
    with pytest.raises(ScenarioError, match=r"experiment\.pre_period.*needs a pre-period"):
        counterfeed.run(small_scenario(**{"experiment.pre_period": "0d",
                                          "analysis": [{"estimator": "offline-ranking"}]}), write=False)
