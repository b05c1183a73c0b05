"""Scenario files: read a YAML file into a validated :class:`Scenario`.

A wrong scenario gives one :class:`~counterfeed.errors.ScenarioError` naming the file, the line and
the field path of every problem, e.g. ``scenarios/x.yaml:14: experiment.split: must sum to 1 (got 0.9)``.
The schema lives in :mod:`counterfeed.core.scenario_schema` and the messages in
:mod:`counterfeed.core.scenario_messages`; their public names are importable from here too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from counterfeed.core._yaml import YamlProblem, load_yaml
from counterfeed.core.scenario_messages import validation_message
from counterfeed.core.scenario_schema import (DEFAULT_METRICS, AllocationSpec, AnalysisSpec, ArmSpec,
                                              Duration, ExperimentSpec, MetricSpec, OutputSpec,
                                              PhaseSpec, PluginSpec, PopulationSpec, PositiveDuration,
                                              Scenario, SegmentSpec, format_duration, parse_duration)
from counterfeed.errors import ScenarioError

__all__ = ["Scenario", "load_scenario", "parse_duration", "validation_message", "PluginSpec",
           "format_duration", "ArmSpec", "MetricSpec", "AnalysisSpec", "SegmentSpec", "PopulationSpec",
           "PhaseSpec", "AllocationSpec", "ExperimentSpec", "OutputSpec", "DEFAULT_METRICS", "Duration",
           "PositiveDuration", "MAX_BYTES", "check_arms_filled"]

#: larger files are refused before parsing (a scenario is a few kilobytes)
MAX_BYTES = 5_000_000


def load_scenario(source: str | Path, *, text: str | None = None) -> Scenario:
    """Load and validate a scenario from a file path (or from ``text``, naming it ``source``).

    Raises
    ------
    ScenarioError
        With the file, line and field path of every problem.
    """
    file = str(source)
    if text is None:
        text = _read_text(Path(source), file)
    try:
        data, lines = load_yaml(text)
    except YamlProblem as exc:
        raise ScenarioError(exc.message, file=file, line=exc.line) from None
    return Scenario.from_dict(data, file=file, lines=lines, source=text)


def check_arms_filled(scenario: Scenario, seeds: Sequence[int] | None = None) -> None:
    """Raise a located ScenarioError when a randomized experiment's A/B world cannot give every arm
    the users its estimates need: an arm with split share 0 never gets a user (under adaptive
    allocation neither: it updates its starting split only once every arm has 2 users), nor do fewer
    than 2 users per arm suffice (``analysis: []`` without phases estimates nothing).

    Phases split their users afresh among their control and challengers by their shares: phase 0's
    arms need a share above 0 (its sample-ratio check divides by their sum), and a later phase's
    control, a winner, had users, so a challenger with share 0 gets none. An arm in no phase is not
    used and may have share 0.

    A staggered rollout's cohorts are drawn before any world runs: the draw under ``scenario.seed``
    (or under each of ``seeds``, a calibration's replications) must leave the control its users
    (:func:`counterfeed.core.mechanisms.check_rollout_draw`)."""
    exp = scenario.experiment
    if getattr(exp.assignment, "mechanism", "randomized") != "randomized":
        from counterfeed.core.mechanisms import check_rollout_draw

        check_rollout_draw(scenario, seeds)  # a rollout's cohorts are drawn before any world runs
        return  # a mechanism decides who is treated: no split
    share = {a: float(exp.split[a]) for a in scenario.arms}
    groups = [set(p.challengers) if p.challengers else set(scenario.arms) for p in exp.phases or []]
    groups = [groups[0] | {scenario.control}, *groups[1:]] if groups else [set(scenario.arms)]
    if not any(share[a] > 0 for a in groups[0]):
        names = ", ".join(a for a in scenario.arms if a in groups[0])
        raise scenario.error(f"every arm of phase 0 ({names}) has share 0 (expected a share above 0 for at least "
                             "one)", "experiment.split")
    for arm in (a for a in scenario.arms if share[a] == 0.0 and any(a in g for g in groups)):
        raise scenario.error(f"share 0: arm '{arm}' would never get a user (expected a share above 0; to leave "
                             "the arm out, remove it from experiment.arms)", f"experiment.split.{arm}")
    arms, users = max(len(g) for g in groups), scenario.population.users  # a later phase: and its control
    if (scenario.analysis or exp.phases) and users < 2 * arms:  # every phase ends in an estimate
        raise scenario.error(f"{users} users for {arms} arms: the estimates need at least 2 users in every arm "
                             f"(expected at least {2 * arms})", "population.users")


def _read_text(p: Path, file: str) -> str:
    try:
        with p.open("rb") as fh:
            raw = fh.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise ScenarioError("file not found", file=file) from None
    except IsADirectoryError:
        raise ScenarioError("is a directory, expected a YAML file", file=file) from None
    except OSError as exc:
        raise ScenarioError(f"cannot read: {exc.strerror}", file=file) from None
    if len(raw) > MAX_BYTES:
        raise ScenarioError("file larger than 5 MB; is this really a scenario?", file=file)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ScenarioError(f"not UTF-8 text (byte {exc.start})", file=file) from None
