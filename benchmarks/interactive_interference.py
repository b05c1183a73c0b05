"""Interference bias of pooled training, and how much the mitigations remove, over seeds.

Runs scenarios/interference_pooled.yaml (greedy CTR vs Thompson sampling, no pre-period) with
``training`` = pooled, own and weighted. The counterfactual worlds (everyone on one arm) do not depend
on the training regime (an arm alone has nobody to pool with, and its share is 1), so they are
simulated once per seed; the A/B world once per regime. Bias = A/B difference in mean clicks per
user minus the global effect (all-treatment minus all-control), averaged over seeds.

    python benchmarks/interactive_interference.py            # 8 seeds, 1,500 users (about 3 min)
    python benchmarks/interactive_interference.py -n 3 --users 800
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from counterfeed.core.contracts import CatalogContext  # noqa: E402
from counterfeed.core.population import build_population  # noqa: E402
from counterfeed.core.randomness import Keys  # noqa: E402
from counterfeed.core.runner import WorldTask, resolve, simulate_world  # noqa: E402
from counterfeed.core.scenario import load_scenario  # noqa: E402

REGIMES = ("pooled", "own", "weighted")


def world_means(sc, worlds: list[str]) -> dict[str, dict[str, float]]:
    """Mean clicks per user of each arm in each world."""
    keys = Keys(sc.seed)
    plan = resolve(sc)
    items = plan.catalog().build(CatalogContext(keys=keys, stream=keys.stream("catalog"),
                                                dimensions=sc.population.dimensions))
    pop = build_population(sc.population, keys)
    out = {}
    for w in worlds:
        o = simulate_world(WorldTask(sc, w, items, pop)).outcomes
        out[w] = o.groupby("arm")["clicks"].agg(["mean", "var", "count"]).to_dict("index")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--seeds", type=int, default=8)
    ap.add_argument("--users", type=int, default=1500)
    args = ap.parse_args()
    base = load_scenario("scenarios/interference_pooled.yaml").with_overrides(
        {"population.users": args.users, "metrics": ["clicks"]})
    t0 = time.perf_counter()
    bias = {r: [] for r in REGIMES}
    se = {r: [] for r in REGIMES}
    truths = []
    for seed in range(1, args.seeds + 1):
        sc = base.with_overrides({"seed": seed})
        cf = world_means(sc, ["all-control", "all-treatment"])
        truth = cf["all-treatment"]["treatment"]["mean"] - cf["all-control"]["control"]["mean"]
        truths.append(truth)
        line = [f"seed {seed}: truth {truth:+7.3f}"]
        for regime in REGIMES:
            ab = world_means(sc.with_overrides({"experiment.training": regime}), ["ab"])["ab"]
            est = ab["treatment"]["mean"] - ab["control"]["mean"]
            bias[regime].append(est - truth)
            se[regime].append(np.sqrt(ab["treatment"]["var"] / ab["treatment"]["count"]
                                      + ab["control"]["var"] / ab["control"]["count"]))
            line.append(f"{regime} {est:+7.3f}")
        print("  ".join(line), flush=True)
    print(f"\n{args.seeds} seeds, {args.users} users, {time.perf_counter() - t0:.0f} s; "
          f"mean true effect on clicks/user {np.mean(truths):+.3f}")
    print(f"{'training':10s} {'mean bias':>10s} {'+- se':>8s} {'mean |bias|':>12s} {'typical A/B se':>15s}")
    for r in REGIMES:
        b = np.array(bias[r])
        print(f"{r:10s} {b.mean():+10.3f} {b.std(ddof=1) / np.sqrt(b.size):8.3f} {np.abs(b).mean():12.3f} "
              f"{np.mean(se[r]):15.3f}")
    pooled = abs(np.mean(bias["pooled"]))
    for r in ("own", "weighted"):
        print(f"{r}: removes {100 * (1 - abs(np.mean(bias[r])) / pooled):.0f}% of the pooled bias")


if __name__ == "__main__":
    main()
