"""Engine throughput against the population size (issue 20, point 3), before and after, in one run.

One world of the engine-throughput reference scenario (2k items, 32 dimensions, slate of 10, 1-hour
windows, popularity, no retraining, sessions table only) at 10k, 100k and 1M users, each in a fresh
process pinned to one core, for:

- ``before``: the engine at ``--before-commit`` (one SimPy generator per user), checked out in a
  temporary git worktree;
- ``now``: this checkout's engine (the array-backed visit calendar).

Printed per size: sessions/s, peak RSS, and the rate relative to the same engine's 10k-user rate
(target for ``now``: 1M users >= 0.75 of 10k). Every size also prints a digest of the per-user
(sessions, clicks, dwell) table: before and now must agree, since the user model's draws are keyed
by (user, session, slot) and a window's requests are order-free.

    python benchmarks/engine_scaling.py                     # 3 simulated days (a few minutes)
    python benchmarks/engine_scaling.py --days 5 --sizes 10000,100000,1000000

Sharded (issue 20, points 1-2): the same world at ``--sharded-sizes`` (default 1M and 5M users)
split into ``--shards`` user-id blocks on a ``distributed.LocalCluster`` of that many single-threaded
worker processes (:mod:`counterfeed.core.shard`; each shard builds only its block of the population).
As in a run, the shards reduce the per-user (sessions, clicks, dwell) themselves and write the
sessions file's parts (:mod:`counterfeed.core.shard_events`), which the coordinator joins into the
Parquet file; the coordinator never holds the sessions. Printed: sessions/s, the per-user digest
(which must equal the unsharded one) and peak memory.

Peak memory is the resident-set high-water mark (Linux ``ru_maxrss``) of each process over its whole
life, the same measure for both: for a worker, from the Dask worker's start through building its
population block, simulating, its per-user outcomes and writing its parts of the sessions file; for
the unsharded process, from its start through building the population, simulating, the per-user
outcomes and writing the sessions file (after letting go of the world, as a run does). Also printed,
in parentheses, the same high-water mark when the simulation ended, and the coordinator's.
Target: sharded peak per worker <= 60% of the unsharded peak at the same population. A size above
``--unsharded-max`` is not run unsharded (it may not fit); its unsharded peak is then an *estimate*,
extrapolated linearly from the two largest unsharded sizes measured, and printed as such.

    python benchmarks/engine_scaling.py --no-before --sizes 10000,100000,1000000 --sharded-sizes 1000000,5000000
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import gc  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BEFORE_COMMIT = "5d66b26"  # main before issue 20's work


def child(users: int, days: float) -> None:
    import numpy as np

    from counterfeed.core.contracts import CatalogContext
    from counterfeed.core.population import build_population
    from counterfeed.core.randomness import Keys
    from counterfeed.core.runner import resolve
    from counterfeed.core.simulation import SimWorld, WorldConfig

    sc = bench_scenario(users, days)
    plan = resolve(sc)
    keys = Keys(sc.seed)
    items = plan.catalog().build(CatalogContext(keys=keys, stream=keys.stream("catalog"), dimensions=32))
    pop = build_population(sc.population, keys)
    e = sc.experiment
    cfg = WorldConfig(name="all-control", arms=sc.arms, control=0, assignment=np.zeros(users, np.int64),
                      pre_period=0.0, duration=e.duration, batch_window=e.batch_window, retrain_every=None,
                      slate_size=e.slate_size, record_impressions=False)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    world = SimWorld(cfg, items, pop, keys, plan.user_model(), plan.recommender)
    t0 = time.perf_counter()
    s = world.run().sessions
    seconds = time.perf_counter() - t0
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    n = int(s["user"].size)
    digest = per_user_digest(s, users)  # the per-user outcomes, computed while the world is alive, as a run does
    try:  # what a run does next, as the shards do: the sessions file (absent from --before-commit)
        from counterfeed.core.shard_events import write_sessions
    except ImportError:
        rss2 = rss1
    else:
        del world  # a run lets go of the world (the user model's state) before writing its events
        gc.collect()
        with tempfile.TemporaryDirectory(prefix="cf-unsharded-") as tmp:
            write_sessions(Path(tmp) / "sessions.parquet", s, users)
        rss2 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"users": users, "sessions": n, "seconds": seconds, "rate": n / seconds,
                      "peak_rss_mb": rss1 / 1024, "sim_rss_growth_mb": (rss1 - rss0) / 1024,
                      "written_rss_mb": rss2 / 1024, "digest": digest}))


def bench_scenario(users: int, days: float):
    from counterfeed.core.scenario import Scenario

    return Scenario.from_dict({
        "name": "bench", "seed": 1, "population": {"users": users, "dimensions": 32},
        "catalog": {"plugin": "synthetic", "items": 2000, "topics": 20}, "user_model": {"plugin": "choice"},
        "experiment": {"arms": {"control": {"recommender": "popularity"},
                                "treatment": {"recommender": "popularity"}},
                       "duration": f"{days}d", "pre_period": 0, "batch_window": "1h",
                       "retrain_every": None, "slate_size": 10},
        "output": {"events": "sessions", "report": False}})


def per_user_digest(s: dict, users: int) -> str:
    """Digest of the per-user (sessions, clicks, dwell) table."""
    import numpy as np

    return digest_of([np.bincount(s["user"], minlength=users),
                      np.bincount(s["user"], weights=s["clicks"], minlength=users),
                      np.bincount(s["user"], weights=s["dwell"], minlength=users)])


def digest_of(per_user: list) -> str:
    """Digest of per-user (sessions, clicks, dwell) arrays (dwell rounded to 6 decimals)."""
    import numpy as np

    per_user = [*per_user[:2], np.round(per_user[2], 6)]
    return hashlib.sha256(b"".join(np.ascontiguousarray(a, dtype=np.float64).tobytes()
                                   for a in per_user)).hexdigest()[:16]


def sharded_child(users: int, days: float, shards: int) -> None:
    """One world split into ``shards`` blocks on a LocalCluster; prints one JSON line. The shards write
    the sessions file and reduce the per-user (sessions, clicks, dwell) themselves, as in a run: the
    coordinator never holds the sessions."""
    import pyarrow.parquet as pq
    from counterfeed.core.contracts import CatalogContext
    from counterfeed.core.randomness import Keys
    from counterfeed.core.runner import resolve
    from counterfeed.core.shard import ShardedWorld, open_shards
    from counterfeed.core.simulation import WorldConfig

    sc = bench_scenario(users, days)
    plan = resolve(sc)
    keys = Keys(sc.seed)
    items = plan.catalog().build(CatalogContext(keys=keys, stream=keys.stream("catalog"), dimensions=32))
    e = sc.experiment
    import numpy as np

    cfg = WorldConfig(name="all-control", arms=sc.arms, control=0, assignment=np.zeros(users, np.int64),
                      pre_period=0.0, duration=e.duration, batch_window=e.batch_window, retrain_every=None,
                      slate_size=e.slate_size, record_impressions=False, n_users=users)
    names = ("sessions", "clicks", "dwell")
    with open_shards(shards, workers=shards) as pool, tempfile.TemporaryDirectory(prefix="cf-sharded-") as tmp:
        world = ShardedWorld(cfg, items, (sc.population, keys), keys, plan.user_model(), plan.recommender,
                             shards=pool, scratch=Path(tmp), metrics={n: plan.metrics[n] for n in names},
                             windows=[(0.0, cfg.horizon)])
        t0 = time.perf_counter()
        s = world.run().sessions
        seconds = time.perf_counter() - t0
        n = pq.ParquetFile(s.path).metadata.num_rows
        pyarrow = pool.client.run(lambda: "pyarrow" in sys.modules) if hasattr(pool, "client") else {}
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"users": users, "sessions": n, "seconds": seconds,
                      "rate": n / seconds, "coordinator_rss_mb": rss / 1024,
                      "worker_rss_mb": [m / 2**20 for m in world.shard_memory],
                      "worker_sim_rss_mb": [m / 2**20 for m in world.shard_memory_simulating],
                      "workers_loaded_pyarrow": any(pyarrow.values()),
                      "digest": digest_of([world.reduced[(m, 0.0, cfg.horizon)] for m in names])}))


def launch(tree: Path, users: int, days: float, shards: int = 0) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(users), str(days)]
    if shards:
        cmd += ["--child-shards", str(shards)]
    try:
        core = sorted(os.sched_getaffinity(0))[0]
        if not shards:  # the sharded run's workers get every core
            cmd = ["taskset", "-c", str(core), *cmd]
    except (AttributeError, OSError):
        pass
    out = subprocess.run(cmd, env=env, cwd=tree, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{tree} {users} users failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--days", type=float, default=3.0)
    ap.add_argument("--before-commit", default=BEFORE_COMMIT)
    ap.add_argument("--no-before", action="store_true", help="measure this checkout only")
    ap.add_argument("--sharded-sizes", default="1000000,5000000", help="'' to skip the sharded runs")
    ap.add_argument("--shards", type=int, default=2, help="shards (= LocalCluster workers) of a sharded run")
    ap.add_argument("--unsharded-max", type=int, default=1_000_000,
                    help="largest population also run unsharded for the memory comparison")
    ap.add_argument("--child-shards", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        if args.child_shards:
            sharded_child(int(args.child[0]), float(args.child[1]), args.child_shards)
        else:
            child(int(args.child[0]), float(args.child[1]))
        return
    sizes = [int(x) for x in args.sizes.split(",")]
    print(f"engine scaling: popularity, 2k items, 32 dims, slate 10, {args.days:g} days, one core; "
          f"load before: {load()}")
    with tempfile.TemporaryDirectory(prefix="cf-before-") as tmp:
        trees = {"now": ROOT}
        if not args.no_before:
            trees = {"before": Path(tmp) / "tree", "now": ROOT}
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(trees["before"]),
                            args.before_commit], check=True)
        try:
            rows: dict[str, dict[int, dict]] = {k: {} for k in trees}
            for users in sizes:  # interleaved, so both engines see the same load
                for name, tree in trees.items():
                    r = rows[name][users] = launch(tree, users, args.days)
                    base = rows[name][sizes[0]]["rate"]
                    print(f"  {name:<6} {users:>9,} users: {r['sessions']:>10,} sessions in {r['seconds']:7.1f} s"
                          f" = {r['rate']:>9,.0f}/s ({r['rate'] / base:.2f} of {sizes[0]:,}); peak RSS "
                          f"{r['peak_rss_mb']:,.0f} MB when the simulation ended; per-user digest {r['digest']}",
                          flush=True)
        finally:
            if "before" in trees:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(trees["before"])],
                               check=False)
    print(f"load after: {load()}")
    for name in trees:
        r = rows[name]
        print(f"  {name}: {sizes[-1]:,} users at {r[sizes[-1]]['rate'] / r[sizes[0]]['rate']:.2f} of the "
              f"{sizes[0]:,}-user rate (target >= 0.75)")
    if "before" in rows:
        same = all(rows["before"][u]["digest"] == rows["now"][u]["digest"] for u in sizes)
        print(f"  per-user outcomes before == now at every size: {same}")
        for u in sizes:
            print(f"  {u:>9,} users: now / before sessions/s {rows['now'][u]['rate'] / rows['before'][u]['rate']:.2f}x")
    if args.sharded_sizes:
        sharded(args, rows["now"])


def sharded(args: argparse.Namespace, now: dict[int, dict]) -> None:
    """Each ``--sharded-sizes`` population on ``--shards`` LocalCluster workers, against unsharded."""
    sizes = [int(x) for x in args.sharded_sizes.split(",")]
    print(f"sharded: {args.shards} shards on a LocalCluster of {args.shards} single-threaded workers; "
          f"load before: {load()}")
    for users in sizes:
        if users not in now and users <= args.unsharded_max:
            now[users] = launch(ROOT, users, args.days)
        r = launch(ROOT, users, args.days, shards=args.shards)
        workers = ", ".join(f"{m:,.0f}" for m in r["worker_rss_mb"])
        simulating = ", ".join(f"{m:,.0f}" for m in r["worker_sim_rss_mb"])
        line = (f"  {users:>9,} users, {args.shards} shards: {r['sessions']:>10,} sessions in {r['seconds']:7.1f} s"
                f" = {r['rate']:>9,.0f}/s; peak RSS per worker {workers} MB over the whole world ({simulating} MB "
                f"when the simulation ended; workers loaded pyarrow: {r['workers_loaded_pyarrow']}); coordinator "
                f"{r['coordinator_rss_mb']:,.0f} MB; per-user digest {r['digest']}")
        print(line, flush=True)
        peak = max(r["worker_rss_mb"])
        if users in now:
            u = now[users]
            whole = u.get("written_rss_mb", u["peak_rss_mb"])
            print(f"  {users:>9,} users, unsharded: {u['sessions']:>10,} sessions in {u['seconds']:7.1f} s = "
                  f"{u['rate']:>9,.0f}/s; peak RSS {whole:,.0f} MB over the whole world ({u['peak_rss_mb']:,.0f} MB "
                  f"when the simulation ended); per-user digest {u['digest']}")
            print(f"    sharded / unsharded peak RSS: largest worker {peak / whole:.0%} over the whole world "
                  f"(target <= 60%), {max(r['worker_sim_rss_mb']) / u['peak_rss_mb']:.0%} when the simulation "
                  f"ended; sessions/s {r['rate'] / u['rate']:.2f}x; same per-user outcomes: "
                  f"{r['digest'] == u['digest']}; load {load()}")
        else:
            known = sorted(now)[-2:]
            if len(known) == 2:
                (a, ra), (b, rb) = [(k, now[k].get("written_rss_mb", now[k]["peak_rss_mb"])) for k in known]
                est = rb + (rb - ra) * (users - b) / (b - a)
                print(f"    unsharded not run (above --unsharded-max {args.unsharded_max:,}); ESTIMATED unsharded "
                      f"peak {est:,.0f} MB (linear from {a:,} and {b:,} users): peak per worker "
                      f"{peak / est:.0%} of the estimate")
    print(f"load after: {load()}")


if __name__ == "__main__":
    main()
