"""Adaptive allocation: coverage of adaptive-ipw vs the naive difference in means, over seeds.

Runs scenarios/adaptive_thompson.yaml (random vs popularity, Thompson-sampling allocation every 6 h
with a 10% floor; heavy users arrive early) with seeds 1..n through the full engine (A/B world plus
the counterfactual worlds that give the truth). For clicks per user and CTR it reports, over seeds,
the mean error (estimate - truth), its standard error and the coverage of the 95% intervals of
``adaptive-ipw`` and of ``diff-in-means``.

    python benchmarks/interactive_adaptive.py             # 40 seeds (about 2-3 min)
    python benchmarks/interactive_adaptive.py -n 10
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--seeds", type=int, default=40)
    ap.add_argument("--users", type=int, default=None)
    args = ap.parse_args()
    sc0 = load_scenario("scenarios/adaptive_thompson.yaml")
    if args.users:
        sc0 = sc0.with_overrides({"population.users": args.users})
    t0 = time.perf_counter()
    rows: dict[tuple[str, str], list[tuple[float, bool, float]]] = {}
    final_share = []
    for seed in range(1, args.seeds + 1):
        res = run(sc0.with_overrides({"seed": seed}), write=False, workers=1)
        for e in res.estimates:
            if e.estimand == "difference" and e.truth is not None:
                rows.setdefault((e.estimator, e.metric), []).append((e.error, bool(e.covered), e.truth))
        final_share.append(res.manifest["allocation"]["history"][-1]["probabilities"]["treatment"])
        if seed % 10 == 0:
            print(f"{seed} seeds done, {time.perf_counter() - t0:.0f} s", flush=True)
    print(f"\n{args.seeds} seeds, {time.perf_counter() - t0:.0f} s; final P(treatment) mean "
          f"{np.mean(final_share):.2f}")
    print(f"{'estimator':14s} {'metric':7s} {'mean truth':>11s} {'mean error':>11s} {'+- se':>8s} "
          f"{'coverage':>9s} {'+- se':>7s}")
    for (est, metric), r in sorted(rows.items()):
        err = np.array([x[0] for x in r])
        cov = np.mean([x[1] for x in r])
        truth = np.mean([x[2] for x in r])
        print(f"{est:14s} {metric:7s} {truth:11.4f} {err.mean():+11.4f} {err.std(ddof=1) / np.sqrt(err.size):8.4f} "
              f"{cov:9.3f} {np.sqrt(cov * (1 - cov) / err.size):7.3f}")


if __name__ == "__main__":
    main()
