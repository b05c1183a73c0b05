"""Coverage and A/A rejection of the relative-lift intervals on small skewed experiments.

A 400-user experiment (200 per arm) with heavy-tailed dwell, rare churn and a long-tailed CTR
(``tests/calibration/skewed_data.py``), every metric with a known true relative effect. Each
built-in estimator with a relative estimand (diff-in-means, ratio, cuped, bayesian-ab) runs end
to end on R experiments with an effect and R A/A experiments. Printed per estimator and metric:
coverage of the true lift and A/A rejection rate of the shipped interval (Fieller's), each with
a Wilson 95% interval, next to those of the symmetric delta-method interval ``point +- z se``
that it replaced, on the same estimates. Target: coverage 95% and rejection 5%, within the
binomial band of R replications (printed).

    python benchmarks/calibration_relative.py            # R = 1000 (about 2-4 minutes, one core)
    python benchmarks/calibration_relative.py -n 300
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "calibration"))
from skewed_data import LIFT, relative_intervals  # noqa: E402

from counterfeed.calibration.summary import wilson_interval  # noqa: E402


def _fmt(k: int, n: int) -> str:
    lo, hi = wilson_interval(k, n)
    return f"{100 * k / n:6.2f}% [{100 * lo:5.2f}, {100 * hi:5.2f}]"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", "--replications", type=int, default=1000)
    p.add_argument("--seed", type=int, default=41)
    args = p.parse_args()
    r = args.replications
    t0 = time.perf_counter()
    eff = relative_intervals(seed=args.seed, replications=r, lift=LIFT)
    aa = relative_intervals(seed=args.seed + 1, replications=r, lift=0.0)
    wall = time.perf_counter() - t0
    z = float(stats.norm.ppf(0.975))
    band = [stats.binom.ppf(0.001, r, q) / r for q in (0.95, 0.05)]
    band_hi = [stats.binom.isf(0.001, r, q) / r for q in (0.95, 0.05)]
    print(f"Relative lift on a 400-user skewed experiment: {r} replications with lift {LIFT:+.2f} "
          f"and {r} A/A, {wall:.0f} s")
    print(f"binomial band (99.8%): coverage [{100 * band[0]:.2f}, {100 * band_hi[0]:.2f}]%, "
          f"A/A rejection [{100 * band[1]:.2f}, {100 * band_hi[1]:.2f}]%")
    print(f"{'estimator':14s} {'metric':6s} | {'Fieller coverage':>24s} {'Fieller A/A reject':>24s} | "
          f"{'symmetric coverage':>24s} {'symmetric A/A reject':>24s}")
    for (est, metric), e in eff.groupby(["estimator", "metric"]):
        a = aa[(aa.estimator == est) & (aa.metric == metric)]
        cov = int(np.sum((e.lower <= LIFT) & (LIFT <= e.upper)))
        rej = int(np.sum(~((a.lower <= 0.0) & (0.0 <= a.upper))))
        unbounded = int(np.sum(~np.isfinite(e.upper)) + np.sum(~np.isfinite(a.upper)))
        if e.se.isna().all():  # Beta-Binomial: posterior draws, no symmetric interval to compare
            sym = f"{'n/a (posterior draws)':>24s} {'':>24s}"
        else:
            sym_cov = int(np.sum(np.abs(e.point - LIFT) <= z * e.se))
            sym_rej = int(np.sum(np.abs(a.point) > z * a.se))
            sym = f"{_fmt(sym_cov, len(e)):>24s} {_fmt(sym_rej, len(a)):>24s}"
        print(f"{est:14s} {metric:6s} | {_fmt(cov, len(e)):>24s} {_fmt(rej, len(a)):>24s} | {sym}"
              + (f"  ({unbounded} unbounded)" if unbounded else ""))


if __name__ == "__main__":
    main()
