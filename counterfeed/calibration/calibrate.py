"""Calibration: run a scenario under many seeds and measure how its estimators behave.

Each replication is the whole scenario under seed ``Keys(scenario.seed).derive_seed("replication",
i)``: new users, new assignment, new noise, and new counterfactual worlds, hence a new true effect.
The summary (see :mod:`counterfeed.calibration.summary`) scores each estimator against those truths.

Example
-------
>>> from counterfeed.core.executors import get_executor
>>> with get_executor("local", workers=2) as ex:                       # doctest: +SKIP
...     result = calibrate(load_scenario("scenarios/quickstart.yaml"), 200, executor=ex)
>>> result.summary[["estimator", "metric", "coverage", "rejection_rate"]]  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from counterfeed.calibration.engine import (ExecutionReport, Replicate, execute, replication_seeds,
                                            run_replication)
from counterfeed.calibration.store import ReplicationStore, atomic_write_json, scenario_hash
from counterfeed.calibration.cate_summary import cate_summary
from counterfeed.calibration.summary import (FLAGGED_VERDICTS, analysis_entries, assign_entries, records_frame,
                                             repeated_in, summarize)
from counterfeed.core.display import estimator_label
from counterfeed.core.executors import Executor
from counterfeed.core.scenario import Scenario, check_arms_filled
from counterfeed.errors import CounterfeedError

__all__ = ["calibrate", "CalibrationResult", "default_out_dir", "summary_table", "write_outputs",
           "check_calibratable", "check_estimators", "summary_warnings", "flagged_rows"]


@dataclass
class CalibrationResult:
    """A calibration's outcome; ``summary`` has one row per (estimator, metric, arm, estimand, segment)."""

    out_dir: Path
    scenario: Scenario
    replications: int
    summary: pd.DataFrame
    records: pd.DataFrame
    errors: dict[str, dict[str, Any]]
    report: ExecutionReport
    files: dict[str, Path] = field(default_factory=dict)
    cate: pd.DataFrame | None = None  # per-user CATE scores over replications (calibration.cate_summary)
    stored: int | None = None  # finished replications, with or without estimates (None: count ``records``)
    without_estimates: list[int] = field(default_factory=list)  # indices of finished ones that estimated nothing

    @property
    def completed(self) -> int:
        """Finished replications, including any that returned no estimate (``without_estimates``)."""
        if self.stored is not None:
            return self.stored
        return int(self.records["replication"].nunique()) if len(self.records) else 0

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "calibrate",
            "scenario": self.scenario.name,
            "scenario_hash": scenario_hash(self.scenario.to_dict()),
            "seed": self.scenario.seed,
            "replications": self.replications,
            "completed": self.completed,
            "without_estimates": len(self.without_estimates),
            "failed": sorted(self.errors, key=_index_of),
            "computed_now": len(self.report.computed),
            "wall_time": self.report.wall_time,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "summary": _records(self.summary),
            **({"cate": _records(self.cate)} if self.cate is not None and len(self.cate) else {}),
        }


def default_out_dir(scenario: Scenario, kind: str = "calibrate") -> Path:
    """``<scenario.output.dir>/<kind>-<scenario.name>``."""
    return Path(scenario.output.dir) / f"{kind}-{scenario.name}"


def check_calibratable(scenario: Scenario, command: str = "calibrate", replications: int = 1) -> None:
    """What ``calibrate`` needs beyond what ``validate`` checks, before any replication: every arm can get
    the users its estimates need in every one of ``replications`` (a staggered rollout's draws under
    their seeds), and there are estimates to score (:func:`check_estimators`).

    Raises a located :class:`~counterfeed.errors.ScenarioError`.
    """
    check_estimators(scenario, command)
    check_arms_filled(scenario, replication_seeds(scenario.seed, replications))  # else replications would fail


def check_estimators(scenario: Scenario, command: str = "calibrate") -> None:
    """A located ScenarioError when ``analysis`` is empty: the replications would estimate nothing, so
    ``command`` would simulate them all and score nothing (phase decisions are not calibrated). Entries
    of one estimator are allowed: the summary keeps each entry's rows apart (``analysis`` in
    :data:`~counterfeed.calibration.summary.GROUP_KEYS`)."""
    if not scenario.analysis:
        phases = (" (its phases' decisions, recorded in the run manifest's \"phases\", are not calibrated)"
                  if scenario.experiment.phases else "")
        raise scenario.error(
            f"an empty analysis gives {command} no estimator to score{phases}; every replication would be "
            "simulated for nothing (expected at least one entry, e.g. `- estimator: diff-in-means`)",
            "analysis")


