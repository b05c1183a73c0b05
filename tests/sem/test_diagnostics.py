"""Heywood (boundary) checks: unit tests on constructed posteriors, and the handed case fitted."""

import json
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from counterfeed.sem import SEM
from counterfeed.sem.diagnostics import boundary_checks

HEYWOOD = Path(__file__).parent / "data" / "sem-heywood"


def _draws(sem, rng, **override):
    """Healthy posterior draws (original units) for every free parameter, with overrides."""
    out = {}
    for r in sem.table.free_rows():
        centre = {"variance": 0.5, "covariance": 0.2}.get(r.kind, 1.0)
        out[r.key] = rng.normal(centre, 0.05, 4000)
    out.update(override)
    return out


def test_boundary_checks_flag_variances_at_zero_and_correlations_at_one():
    rng = np.random.default_rng(0)
    sem = SEM("f1 =~ x1 + x2 + x3\nf2 =~ x4 + x5 + x6")
    scales = {v: 1.0 for v in sem.table.observed + sem.table.latents}
    assert boundary_checks(sem.table, _draws(sem, rng), scales) == []
    # the handed case's posterior: x1~~x1 0.004 [0.0001, 0.016] on a variable of variance ~1
    piled = rng.exponential(0.004, 4000)
    flags = boundary_checks(sem.table, _draws(sem, rng, **{"x1~~x1": piled}), scales)
    assert [(b.param, b.kind) for b in flags] == [("x1~~x1", "variance")]
    assert "Heywood" in flags[0].message and "lower bound" in flags[0].message
    # same draws on a variable with a tiny scale (variance 1e-4): 0.004 is not near its bound
    assert boundary_checks(sem.table, _draws(sem, rng, **{"x1~~x1": piled}),
                           {**scales, "x1": 0.01}) == []
    # latent correlation piled against +1: cov ~ sqrt(var1 var2)
    near_one = 0.5 * np.clip(rng.normal(0.995, 0.003, 4000), None, 0.9999)
    flags = boundary_checks(sem.table, _draws(sem, rng, **{"f1~~f2": near_one}), scales)
    assert [(b.param, b.kind) for b in flags] == [("f1~~f2", "correlation")]
    flags = boundary_checks(sem.table, _draws(sem, rng, **{"f1~~f2": -near_one}), scales)
    assert [b.kind for b in flags] == ["correlation"]


@pytest.mark.slow
def test_sem_heywood(tmp_path):
    """Handed case: unrestricted ML gives x1~~x1 about -0.32; the posterior piles at 0 and the
    fit, its JSON and the CLI output say so."""
    from counterfeed.sem.cli import sem as sem_cli

    df = pd.read_csv(HEYWOOD / "data.csv")
    fit = SEM((HEYWOOD / "model.sem").read_text()).fit(df, draws=500, tune=500, chains=2,
                                                          seed=0)
    assert not fit.ok
    assert [(b.param, b.kind) for b in fit.boundary] == [("x1~~x1", "variance")]
    assert any("x1~~x1" in w and "Heywood" in w for w in fit.warnings)
    assert fit.summary.loc["x1~~x1", "boundary"] and fit.summary["boundary"].sum() == 1
    assert fit.summary.loc["x1~~x1", "eti_97.5%"] < 0.05 * df["x1"].var()
    payload = json.loads(json.dumps(fit.to_dict()))
    assert payload["boundary"][0]["param"] == "x1~~x1" and payload["ok"] is False
    args = ["fit", str(HEYWOOD / "model.sem"), str(HEYWOOD / "data.csv"), "--draws", "300",
            "--tune", "300", "--chains", "2", "--quiet"]
    res = CliRunner().invoke(sem_cli, args)
    assert res.exit_code == 0, res.output
    assert "WARNINGS" in res.output and "x1~~x1: posterior piles up" in res.output
    res = CliRunner().invoke(sem_cli, args + ["--json"])
    payload = json.loads(res.output.strip().splitlines()[-1])
    assert [b["param"] for b in payload["boundary"]] == ["x1~~x1"]
