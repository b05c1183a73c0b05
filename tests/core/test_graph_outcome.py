"""A causal graph's outcome is a per-user metric, and the back-door estimators estimate that outcome
(tester #16: outcome: coverage passed, and backdoor-regression estimated clicks with the adjustment
set of the coverage graph)."""

from __future__ import annotations

import pytest

from counterfeed.core.plan import resolve
from counterfeed.core.scenario import Scenario
from counterfeed.errors import ScenarioError


def graph_scenario(outcome: str, metrics: list[str] | None = None) -> Scenario:
    analysis = {"estimator": "backdoor-regression", **({"metrics": metrics} if metrics else {})}
    return Scenario.from_dict({
        "name": "g", "seed": 1, "population": {"users": 200, "dimensions": 8},
        "catalog": {"plugin": "synthetic", "items": 100, "topics": 5}, "user_model": {"plugin": "choice"},
        "experiment": {"arms": {"a": {"recommender": "popularity"}, "b": {"recommender": "random"}},
                       "control": "a", "pre_period": "2d", "duration": "3d", "slate_size": 5},
        "metrics": ["clicks", "sessions", "coverage"],
        "graph": {"outcome": outcome, "edges": ["pre_sessions -> treatment", f"pre_sessions -> {outcome}",
                                                f"treatment -> {outcome}"]},
        "analysis": [analysis]})


def test_a_population_level_outcome_is_rejected():
    with pytest.raises(ScenarioError, match=r"graph\.outcome: outcome 'coverage' is a population-level metric"):
        resolve(graph_scenario("coverage"))


def test_backdoor_estimators_estimate_only_the_graphs_outcome():
    resolve(graph_scenario("clicks"))
    resolve(graph_scenario("clicks", ["clicks"]))
    with pytest.raises(ScenarioError, match=r"analysis\[0\]: .*metric 'sessions' is not the causal graph's "
                                            r"outcome 'clicks'"):
        resolve(graph_scenario("clicks", ["sessions"]))
