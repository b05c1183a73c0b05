"""Sweeps: a grid over scenario fields, each grid point replicated, giving power and MDE.

``--vary population.users=1000,5000,20000 --vary experiment.duration=7d,14d`` is the Cartesian
product of the values (3 x 2 = 6 points). Every point is the base scenario with those fields
replaced through :meth:`Scenario.with_overrides`, so a bad field or value is a ScenarioError naming
it. Replication ``i`` uses the same seed at every grid point (common random numbers across the grid),
so power curves are smooth in the varied field.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from counterfeed.calibration.calibrate import _atomic, _records
from counterfeed.calibration.engine import (ExecutionReport, Replicate, execute, replication_seeds,
                                            run_replication)
from counterfeed.calibration.store import ReplicationStore, atomic_write_json, scenario_hash
from counterfeed.core.shard_spec import unsharded
from counterfeed.calibration.summary import GROUP_KEYS, analysis_entries, assign_entries, records_frame, summarize
from counterfeed.core.executors import Executor
from counterfeed.core.scenario import Scenario, check_arms_filled
from counterfeed.errors import CounterfeedError, ScenarioError

__all__ = ["parse_vary", "grid_points", "point_error", "sweep", "SweepResult"]


def parse_vary(spec: str) -> tuple[str, list[Any]]:
    """``'population.users=1000,5000'`` -> ``('population.users', [1000, 5000])`` (YAML scalars)."""
    field_path, sep, values = spec.partition("=")
    field_path = field_path.strip()
    if not sep or not field_path:
        raise ScenarioError(f"--vary {spec!r}: expected FIELD=VALUE[,VALUE...], e.g. population.users=1000,5000")
    raw = [v.strip() for v in values.split(",")]
    if not values.strip() or any(not v for v in raw):
        raise ScenarioError(f"--vary {field_path}: expected a comma-separated list of values, got {values!r}")
    parsed = []
    for v in raw:
        try:
            parsed.append(yaml.safe_load(v))
        except yaml.YAMLError:
            parsed.append(v)
    if len(set(map(repr, parsed))) != len(parsed):
        raise ScenarioError(f"--vary {field_path}: a value is listed twice ({values})")
    return field_path, parsed


def point_error(overrides: dict[str, Any], exc: ScenarioError) -> ScenarioError:
    """``exc``, raised by the grid point ``overrides`` (field -> value), located at that point once:
    ``--vary FIELD=V: FIELD: message`` for a problem in a field the point set (which the point's
    scenario attributes to ``--set``), else ``--vary FIELD=V: `` and ``exc`` located as it was (a line
    of the file, or a real ``--set``)."""
    from counterfeed.core.scenario_messages import SET_ORIGIN, from_set

    where = ", ".join(f"{k}={v}" for k, v in overrides.items())
    if exc.field and (exc.file is None or (exc.file == SET_ORIGIN and from_set(exc.field, overrides))):
        return ScenarioError(f"--vary {where}: {exc.field}: {exc.bare_message}", also=exc.also)
    return ScenarioError(f"--vary {where}: {exc}")


def grid_points(scenario: Scenario, vary: list[tuple[str, list[Any]]], *,
                estimators: bool = False, replications: int = 1) -> list[tuple[dict[str, Any], Scenario]]:
    """Every combination of the varied values with its validated scenario, in grid order; each point's
    arms must get their users under every one of the ``replications``' seeds.

    ``estimators``: also require the scenario and each point to have an estimator to score
    (:func:`~counterfeed.calibration.calibrate.check_estimators`)."""
    from counterfeed.calibration.calibrate import check_estimators

    if not vary:
        raise ScenarioError("a sweep needs at least one --vary FIELD=VALUES")
    fields = [f for f, _ in vary]
    dupes = {f for f in fields if fields.count(f) > 1}
    if dupes:
        raise ScenarioError(f"--vary {sorted(dupes)[0]} is given twice; list all its values in one --vary")
    if "seed" in fields:
        raise ScenarioError("--vary seed: replications already vary the seed; vary another field")
    if estimators:
        check_estimators(scenario, "sweep")  # the base scenario's, located in its file, not at a point
    points = []
    for combo in itertools.product(*(values for _, values in vary)):
        overrides = dict(zip(fields, combo))
        try:
            sc = scenario.with_overrides(overrides)
            if estimators:
                check_estimators(sc, "sweep")
            check_arms_filled(sc, replication_seeds(scenario.seed, replications))
        except ScenarioError as exc:
            raise point_error(overrides, exc) from None
        points.append((overrides, sc))
    return points


@dataclass
class SweepResult:
    """Power and MDE per grid point; ``summary`` has the varied fields as leading columns."""

    out_dir: Path
    scenario: Scenario
    fields: list[str]
    points: list[dict[str, Any]]
    replications: int
    summary: pd.DataFrame
    records: pd.DataFrame
    errors: dict[str, dict[str, Any]]
    report: ExecutionReport
    files: dict[str, Path] = field(default_factory=dict)
    stored: int | None = None  # finished replications over the grid, with or without estimates
    without_estimates: int = 0  # finished ones that estimated nothing (in no summary row)

    @property
    def completed(self) -> int:
        if self.stored is not None:
            return self.stored
        return int(len(self.records.groupby(["grid_point", "replication"]))) if len(self.records) else 0

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "sweep", "scenario": self.scenario.name, "seed": self.scenario.seed,
            "fields": self.fields, "points": self.points, "replications": self.replications,
            "completed": self.completed, "without_estimates": self.without_estimates,
            "failed": sorted(self.errors), "computed_now": len(self.report.computed),
            "wall_time": self.report.wall_time,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "summary": _records(self.summary),
        }


def sweep(scenario: Scenario, vary: list[tuple[str, list[Any]]], replications: int, *,
          executor: Executor | None = None, out_dir: str | Path | None = None,
          replicate: Replicate = run_replication, fresh: bool = False, quiet: bool = True,
          figures: bool = True, console: Any = None) -> SweepResult:
    """Replicate every grid point ``replications`` times; power (rejection rate) and MDE per point."""
    if isinstance(replications, bool) or int(replications) < 1:
        raise CounterfeedError(f"replications must be a positive integer, got {replications!r}")
    replications = int(replications)
    points = grid_points(scenario, vary, estimators=replicate is run_replication, replications=replications)
    fields = [f for f, _ in vary]
    out = Path(out_dir) if out_dir is not None else Path(scenario.output.dir) / f"sweep-{scenario.name}"
    base = scenario.to_dict()
    digest = scenario_hash({"base": {k: v for k, v in unsharded(base).items() if k != "output"},
                            "vary": [[f, v] for f, v in vary]})
    seeds = replication_seeds(scenario.seed, replications)
    tasks = []
    for j, (overrides, sc) in enumerate(points):
        data = sc.to_dict()
        for i, s in enumerate(seeds):
            tasks.append({"name": f"p{j}-rep-{i}", "index": i, "seed": s, "scenario": data,
                          "replicate": replicate, "tags": {"grid_point": j}})
    def check_entries(records: list[dict[str, Any]]) -> None:  # each point's analysis entries
        for j, (_, sc) in enumerate(points):
            assign_entries([r for r in records if r.get("grid_point") == j], analysis_entries(sc))

    with ReplicationStore(out, kind="sweep", scenario_name=scenario.name, digest=digest,
                          fresh=fresh) as store:
        check_entries(list(store.load().values()))  # a store it cannot read: before simulating
        report = execute(store, tasks, executor=executor, quiet=quiet, console=console,
                         label="sweep replications")
        wanted = {t["name"] for t in tasks}
        stored = store.load()
        records = [r for name, r in stored.items() if name in wanted]
        errors = {k: v for k, v in store.load_errors().items() if k in wanted and k not in stored}
    check_entries(records)
    frame = records_frame(records, extra=["grid_point"])
    for f in fields:
        frame.insert(3 + fields.index(f), f, [points[int(j)][0][f] for j in frame["grid_point"]])
    summary = summarize(frame, by=["grid_point", *fields, *GROUP_KEYS]) if len(frame) else summarize(frame)
    result = SweepResult(out_dir=out, scenario=scenario, fields=fields, points=[p for p, _ in points],
                         replications=replications, summary=summary, records=frame, errors=errors,
                         report=report, stored=len(records),
                         without_estimates=sum(1 for r in records if not r.get("estimates")))
    result.files = _write(result, figures=figures)
    return result


def _write(result: SweepResult, *, figures: bool) -> dict[str, Path]:
    out = result.out_dir
    files = {"json": out / "sweep.json", "csv": out / "sweep.csv", "parquet": out / "replications.parquet"}
    atomic_write_json(files["json"], result.to_json())
    _atomic(files["csv"], lambda p: result.summary.to_csv(p, index=False))
    records = result.records.copy()
    for f in result.fields:  # mixed-type grid values would not fit one Parquet column
        values = list(records[f])
        if not (all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
                or all(isinstance(v, str) for v in values)):
            records[f] = [v if isinstance(v, str) else json.dumps(v) for v in values]
    _atomic(files["parquet"], lambda p: records.to_parquet(p, index=False))
    if figures and len(result.summary) and "grid_point" in result.summary:
        from counterfeed.calibration.figures import power_figure

        files["power"] = _atomic(out / "power.png", lambda p: power_figure(result.summary, result.fields, p))
    return files
