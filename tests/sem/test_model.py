"""Model-implied moments and the sufficient-statistic likelihood (fast; no sampling)."""

import os

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


def test_pytensor_loglik_matches_numpy_reference():
    """The compiled Potential equals the exact log-likelihood up to the known constants."""
    from counterfeed.sem.model import build_pymc_model, data_arrays

    rng = np.random.default_rng(2)
    sem = SEM("f =~ y1 + y2 + log1p(y3)\nf ~ a*t\nw ~ b*f + c*t\nind := a*b", exogenous=["t"])
    n = 200
    df = pd.DataFrame(np.abs(rng.normal(size=(n, 4))) * [1, 10, 100, 2],
                      columns=["y1", "y2", "y3", "w"])
    df["t"] = rng.integers(0, 2, n)
    stats = sem.stats(df)
    data = data_arrays(sem.table, stats)
    model = build_pymc_model(sem.table, data)
    point = model.initial_point()
    for name in point:  # move away from the start values
        point[name] = point[name] + rng.normal(scale=0.3, size=np.shape(point[name]))
    fn = model.compile_fn([model["loglik"], model["params"], model["defined"]],
                          inputs=model.value_vars, on_unused_input="ignore")
    pot, params, defined = fn(point)
    keys = [r.key for r in sem.table.free_rows()]
    vals = dict(zip(keys, params))
    mu, Sigma = implied_moments(sem.table, vals, x=stats.x)
    ll = sufficient_loglik(stats, mu, Sigma)
    k = data["k_all"][: len(sem.table.observed)]
    p = len(k)
    const = -stats.n_total * (np.log(k).sum() + 0.5 * p * np.log(2 * np.pi))
    assert ll == pytest.approx(pot + const, rel=1e-8)
    assert defined[0] == pytest.approx(vals["f~t"] * vals["w~f"])


def test_sufficient_stats_groups_and_transforms():
    df = pd.DataFrame({"y": [1.0, 2, 3, 4, 5, 6], "d": [0.0, 1, 2, 3, 4, 5],
                       "t": [0, 0, 0, 1, 1, 1]})
    st = sufficient_stats(df, ["y", "log1p(d)"], ["t"])
    assert list(st.n) == [3, 3]
    np.testing.assert_allclose(st.means[0], [2.0, np.log1p([0, 1, 2]).mean()])
    np.testing.assert_allclose(st.covs[1][0, 0], np.var([4, 5, 6]))
