"""counterfeed: simulate recommender systems, run A/B experiments on simulated users, and score every
causal estimate against the simulator's own ground truth.

Public API::

    import counterfeed
    scenario = counterfeed.load_scenario("scenarios/quickstart.yaml")
    result = counterfeed.run(scenario)

Plugin authors import ``hookimpl`` and the base classes from here. Names are imported on first
access (PEP 562), so ``import counterfeed`` (and ``counterfeed --help``) loads no numerical library.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from counterfeed.core.hookspecs import hookimpl
from counterfeed.errors import (CounterfeedError, DataError, ModelError, OutputError, PluginError,
                                PluginWarning, ScenarioError)

#: the version of counterfeed: written here only (pyproject.toml reads it)
__version__ = "0.1.0"

_LAZY: dict[str, str] = {
    **dict.fromkeys(["Batch", "Catalog", "CatalogContext", "Items", "Log", "Metric", "MetricInfo", "Options",
                     "Plugin", "Population", "Recommender", "RecommenderContext", "Response", "Slates",
                     "UserModel", "WorldEvents"], "counterfeed.core.contracts"),
    **dict.fromkeys(["AnalysisData", "Estimate", "Estimator", "EstimatorOptions", "EstimatorTags", "Looks",
                     "PolicySpec"], "counterfeed.core.estimation"),
    "Keys": "counterfeed.core.randomness", "Stream": "counterfeed.core.randomness",
    "Scenario": "counterfeed.core.scenario", "load_scenario": "counterfeed.core.scenario",
    "RunResult": "counterfeed.core.results",
}

__all__ = [
    "hookimpl", "load_scenario", "run", "Scenario", "Keys", "Stream",
    "Options", "Plugin", "Catalog", "UserModel", "Recommender", "Metric", "Estimator",
    "EstimatorOptions", "EstimatorTags", "Looks", "PolicySpec", "Items", "Population", "Batch", "Slates",
    "Response", "Log",
    "CatalogContext", "RecommenderContext", "WorldEvents", "AnalysisData", "Estimate", "MetricInfo",
    "CounterfeedError", "ScenarioError", "PluginError", "DataError", "ModelError", "OutputError",
    "PluginWarning", "RunResult",
]

if TYPE_CHECKING:  # pragma: no cover
    from counterfeed.core.contracts import (Batch, Catalog, CatalogContext, Items, Log, Metric,
                                            MetricInfo, Options, Plugin, Population, Recommender,
                                            RecommenderContext, Response, Slates, UserModel,
                                            WorldEvents)
    from counterfeed.core.estimation import (AnalysisData, Estimate, Estimator, EstimatorOptions,
                                             EstimatorTags, Looks, PolicySpec)
    from counterfeed.core.randomness import Keys, Stream
    from counterfeed.core.results import RunResult
    from counterfeed.core.scenario import Scenario, load_scenario


def run(scenario: "Scenario | str", **kwargs: Any) -> "RunResult":
    """Run a scenario (a :class:`Scenario` or a path) and return its :class:`RunResult`."""
    from counterfeed.core.runner import run as _run

    return _run(scenario, **kwargs)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'counterfeed' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
