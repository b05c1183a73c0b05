"""Replications of ``scenarios/feedback_loop.yaml``: the true effect of MMR vs plain MF (issue 19).

Each replication runs the scenario with its own seed (a new catalog, population, and every noise
draw) and takes the **true global effects** of the ``mmr`` arm vs ``mf`` from the counterfactual
worlds (everyone on MMR vs everyone on MF): homogenization, exposure Gini and catalog coverage
(population-level), clicks per user and 7-day retention (per user). Over the replications it prints
each effect's mean with a 95% Student-t interval (``mean +- t_{R-1} sd / sqrt(R)``: the
replications are independent draws of the scenario, so this is the interval of the expected true
effect over the scenario's randomness), and, for the population metrics, the mean naive A/B claim
(arm groups compared inside the A/B world) that an experimenter would have reported instead.
It also writes the mean weekly trajectory of each metric per world to ``--out`` (CSV) and a figure.

    python benchmarks/feedback_loop.py --reps 20                      # 20 replications of the scenario as written
    python benchmarks/feedback_loop.py --reps 3 --users 400 --days 60  # a quick look at a smaller size

Default size: the scenario file's own (2,000 users, 400 items, 90 days, weekly retraining);
``--users/--items/--days`` override it.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy import stats  # noqa: E402

import counterfeed  # noqa: E402
from counterfeed.core.scenario import load_scenario  # noqa: E402

SCENARIO = Path(__file__).resolve().parent.parent / "scenarios" / "feedback_loop.yaml"
POPULATION = ("homogenization", "exposure-gini", "coverage")
PER_USER = ("clicks", "retained", "diversity")


def replicate(seed: int, users: int, days: int, items: int, workers: int) -> tuple[dict, pd.DataFrame]:
    overrides: dict = {"seed": seed}
    if users:
        overrides["population.users"] = users
    if days:
        overrides["experiment.duration"] = f"{days}d"
    if items:
        overrides["catalog.items"] = items
    sc = load_scenario(SCENARIO).with_overrides(overrides)
    res = counterfeed.run(sc, write=False, workers=workers)
    row: dict[str, float] = {"seed": seed}
    for e in res.manifest["population_metrics"]["effects"]:
        if e["metric"] in POPULATION:
            row[e["metric"]] = _num(e["true_effect"])
            row[f"naive:{e['metric']}"] = _num(e["naive_ab_claim"])
    t = res.truth
    for m in PER_USER:
        sel = t[(t["metric"] == m) & (t["estimand"] == "difference") & t["segment"].isna()]
        row[m] = float(sel["value"].iloc[0])
    ts = res.timeseries
    ts = ts[ts["world"] != "ab"].assign(seed=seed)
    return row, ts


def _num(v) -> float:
    return math.nan if v is None else float(v)


def interval(x: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    x = x[np.isfinite(x)]
    m = float(x.mean())
    half = float(stats.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return m, m - half, m + half


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--users", type=int, default=None, help="default: the scenario's")
    ap.add_argument("--items", type=int, default=None, help="default: the scenario's")
    ap.add_argument("--days", type=int, default=None, help="default: the scenario's")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default="feedback_loop_trajectories.csv")
    args = ap.parse_args()
    if args.reps < 2:
        ap.error("--reps must be at least 2 (an interval needs two independent replications)")
    base = load_scenario(SCENARIO)
    size = (f"{args.users or base.population.users} users, {args.items or base.catalog.items} items, "
            f"{args.days or base.experiment.duration:g} days")
    rows, series = [], []
    t0 = time.perf_counter()
    for r in range(args.reps):
        row, ts = replicate(1000 + r, args.users, args.days, args.items, args.workers)
        rows.append(row)
        series.append(ts)
        print(f"replication {r + 1}/{args.reps} (seed {row['seed']}): "
              + ", ".join(f"{k} {row[k]:+.4f}" for k in POPULATION + PER_USER)
              + f"  [{time.perf_counter() - t0:.0f} s]", flush=True)
    df = pd.DataFrame(rows)
    print(f"\nTrue effect of MMR vs MF (all-mmr world minus all-mf world), {args.reps} replications, "
          f"{size}; mean [95% t-interval]:")
    for m in POPULATION + PER_USER:
        mean, lo, hi = interval(df[m].to_numpy())
        flag = ("no spread across replications: no interval" if hi == lo
                else "excludes 0" if lo > 0 or hi < 0 else "includes 0")
        extra = ""
        if m in POPULATION:
            nm, nlo, nhi = interval(df[f"naive:{m}"].to_numpy())
            extra = f"   naive A/B claim {nm:+.4f} [{nlo:+.4f}, {nhi:+.4f}]"
        level = "population" if m in POPULATION else "per user"
        print(f"  {m:15s} ({level:10s}) {mean:+.4f} [{lo:+.4f}, {hi:+.4f}] {flag}{extra}")
    traj = (pd.concat(series, ignore_index=True).groupby(["world", "metric", "day"])["value"]
            .mean().reset_index())
    traj.to_csv(args.out, index=False)
    _figure(traj, Path(args.out).with_suffix(".png"))
    print(f"\nmean trajectories per world: {args.out} and {Path(args.out).with_suffix('.png')}; "
          f"total {time.perf_counter() - t0:.0f} s")


def _figure(traj: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [m for m in ("homogenization", "exposure-gini", "coverage", "diversity", "clicks")
               if m in set(traj["metric"])]
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics), 2.8))
    for ax, m in zip(np.atleast_1d(axes), metrics):
        for world, g in traj[traj["metric"] == m].groupby("world"):
            ax.plot(g["day"], g["value"], label=world)
        ax.set_title(m)
        ax.set_xlabel("day")
    np.atleast_1d(axes)[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
