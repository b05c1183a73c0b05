"""Speed of the twin (docs/twin.md, "Speed"): fitting on a large log, and evaluating a policy in the twin
against a normal run of the same size.

Times are CPU seconds of this process (``time.process_time``; BLAS and torch pinned to one thread), so
a shared, loaded machine does not inflate them; wall times are printed beside.

1. A synthetic log of ``--impressions`` rows (default 10M: 200k users, 5k items, slates of 10) is
   generated vectorised (random slates, low-rank utilities, attention-MNL clicks, exponential gaps),
   then validated (``twin_log_from_frame``) and fitted (``fit_twin``, point fit) on one core; the
   bootstrap cost per replicate is measured on ``--bootstrap`` replicates.
2. ``evaluate_twin`` of one policy over ``--eval-users`` users vs ``counterfeed run`` of a scenario with
   the same users, arms and horizon and the built-in ``choice`` model (the baseline, same run).

    python benchmarks/twin_speed.py                      # 10M impressions, 100k users
    python benchmarks/twin_speed.py --impressions 1000000 --eval-users 20000
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def synthetic_log(n_impressions: int, n_items: int = 5000, k: int = 10, sessions_per_user: int = 5,
                  dims: int = 8, seed: int = 0) -> pd.DataFrame:
    """A vectorised log in the simulator's layout (user, session, time, position, item, click, dwell, propensity)."""
    rng = np.random.default_rng(seed)
    n_sessions = n_impressions // k
    n_users = max(2, n_sessions // sessions_per_user)
    P = rng.normal(0, 1 / np.sqrt(dims), (n_users, dims)).astype(np.float32)
    V = rng.normal(0, 1, (n_items, dims)).astype(np.float32)
    b = rng.normal(-2.0, 0.7, n_items).astype(np.float32)
    user = np.repeat(np.arange(n_users), sessions_per_user)[:n_sessions]
    session = np.tile(np.arange(sessions_per_user), n_users)[:n_sessions]
    gaps = rng.exponential(1.0, n_sessions)
    first = np.r_[True, user[1:] != user[:-1]]
    t = np.cumsum(gaps)
    t -= np.maximum.accumulate(np.where(first, t - gaps, 0))  # restart the clock per user
    items = rng.integers(0, n_items, (n_sessions, k))
    util = np.empty((n_sessions, k), np.float32)
    for lo in range(0, n_sessions, 200_000):
        hi = lo + 200_000
        util[lo:hi] = np.einsum("nd,nkd->nk", P[user[lo:hi]], V[items[lo:hi]]) + b[items[lo:hi]]
    util += np.log(0.85 ** np.arange(k, dtype=np.float32))[None, :]
    g = util + rng.gumbel(size=util.shape).astype(np.float32)
    best = g.argmax(1)
    click = np.zeros((n_sessions, k), bool)
    hit = g[np.arange(n_sessions), best] > rng.gumbel(size=n_sessions)
    click[np.flatnonzero(hit), best[hit]] = True
    return pd.DataFrame({"user": np.repeat(user, k), "session": np.repeat(session, k), "time": np.repeat(t, k),
                         "position": np.tile(np.arange(k), n_sessions), "item": items.ravel(),
                         "click": click.ravel(), "dwell": np.where(click.ravel(), 2.0, 0.0),
                         "propensity": np.full(n_sessions * k, 1.0 / n_items)})


def fit_speed(args) -> None:
    from counterfeed.twin.data import twin_log_from_frame
    from counterfeed.twin.fit import FitSettings, fit_twin

    t0 = time.perf_counter()
    df = synthetic_log(args.impressions)
    t_gen = time.perf_counter() - t0
    t0 = time.perf_counter()
    log = twin_log_from_frame(df, source="synthetic", horizon=float(df["time"].max()) + 1.0,
                              logging={"recommender": "random"}, slate_size=10)
    t_load = time.perf_counter() - t0
    del df
    t0, c0 = time.perf_counter(), time.process_time()
    meta, _ = fit_twin(log, FitSettings(dims=8, holdout=0.0, bootstrap=0))
    t_fit, c_fit = time.perf_counter() - t0, time.process_time() - c0
    post = meta["factorization"].get("user_posterior")
    print(f"log: {len(log):,} impressions, {log.n_users:,} users, {log.n_items:,} items, {log.n_sessions:,} sessions")
    print(f"  generation (vectorised) {t_gen:.1f} s; validation {t_load:.1f} s (wall)")
    print(f"  point fit on one core: {c_fit:.1f} s of CPU, {t_fit:.1f} s wall (load average "
          f"{os.getloadavg()[0]:.1f}); target < 120 s: {'met' if c_fit < 120 else 'NOT met'}")
    if post:  # the MNL's user posterior (counterfeed.twin.posterior), part of the point fit
        print(f"  of which the users' posterior (Laplace + empirical Bayes): {post['cpu_seconds']:.1f} s of CPU")
    if args.bootstrap:
        c0 = time.process_time()
        fit_twin(log, FitSettings(dims=8, holdout=0.0, bootstrap=args.bootstrap))
        c_all = time.process_time() - c0
        print(f"  with {args.bootstrap} bootstrap replicates: {c_all:.1f} s of CPU "
              f"({(c_all - c_fit) / args.bootstrap:.1f} s per replicate)")


def eval_speed(args) -> None:
    from counterfeed import run
    from counterfeed.core.scenario import Scenario
    from counterfeed.twin.data import twin_log_from_frame
    from counterfeed.twin.evaluate import evaluate_twin
    from counterfeed.twin.fit import FitSettings, fit_twin
    from counterfeed.twin.store import write_twin

    days, users = args.days, args.eval_users
    base = {"name": "speed-baseline", "seed": 1, "population": {"users": users, "dimensions": 8},
            "catalog": {"plugin": "synthetic", "items": 500, "topics": 8},
            "experiment": {"arms": {"logging": {"recommender": "random"},
                                    "target": {"recommender": "matrix-factorization"}},
                           "duration": f"{days}d", "batch_window": "6h", "slate_size": 10},
            "metrics": ["impressions", "clicks", "ctr", "sessions", "retained"], "analysis": []}
    t0 = time.process_time()
    res = run(Scenario.from_dict(base), write=False, quiet=True, workers=1, keep_events=True)
    t_run = time.process_time() - t0
    imp = res.events["all-logging"].impressions
    df = pd.DataFrame(imp.to_dict()).drop(columns=["arm"])
    log = twin_log_from_frame(df, source="speed", horizon=float(days), logging={"recommender": "random"},
                              slate_size=10, run={"batch_window": "6h"})
    # the evaluation's cost is the simulated users', whatever the replicates' values: the replicates are
    # copies of the point fit here (a real bootstrap refits every step, eval_replicates fits more)
    meta, reps = fit_twin(log, FitSettings(dims=8, holdout=0.0, bootstrap=0))
    meta = {**meta, "bootstrap": "users", "replicates": meta["replicates"] * (args.eval_replicates + 1)}
    reps = reps * (args.eval_replicates + 1)
    with tempfile.TemporaryDirectory() as tmp:
        twin = write_twin(Path(tmp) / "twin", meta, reps)
        t0 = time.process_time()
        eff = evaluate_twin(twin, {"recommender": "matrix-factorization"}, users=users)[0]
        t_eval = time.process_time() - t0
    print(f"evaluation over {users:,} users, {days} days: worlds of {eff.world_users:,} users, "
          f"{eff.point_worlds} for the point fit and one for each of {args.eval_replicates} bootstrap replicates:")
    print(f"  normal run (choice model, same arms and size): {t_run:.1f} s of CPU")
    print(f"  twin evaluation: {t_eval:.1f} s of CPU  (ratio {t_eval / t_run:.2f}; target <= 1: "
          f"{'met' if t_eval <= t_run else 'NOT met'})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--impressions", type=int, default=10_000_000)
    ap.add_argument("--bootstrap", type=int, default=0, help="also time this many bootstrap replicates")
    ap.add_argument("--eval-users", type=int, default=100_000)
    ap.add_argument("--eval-replicates", type=int, default=10)
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--skip-fit", action="store_true")
    ap.add_argument("--skip-eval", action="store_true")
    args = ap.parse_args()
    if not args.skip_fit:
        fit_speed(args)
    if not args.skip_eval:
        eval_speed(args)


if __name__ == "__main__":
    main()
