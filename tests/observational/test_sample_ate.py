"""The variance behind AIPW's interval for the sample average treatment effect
(``_obs_backdoor.sample_ate_se``: the residual mean square of the pseudo-outcomes regressed on the
covariates, over n; equal to EconML's to 1e-8 in test_estimators_libraries) covers the mean effect
over the users at its level where the usual (population) interval over-covers it, and is as wide as
the population one when effects do not vary with the covariates. Oracle nuisances, so that the
property of the variance formula is checked, not the nuisance fits."""

from __future__ import annotations

import numpy as np

Z = 1.959963984540054


def sample_ate_se(psi: np.ndarray, x: np.ndarray) -> tuple[float, float]:
    """sqrt(RSS / (n - p) / n) of the OLS of ``psi`` on ``[1, x]`` (p = its columns), and its R^2."""
    design = np.column_stack([np.ones(psi.size), x])
    resid = psi - design @ np.linalg.lstsq(design, psi, rcond=None)[0]
    rss = float(resid @ resid)
    return float(np.sqrt(rss / (psi.size - design.shape[1]) / psi.size)), 1 - rss / float(np.sum((psi - psi.mean()) ** 2))


def _oracle_replications(reps: int, n: int, slope: float, seed: int):
    """Doubly robust pseudo-outcomes with the true nuisances: X ~ N(0, I_2), e(X) = logistic(0.5 x1),
    Y(0) = x1 + N(0, 1), tau_i = 2 + slope x1 + N(0, 0.5^2). Yields (estimate, population se,
    sample se, sample ATE)."""
    rng = np.random.default_rng(seed)
    for _ in range(reps):
        x = rng.normal(size=(n, 2))
        e = 1 / (1 + np.exp(-0.5 * x[:, 0]))
        t = (rng.random(n) < e).astype(float)
        y0 = x[:, 0] + rng.normal(size=n)
        tau = 2 + slope * x[:, 0] + 0.5 * rng.normal(size=n)
        y = np.where(t == 1, y0 + tau, y0)
        mu0, mu1 = x[:, 0], x[:, 0] + 2 + slope * x[:, 0]
        psi = mu1 - mu0 + t * (y - mu1) / e - (1 - t) * (y - mu0) / (1 - e)
        yield psi.mean(), psi.std(ddof=1) / np.sqrt(n), sample_ate_se(psi, x)[0], tau.mean()


def test_the_sample_interval_covers_the_sample_ate_at_its_level_where_the_population_one_over_covers():
    # 2,000 replications: a coverage's binomial sd is 0.005 at 95%, so [0.93, 0.97] is +-4 sd
    reps = np.array(list(_oracle_replications(2000, 300, slope=2.0, seed=7)))
    est, se_pop, se_sample, sate = reps.T
    covered_sample = np.mean(np.abs(est - sate) <= Z * se_sample)
    covered_pop = np.mean(np.abs(est - sate) <= Z * se_pop)
    assert 0.93 <= covered_sample <= 0.97, covered_sample
    assert covered_pop >= 0.975, covered_pop  # var(tau(X)) = 4 of var(psi) ~ 13: wider than the sample ATE needs
    assert np.all(se_sample < se_pop)


def test_without_heterogeneity_the_sample_interval_is_as_wide_as_the_population_one():
    reps = np.array(list(_oracle_replications(300, 300, slope=0.0, seed=8)))
    ratio = reps[:, 2] / reps[:, 1]
    # only chance correlation of psi with x is removed (k = 2 of n = 300, with the df correction)
    assert 0.98 <= ratio.mean() <= 1.01, ratio.mean()
