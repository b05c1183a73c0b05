"""Robustness of the SEM sampler: 20 seeds of the HS39 CFA and of a 20k-user mediation SEM.

Every fit must have R-hat <= 1.01, bulk ESS >= 400, no divergences and no chain in the wrong mode
(HS39: a chain whose mean visual loadings are negative or whose visual variance is near zero;
mediation: a chain whose mean indirect effect is > 5 posterior SDs from the others).

    python benchmarks/sem_robustness.py [--seeds 20] [--draws 1000] [--chains 4]
"""
import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from counterfeed.sem import SEM
from counterfeed.sem.examples import HS39_MODEL, MEDIATION_MODEL, simulate_mediation

HERE = Path(__file__).resolve().parent.parent


def check(fit, wrong_mode) -> dict:
    s = fit.summary
    cm = fit.chain_means
    return {"rhat_max": s["r_hat"].max(), "ess_bulk_min": s["ess_bulk"].min(),
            "divergences": fit.divergences, "wrong_mode_chains": int(wrong_mode(cm, s)),
            "sample_s": fit.timings["sample_s"]}


def hs39_wrong(cm, s):
    return ((cm["visual=~x2"] < 0) | (cm["visual=~x3"] < 0)
            | (cm["visual~~visual"] < 0.2 * s.loc["visual~~visual", "mean"])).sum()


def med_wrong(cm, s):
    return ((cm["indirect"] - cm["indirect"].median()).abs() > 5 * s.loc["indirect", "sd"]).sum()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--n", type=int, default=20000)
    a = ap.parse_args()
    hs = pd.read_csv(HERE / "tests/sem/data/holzinger_swineford1939.csv")
    rows = []
    for label, sem, data_for, wrong in (
            ("hs39", SEM(HS39_MODEL), lambda s: hs, hs39_wrong),
            ("mediation20k", SEM(MEDIATION_MODEL, exogenous=["treatment"]),
             lambda s: simulate_mediation(a.n, np.random.default_rng(1000 + s)), med_wrong)):
        for seed in range(a.seeds):
            t0 = time.perf_counter()
            fit = sem.fit(data_for(seed), draws=a.draws, tune=a.draws, chains=a.chains, seed=seed)
            r = {"model": label, "seed": seed, **check(fit, wrong),
                 "compile_s": fit.timings["compile_s"], "wall_s": time.perf_counter() - t0}
            r["pass"] = bool(r["rhat_max"] <= 1.01 and r["ess_bulk_min"] >= 400
                             and r["divergences"] == 0 and r["wrong_mode_chains"] == 0)
            rows.append(r)
            print(f"{label:13s} seed {seed:2d}  rhat_max {r['rhat_max']:.4f}  ess_bulk_min "
                  f"{r['ess_bulk_min']:6.0f}  div {r['divergences']}  wrong-mode chains "
                  f"{r['wrong_mode_chains']}  sample {r['sample_s']:.2f}s  "
                  f"{'PASS' if r['pass'] else 'FAIL'}", flush=True)
    df = pd.DataFrame(rows)
    for label, g in df.groupby("model"):
        print(f"{label}: {int(g['pass'].sum())}/{len(g)} pass; worst rhat {g.rhat_max.max():.4f}, "
              f"min ess_bulk {g.ess_bulk_min.min():.0f}, divergences {int(g.divergences.sum())}, "
              f"wrong-mode chains {int(g.wrong_mode_chains.sum())}, median sampling "
              f"{g.sample_s.median():.2f} s")


if __name__ == "__main__":
    main()
