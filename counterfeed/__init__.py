"""counterfeed: simulate recommender systems, run A/B experiments on simulated users, and score every
causal estimate against the simulator's own ground truth.

Public API::

    import counterfeed
    scenario = counterfeed.load_scenario("scenarios/quickstart.yaml")
    result = counterfeed.run(scenario)

Plugin authors import ``hookimpl`` and the base classes from here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from counterfeed.core.contracts import (Batch, Catalog, CatalogContext, Items, Log, Metric,
                                        MetricInfo, Options, Plugin, Population, Recommender,
                                        RecommenderContext, Response, Slates, UserModel, WorldEvents)
from counterfeed.core.estimation import (AnalysisData, Estimate, Estimator, EstimatorOptions,
                                         EstimatorTags, Looks, PolicySpec)
from counterfeed.core.hookspecs import hookimpl
from counterfeed.core.randomness import Keys, Stream
from counterfeed.core.scenario import Scenario, load_scenario
from counterfeed.errors import (CounterfeedError, DataError, ModelError, OutputError, PluginError,
                                ScenarioError)

__version__ = "0.1.0"

__all__ = [
    "hookimpl", "load_scenario", "run", "Scenario", "Keys", "Stream",
    "Options", "Plugin", "Catalog", "UserModel", "Recommender", "Metric", "Estimator",
    "EstimatorOptions", "EstimatorTags", "Looks", "PolicySpec", "Items", "Population", "Batch", "Slates", "Response", "Log",
    "CatalogContext", "RecommenderContext", "WorldEvents", "AnalysisData", "Estimate", "MetricInfo",
    "CounterfeedError", "ScenarioError", "PluginError", "DataError", "ModelError", "OutputError",
    "RunResult",
]

if TYPE_CHECKING:  # pragma: no cover
    from counterfeed.core.results import RunResult


def run(scenario: "Scenario | str", **kwargs: Any) -> "RunResult":
    """Run a scenario (a :class:`Scenario` or a path) and return its :class:`RunResult`."""
    from counterfeed.core.runner import run as _run

    return _run(scenario, **kwargs)


def __getattr__(name: str) -> Any:
    if name == "RunResult":
        from counterfeed.core.results import RunResult

        return RunResult
    raise AttributeError(name)
