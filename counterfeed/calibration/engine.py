"""The replication engine shared by calibrate and sweep: seeds, tasks, persistence, progress."""

from __future__ import annotations

import os
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from counterfeed.calibration.store import ReplicationStore
from counterfeed.core.executors import Executor, SerialExecutor
from counterfeed.core.randomness import Keys
from counterfeed.errors import CounterfeedError

__all__ = ["replication_seeds", "run_replication", "Replicate", "ExecutionReport", "execute",
           "slim_estimate"]

Replicate = Callable[[dict, int], list]
"""``replicate(scenario_data, seed) -> list of estimate dicts``; module-level, so it pickles."""

_KEEP = ("estimator", "metric", "arm", "estimand", "segment", "analysis", "point", "lower", "upper", "p_value",
         "truth", "covered", "level")


def replication_seeds(seed: int, n: int, start: int = 0) -> list[int]:
    """Seeds of replications ``start .. start+n-1``: ``Keys(seed).derive_seed("replication", i)``."""
    keys = Keys(seed)
    return [keys.derive_seed("replication", i) for i in range(start, start + n)]


def slim_estimate(est: Any) -> dict[str, Any]:
    """The fields of an Estimate (object or dict) that calibration keeps."""
    d = est if isinstance(est, dict) else est.to_dict()
    out = {k: d.get(k) for k in _KEEP}
    for k in ("point", "lower", "upper", "p_value", "truth", "level"):
        if out[k] is not None:
            out[k] = float(out[k])
    if out["covered"] is not None:
        out["covered"] = bool(out["covered"])
    # the estimator's own verdict that the data do not identify its estimand (kept only when it said so)
    out["not_identified"] = (d.get("diagnostics") or {}).get("identified") is False
    scores = None
    if out["estimand"] == "cate":  # a CATE estimate's per-user scores (counterfeed.calibration.cate_summary)
        scores = (d.get("diagnostics") or {}).get("cate_scores") or d.get("cate")
    if scores:
        from counterfeed.calibration.cate_summary import CATE_KEYS
        out["cate"] = {k: scores.get(k) for k in CATE_KEYS}
    return out


def run_replication(scenario_data: dict, seed: int) -> list[dict[str, Any]]:
    """One replication with the real engine: ``run(scenario with seed, write=False, workers=1)``."""
    from counterfeed.core.runner import run
    from counterfeed.core.scenario import Scenario

    scenario = Scenario.from_dict(scenario_data).with_overrides({"seed": int(seed)})
    result = run(scenario, write=False, quiet=True, workers=1)
    from counterfeed.calibration.cate_summary import with_targeting_regret

    return with_targeting_regret([slim_estimate(e) for e in result.estimates], result.manifest.get("targeting"))


def _task(task: dict[str, Any]) -> dict[str, Any]:
    """Run one replication task (module level: it is sent to worker processes)."""
    started = time.perf_counter()
    base = {"name": task["name"], "index": task["index"], "seed": task["seed"], **task.get("tags", {})}
    try:
        estimates = task["replicate"](task["scenario"], task["seed"])
    except Exception as exc:  # noqa: BLE001 -- recorded, and the other replications go on
        return {**base, "error": {"type": type(exc).__name__, "message": str(exc),
                                  "traceback": traceback.format_exc()},
                "elapsed": time.perf_counter() - started, "pid": os.getpid()}
    return {**base, "estimates": [slim_estimate(e) for e in estimates],
            "elapsed": time.perf_counter() - started, "pid": os.getpid()}


@dataclass
class ExecutionReport:
    """What one invocation did: which names it computed, which failed, which it found done."""

    invocation: str
    computed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    wall_time: float = 0.0


def execute(store: ReplicationStore, tasks: list[dict[str, Any]], *, executor: Executor | None = None,
            quiet: bool = True, label: str = "replications", abort_after: int = 5,
            console: Any = None) -> ExecutionReport:
    """Run the tasks not yet in ``store``, persisting each result the moment it arrives.

    ``tasks`` are dicts with ``name``, ``index``, ``seed``, ``scenario`` (plain dict), ``replicate``
    and optional ``tags`` (copied into the record). If the first ``abort_after`` results are all
    failures and no replication is stored from before, the run stops with the first error (a broken
    scenario fails every replication alike; a resumed run whose stored replications succeeded goes on,
    and its failures are reported as a fresh run's would be).
    """
    report = ExecutionReport(invocation=uuid.uuid4().hex[:12])
    done = set(store.load())
    report.skipped = sorted((t["name"] for t in tasks if t["name"] in done), key=_natural)
    todo = [t for t in tasks if t["name"] not in done]
    started = time.perf_counter()
    own = executor is None
    executor = executor or SerialExecutor()
    progress = None
    results = executor.submit_all(_task, todo)
    try:
        if not quiet and todo:
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                       TimeElapsedColumn, TimeRemainingColumn)

            progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.fields[failed]} failed"), TimeElapsedColumn(),
                                TextColumn("ETA"), TimeRemainingColumn(),
                                console=console or Console(stderr=True), transient=False)
            progress.start()
            bar = progress.add_task(label, total=len(tasks), completed=len(done), failed=0)
        for i, result in results:
            task = todo[i]
            if isinstance(result, BaseException):
                result = {"name": task["name"], "index": task["index"], "seed": task["seed"],
                          **task.get("tags", {}),
                          "error": {"type": type(result).__name__, "message": str(result),
                                    "traceback": "".join(traceback.format_exception(result))}}
            result["invocation"] = report.invocation
            if "error" in result:
                store.save_error(task["name"], result)
                report.failed.append(task["name"])
            else:
                store.save(task["name"], result)
                report.computed.append(task["name"])
            if progress is not None:
                progress.update(bar, advance=1, failed=len(report.failed))
            if not report.computed and not done and len(report.failed) >= min(abort_after, len(todo)):
                err = store.load_errors().get(report.failed[0], {}).get("error", {})
                raise CounterfeedError(
                    f"the first {len(report.failed)} {label} all failed; first error "
                    f"({report.failed[0]}): "
                    f"{err.get('type', 'Error')}: {err.get('message', '')}")
    finally:
        results.close()
        if progress is not None:
            progress.stop()
        if own:
            executor.close()
    report.wall_time = time.perf_counter() - started
    return report


def _natural(name: str) -> tuple:
    import re

    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name))
