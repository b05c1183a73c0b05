"""CATE estimators: accuracy (PEHE, per-user interval coverage) and fit time on 10k and 100k users.

Data: :func:`counterfeed.testing.cate_data.make_cate_data` -- users with the covariates a run gives
(segment, pre-period sessions/impressions/clicks/dwell/CTR, tenure, two observable features), two
randomized arms and a known conditional effect ``tau(x) = 0.5 + feature_0`` (``--shape step``: a step
in feature_0), so PEHE and coverage are exact. Fit time is the estimator's whole ``estimate`` call
(2 outer folds of cross-fitting, the library's own 2 inner folds, the average effect), one process,
BLAS threads pinned to 1. Both the wall-clock time and the process's CPU time are printed; on a
shared machine the CPU time is the figure that does not depend on what else runs.

The baseline of the time figures is the same estimator at the smallest size in this run: the script
prints ``time(100k) / time(10k)`` next to the users ratio (10); "linear" means the time ratio is at
most the users ratio (x 1.25 for timer noise on a shared machine).

    python benchmarks/cate.py                       # 10k and 100k users, every estimator
    python benchmarks/cate.py --sizes 2000 20000 --estimators dr-learner linear-cate
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402

from counterfeed.core.plugins import get_registry  # noqa: E402
from counterfeed.testing.cate_data import make_cate_data  # noqa: E402

ESTIMATORS = ["dr-learner", "causal-forest", "t-learner", "x-learner", "linear-cate"]


def measure(name: str, n: int, seed: int, shape: str) -> dict:
    world = make_cate_data(n, seed=seed, shape=shape)
    est = get_registry().create("estimator", name, {})
    t0, c0 = time.perf_counter(), time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cate = next(e for e in est.estimate(world.data) if e.estimand == "cate")
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    ue = cate.user_effects
    tau = world.conditional
    lo, hi = ue["lower"].to_numpy(), ue["upper"].to_numpy()
    has = np.isfinite(lo) & np.isfinite(hi)
    return {"estimator": name, "n": n, "seconds": seconds, "cpu": cpu,
            "pehe": float(np.sqrt(np.mean((ue["point"].to_numpy() - tau) ** 2))),
            "baseline": float(np.std(tau)),
            "coverage": float(np.mean((lo[has] <= tau[has]) & (tau[has] <= hi[has]))) if has.any() else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--estimators", nargs="+", default=ESTIMATORS)
    ap.add_argument("--shape", choices=["linear", "step"], default="linear")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    for name in args.estimators:  # warm the imports (EconML takes seconds to import) outside the timings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            get_registry().create("estimator", name, {}).estimate(make_cate_data(300, seed=0).data)
    sizes = sorted(args.sizes)
    print(f"CATE estimators on make_cate_data(shape={args.shape!r}), tau = 0.5 + g(feature_0); "
          f"PEHE vs the true conditional effect; coverage of per-user {0.95:.0%} intervals")
    print(f"{'estimator':<14}{'users':>9}{'fit s':>9}{'CPU s':>9}{'PEHE':>8}{'baseline':>9}{'ratio':>7}{'coverage':>10}")
    results: dict[str, list[dict]] = {}
    for name in args.estimators:
        for n in sizes:
            r = measure(name, n, args.seed, args.shape)
            results.setdefault(name, []).append(r)
            cov = "n/a" if r["coverage"] is None else f"{r['coverage']:.3f}"
            print(f"{name:<14}{n:>9,}{r['seconds']:>9.2f}{r['cpu']:>9.2f}{r['pehe']:>8.3f}{r['baseline']:>9.3f}"
                  f"{r['pehe'] / r['baseline']:>7.2f}{cov:>10}", flush=True)
    if len(sizes) > 1:
        users = sizes[-1] / sizes[0]
        print(f"\nfit time growth from {sizes[0]:,} to {sizes[-1]:,} users (users x{users:g}; "
              f"linear: time ratio <= {1.25 * users:g}, i.e. users ratio x 1.25 for timer noise)")
        for name, rs in results.items():
            for key in ("seconds", "cpu"):
                ratio = rs[-1][key] / rs[0][key]
                verdict = "linear or better" if ratio <= 1.25 * users else "SUPERLINEAR"
                print(f"  {name:<14} {'wall' if key == 'seconds' else 'CPU':<5} x{ratio:6.2f}  {verdict}")


if __name__ == "__main__":
    main()
