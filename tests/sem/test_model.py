"""Model-implied moments and the sufficient-statistic likelihood (fast; no sampling)."""

import os
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import pandas as pd
import pytest
from scipy.stats import multivariate_normal

from counterfeed.sem import SEM, implied_moments, sufficient_loglik, sufficient_stats


def test_implied_covariance_matches_hand_computation():
    # f =~ 1*y1 + l*y2 ; y3 ~ b*f + g*treatment ; treatment shifts f by a
    sem = SEM("f =~ y1 + y2\nf ~ a*t\ny3 ~ b*f", exogenous=["t"])
    lam, a, b = 0.8, 0.5, 1.5
    psi, th1, th2, th3 = 2.0, 0.3, 0.4, 0.5
    vals = {"f=~y2": lam, "f~t": a, "y3~f": b, "f~~f": psi, "y1~~y1": th1, "y2~~y2": th2,
            "y3~~y3": th3, "y1~1": 1.0, "y2~1": 2.0, "y3~1": 3.0}
    mu, Sigma = implied_moments(sem.table, vals, x=[[0.0], [1.0]])
    load = np.array([1.0, lam, b])
    expected = psi * np.outer(load, load) + np.diag([th1, th2, th3])
    np.testing.assert_allclose(Sigma, expected)
    np.testing.assert_allclose(mu[0], [1.0, 2.0, 3.0])
    np.testing.assert_allclose(mu[1], [1.0 + a, 2.0 + lam * a, 3.0 + b * a])


def _rows_loglik(df, cols, exog, mu_of, Sigma):
    total = 0.0
    for xval, grp in df.groupby(exog):
        xval = np.atleast_1d(xval).astype(float)
        total += multivariate_normal(mu_of(xval), Sigma).logpdf(grp[cols].to_numpy()).sum()
    return total


def test_sufficient_loglik_equals_rowwise_mvn():
    rng = np.random.default_rng(1)
    sem = SEM("f =~ y1 + y2 + y3\nf ~ a*t", exogenous=["t"])
    vals = {"f=~y2": 0.7, "f=~y3": 1.2, "f~t": 0.4, "f~~f": 1.3, "y1~~y1": 0.5, "y2~~y2": 0.6,
            "y3~~y3": 0.7, "y1~1": 1.0, "y2~1": -1.0, "y3~1": 0.5}
    n = 57
    x = rng.integers(0, 2, n).astype(float)
    df = pd.DataFrame(rng.normal(size=(n, 3)) * [1, 2, 3] + [0, 1, 2], columns=["y1", "y2", "y3"])
    df["t"] = x
    stats = sufficient_stats(df, ["y1", "y2", "y3"], ["t"])
    mu, Sigma = implied_moments(sem.table, vals, x=stats.x)
    ll = sufficient_loglik(stats, mu, Sigma)
    mu_of = {tuple(stats.x[g]): mu[g] for g in range(len(stats.n))}
    ref = _rows_loglik(df, ["y1", "y2", "y3"], "t", lambda xv: mu_of[tuple(xv)], Sigma)
    assert ll == pytest.approx(ref, rel=1e-10)


def _check_potential_against_reference(sem, df, rng):
    """Compile the model's Potential after nutpie's rewrites (canonicalize + stabilize, then the
    FAST_RUN optimizer) and check it equals the NumPy reference log-likelihood at a random point.

    Returns the outputs at that point ([loglik, params, defined..., logp, grads...]), the free
    parameter values, the value-variable names and the rewritten log density graph."""
    import pytensor
    from pytensor.compile.mode import Mode

    from counterfeed.sem.model import build_pymc_model, data_arrays

    stats = sem.stats(df)
    data = data_arrays(sem.table, stats)
    model = build_pymc_model(sem.table, data)
    # the step that never finished for a fixed zero covariance (issue 14, item 7)
    logp = pytensor.graph.rewrite_graph(model.logp(), include=["canonicalize", "stabilize"])
    grads = pytensor.grad(logp, model.value_vars)
    outs = model.replace_rvs_by_values([model["loglik"], model["params"]] + (
        [model["defined"]] if sem.table.definitions else [])) + [logp] + grads
    fn = pytensor.function(model.value_vars, outs, on_unused_input="ignore",
                           mode=Mode(linker="py", optimizer="fast_run"))
    point = model.initial_point()
    for name in point:  # move away from the start values
        point[name] = point[name] + rng.normal(scale=0.3, size=np.shape(point[name]))
    res = fn(*[point[v.name] for v in model.value_vars])
    pot, params = res[0], res[1]
    vals = dict(zip([r.key for r in sem.table.free_rows()], params))
    mu, Sigma = implied_moments(sem.table, vals, x=stats.x)
    ll = sufficient_loglik(stats, mu, Sigma)
    k = data["k_all"][: len(sem.table.observed)]
    const = -stats.n_total * (np.log(k).sum() + 0.5 * len(k) * np.log(2 * np.pi))
    assert ll == pytest.approx(pot + const, rel=1e-8)
    return res, vals, [v.name for v in model.value_vars], logp


