"""SEM fit timing: compile (cold / warm cache) vs sampling, and 1k vs 1M users.

    python benchmarks/sem_timing.py [--cold]

--cold runs one extra subprocess with empty PyTensor and Numba caches (slow: minutes).
"""
import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse
import subprocess
import sys
import tempfile
import time

import numpy as np

from counterfeed.sem import SEM, clear_cache
from counterfeed.sem.examples import MEDIATION_MODEL, simulate_mediation


def one(n: int, seed: int = 0, **kw):
    sem = SEM(MEDIATION_MODEL, exogenous=["treatment"])
    df = simulate_mediation(n, np.random.default_rng(seed))
    t0 = time.perf_counter()
    stats = sem.stats(df)
    stats_s = time.perf_counter() - t0
    fit = sem.fit_stats(stats, seed=seed, **kw)
    return fit, stats_s


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cold", action="store_true")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        fit, _ = one(1000)
        print(f"{fit.timings['compile_s']:.1f} {fit.timings['sample_s']:.2f}")
        return
    # first fit in this process: compile (in-memory cache empty, disk cache as it is)
    fit, _ = one(1000)
    print(f"first compile in process (disk cache as found): compile {fit.timings['compile_s']:.1f}"
          f" s, sampling {fit.timings['sample_s']:.2f} s, cache_hit={fit.timings['cache_hit']}")
    res = {}
    for n in (1000, 20000, 1000000):
        times = []
        for seed in range(3):
            fit, stats_s = one(n, seed=seed, draws=1000, tune=1000, chains=4)
            times.append((stats_s, fit.timings["compile_s"], fit.timings["sample_s"]))
        st, co, sa = np.median(np.array(times), axis=0)
        res[n] = st + co + sa
        print(f"n={n:>8}: sufficient stats {st:.3f} s, compile {co:.3f} s (cached), sampling "
              f"{sa:.2f} s (4 chains x 1000 draws + 1000 tune; median of 3), ok={fit.ok}")
    print(f"fit time ratio 1M / 1k users: {res[1000000] / res[1000]:.2f}")
    if a.cold:
        with tempfile.TemporaryDirectory() as tmp:
            env = dict(os.environ, PYTENSOR_FLAGS=f"compiledir={tmp}/pt",
                       NUMBA_CACHE_DIR=f"{tmp}/numba")
            t0 = time.perf_counter()
            out = subprocess.run([sys.executable, __file__, "--child"], env=env,
                                 capture_output=True, text=True).stdout.split()
            print(f"cold caches (fresh process): compile {out[-2]} s, sampling {out[-1]} s, "
                  f"process wall {time.perf_counter() - t0:.0f} s")
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, __file__, "--child"], capture_output=True,
                         text=True).stdout.split()
    print(f"warm disk cache (fresh process): compile {out[-2]} s, sampling {out[-1]} s")
    clear_cache()


if __name__ == "__main__":
    main()
