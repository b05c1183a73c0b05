"""Off-policy evaluation speed: 10 million logged impressions, every estimator with its default interval
(analytic, or the refit bootstrap for DM and the DR variants whose correction does not use the raw
weights: DR-OS here; they share one set of refits).

Run: ``python benchmarks/ope_speed.py [--rounds 1000000] [--slate 10] [--items 10000]``.
The timed part is aligning the target with the log and running all seven estimators (including the
cross-fitted reward model); building and validating the log is timed separately.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from counterfeed.ope import ESTIMATORS, evaluate, from_arrays, target_from_table  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=1_000_000)
    ap.add_argument("--slate", type=int, default=10)
    ap.add_argument("--items", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    k, n_items, n_rounds = a.slate, a.items, a.rounds
    # logging: per position, a Zipf-like popularity distribution, shifted per position
    base = 1.0 / np.arange(1, n_items + 1) ** 0.8
    p0 = np.stack([np.roll(base, 7 * j) for j in range(k)])
    p0 /= p0.sum(axis=1, keepdims=True)
    pe = np.stack([np.roll(base, 7 * j + 3) for j in range(k)]) ** 1.2
    pe /= pe.sum(axis=1, keepdims=True)
    theta = rng.beta(1, 20, n_items)
    pb = 1.0 / (1 + np.arange(k)) ** 0.7
    t = time.perf_counter()
    items = np.empty((n_rounds, k), np.int64)
    for j in range(k):
        items[:, j] = rng.choice(n_items, size=n_rounds, p=p0[j])
    pos = np.broadcast_to(np.arange(k), (n_rounds, k))
    clicks = rng.random((n_rounds, k)) < theta[items] * pb
    t_gen = time.perf_counter() - t

    t = time.perf_counter()
    log = from_arrays(round=np.repeat(np.arange(n_rounds, dtype=np.int64), k), item=items.ravel(),
                      position=pos.ravel(), reward=clicks.ravel().astype(np.float64),
                      propensity=p0[pos, items].ravel(), source="benchmark")
    t_log = time.perf_counter() - t
    jj, aa = np.meshgrid(np.arange(k), np.arange(n_items), indexing="ij")
    table = pd.DataFrame({"item": aa.ravel(), "position": jj.ravel(), "prob": pe.ravel()})

    c0 = time.process_time()
    t = time.perf_counter()
    target = target_from_table(log, table)
    t_target = time.perf_counter() - t
    timings: dict[str, float] = {}
    t = time.perf_counter()
    results = evaluate(log, target, list(ESTIMATORS), clip=100.0, timings=timings)
    t_eval = time.perf_counter() - t
    cpu = time.process_time() - c0
    truth = float(np.mean((pe * theta).sum(axis=1) * pb))

    print(f"{len(log):,} impressions, {log.n_rounds:,} rounds, {n_items:,} items, slate {k}")
    print(f"simulate {t_gen:.2f} s | build + validate log {t_log:.2f} s (not in the figure)")
    print(f"target alignment {t_target:.2f} s | reward model (5-fold cross-fit) {timings['reward_model']:.2f} s")
    for r in results:
        d = r.diagnostics
        print(f"  {r.estimator:10s} {timings[r.estimator]:6.3f} s  value {r.value:.5f} "
              f"[{r.lower:.5f}, {r.upper:.5f}]  ess {d['ess']:.3g}  max w {d['max_weight']:.3g}  "
              f"clipped {d['clipped_share']:.2%}")
    total = t_target + t_eval
    print(f"truth {truth:.5f} | logging value {results[0].logging_value:.5f}")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"TOTAL (target + all {len(results)} estimators with their default intervals): {total:.2f} s wall, "
          f"{cpu:.2f} s CPU ({'under' if total < 10 else 'OVER'} 10 s; load average {load:.1f} "
          f"on {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
