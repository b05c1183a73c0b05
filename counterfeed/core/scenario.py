"""Scenario files: read a YAML file into a validated :class:`Scenario`.

A wrong scenario gives one :class:`~counterfeed.errors.ScenarioError` naming the file, the line and
the field path of every problem, e.g. ``scenarios/x.yaml:14: experiment.split: must sum to 1 (got 0.9)``.
The schema lives in :mod:`counterfeed.core.scenario_schema` and the messages in
:mod:`counterfeed.core.scenario_messages`; their public names are importable from here too.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

from counterfeed.core._yaml import YamlProblem, load_yaml
from counterfeed.core.scenario_messages import validation_message
from counterfeed.core.scenario_schema import (DEFAULT_METRICS, AllocationSpec, AnalysisSpec, ArmSpec,
                                              Duration, ExperimentSpec, MetricSpec, OutputSpec,
                                              PhaseSpec, PluginSpec, PopulationSpec, PositiveDuration,
                                              Scenario, SegmentSpec, format_duration, parse_duration)
from counterfeed.errors import ScenarioError

__all__ = ["Scenario", "load_scenario", "check_arms_filled", "check_output_dir", "parse_duration", "validation_message", "PluginSpec",
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
    if scenario.analysis and exp.allocation is None and not exp.phases:
        _check_split_draw(scenario, seeds, _users_per_arm(scenario))


def _users_per_arm(scenario: Scenario) -> tuple[int, str]:
    """The most users per arm an analysis entry needs (``Estimator.users_per_arm``), and which entry
    (named when it needs more than 2). An entry that cannot be created counts 2: its own error comes
    from ``resolve``."""
    from counterfeed.core.plugins import get_registry

    need, who = 0, "the estimates"
    registry = get_registry()
    for i, spec in enumerate(scenario.analysis):
        try:
            est = registry.create("estimator", spec.estimator, spec.options)
            k = int(est.users_per_arm())
        except Exception:  # noqa: BLE001 -- resolve reports a bad entry, located
            k = 2
        if k > need:
            need, who = k, f"analysis[{i}] ({spec.estimator})" if k > 2 else "the estimates"
    return need, who


def _check_split_draw(scenario: Scenario, seeds: Sequence[int] | None, needed: tuple[int, str] = (2, "the estimates")
                      ) -> None:
    """The randomized split's own draw (keyed by the seed: :func:`counterfeed.core.experiment.assign`)
    puts in every arm at least the users the analysis needs (``needed``: the count, and who needs it;
    2, or more for an estimator that says so, e.g. cross-fitting: ``Estimator.users_per_arm``), under
    ``scenario.seed`` or each of ``seeds`` (a calibration's replications); else the estimates would
    fail after every world was simulated (a split of 0.999/0.001, 8 users split 50/50 in some
    replications, a CATE learner's folds at 6 users). A calibration is refused rather than scored on
    only the draws that filled every arm, which would condition its coverage on the draw.
    Drawing is skipped when no draw can plausibly fall short (binomial chance below 1e-12), and
    counts only as many users as decide it (:func:`_arm_counts`)."""
    users, split = int(scenario.population.users), {a: float(scenario.experiment.split[a]) for a in scenario.arms}
    total = sum(split.values())
    one_run = seeds is None
    seeds = [int(scenario.seed)] if seeds is None else [int(s) for s in seeds]

    need, who = needed
    if need <= 0:  # no entry compares the arms' own users (ope evaluates on the control's log)
        return

    def short_chance(p: float) -> float:  # P(Binomial(users, p) < need)
        if p >= 1.0:
            return 0.0
        q, lp = math.log1p(-p), math.log(p) if p > 0 else -math.inf
        return sum(math.exp(math.lgamma(users + 1) - math.lgamma(k + 1) - math.lgamma(users - k + 1)
                            + (k * lp if k else 0.0) + (users - k) * q) for k in range(min(need, users + 1)))

    if sum(short_chance(v / total) for v in split.values()) * len(seeds) < 1e-12:
        return
    salt, arms = scenario.assignment_salt, list(split)
    done = (users, tuple(split.items()), salt, need, tuple(seeds))
    if done in _FILLED_DRAWS:  # calibrate checks in its command and again in calibrate(): draw once
        return
    for i, seed in enumerate(seeds):
        counts = _arm_counts(users, split, salt, seed, need)
        for arm, k in zip(arms, counts):
            if k < need:
                where = "this seed's draw" if one_run else f"replication {i + 1} of {len(seeds)} (seed {seed})"
                raise scenario.error(
                    f"{where} puts {k} of {users} users in arm '{arm}' (share {split[arm] / total:.3g}, "
                    f"{users * split[arm] / total:.3g} expected); {who} need{'s' if who.startswith('analysis') else ''} "
                    f"at least {need} users in every arm"
                    + ("" if one_run else ", and scoring only the replications whose draws fill every arm would "
                       "condition the coverage on the draw") + ": raise population.users or the arm's share",
                    f"experiment.split.{arm}")
    _FILLED_DRAWS[done] = True
    while len(_FILLED_DRAWS) > 16:
        del _FILLED_DRAWS[next(iter(_FILLED_DRAWS))]


#: split draws found to fill every arm: ``(users, split items, salt, need, seeds)`` -> True (the last 16)
_FILLED_DRAWS: dict[tuple, bool] = {}


def _arm_counts(users: int, split: dict[str, float], salt: str, seed: int, need: int) -> list[int]:
    """Users per arm of the run's own draw (:func:`counterfeed.core.experiment.assign_users`, block by
    block of user ids), counted until every arm has ``need``: exact for a draw that leaves an arm short
    (all users are then counted), and at least ``need`` per arm otherwise. A small arm (30 users
    expected of 1,000,000) gets its ``need`` within the first few blocks, so a calibration's 1,000 draws
    hash about a tenth of the users that whole assignments would (64 s -> about 3 s)."""
    import numpy as np

    from counterfeed.core.experiment import assign_users

    shares = np.array(list(split.values()), dtype=np.float64)
    smallest = float(shares[shares > 0].min() / shares.sum()) if (shares > 0).any() else 1.0
    base = int(min(users, max(16_384, math.ceil(need / smallest / 2))))  # about half of where `need` is reached
    counts = np.zeros(len(split), dtype=np.int64)
    lo = 0
    while lo < users:
        hi = min(users, lo + max(base, lo // 4))  # then growing: a few dozen blocks for a whole population
        counts += np.bincount(assign_users(np.arange(lo, hi, dtype=np.int64), split, salt, seed),
                              minlength=len(split))
        lo = hi
        if counts.min() >= need:
            break
    return [int(k) for k in counts]


def check_output_dir(scenario: Scenario, out: str | Path | None = None) -> None:
    """``out`` (``--out``), else ``output.dir``, can hold run directories: neither it nor a folder above it
    is a file, and a folder can be made in the nearest one that exists (tried, and removed at once: a
    folder under ``/proc``, or a read-only one, passed ``validate`` and failed ``run``; break test 12).
    A ScenarioError located at the field, or naming ``--out``, otherwise."""
    import os
    import tempfile

    def refuse(msg: str) -> None:
        if out is not None:
            raise ScenarioError(msg, file="--out")
        raise scenario.error(msg, "output.dir")

    path = Path(out if out is not None else scenario.output.dir)
    for q in (path, *path.parents):
        if q.exists():
            if not q.is_dir():
                refuse(f"'{q}' is a file, expected a directory (or a path to create) for the run directories")
            try:
                os.rmdir(tempfile.mkdtemp(prefix=".counterfeed-check-", dir=q))
            except OSError as exc:
                refuse(f"cannot create the run directories in '{path}': no folder can be made in '{q}' "
                       f"({exc.strerror or exc}); expected a writable directory (or a path to create)")
            return


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
