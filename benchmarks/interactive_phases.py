"""Multi-phase experiments: regret of each decision rule against the oracle, over seeds.

Runs scenarios/phases_rollout.yaml (popularity, greedy CTR, Thompson sampling; three 3-day phases)
with every phase using the same rule, for each rule and seeds 1..n. Reports per rule the mean
realized and oracle clicks per user over the experiment, the mean regret, and how often the arm
finally chosen is the arm that was best in the last phase's counterfactual worlds.

    python benchmarks/interactive_phases.py             # 5 seeds x 3 rules (about 3 min)
    python benchmarks/interactive_phases.py -n 2 --users 800
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from counterfeed.core.runner import run  # noqa: E402
from counterfeed.core.scenario import load_scenario  # noqa: E402

RULES = {"interval_excludes_zero": None, "prob_better": 0.9, "expected_loss": 0.02}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--seeds", type=int, default=5)
    ap.add_argument("--users", type=int, default=1500)
    args = ap.parse_args()
    base = load_scenario("scenarios/phases_rollout.yaml")
    t0 = time.perf_counter()
    print(f"{'rule':24s} {'seed':>4s} {'decisions':40s} {'realized':>9s} {'oracle':>8s} {'regret':>8s}")
    summary = {}
    for rule, threshold in RULES.items():
        phases = [{"duration": "3d", "rule": rule, "threshold": threshold, "metric": "clicks",
                   "estimator": "diff-in-means"} for _ in range(3)]
        rows = []
        for seed in range(1, args.seeds + 1):
            sc = base.with_overrides({"seed": seed, "population.users": args.users,
                                      "experiment.phases": phases})
            m = run(sc, write=False, workers=1).manifest
            v = m["phase_value"]
            chosen = [p["chosen"] for p in m["phases"]]
            right = chosen[-1] == m["phases"][-1]["oracle_arm"]
            rows.append((v["realized"], v["oracle"], v["regret"], right))
            print(f"{rule:24s} {seed:4d} {' -> '.join(chosen):40s} {v['realized']:9.3f} {v['oracle']:8.3f} "
                  f"{v['regret']:8.3f}", flush=True)
        summary[rule] = np.array(rows, dtype=float)
    print(f"\n{args.seeds} seeds, {args.users} users, {time.perf_counter() - t0:.0f} s")
    print(f"{'rule':24s} {'realized':>9s} {'oracle':>8s} {'regret':>8s} {'+- se':>7s} {'final = best':>13s}")
    for rule, r in summary.items():
        print(f"{rule:24s} {r[:, 0].mean():9.3f} {r[:, 1].mean():8.3f} {r[:, 2].mean():8.3f} "
              f"{r[:, 2].std(ddof=1) / np.sqrt(len(r)) if len(r) > 1 else float('nan'):7.3f} {r[:, 3].mean():13.2f}")


if __name__ == "__main__":
    main()
