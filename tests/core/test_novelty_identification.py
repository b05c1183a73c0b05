"""Novelty's A/B comparison is not identified (tester #5): every estimate of it says so."""

from __future__ import annotations

from counterfeed.core.runner import run
from counterfeed.core.scenario import Scenario

# the tester's tp2.yaml: 60 users, 1 day; nobody in arm 'b' clicks twice, so unexpectedness'
# denominator (clicks after the first) sums to 0 there
TP2 = {"name": "tinypop", "seed": 5, "population": {"users": 60, "dimensions": 4},
       "catalog": {"plugin": "synthetic", "items": 30, "topics": 3},
       "user_model": {"plugin": "choice", "visit_rate": 0.2},
       "experiment": {"arms": {"a": {"recommender": "popularity"},
                               "b": {"recommender": "mmr", "base": "popularity"}},
                      "duration": "1d", "slate_size": 3},
       "metrics": ["clicks", "unexpectedness"], "analysis": [{"estimator": "diff-in-means"}],
       "output": {"report": False}}


def test_novelty_estimates_say_the_ab_comparison_does_not_identify_the_effect():
    """Novelty's item popularity pools the arms of the A/B world (tester #5): on feedback_loop.yaml the
    A/B difference was -0.150 [-0.178, -0.122] against a true effect of +0.0148. Every estimate of it
    carries the warning and ``identified: false``; the other metrics' estimates do not."""
    spec = {**TP2, "seed": 3, "metrics": ["clicks", "novelty"],
            "experiment": {**TP2["experiment"], "duration": "3d"}, "population": {"users": 120, "dimensions": 4}}
    res = run(Scenario.from_dict(spec), write=False)
    nov = [e for e in res.estimates if e.metric == "novelty"]
    assert nov and all(e.diagnostics["identified"] is False for e in nov)
    assert all(any("does not identify the effect on novelty" in w for w in e.diagnostics["warnings"])
               for e in nov)
    assert all("identified" not in e.diagnostics for e in res.estimates if e.metric == "clicks")
