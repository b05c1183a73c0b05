"""``run(scenario) -> RunResult``: resolve plugins, simulate the worlds, compute outcomes and truth,
run the analyses, score them, and write the run directory atomically."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from counterfeed.core.analyse import analysis_data, check_estimates, require_estimate_list, estimands_of, srm
from counterfeed.core.covariates import user_covariates
from counterfeed.core.contracts import MetricInfo
from counterfeed.core.estimation import CATE, Estimate
from counterfeed.core.executors import available_cores, get_executor, pool_size, refuse_in_spawned_bootstrap
from counterfeed.core.experiment import AB_WORLD, world_names
from counterfeed.core.findings import allocation_of, flag_confounded, mechanism_of
from counterfeed.core.observational_spec import check_arm_sizes
from counterfeed.core.mechanisms import mechanism_summary, write_assignment
from counterfeed.core.longterm import is_population, population_report
from counterfeed.core.plan import Plan, catalog_notes, resolve
from counterfeed.core.allocators import run_allocators
from counterfeed.core.plugins import get_registry
from counterfeed.core.population import build_population
from counterfeed.core.preperiod import share_pre_periods
from counterfeed.core.progress import WorldProgress
from counterfeed.core.randomness import Keys
from counterfeed.core.results import RunResult
from counterfeed.core.rundir import RunDirectory, save_run
from counterfeed.core.scenario import Scenario, check_arms_filled, load_scenario
from counterfeed.core._guard import call_plugin
from counterfeed.core.scoring import score_estimates
from counterfeed.core.shard import open_shards
from counterfeed.core.shard_events import SessionsFile
from counterfeed.core.targeting import targeting_report, targeting_rules
from counterfeed.core.truth import truth_table
from counterfeed.core.scenario_heterogeneity import truth_replications
from counterfeed.core.user_truth import conditional_effects, replication_worlds, split_replication, user_effects
from counterfeed.core.worlds import (WorldOutput, WorldTask, build_world, simulate_world,  # noqa: F401 (re-exported)
                                     world_assignment_component)
from counterfeed.core.causal_graph import dgp_graph, write_dgp_graph
from counterfeed.core.truth_observational import observational_truth
from counterfeed.errors import DataError, ModelError, OutputError

__all__ = ["run", "resolve", "Plan", "simulate_world", "world_assignment_component", "RunDirectory"]


# ------------------------------------------------------------------------------------------------
# Worlds
# ------------------------------------------------------------------------------------------------

#: worlds run in worker processes (one per core) from this many user-days (users x simulated days);
#: the quickstart (4,000 users x 21 days) is above it (benchmarks/end_to_end.py)
CONCURRENT_USER_DAYS = 50_000
#: simulate a pre-period shared by several worlds once (core.preperiod); False: once per world
SHARE_PRE_PERIOD = True



def _simulate_all(tasks: list[WorldTask], workers: int | None, say: Callable[[str], None],
                  progress: bool = False, shards: int = 1, scheduler: str | None = None,
                  scratch: Path | None = None,
                  while_waiting: _Background | None = None,
                  timings: dict[str, float] | None = None) -> list[WorldOutput]:
    """Simulate every world (in worker processes when large; each one sharded across Dask workers
    with ``shards > 1`` or a ``scheduler``, their sessions written under ``scratch`` when given);
    ``progress`` shows a bar per world. ``while_waiting`` is started once worker processes have
    forked (it never starts when the worlds run in this process); the caller joins it. ``timings``
    receives ``preperiod_s``, the seconds of a pre-period simulated once for several worlds (0 when
    none was: each world's own seconds then include its pre-period)."""
    if shards > 1 or scheduler:
        return _simulate_sharded([replace(t, scratch=scratch) for t in tasks], say, progress, shards, scheduler,
                                 workers)
    t0 = time.perf_counter()
    if SHARE_PRE_PERIOD:  # once for the worlds that share it, before worker processes fork
        tasks = share_pre_periods(tasks, lambda t: build_world(t)[0])
    if timings is not None:
        timings["preperiod_s"] = time.perf_counter() - t0 if any(t.pre is not None for t in tasks) else 0.0
    sc = tasks[0].scenario
    size = sc.population.users * sc.total_days
    if workers is None:  # a world of this size outweighs forking a worker and sending its events back
        cores = available_cores()
        # one world more than cores (A/B + two counterfactual worlds on 2 cores): all at once, so the
        # short world finishes early and the long ones share every core instead of one queueing
        fits = len(tasks) if len(tasks) <= cores + 1 else cores
        workers = fits if size >= CONCURRENT_USER_DAYS else 1
    workers = pool_size(workers, len(tasks))  # a process per world at most
    results: dict[int, WorldOutput] = {}
    horizon = sc.experiment.pre_period + sc.experiment.duration
    with WorldProgress([t.world for t in tasks], horizon, progress, workers > 1) as show:
        tasks = [replace(t, progress=show.reporter(t.world)) for t in tasks]
        if workers <= 1:
            show.start()
            for i, task in enumerate(tasks):
                results[i] = simulate_world(task)
                show.done(task.world, _world_done(results[i]), say)
        else:
            with get_executor("local", workers=workers, inherit=tasks) as ex:  # tasks by fork, not pickled
                show.start()
                if while_waiting is not None:
                    while_waiting.start()
                for i, res in ex.submit_all(simulate_world, tasks):
                    if isinstance(res, BaseException):
                        raise res
                    results[i] = res
                    show.done(res.world, _world_done(res), say)
    return [results[i] for i in range(len(tasks))]


class _Background:
    """``fn`` in a daemon thread of this process at the lowest CPU priority (:func:`_quietly`):
    work done ahead while worker processes simulate. :meth:`join` waits for it; call it before
    anything else forks (no child may inherit the thread's import locks) and before leaving
    :func:`run`, on success or failure. Joining a thread never started returns at once."""

    def __init__(self, fn: Callable[[], None]) -> None:
        self._thread = threading.Thread(target=_quietly, args=(fn,), daemon=True)

    def start(self) -> None:
        if self._thread.ident is None:
            self._thread.start()

    def join(self) -> float:
        """Wait for the thread; returns the seconds waited (0 when it was never started)."""
        if self._thread.ident is None:
            return 0.0
        t0 = time.perf_counter()
        self._thread.join()
        return time.perf_counter() - t0


def _quietly(fn: Callable[[], None]) -> None:
    """Run ``fn`` at the lowest CPU priority this thread can take (Linux: a thread's nice value is
    its own), ignoring its errors: work done ahead while worker processes simulate uses the cores
    they leave idle instead of slowing them."""
    if sys.platform.startswith("linux"):  # elsewhere a thread's id is not a process id: normal priority
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        except OSError:  # not allowed: normal priority
            pass
    try:
        fn()
    except Exception:  # noqa: BLE001 -- a preload that fails fails again, with its message, where it is used
        pass


def _preload_output(report: bool) -> None:
    """Import what writing the run directory (Parquet) and the report (matplotlib, the report
    modules) imports, while the worlds run in worker processes: about 0.5 CPU s that the end of the
    run otherwise spends on one core while the other idles."""
    import pyarrow.parquet  # noqa: F401

    if report:
        from counterfeed.core import figures, report as _report_module  # noqa: F401

        figures.preload()


def _simulate_sharded(tasks: list[WorldTask], say: Callable[[str], None], progress: bool, shards: int,
                      scheduler: str | None, workers: int | None = None) -> list[WorldOutput]:
    """Worlds one after another, each split into ``shards`` user-id blocks (core.shard); a local
    cluster has ``workers`` processes (None: one per shard, up to one per core)."""
    sc = tasks[0].scenario
    out = []
    with WorldProgress([t.world for t in tasks], sc.total_days, progress, False) as show, \
            open_shards(shards, scheduler, workers) as pool:
        show.start()
        for task in tasks:
            out.append(simulate_world(replace(task, progress=show.reporter(task.world), shards=pool)))
            show.done(task.world, _world_done(out[-1]) + f" ({shards} shards)", say)
    return out


def _estimate(est: Any, data: Any, unestimated: list[str]) -> list[Estimate]:
    """``est``'s checked estimates; when it fails on one metric (a ``ModelError``, e.g. a ratio whose
    denominator sums to 0 in an arm), the others are still estimated: an estimator whose tags declare
    ``separable_metrics`` is run again one metric at a time (the public ``Estimator.metrics_for`` and
    ``Estimator.for_metrics``), and each metric it cannot estimate is named in ``unestimated`` (the
    run's manifest and stderr) instead of aborting the run; the warning ``est`` gives about metrics its
    default list leaves out is kept (:func:`_note_left_out`). Raises the first error when no metric can
    be estimated, or when the estimator cannot be restricted to one metric."""
    try:
        return check_estimates(est, call_plugin(est, "estimate", est.estimate, data), data.metrics)
    except ModelError as first:
        try:
            names = list(call_plugin(est, "metrics_for", est.metrics_for, data))
        except ModelError:
            raise first from None
        ones = [call_plugin(est, "for_metrics", est.for_metrics, [m]) for m in names] if len(names) > 1 else []
        if not ones or any(one is None for one in ones):
            raise
        out: list[Estimate] = []
        for m, one in zip(names, ones):
            try:
                out += check_estimates(one, call_plugin(one, "estimate", one.estimate, data), data.metrics)
            except ModelError as exc:
                unestimated.append(f"no estimate of metric '{m}' by {est.name}: {exc}")
        if not out:
            raise first from None
        return _note_left_out(est, data, out)


def _note_left_out(est: Any, data: Any, out: list[Estimate]) -> list[Estimate]:
    """The fallback's estimates with the warning ``est`` gives about the metrics its default metric
    list leaves out (``Estimator.note_left_out``; e.g. cuped's ratio metrics), once: its one-metric
    copies name their metric, so they leave nothing out and say nothing. Asked of ``est`` itself,
    whose options are the user's."""
    noted = call_plugin(est, "note_left_out", est.note_left_out, data, out)
    return require_estimate_list(est, noted, "note_left_out")


def _world_done(out: WorldOutput) -> str:
    return f"world {out.world}: {out.sessions:,} sessions in {out.seconds:.1f} s"


def _versions() -> dict[str, str]:
    """Python's and the installed versions of the packages a run may use, from their distributions'
    metadata: the same list whatever this process imported (a run that found its two-tower model in the
    cache never imports torch, and its manifest listed no torch; break test 7)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for dist in ("numpy", "pandas", "pyarrow", "simpy", "pluggy", "pydantic", "scipy", "torch",
                 "transformers", "pymc", "nutpie", "arviz"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:  # not installed: the run cannot have used it
            pass
    return out


# ------------------------------------------------------------------------------------------------
# The run
# ------------------------------------------------------------------------------------------------

@run_allocators()
def run(scenario: Scenario | str | Path, *, output_dir: str | Path | None = None, write: bool = True,
        quiet: bool = True, workers: int | None = None, keep_events: bool = False,
        log: Callable[[str], None] | None = None, shards: int | None = None,
        scheduler: str | None = None) -> RunResult:
    """Run a scenario: simulate its worlds, estimate, score against the truth, write the run directory.

    Parameters
    ----------
    scenario : a :class:`Scenario` or the path of a scenario file.
    output_dir : parent of the run directory (default: the scenario's ``output.dir``).
    write : write the run directory (False keeps everything in memory, e.g. for calibration).
    quiet : no progress messages.
    workers : processes for the independent worlds (None: automatic; 1: this process); with shards on a
        local cluster, its worker processes (None: one per core; at most ``shards``); ignored by an
        existing cluster (``scheduler``), which has its own.
    keep_events : keep the worlds' event logs on the returned result.
    shards, scheduler : split every world's users into ``shards`` blocks simulated by Dask workers
        (default: the scenario's ``execution``; a LocalCluster unless ``scheduler`` is an address;
        ``"in-process"`` keeps the shards in this process). The results are the unsharded ones.

    While the run lasts, NumPy allocates without transparent huge pages and Arrow from the system
    allocator (:mod:`counterfeed.core.allocators`).
    """
    refuse_in_spawned_bootstrap("counterfeed.run()")  # a worker of a local Dask cluster, importing a script
    t_start = time.perf_counter()
    sc = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
    from counterfeed.core.shard_spec import execution_arguments  # checked as execution.shards/scheduler are:

    shards, scheduler = execution_arguments(sc, shards, scheduler, "run")  # 0, 2.9, '2': an error, not unsharded
    check_arms_filled(sc)  # before simulating: the estimates would fail after every world
    say = log or ((lambda msg: None) if quiet else (lambda msg: print(msg, file=sys.stderr, flush=True)))
    registry = get_registry()
    plan = resolve(sc, registry)
    rundir = RunDirectory(Path(output_dir or sc.output.dir), sc.name) if write else None
    timings: dict[str, float] = {}
    preload = _Background(lambda: _preload_output(sc.output.report)) if write else None
    try:
        tmp = rundir.create() if rundir else None
        registry.hook.counterfeed_run_start(scenario=sc, run_dir=tmp)
        keys = Keys(sc.seed)
        t0 = time.perf_counter()
        items = plan.build_items(keys)
        population = build_population(sc.population, keys)
        timings["setup_s"] = time.perf_counter() - t0
        say(f"{sc.name}: {population.n:,} users, {items.n:,} items, arms {', '.join(sc.arms)}")
        notes = plan.notes + catalog_notes(sc, items.n)
        for line in notes if write or not quiet else []:  # like a warning, even with --quiet; not in every
            print(f"note: {line}", file=sys.stderr, flush=True)  # replication of a calibration (its command says)
        t0 = time.perf_counter()
        replications = truth_replications(sc, CATE in estimands_of(plan.estimators))
        tasks = [WorldTask(sc, w, items, population)
                 for w in world_names(sc) + replication_worlds(sc.arms, replications)]
        outputs = _simulate_all(tasks, workers, say, not quiet and log is None, shards, scheduler, tmp,
                                while_waiting=preload, timings=timings)
        timings["simulate_s"] = time.perf_counter() - t0
        if preload is not None:  # what the imports ahead still needed once the worlds were done
            timings["preload_wait_s"] = preload.join()
        for o in outputs:
            timings[f"world_{o.world}_s"] = o.seconds
        total_sessions = sum(o.sessions for o in outputs)
        replicated = [o.outcomes for o in outputs if split_replication(o.world)[1]]
        outputs = [o for o in outputs if not split_replication(o.world)[1]]
        outcomes = pd.concat([o.outcomes for o in outputs], ignore_index=True)
        series = pd.concat([o.timeseries for o in outputs], ignore_index=True)
        events = {o.world: o.events for o in outputs}
        infos: dict[str, MetricInfo] = {n: m.info() for n, m in plan.metrics.items()}
        per_user = [n for n in plan.analysed if not is_population(infos[n])]
        truth = truth_table(outcomes, events, sc.arms, sc.control, {n: infos[n] for n in per_user},
                            estimands_of(plan.estimators), float(sc.experiment.pre_period))
        user_truth = user_effects(outcomes, sc.arms, sc.control, {n: infos[n] for n in per_user})
        if replicated:
            user_truth = conditional_effects(user_truth, pd.concat(replicated, ignore_index=True), sc.arms,
                                             sc.control, {n: infos[n] for n in per_user})
        mechanism = next(o.mechanism for o in outputs if o.world == AB_WORLD)
        extra = observational_truth(outcomes, events, sc.arms, sc.control, {n: infos[n] for n in per_user},
                                    mechanism, plan.metrics, sc.total_days)
        truth = pd.concat([truth, extra], ignore_index=True) if len(extra) else truth
        ab = outcomes[outcomes["world"] == AB_WORLD].drop(columns="world").reset_index(drop=True)
        if mechanism:
            check_arm_sizes(sc, ab["arm"])
        allocation = next(o.allocation for o in outputs if o.world == AB_WORLD)
        probabilities = next(o.probabilities for o in outputs if o.world == AB_WORLD)
        srm_result = srm(sc, ab, allocation or ({"probabilities": probabilities} if mechanism else None))
        t0 = time.perf_counter()
        data = analysis_data(sc, plan.metrics, per_user, plan.estimators, ab, events[AB_WORLD], items,
                             probabilities, allocation is not None, tmp, mechanism)
        data.covariates = user_covariates(events[AB_WORLD], population, float(sc.experiment.pre_period),
                                          ab["user"].to_numpy(), sc.population.features, keys)
        estimates: list[Estimate] = []
        unestimated: list[str] = []
        for i, est in enumerate(plan.estimators):  # plan.estimators[i] is analysis[i]'s (core.plan)
            try:
                made = _estimate(est, data, unestimated)
            except (DataError, ModelError) as exc:  # located at the estimator's entry of the scenario
                raise type(exc)(f"{sc.error(str(exc), f'analysis[{i}]')}") from None
            for e in made:
                e.analysis = i
            for key, seconds in (est.timings_ or {}).items():  # e.g. sem's fits (Estimator.timings_)
                timings[f"analysis_{i}_{est.name}_{key}"] = float(seconds)
            estimates += made
        for line in unestimated:  # a warning, not progress: shown even with --quiet
            print(f"warning: {line}", file=sys.stderr, flush=True)
        flag_confounded(estimates, mechanism_of(sc), allocation_of(sc))  # on each row, not only in the report
        score_estimates(estimates, truth)
        if sc.targeting is not None:  # deploy the rules learned from the CATE estimates (core.targeting)
            info = infos[sc.targeting.metric]
            rules = targeting_rules(sc, info, estimates, user_truth, population.n)
            deployed = _simulate_all([WorldTask(sc, w, items, population, assignment=a) for w, a in rules.items()],
                                     workers, say, not quiet and log is None, shards, scheduler, tmp)
            targeting = targeting_report(sc, info, rules, {o.world: o.outcomes for o in deployed}, outcomes,
                                         user_truth, data)
        cate = _cate_scores(estimates, user_truth, ab, replications)
        timings["analysis_s"] = time.perf_counter() - t0
        timings["total_s"] = time.perf_counter() - t_start
        timings["sessions"] = float(total_sessions)
        timings["sessions_per_s"] = total_sessions / max(timings["simulate_s"], 1e-9)
        manifest = {
            "scenario": sc.name, "seed": sc.seed, "counterfeed_version": _version(),
            "versions": _versions(), "plugins": [p.to_dict() for p in registry.all_plugins()],
            "timings": timings, "worlds": list(events), "arms": sc.arms, "control": sc.control,
            "n_users": population.n, "n_items": items.n, "level": sc.level,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "complete": True,
        }
        if shards > 1 or scheduler:  # the results are the unsharded ones; how they were computed is recorded
            manifest["execution"] = {"shards": shards, "scheduler": scheduler or "local"}
        if replications:
            manifest["truth"] = {"replications": replications}
        if sc.targeting is not None:
            manifest["targeting"] = targeting
        if sc.experiment.training != "own":
            manifest["training"] = sc.experiment.training
        if unestimated:
            manifest["unestimated"] = unestimated
        if notes:
            manifest["notes"] = notes
        if any(o.population for o in outputs):
            manifest["population_metrics"] = population_report(sc, [r for o in outputs for r in o.population])
        if allocation is not None:
            manifest["allocation"] = {"method": sc.experiment.allocation.method,
                                      "history": allocation["history"]}
        if mechanism:
            manifest["assignment"] = mechanism_summary(mechanism)
        if sc.experiment.phases:
            manifest["phases"], manifest["phase_value"] = _phase_report(sc, plan, outputs)
        result = RunResult(scenario=sc, seed=sc.seed, estimates=estimates, truth=truth, srm=srm_result,
                           outcomes=outcomes, timeseries=series, timings=timings, manifest=manifest,
                           events=events if keep_events else None, user_truth=user_truth)
        if rundir is not None and tmp is not None:
            try:
                if (mechanism or sc.graph is not None) and per_user:
                    write_dgp_graph(tmp, dgp_graph(sc, per_user[0]))
                if mechanism:
                    write_assignment(tmp, mechanism)
                save_run(result, tmp, events, record_impressions=sc.output.events == "impressions", background=True)
                if cate is not None:
                    from counterfeed.analysis.cate_scores import write_cate_scores
                    write_cate_scores(tmp, *cate)
                if sc.output.report:
                    _report(tmp, say)
                result.run_dir = rundir.publish()
                for ev in events.values():  # sessions files written by shards moved with the directory
                    if ev is not None and isinstance(ev.sessions, SessionsFile):
                        ev.sessions.path = result.run_dir / ev.sessions.path.relative_to(tmp)
            except OSError as exc:
                raise OutputError(f"cannot write the run directory in '{rundir.parent}': "
                                  f"{exc.strerror or exc}") from None
            say(f"wrote {result.run_dir}")
        registry.hook.counterfeed_run_end(scenario=sc, result=result)
        return result
    except BaseException:
        if preload is not None:
            preload.join()
        if rundir is not None:
            rundir.discard()
        raise


def _cate_scores(estimates: list[Estimate], user_truth: pd.DataFrame, ab: pd.DataFrame,
                 replications: int) -> tuple | None:
    """Per-user scores of the CATE estimates (:mod:`counterfeed.analysis.cate_scores`); None without any."""
    if not any(e.user_effects is not None for e in estimates):
        return None
    from counterfeed.analysis.cate_scores import score_estimates_cate

    return score_estimates_cate(estimates, user_truth, ab, replications)


def _phase_report(sc: Scenario, plan: Plan, outputs: list[WorldOutput]) -> tuple[list, dict]:
    from counterfeed.core.phases import score_phases

    decisions = next(o.phase_decisions for o in outputs if o.world == AB_WORLD)
    values = {o.world: o.phase_values for o in outputs}
    higher = [plan.metrics[p.metric].info().higher_is_better for p in sc.experiment.phases or []]
    summary = score_phases(sc, decisions, values, higher)
    return decisions, summary


def _report(directory: Path, say: Callable[[str], None]) -> None:
    try:
        from counterfeed.core.report import write_report
    except ImportError:  # pragma: no cover - report module is part of the package
        return
    write_report(directory)


def _version() -> str:
    from counterfeed import __version__

    return __version__
