"""Sampling tests against lavaan and simulated truth (slow: compile + NUTS)."""

import json
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binom

from counterfeed.sem import SEM, fit_sem, fit_sem_stats, sufficient_stats
from counterfeed.sem.examples import (HS39_MODEL, MEDIATION_MODEL, MEDIATION_TRUTH,
                                      simulate_mediation)

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def hs39():
    return pd.read_csv(DATA / "holzinger_swineford1939.csv")


@pytest.mark.slow
def test_hs39_matches_lavaan(hs39, tmp_path):
    ref = json.loads((DATA / "lavaan_hs39.json").read_text())
    fit = fit_sem(HS39_MODEL, hs39, draws=1000, chains=4, seed=0)
    s = fit.summary
    expected = {**ref["loadings"], **ref["factor_covariances"],
                **{f"{k}~~{k}": v for k, v in ref["variances"].items()}}
    free = {k: v for k, v in expected.items() if k in s.index}
    assert len(free) == 21
    for key, value in free.items():
        mean, sd = s.loc[key, "mean"], s.loc[key, "sd"]
        assert abs(mean - value) <= 0.5 * sd, (key, mean, value, sd)
        if "=~" in key and key.split("=~")[0] in ("visual", "textual"):
            assert abs(mean - value) <= 0.035, (key, mean, value)
    assert s["r_hat"].max() <= 1.01
    assert fit.divergences == 0
    assert fit.ok, fit.warnings
    assert fit.timings["compile_s"] >= 0 and fit.timings["sample_s"] > 0
    path = fit.save(tmp_path / "hs39.nc")
    import arviz as az

    assert "params" in az.from_netcdf(path).posterior


@pytest.mark.slow
def test_refit_reuses_compiled_model_and_std_lv(hs39):
    sem = SEM(HS39_MODEL)
    first = sem.fit(hs39, draws=300, chains=2, seed=1)
    again = sem.fit(hs39.sample(frac=1.0, replace=True, random_state=3), draws=300, chains=2,
                    seed=2)
    assert again.timings["cache_hit"] and again.timings["compile_s"] < 1.0
    assert first.summary.index.equals(again.summary.index)
    std = fit_sem(HS39_MODEL, hs39, std_lv=True, draws=500, chains=2, seed=0)
    # std_lv: the ratio of loadings equals the marker-parametrized loading
    ratio = std.draws("visual=~x2") / std.draws("visual=~x1")
    assert abs(ratio.mean() - 0.554) < 0.06
    assert std.divergences == 0


@pytest.mark.slow
def test_mediation_stats_api_and_priors():
    df = simulate_mediation(20000, np.random.default_rng(5))
    sem = SEM(MEDIATION_MODEL, exogenous=["treatment"], priors={"a": "normal(0, 1)"})
    stats = sufficient_stats(df, sem.table.observed, ["treatment"])
    fit = fit_sem_stats(sem, stats, draws=500, chains=2, seed=0)
    s = fit.summary
    for key in ("engagement~treatment", "retained~engagement", "indirect", "engagement=~dwell"):
        assert abs(s.loc[key, "mean"] - MEDIATION_TRUTH[key]) < 4 * s.loc[key, "sd"]
    assert fit.estimate("a")["label"] == "a"
    assert fit.draws("indirect").shape == (1000,)


@pytest.mark.slow
def test_coverage_small():
    """40 replications at 1k users: coverage of the 95% intervals within a binomial band."""
    sem = SEM(MEDIATION_MODEL, exogenous=["treatment"])
    reps = 40
    targets = ["engagement~treatment", "retained~engagement", "retained~treatment", "indirect"]
    hits = {k: 0 for k in targets}
    for rep in range(reps):
        df = simulate_mediation(1000, np.random.default_rng([7, rep]))
        s = sem.fit(df, draws=400, tune=400, chains=2, seed=rep).summary
        for k in targets:
            hits[k] += int(s.loc[k, "eti_2.5%"] <= MEDIATION_TRUTH[k] <= s.loc[k, "eti_97.5%"])
    lo = binom.ppf(0.001, reps, 0.95)  # P(fail | correct coverage) < 0.1% per target
    for k in targets:
        assert hits[k] >= lo, (k, hits[k], lo)


@pytest.mark.slow
def test_advi_is_explicit_and_flagged(hs39):
    fit = fit_sem(HS39_MODEL, hs39, method="advi", draws=200, chains=1, seed=0,
                  advi_iterations=5000)
    assert not fit.ok and "approximation" in fit.warnings[0]
    assert abs(fit.summary.loc["textual=~x5", "mean"] - 1.113) < 0.2
