"""Coverage of 95% intervals for the mediation SEM's paths and indirect effect.

Simulates R experiments per size from MEDIATION_TRUTH, fits each (one compiled model reused for
all replications: only the sufficient statistics change), and reports the share of 95%
equal-tailed intervals that contain the truth, with a binomial 95% band.

    python benchmarks/sem_coverage.py [--reps 500] [--sizes 1000 20000] [--draws 500] [--chains 2]
"""
import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse
import time

import numpy as np

from counterfeed.sem import SEM
from counterfeed.sem.examples import MEDIATION_MODEL, MEDIATION_TRUTH, simulate_mediation

TARGETS = ["engagement~treatment", "retained~engagement", "retained~treatment", "indirect"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=500)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 20000])
    ap.add_argument("--draws", type=int, default=500)
    ap.add_argument("--tune", type=int, default=500)
    ap.add_argument("--chains", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    sem = SEM(MEDIATION_MODEL, exogenous=["treatment"])
    for n in a.sizes:
        hits = {k: 0 for k in TARGETS}
        worst_rhat, min_ess, div, t0 = 0.0, np.inf, 0, time.perf_counter()
        for rep in range(a.reps):
            rng = np.random.default_rng([a.seed, n, rep])
            fit = sem.fit(simulate_mediation(n, rng), draws=a.draws, tune=a.tune,
                          chains=a.chains, seed=rep)
            s = fit.summary
            for k in TARGETS:
                hits[k] += int(s.loc[k, "eti_2.5%"] <= MEDIATION_TRUTH[k] <= s.loc[k, "eti_97.5%"])
            worst_rhat = max(worst_rhat, s.loc[TARGETS, "r_hat"].max())
            min_ess = min(min_ess, s.loc[TARGETS, "ess_bulk"].min())
            div += fit.divergences
            if (rep + 1) % 50 == 0:
                print(f"  n={n} rep {rep + 1}: " + ", ".join(
                    f"{k} {hits[k] / (rep + 1):.3f}" for k in TARGETS), flush=True)
        wall = time.perf_counter() - t0
        half = 1.96 * np.sqrt(0.95 * 0.05 / a.reps)
        print(f"n={n}: {a.reps} reps, {a.chains} chains x {a.draws} draws (+{a.tune} tune), "
              f"{wall:.0f} s wall ({wall / a.reps:.2f} s/fit); binomial band "
              f"[{0.95 - half:.3f}, {0.95 + half:.3f}]")
        for k in TARGETS:
            print(f"  {k:24s} coverage {hits[k] / a.reps:.3f}")
        print(f"  worst R-hat {worst_rhat:.4f}, min bulk ESS {min_ess:.0f}, divergences {div}")


if __name__ == "__main__":
    main()
