"""Scenario files: read a YAML file into a validated :class:`Scenario`.

A wrong scenario gives one :class:`~counterfeed.errors.ScenarioError` naming the file, the line and
the field path of every problem, e.g. ``scenarios/x.yaml:14: experiment.split: must sum to 1 (got 0.9)``.
The schema lives in :mod:`counterfeed.core.scenario_schema` and the messages in
:mod:`counterfeed.core.scenario_messages`; their public names are importable from here too.
"""

from __future__ import annotations

from pathlib import Path

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
           "PositiveDuration", "MAX_BYTES"]

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
