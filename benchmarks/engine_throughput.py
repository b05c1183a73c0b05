"""Engine throughput: SimPy engine vs a time-stepped vectorized NumPy reference of the same model.

Reference scenario (issue 2): 10k users, 2k items, 32 dimensions, slate of 10, 30 days, popularity
recommender, one core. The reference drives the *same* user model and recommender code window by
window with NumPy masks (no SimPy, no per-user processes); both see the same keyed randomness, so
their session tables must be identical, which this script checks before it prints any figure.

Then the engine alone at 10k, 100k and 1M users (5 simulated days, sessions table only), each in a
fresh process, reporting sessions/s and peak memory per user.

    python benchmarks/engine_throughput.py            # everything (a few minutes)
    python benchmarks/engine_throughput.py --quick    # 30-day comparison only
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from counterfeed.core.contracts import Batch, CatalogContext, Log, RecommenderContext  # noqa: E402
from counterfeed.core.population import build_population  # noqa: E402
from counterfeed.core.randomness import Keys  # noqa: E402
from counterfeed.core.runner import resolve  # noqa: E402
from counterfeed.core.scenario import Scenario  # noqa: E402
from counterfeed.core.simulation import SimWorld, WorldConfig  # noqa: E402


def scenario(users: int, days: int) -> Scenario:
    return Scenario.from_dict({
        "name": "bench", "seed": 1,
        "population": {"users": users, "dimensions": 32},
        "catalog": {"plugin": "synthetic", "items": 2000, "topics": 20},
        "user_model": {"plugin": "choice"},
        "experiment": {"arms": {"control": {"recommender": "popularity"},
                                "treatment": {"recommender": "popularity"}},
                       "duration": f"{days}d", "pre_period": 0, "batch_window": "1h",
                       "retrain_every": None, "slate_size": 10},
        "output": {"events": "sessions", "report": False},
    })


def build(sc: Scenario):
    plan = resolve(sc)
    keys = Keys(sc.seed)
    items = plan.catalog().build(CatalogContext(keys=keys, stream=keys.stream("catalog"), dimensions=32))
    pop = build_population(sc.population, keys)
    return plan, keys, items, pop


def config(sc: Scenario) -> WorldConfig:
    e = sc.experiment
    return WorldConfig(name="all-control", arms=sc.arms, control=0, assignment=np.zeros(sc.population.users, np.int64),
                       pre_period=0.0, duration=e.duration, batch_window=e.batch_window, retrain_every=None,
                       slate_size=e.slate_size, record_impressions=False)


def run_engine(sc: Scenario, parts) -> tuple[float, dict[str, np.ndarray]]:
    plan, keys, items, pop = parts
    world = SimWorld(config(sc), items, pop, keys, plan.user_model(), plan.recommender)
    t0 = time.perf_counter()
    events = world.run()
    return time.perf_counter() - t0, events.sessions


def run_reference(sc: Scenario, parts) -> tuple[float, dict[str, np.ndarray]]:
    """Time-stepped: every window, serve all users whose next visit falls in it, with NumPy masks."""
    plan, keys, items, pop = parts
    cfg = config(sc)
    um = plan.user_model()
    rec = plan.recommender("control")
    t0 = time.perf_counter()
    state = um.init_state(pop, items, keys)
    rec.setup(RecommenderContext(items=items, n_users=pop.n, slate_size=cfg.slate_size, keys=keys, arm="control"))
    rec.fit(Log.empty())
    n = pop.n
    visit = um.first_visit(state, pop.ids)
    session = np.zeros(n, np.int64)
    stream = keys.stream("policy:control")
    cols = {c: [] for c in ("user", "session", "time", "clicks", "dwell", "churned")}
    w = cfg.batch_window
    n_windows = int(np.ceil(cfg.horizon / w))
    for k in range(1, n_windows + 1):
        end = k * w
        # the engine's rule: a visit at t is served at the end of window floor(t / w) + 1
        due = np.nonzero((visit < cfg.horizon) & (np.floor(visit / w) + 1 == k))[0]
        if due.size == 0:
            continue
        s = session[due]
        session[due] += 1
        batch = Batch(users=due, sessions=s, time=end, slate_size=cfg.slate_size, stream=stream)
        slates = rec.recommend(batch)
        resp = um.respond(state, batch, slates)
        kk = slates.items.shape[1]
        clicks = resp.clicks
        rec.update(Log(user=np.repeat(due, kk), session=np.repeat(s, kk), time=np.repeat(visit[due], kk),
                       position=np.tile(np.arange(kk), due.size), item=slates.items.reshape(-1),
                       click=clicks.reshape(-1), dwell=resp.dwell.reshape(-1),
                       propensity=slates.propensities.reshape(-1)))
        cols["user"].append(due)
        cols["session"].append(s)
        cols["time"].append(visit[due].copy())
        cols["clicks"].append(clicks.sum(axis=1))
        cols["dwell"].append(resp.dwell.sum(axis=1))
        cols["churned"].append(~np.isfinite(resp.next_gap))
        visit[due] = end + resp.next_gap
    out = {c: np.concatenate(v) for c, v in cols.items()}
    return time.perf_counter() - t0, out


def compare(users: int, days: int) -> dict:
    sc = scenario(users, days)
    parts = build(sc)
    t_ref, ref = run_reference(sc, parts)
    t_eng, eng = run_engine(sc, parts)
    # identical sessions (up to row order): sort both by (user, session)
    o_r = np.lexsort((ref["session"], ref["user"]))
    o_e = np.lexsort((eng["session"], eng["user"]))
    for c in ("user", "session", "clicks", "churned"):
        assert np.array_equal(ref[c][o_r], eng[c][o_e].astype(ref[c].dtype)), f"engine and reference differ in {c}"
    assert np.allclose(ref["time"][o_r], eng["time"][o_e]) and np.allclose(ref["dwell"][o_r], eng["dwell"][o_e])
    n = int(ref["user"].size)
    return {"users": users, "days": days, "sessions": n, "engine_s": t_eng, "reference_s": t_ref,
            "engine_sessions_per_s": n / t_eng, "reference_sessions_per_s": n / t_ref,
            "engine_over_reference": t_eng / t_ref}


def scale_child(users: int, days: int) -> None:
    sc = scenario(users, days)
    parts = build(sc)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t, sessions = run_engine(sc, parts)
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    n = int(sessions["user"].size)
    print(json.dumps({"users": users, "days": days, "sessions": n, "seconds": t, "sessions_per_s": n / t,
                      "peak_rss_mb": rss1 / 1024, "sim_rss_growth_mb": (rss1 - rss0) / 1024,
                      "bytes_per_user": (rss1 - rss0) * 1024 / users}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--child", nargs=2, type=int)
    args = ap.parse_args()
    if args.child:
        scale_child(*args.child)
        return
    try:
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    except (AttributeError, OSError):
        pass
    r = compare(10_000, 30)
    print(f"reference scenario: 10k users, 2k items, 32 dims, slate 10, 30 days, popularity, one core")
    print(f"  sessions: {r['sessions']:,} (engine and reference session tables identical)")
    print(f"  engine    {r['engine_s']:.2f} s  {r['engine_sessions_per_s']:,.0f} sessions/s")
    print(f"  reference {r['reference_s']:.2f} s  {r['reference_sessions_per_s']:,.0f} sessions/s")
    print(f"  engine / reference time: {r['engine_over_reference']:.2f}x (target <= 3x); "
          f"engine target >= 100,000 sessions/s")
    if args.quick:
        return
    print("scaling (engine only, 5 days, sessions table only, fresh process each):")
    rows = []
    for users in (10_000, 100_000, 1_000_000):
        out = subprocess.run([sys.executable, __file__, "--child", str(users), "5"], capture_output=True,
                             text=True, check=True)
        row = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(f"  {users:>9,} users: {row['sessions']:>10,} sessions in {row['seconds']:6.1f} s = "
              f"{row['sessions_per_s']:>9,.0f}/s; peak RSS {row['peak_rss_mb']:,.0f} MB, "
              f"{row['bytes_per_user']:,.0f} bytes per user during the simulation")
    rates = [r["sessions_per_s"] for r in rows]
    print(f"  slowest/fastest sessions/s: {min(rates) / max(rates):.2f} (target: within 25%, i.e. >= 0.75)")


if __name__ == "__main__":
    main()
