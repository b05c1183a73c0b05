"""Speed of a long feedback-loop run: 120 days, 20,000 users, on 2 cores (issue 19).

Runs the three worlds of ``scenarios/feedback_loop.yaml`` (A/B, all-MF, all-MMR) at the target size
through :func:`counterfeed.core.runner.simulate_world` (what ``counterfeed run`` does per world) on a
2-process pool, and prints

- wall seconds (target: under 300 s on 2 cores) and sessions/s,
- the CPU seconds of the workers (what the run costs an idle 2-core machine: wall >= CPU / 2),
- the share of each world's time spent computing metrics (per-user outcomes, population values and
  the weekly long-term series, including each log's per-slate arrays that the metrics build once;
  target: below 20%), in wall and in CPU seconds (the CPU share does not depend on the machine's load),
- a baseline measured in the same run: the engine alone (popularity vs random, engagement metrics,
  one world, 14 days, same users) in sessions/s, and the load average before and after, because the
  machine may be shared: under load, compare the figures with the baseline, not with an idle machine.

    python benchmarks/long_term_speed.py                  # 20,000 users, 120 days (several minutes)
    python benchmarks/long_term_speed.py --users 2000 --days 30   # a quick check
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from counterfeed.core import runner  # noqa: E402
from counterfeed.core.contracts import CatalogContext  # noqa: E402
from counterfeed.core.experiment import world_names  # noqa: E402
from counterfeed.core.executors import get_executor  # noqa: E402
from counterfeed.core.population import build_population  # noqa: E402
from counterfeed.core.randomness import Keys  # noqa: E402
from counterfeed.core.scenario import load_scenario  # noqa: E402

SCENARIO = Path(__file__).resolve().parent.parent / "scenarios" / "feedback_loop.yaml"
_METRIC_S = {"outcomes": (0.0, 0.0), "long_term": (0.0, 0.0)}  # (wall, CPU) seconds of the last call


def _clocks() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _timed(name, fn):
    def timed(*args, **kwargs):
        w0, c0 = _clocks()
        out = fn(*args, **kwargs)
        w1, c1 = _clocks()
        _METRIC_S[name] = (w1 - w0, c1 - c0)
        return out

    return timed


def _simulate_timed(task):
    """One world; the (wall, CPU) seconds its metric computation took (every metric: the per-user
    outcomes, the population values and the long-term series, including building each log's
    per-slate arrays, which happens inside them); and the world's CPU seconds."""
    c0 = time.process_time()
    out = runner.simulate_world(task)
    cpu = time.process_time() - c0
    (wo, co), (wl, cl) = _METRIC_S["outcomes"], _METRIC_S["long_term"]
    return out, (wo + wl, co + cl, cpu)


runner.world_outcomes = _timed("outcomes", runner.world_outcomes)  # the workers fork after this
runner.world_long_term = _timed("long_term", runner.world_long_term)


def _tasks(sc, worlds=None):
    keys = Keys(sc.seed)
    plan = runner.resolve(sc)
    cat = plan.catalog()
    items = cat.build(CatalogContext(keys=keys, stream=keys.stream("catalog"), dimensions=sc.population.dimensions))
    pop = build_population(sc.population, keys)
    return [runner.WorldTask(sc, w, items, pop) for w in (worlds or world_names(sc))]


def _run(tasks, workers):
    before = _cpu()
    t0 = time.perf_counter()
    outs = []
    with get_executor("local", workers=workers) as ex:
        for _, res in ex.submit_all(_simulate_timed, tasks):
            if isinstance(res, BaseException):
                raise res
            outs.append(res)
    wall = time.perf_counter() - t0
    return outs, wall, _cpu() - before


def _cpu() -> float:
    """CPU seconds of this process and its finished children (the pool's workers)."""
    return sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                   resource.getrusage(resource.RUSAGE_CHILDREN)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=20_000)
    ap.add_argument("--days", type=int, default=120)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    load0 = os.getloadavg()
    print(f"load average before: {load0[0]:.1f} {load0[1]:.1f} {load0[2]:.1f} on {os.cpu_count()} cores")

    base = load_scenario(SCENARIO).with_overrides({
        "population.users": args.users, "experiment.duration": "14d", "metrics": ["clicks", "sessions"],
        "experiment.arms": {"mf": {"recommender": "popularity"}, "mmr": {"recommender": "random"}}})
    outs, wall, cpu = _run(_tasks(base, ["ab"]), 1)
    outs = [o for o, _ in outs]
    base_rate = outs[0].sessions / wall
    print(f"baseline (engine alone: popularity vs random, {args.users:,} users, 14 days, 1 world): "
          f"{outs[0].sessions:,} sessions in {wall:.1f} s = {base_rate:,.0f} sessions/s (CPU {cpu:.1f} s)")

    sc = load_scenario(SCENARIO).with_overrides({"population.users": args.users,
                                                 "experiment.duration": f"{args.days}d"})
    timed, wall, cpu = _run(_tasks(sc), args.workers)
    outs = [o for o, _ in timed]
    metric_of = {o.world: m for o, m in timed}
    sessions = sum(o.sessions for o in outs)
    world_s = sum(o.seconds for o in outs)
    metric_s = sum(m[0] for m in metric_of.values())
    metric_cpu, world_cpu = sum(m[1] for m in metric_of.values()), sum(m[2] for m in metric_of.values())
    load1 = os.getloadavg()
    print(f"feedback loop ({args.users:,} users, {args.days} days, worlds {', '.join(o.world for o in outs)}, "
          f"{args.workers} workers):")
    print(f"  wall {wall:.1f} s (target < 300 s), {sessions:,} sessions, {sessions / wall:,.0f} sessions/s; "
          f"CPU (this process and workers) {cpu:.1f} s (idle-machine wall >= {cpu / args.workers:.1f} s)")
    for o in outs:
        m = metric_of[o.world]
        print(f"  world {o.world}: {o.sessions:,} sessions in {o.seconds:.1f} s (CPU {m[2]:.1f} s), metrics "
              f"{m[0]:.1f} s (CPU {m[1]:.1f} s)")
    print(f"  metric computation: {metric_s:.1f} s of {world_s:.1f} s of world time = "
          f"{100 * metric_s / world_s:.1f}% (target < 20%); in CPU time {metric_cpu:.1f} s of {world_cpu:.1f} s = "
          f"{100 * metric_cpu / world_cpu:.1f}%")
    print(f"  throughput vs the baseline measured now: {sessions / wall / base_rate:.2f}x")
    print(f"load average after: {load1[0]:.1f} {load1[1]:.1f} {load1[2]:.1f}")


if __name__ == "__main__":
    main()
