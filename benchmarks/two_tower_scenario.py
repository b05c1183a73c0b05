"""Replications of scenarios/text_two_tower.yaml: the fine-tuned two-tower's true effects.

Usage::

    python benchmarks/two_tower_scenario.py [--reps 20] [--users 1000] [--days 14] [--fresh 2] [--first 1]
    python benchmarks/two_tower_scenario.py --merge out1.txt out2.txt   # replications split over processes

Each replication runs the scenario with its own seed (``Keys(seed).derive_seed("replication", i)``:
a new catalog, population and noise) and reads the truth from the counterfactual worlds:

- clicks per user, ``tower`` vs ``frozen`` and ``mf`` vs ``frozen`` (the truth table's difference);
- clicks per user on cold-start items: clicks, during the experiment, on items that arrived after
  its start and within ``--fresh`` days of their arrival, in each arm's all-arm world
  (``tower - mf`` and ``frozen - mf``).

Prints each replication and the mean over replications with a t interval (replications are the
independent units). The two-tower's weights are cached, so a rerun of the same replications trains
nothing.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "text_two_tower.yaml"


def fresh_clicks(events, start: float, fresh: float) -> float:
    """Clicks per user on items that arrived after ``start``, within ``fresh`` days of their arrival."""
    imp = events.impressions
    arrival = np.asarray(events.items.arrival, np.float64)[imp.item]
    t = np.asarray(imp.time, np.float64)
    hit = np.asarray(imp.click, bool) & (t >= start) & (arrival >= start) & (t - arrival < fresh)
    return float(hit.sum() / events.n_users)


def replicate(seed: int, users: int, days: int, fresh: float) -> dict[str, float]:
    import counterfeed
    from counterfeed.core.experiment import counterfactual_world
    from counterfeed.core.scenario import load_scenario

    base = load_scenario(SCENARIO)
    # no arrivals after the horizon (they would only cost embedding time)
    horizon = int(base.experiment.pre_period + days)
    overrides: dict = {"seed": seed, "population.users": users, "experiment.duration": f"{days}d",
                       "catalog.arrival_days": min(horizon, base.catalog.options.get("arrival_days", horizon))}
    sc = base.with_overrides(overrides)
    res = counterfeed.run(sc, write=False, workers=1, keep_events=True)
    t = res.truth
    row = {"seed": seed}
    for arm in ("tower", "mf"):
        sel = t[(t["metric"] == "clicks") & (t["estimand"] == "difference") & (t["arm"] == arm) & t["segment"].isna()]
        row[f"clicks:{arm}-frozen"] = float(sel["value"].iloc[0])
    start = sc.experiment.pre_period
    cold = {arm: fresh_clicks(res.events[counterfactual_world(arm)], start, fresh) for arm in ("frozen", "tower", "mf")}
    row.update({f"cold:{a}": v for a, v in cold.items()})
    row["cold:tower-mf"] = cold["tower"] - cold["mf"]
    row["cold:frozen-mf"] = cold["frozen"] - cold["mf"]
    row["cold:tower-frozen"] = cold["tower"] - cold["frozen"]
    return row


def interval(x: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    m = float(x.mean())
    if x.size < 2:
        return m, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return m, m - half, m + half


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--fresh", type=float, default=2.0)
    ap.add_argument("--first", type=int, default=1, help="first replication to run (1-based): split the "
                                                         "replications over processes; merge with --merge")
    ap.add_argument("--merge", nargs="+", default=None, metavar="LOG",
                    help="print the summary of the 'rep' lines in these output files instead of running")
    ap.add_argument("--seed", type=int, default=20261130)
    args = ap.parse_args()
    from counterfeed.calibration.engine import replication_seeds

    if args.merge:
        summarize(_parse(args.merge))
        return
    print(f"load average at start: {os.getloadavg()[0]:.1f}")
    rows = []
    t0 = time.perf_counter()
    for i, seed in enumerate(replication_seeds(args.seed, args.reps)):
        if i < args.first - 1:
            continue
        row = replicate(seed, args.users, args.days, args.fresh)
        rows.append(row)
        print(f"rep {i + 1:2d} seed {seed}: " + ", ".join(f"{k} {v:+.3f}" for k, v in row.items() if k != "seed"),
              flush=True)
    print(f"{len(rows)} replications, {args.users} users, {args.days} days, in {time.perf_counter() - t0:.0f} s "
          f"(load average {os.getloadavg()[0]:.1f})")
    summarize(rows)


def _parse(paths: list[str]) -> list[dict[str, float]]:
    """The replications printed in ``paths`` (one per seed; a seed printed twice is counted once)."""
    rows: dict[str, dict[str, float]] = {}
    for path in paths:
        for line in Path(path).read_text().splitlines():
            if line.startswith("rep ") and ": " in line:
                head, body = line.split(": ", 1)
                rows[head.split("seed ")[1]] = {k: float(v) for k, v in (p.rsplit(" ", 1) for p in body.split(", "))}
    return list(rows.values())


def summarize(rows: list[dict[str, float]]) -> None:
    print(f"{len(rows)} replications")
    for key in ("clicks:tower-frozen", "clicks:mf-frozen", "cold:tower-mf", "cold:frozen-mf", "cold:tower-frozen"):
        m, lo, hi = interval(np.array([r[key] for r in rows]))
        print(f"{key:22s} mean {m:+.3f}  95% interval [{lo:+.3f}, {hi:+.3f}]"
              f"{'  (above zero)' if lo > 0 else ''}")


if __name__ == "__main__":
    main()