def test_pytensor_loglik_matches_numpy_reference():
    """The compiled Potential equals the exact log-likelihood up to the known constants."""
    rng = np.random.default_rng(2)
    sem = SEM("f =~ y1 + y2 + log1p(y3)\nf ~ a*t\nw ~ b*f + c*t\nind := a*b", exogenous=["t"])
    n = 200
    df = pd.DataFrame(np.abs(rng.normal(size=(n, 4))) * [1, 10, 100, 2],
                      columns=["y1", "y2", "y3", "w"])
    df["t"] = rng.integers(0, 2, n)
    res, vals, _, _ = _check_potential_against_reference(sem, df, rng)
    assert res[2][0] == pytest.approx(vals["f~t"] * vals["w~f"])


ZERO_COV = Path(__file__).parent / "data" / "sem-fixed-zero-covariance"


@pytest.mark.timeout(300)  # the bug was a hang in graph rewriting: fail instead of waiting
def test_sem_fixed_zero_covariance():
    """Restating the default (x1 ~~ 0*x2) gives the same log density and gradient as the
    default model at any point, and the graph rewrites finish."""
    df = pd.read_csv(ZERO_COV / "data.csv")
    out = {}
    for name in ("model_default", "model_zero_cov"):
        sem = SEM((ZERO_COV / f"{name}.sem").read_text())
        out[name] = _check_potential_against_reference(sem, df, np.random.default_rng(7))
    (r0, v0, names0, logp0), (r1, v1, names1, logp1) = out.values()
    assert v0 == v1 and names0 == names1  # same free parameters at the same point
    for a, b in zip(r0[2:], r1[2:]):  # log density and every gradient block
        np.testing.assert_allclose(a, b, rtol=1e-12)
    # the fixed zero is a structural zero: the same graph as the default, so the same compile
    from pytensor.printing import debugprint

    assert debugprint(logp0, file="str") == debugprint(logp1, file="str")


@pytest.mark.timeout(300)
@pytest.mark.parametrize("text", [
    "f1 =~ x1 + x2 + x3\nf2 =~ x4 + x5\nf1 ~~ 0*f2",        # orthogonal factors
    "f =~ x1 + x2 + 0*x3 + x4",                               # loading
    "f =~ x1 + x2 + x3\nx4 ~ 0*f + x5",                       # regression
    "f =~ x1 + x2 + x3 + x4\nx4 ~~ 0*x4",                     # variance
    "f =~ x1 + x2 + x3\nx1 ~~ 0.3*x2\nx4 ~~ 0*x5",            # covariances, nonzero and zero
    "f =~ x1 + x2 + x3\nx1 ~ 0*1\nx5 ~ 2.5*1 + x4\nx4 ~ -1*1",  # intercepts (with a regression)
])
def test_fixed_values_of_every_kind_build_and_match_reference(text):
    df = pd.read_csv(ZERO_COV / "data.csv")
    sem = SEM(text)
    _, vals, _, _ = _check_potential_against_reference(sem, df, np.random.default_rng(3))
    fixed = [r for r in sem.table.param_rows() if not r.free and r.user]
    assert fixed and all(r.key not in vals for r in fixed)


def test_sufficient_stats_groups_and_transforms():
    df = pd.DataFrame({"y": [1.0, 2, 3, 4, 5, 6], "d": [0.0, 1, 2, 3, 4, 5],
                       "t": [0, 0, 0, 1, 1, 1]})
    st = sufficient_stats(df, ["y", "log1p(d)"], ["t"])
    assert list(st.n) == [3, 3]
    np.testing.assert_allclose(st.means[0], [2.0, np.log1p([0, 1, 2]).mean()])
    np.testing.assert_allclose(st.covs[1][0, 0], np.var([4, 5, 6]))