def calibrate(scenario: Scenario, replications: int, *, executor: Executor | None = None,
              out_dir: str | Path | None = None, replicate: Replicate = run_replication,
              fresh: bool = False, quiet: bool = True, figures: bool = True,
              console: Any = None) -> CalibrationResult:
    """Run ``replications`` seeds of ``scenario``, persisting each, and summarize the estimators.

    Parameters
    ----------
    scenario : Scenario
        The scenario; its ``seed`` roots the replication seeds.
    replications : int
        How many replications the result should cover (already stored ones are reused).
    executor : Executor, optional
        Where replications run (default: serially in this process). Not closed here.
    out_dir : path, optional
        Default :func:`default_out_dir`. Rerunning with the same directory resumes.
    replicate : callable
        ``replicate(scenario_data: dict, seed: int) -> list[estimate dict]``, module-level.
    fresh : bool
        Discard stored replications first.

    Raises
    ------
    ScenarioError
        Before anything runs or is written, when the scenario cannot be calibrated
        (:func:`check_calibratable`; with a custom ``replicate``, only the arms are checked).
    """
    if isinstance(replications, bool) or int(replications) < 1:
        raise CounterfeedError(f"replications must be a positive integer, got {replications!r}")
    replications = int(replications)
    if replicate is run_replication:
        check_calibratable(scenario, replications=replications)
    else:  # a custom replicate may estimate without the scenario's analysis
        check_arms_filled(scenario, replication_seeds(scenario.seed, replications))
    out = Path(out_dir) if out_dir is not None else default_out_dir(scenario)
    data = scenario.to_dict()
    seeds = replication_seeds(scenario.seed, replications)
    tasks = [{"name": f"rep-{i}", "index": i, "seed": s, "scenario": data, "replicate": replicate}
             for i, s in enumerate(seeds)]
    entries = analysis_entries(scenario)
    with ReplicationStore(out, kind="calibrate", scenario_name=scenario.name,
                          digest=scenario_hash(data), fresh=fresh) as store:
        assign_entries(list(store.load().values()), entries)  # a store it cannot read: before simulating
        report = execute(store, tasks, executor=executor, quiet=quiet, console=console)
        wanted = {t["name"] for t in tasks}
        stored = store.load()
        records = [r for name, r in stored.items() if name in wanted]
        assign_entries(records, entries)
        errors = {k: v for k, v in store.load_errors().items() if k in wanted and k not in stored}
        frame = records_frame(records)
        result = CalibrationResult(out_dir=out, scenario=scenario, replications=replications,
                                   summary=summarize(frame), records=frame, errors=errors, report=report,
                                   cate=cate_summary(records), stored=len(records),
                                   without_estimates=sorted(int(r["index"]) for r in records
                                                            if not r.get("estimates")))
        result.files = write_outputs(result, figures=figures)
    return result


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return json.loads(frame.to_json(orient="records"))


def _index_of(name: str) -> int:
    return int(name.rsplit("-", 1)[-1])


def write_outputs(result: CalibrationResult, *, figures: bool = True) -> dict[str, Path]:
    """calibration.json, calibration.csv, replications.parquet and the figures, atomically each."""
    out = result.out_dir
    files = {"json": out / "calibration.json", "csv": out / "calibration.csv",
             "parquet": out / "replications.parquet"}
    atomic_write_json(files["json"], result.to_json())
    _atomic(files["csv"], lambda p: result.summary.to_csv(p, index=False))
    _atomic(files["parquet"], lambda p: result.records.to_parquet(p, index=False))
    if result.cate is not None and len(result.cate):
        files["cate"] = _atomic(out / "cate_calibration.csv", lambda p: result.cate.to_csv(p, index=False))
    if figures:
        from counterfeed.calibration.figures import coverage_figure, estimate_vs_truth_figure

        files["coverage"] = _atomic(out / "coverage.png", lambda p: coverage_figure(result.summary, p))
        files["scatter"] = _atomic(out / "estimate_vs_truth.png",
                                   lambda p: estimate_vs_truth_figure(result.records, p))
    return files


def _atomic(path: Path, write) -> Path:
    import os

    from counterfeed.core import interrupts

    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    write(tmp)
    try:
        interrupts.check()  # a swallowed Ctrl-C still publishes nothing
    except KeyboardInterrupt:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    return path


def _fmt(v: Any, spec: str = ".4g") -> str:
    try:
        if v is None or pd.isna(v):
            return "–"
    except (TypeError, ValueError):
        pass
    return format(v, spec) if isinstance(v, (int, float)) else str(v)


