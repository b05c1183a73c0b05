"""RunResult: what a run returns (its run directory is written and read by :mod:`counterfeed.core.rundir`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from counterfeed._json import clean as _clean
from counterfeed._json import json_default
from counterfeed.core.contracts import Estimate, WorldEvents
from counterfeed.core.scenario import Scenario

__all__ = ["RunResult", "arm_summary", "json_default"]


@dataclass
class RunResult:
    """The result of one run (see the run-directory layout in DESIGN.md)."""

    scenario: Scenario
    seed: int
    estimates: list[Estimate]
    truth: pd.DataFrame
    srm: dict[str, Any]
    outcomes: pd.DataFrame
    timeseries: pd.DataFrame
    timings: dict[str, float] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)
    run_dir: Path | None = None
    events: dict[str, WorldEvents] | None = None
    user_truth: pd.DataFrame | None = None  # per-user truth (core.user_truth.USER_TRUTH_COLUMNS)

    def estimates_frame(self) -> pd.DataFrame:
        """One row per estimate; ``diagnostics`` holds dicts (plain JSON types, NaN as None)."""
        rows = []
        for e in self.estimates:
            d = e.to_dict()
            d["diagnostics"] = _clean(d["diagnostics"])
            rows.append(d)
        cols = list(Estimate.__dataclass_fields__)
        return pd.DataFrame(rows, columns=cols)

    def summary(self) -> pd.DataFrame:
        """Per metric and arm: the A/B world's mean, the counterfactual world's mean, the true effect."""
        return arm_summary(self.outcomes, self.truth, self.scenario)

    @classmethod
    def load(cls, run_dir: str | Path) -> "RunResult":
        """Read a finished run directory back (see :func:`counterfeed.core.rundir.load_run`)."""
        from counterfeed.core.rundir import load_run

        return load_run(run_dir)


def arm_summary(outcomes: pd.DataFrame, truth: pd.DataFrame, scenario: Scenario) -> pd.DataFrame:
    """Per metric and arm: A/B world value, counterfactual world value, and the true effect vs control.

    Per-user metrics only: a population-level metric (``MetricInfo.level == "population"``) has no
    per-user column; its true global effect and naive A/B claim are in the manifest's
    ``population_metrics``."""
    from counterfeed.core.experiment import AB_WORLD, counterfactual_world
    from counterfeed.core.longterm import is_population
    from counterfeed.core.outcomes import group_value
    from counterfeed.core.plugins import get_registry

    reg = get_registry()
    rows = []
    worlds = dict(tuple(outcomes.groupby("world", sort=False)))
    empty = outcomes.iloc[:0]
    ab = worlds.get(AB_WORLD, empty)
    per_arm = {arm: (ab[ab.arm == arm], worlds.get(counterfactual_world(arm), empty)) for arm in scenario.arms}
    effects: dict[tuple[str, str], float] = {}  # the first overall difference row per (metric, arm)
    if len(truth):
        t = truth[(truth.estimand == "difference") & truth.segment.isna()]
        for k, v in zip(zip(t.metric, t.arm), t.value):
            effects.setdefault(k, float(v))
    for name, opts in scenario.metric_specs:
        info = reg.create("metric", name, opts).info()
        if is_population(info):
            continue
        for arm in scenario.arms:
            ab_arm, cf = per_arm[arm]
            rows.append({"metric": name, "arm": arm, "ab_value": group_value(ab_arm, info),
                         "world_value": group_value(cf, info),
                         "true_effect": effects.get((name, arm), float("nan"))})
    return pd.DataFrame(rows)