def summary_table(summary: pd.DataFrame, *, title: str, extra: list[str] | None = None):
    """A rich Table of a summary (calibration or sweep)."""
    from rich.table import Table

    extra = list(extra or [])
    show_segment = summary["segment"].notna().any() if len(summary) else False
    repeated = repeated_in(summary)
    table = Table(title=title, header_style="bold")
    keys = [*extra, "estimator", "metric", "arm", "estimand"] + (["segment"] if show_segment else [])
    for k in keys:
        table.add_column(k)
    for k in ("n", "bias", "RMSE", "coverage [95% CI]", "width", "reject", "MDE"):
        table.add_column(k, justify="right")
    table.add_column("verdict")
    for _, r in summary.iterrows():
        cov = "–" if pd.isna(r["coverage"]) else (
            f"{r['coverage']:.3f} [{_side(r['coverage_lower'], r['level'])}, {_side(r['coverage_upper'], r['level'])}]")
        cells = {k: _fmt(r[k]) for k in keys}
        cells["estimator"] = estimator_label(r["estimator"], r.get("analysis"), repeated)
        if show_segment:
            cells["segment"] = _fmt(r["segment"] or "all users")
        table.add_row(*cells.values(),
                      str(int(r["replications"])), _fmt(r["bias"]), _fmt(r["rmse"]), cov,
                      _fmt(r["mean_width"]), _fmt(r["rejection_rate"], ".3f"), _fmt(r["mde"]),
                      _fmt(r.get("verdict")))
    return table


def _label(r: dict[str, Any], extra: list[str], repeated: set[str] = frozenset()) -> str:
    """``[field=value · ...] estimator[ (analysis[i])] · metric · arm · estimand[ · segment]``: one row of a
    summary (the entry when several entries ran the estimator)."""
    parts = [f"{k}={r[k]}" for k in extra]
    parts += [estimator_label(r["estimator"], r.get("analysis"), repeated)]
    parts += [str(r[k]) for k in ("metric", "arm", "estimand")]
    if r.get("segment") is not None and not (isinstance(r["segment"], float) and math.isnan(r["segment"])):
        parts.append(f"segment {r['segment']}")
    return " · ".join(parts)


def flagged_rows(summary: pd.DataFrame) -> pd.DataFrame:
    """The rows whose verdict says the intervals are not honest (:data:`~.summary.FLAGGED_VERDICTS`)."""
    if "verdict" not in summary or not len(summary):
        return summary.iloc[0:0]
    return summary[summary["verdict"].isin(FLAGGED_VERDICTS)]


def summary_warnings(summary: pd.DataFrame, *, extra: list[str] | None = None) -> list[str]:
    """The warning lines printed under a summary table, each naming its row: zero-width and unbounded
    intervals, undercoverage, and over-rejection where every true effect is 0 (see :func:`~.summary.verdict`)."""
    extra = list(extra or [])
    lines: list[str] = []
    rows = _records(summary) if len(summary) else []
    repeated = repeated_in(summary)
    for r in rows:
        if (r.get("zero_width") or 0) > 0:
            lines.append(f"warning: {_label(r, extra, repeated)}: {r['zero_width']} of {r['replications']} replications "
                         "reported a zero-width interval (no observed variance): its coverage says little")
    for r in rows:
        if (r.get("unbounded") or 0) > 0:
            lines.append(f"warning: {_label(r, extra, repeated)}: {r['unbounded']} of {r['replications']} replications "
                         "reported an unbounded interval (the whole line covers any truth; two rays cover unless "
                         "it lies between them); the mean width, se and MDE are over the bounded ones")
    for r in rows:
        if (r.get("not_identified") or 0) > 0:
            lines.append(f"warning: {_label(r, extra, repeated)}: in {r['not_identified']} of {r['replications']} replications "
                         "the estimator marked its estimate not identified (see a run's warnings); they are scored "
                         "all the same")
    for r in rows:
        level = r.get("level")
        if r.get("verdict") == "undercovers":
            lines.append(f"warning: {_label(r, extra, repeated)}: undercovers: coverage {r['coverage']:.3f} "
                         f"[{r['coverage_lower']:.3f}, {_side(r['coverage_upper'], level)}] over {r['replications']} "
                         f"replications, below the nominal {level:g} (its 95% Wilson interval excludes "
                         f"{level:g}): these intervals are too narrow here, or the estimate is biased")
        if _over_rejects(r):
            lo = _side(r["rejection_lower"], 1 - level)
            lines.append(f"warning: {_label(r, extra, repeated)}: over-rejects: the true effect is 0 in every replication, "
                         f"yet the rejection rate is {r['rejection_rate']:.3f} [{lo}, "
                         f"{r['rejection_upper']:.3f}], above the nominal {1 - level:.3g} (its 95% Wilson "
                         "interval excludes it): a false-positive rate above the level")
    return lines


def _side(x: float, level: float) -> str:
    """``x`` to 3 decimals, or more where 3 would round it onto (or across) ``level``, so that a shown bound
    is on the same side of the level as the verdict says."""
    if x is None or not math.isfinite(x):
        return "–"
    if x == level:
        return f"{x:.3f}"
    for digits in range(3, 17):
        text = f"{x:.{digits}f}"
        if (float(text) < level) == (x < level) and float(text) != level:
            return text
    return repr(x)


def _over_rejects(r: dict[str, Any]) -> bool:
    """Every true effect 0 and a rejection rate whose Wilson interval lies above ``1 - level``."""
    lo, level = r.get("rejection_lower"), r.get("level")
    return bool(r.get("null_truth")) and lo is not None and level is not None and lo > 1.0 - level
