"""Sufficient statistics per exogenous pattern, data transforms, and NumPy reference formulas."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from counterfeed.errors import DataError
from counterfeed.sem.errors import SEMModelError

__all__ = ["SufficientStats", "sufficient_stats", "check_columns", "data_column", "check_scale", "apply_transforms",
           "implied_moments", "sufficient_loglik", "simulate"]

_TRANSFORM_RE = re.compile(r"^(log|log1p|sqrt|z)\((.+)\)$")


def data_column(name: str) -> str:
    """The data column a model variable reads: ``x`` for ``x`` and for a transform such as ``log1p(x)``."""
    m = _TRANSFORM_RE.match(name)
    return m.group(2) if m else name


def check_columns(df, names) -> None:
    """Raise the ``SEMModelError`` of :func:`_column` for the first of ``names`` (variables, possibly
    transformed) that is not a column of ``df`` (a DataFrame, or the list of its column names: the
    scenario estimator checks the columns a run will have before simulating it)."""
    columns = list(getattr(df, "columns", df))
    for name in names:
        col = data_column(name)
        if col not in columns:
            raise _not_a_column(col, columns)


def _not_a_column(col: str, columns) -> SEMModelError:
    return SEMModelError(f"'{col}' is neither a latent variable (no '{col} =~ ...') nor a data "
                         f"column; columns are: {', '.join(map(str, columns))}")


def _column(df, name: str) -> np.ndarray:
    m = _TRANSFORM_RE.match(name)
    col = data_column(name)
    if col not in df.columns:
        raise _not_a_column(col, df.columns)
    try:
        x = np.asarray(df[col], dtype=float)
    except (TypeError, ValueError):
        raise DataError(f"column '{col}' must be numeric: {_first_non_numeric(df[col])}") from None
    if not m:
        return x
    fn = m.group(1)
    if fn == "log" and np.nanmin(x) <= 0:
        raise DataError(f"column '{col}': log() needs positive values; use log1p() or fix the data")
    if fn == "log1p" and np.nanmin(x) <= -1:
        raise DataError(f"column '{col}': log1p() needs values > -1")
    if fn == "sqrt" and np.nanmin(x) < 0:
        raise DataError(f"column '{col}': sqrt() needs non-negative values")
    if fn == "log":
        return np.log(x)
    if fn == "log1p":
        return np.log1p(x)
    if fn == "sqrt":
        return np.sqrt(x)
    sd = np.nanstd(x)
    if not sd > 0:
        raise DataError(f"column '{col}': z() needs a non-constant column")
    return (x - np.nanmean(x)) / sd


def _first_non_numeric(values) -> str:
    """Where a column stops being numeric: ``data row 3 (counted from 1 after the header) has 'abc'``, or
    the dtype when no single value is to blame. Rows, not file lines: a quoted CSV field may span lines,
    and a Parquet table has none."""
    import pandas as pd

    v = pd.Series(values).reset_index(drop=True)
    bad = np.flatnonzero(pd.to_numeric(v, errors="coerce").isna().to_numpy() & v.notna().to_numpy())
    if bad.size == 0:
        return f"got {v.dtype}"
    i = int(bad[0])
    more = f"; {bad.size - 1} more non-numeric value(s) below" if bad.size > 1 else ""
    return f"data row {i + 1} (counted from 1 after the header) has {str(v.iloc[i])!r}{more}"


def apply_transforms(df, names) -> np.ndarray:
    """Matrix (rows x len(names)) of the named columns with transforms such as ``log1p(x)`` applied."""
    return np.column_stack([_column(df, n) for n in names]) if names else np.empty((len(df), 0))


@dataclass
class SufficientStats:
    """Per exogenous pattern g: the pattern ``x[g]``, count ``n[g]``, mean vector ``means[g]`` and
    ML (divide-by-n) covariance ``covs[g]`` of the observed endogenous ``variables``."""

    variables: list[str]
    exogenous: list[str]
    x: np.ndarray  # (G, q)
    n: np.ndarray  # (G,)
    means: np.ndarray  # (G, p)
    covs: np.ndarray  # (G, p, p)

    def __post_init__(self):
        p, q = len(self.variables), len(self.exogenous)
        self.n = np.asarray(self.n, float).reshape(-1)
        self.x = np.asarray(self.x, float).reshape(len(self.n), q)
        self.means = np.asarray(self.means, float).reshape(-1, p)
        self.covs = np.asarray(self.covs, float).reshape(-1, p, p)
        g = len(self.n)
        if not (len(self.x) == len(self.means) == len(self.covs) == g):
            raise DataError(f"sufficient statistics: x, n, means and covs must have one entry per "
                            f"group ({g} counts given)")
        if np.any(self.n <= 0):
            raise DataError("sufficient statistics: group counts must be positive")

    @property
    def n_total(self) -> float:
        return float(self.n.sum())

    def pooled(self):
        """(overall mean, total ML covariance, within-group scatter W = sum n_g S_g)."""
        w = self.n / self.n.sum()
        mean = w @ self.means
        W = np.einsum("g,gij->ij", self.n, self.covs)
        d = self.means - mean
        total = (W + np.einsum("g,gi,gj->ij", self.n, d, d)) / self.n.sum()
        return mean, total, W


def sufficient_stats(data, variables, exogenous=()) -> SufficientStats:
    """Group rows of ``data`` by their exogenous values and return n, means and ML covariances."""
    exogenous = list(exogenous)
    Y = apply_transforms(data, list(variables))
    X = apply_transforms(data, exogenous)
    bad = ~np.isfinite(Y).all(axis=1) | ~np.isfinite(X).all(axis=1)
    if bad.any():
        cols = [n for j, n in enumerate(variables) if not np.isfinite(Y[:, j]).all()]
        cols += [n for j, n in enumerate(exogenous) if not np.isfinite(X[:, j]).all()]
        raise DataError(f"{int(bad.sum())} row(s) have missing or non-finite values in "
                        f"{', '.join(cols)}; drop or impute them first")
    if len(Y) <= len(variables):
        raise DataError(f"need more rows ({len(Y)}) than observed variables ({len(variables)})")
    q = len(exogenous)
    if exogenous and q <= 16 and np.isin(X, (0.0, 1.0)).all():
        # 0/1 arm indicators (the usual case): a pattern code per row, groups found by bincount: O(n)
        code = (X @ (1 << np.arange(q))).astype(np.int64)
        present = np.bincount(code, minlength=1 << q) > 0
        inv = (np.cumsum(present) - 1)[code]
        pats = ((np.nonzero(present)[0][:, None] >> np.arange(q)) & 1).astype(float)
    elif exogenous:
        # integer code per row from per-column codes (np.unique on rows is slow for 1M rows)
        import pandas as pd

        code = np.zeros(len(X), dtype=np.int64)
        for j in range(X.shape[1]):
            cj, uj = pd.factorize(X[:, j])
            code = code * len(uj) + cj
        inv, uniq = pd.factorize(code, sort=True)
        first = np.zeros(len(uniq), dtype=np.int64)
        first[inv[::-1]] = np.arange(len(inv))[::-1]
        pats = X[first]
    else:
        pats, inv = np.zeros((1, 0)), np.zeros(len(Y), dtype=np.int64)
    if exogenous and len(pats) > max(64, len(Y) // 10):
        raise DataError(f"exogenous columns {exogenous} take {len(pats)} distinct patterns; "
                        f"they should be 0/1 arm indicators")
    G, p = len(pats), Y.shape[1]
    # one pass per column / pair with bincount: means, then centred cross-products (two-pass, stable)
    n = np.bincount(inv, minlength=G).astype(float)
    means = np.stack([np.bincount(inv, weights=Y[:, j], minlength=G) for j in range(p)], axis=1) / n[:, None]
    Z = Y - means[inv]
    covs = np.empty((G, p, p))
    for i in range(p):
        for j in range(i, p):
            covs[:, i, j] = covs[:, j, i] = np.bincount(inv, weights=Z[:, i] * Z[:, j], minlength=G) / n
    return SufficientStats(list(variables), exogenous, pats, n, means, covs)


# -- NumPy reference implementation of the model-implied moments (used for tests and simulation)

def ram_matrices(table, values: dict):
    """RAM matrices (A, B, Psi, alpha) in original units; ``values`` maps row keys to values."""
    names = table.observed + table.latents
    idx = {v: i for i, v in enumerate(names)}
    xi = {x: j for j, x in enumerate(table.exogenous)}
    m, p, q = len(names), len(table.observed), len(table.exogenous)
    A, B, Psi, alpha = np.zeros((m, m)), np.zeros((m, q)), np.zeros((m, m)), np.zeros(m)
    for r in table.param_rows():
        v = values[r.key] if r.free else r.value
        if r.kind == "loading":
            A[idx[r.rhs], idx[r.lhs]] = v
        elif r.kind == "regression":
            A[idx[r.lhs], idx[r.rhs]] = v
        elif r.kind == "exog":
            B[idx[r.lhs], xi[r.rhs]] = v
        elif r.kind in ("variance", "covariance"):
            Psi[idx[r.lhs], idx[r.rhs]] = Psi[idx[r.rhs], idx[r.lhs]] = v
        elif r.kind == "intercept":
            alpha[idx[r.lhs]] = v
    return A, B, Psi, alpha[:p]


def implied_moments(table, values: dict, x=None):
    """Model-implied means (G x p, one row per exogenous pattern in ``x``) and covariance (p x p).

    Sigma = F (I-A)^-1 Psi (I-A)^-T F',  mu(x) = F (I-A)^-1 (alpha + B x)."""
    A, B, Psi, alpha = ram_matrices(table, values)
    m, p = A.shape[0], len(table.observed)
    Binv = np.linalg.inv(np.eye(m) - A)
    Sigma = (Binv @ Psi @ Binv.T)[:p, :p]
    x = np.zeros((1, B.shape[1])) if x is None else np.atleast_2d(np.asarray(x, float))
    a_full = np.concatenate([alpha, np.zeros(m - p)])
    mu = ((a_full[None, :] + x @ B.T) @ Binv.T)[:, :p]
    return mu, Sigma


def sufficient_loglik(stats: SufficientStats, mu: np.ndarray, Sigma: np.ndarray) -> float:
    """Exact Gaussian log-likelihood from sufficient statistics.

    sum_g -n_g/2 [p log 2pi + log|Sigma| + tr(Sigma^-1 S_g) + (m_g-mu_g)' Sigma^-1 (m_g-mu_g)]."""
    p = Sigma.shape[0]
    L = np.linalg.cholesky(Sigma)
    logdet = 2 * np.log(np.diag(L)).sum()
    Sinv = np.linalg.inv(Sigma)
    total = 0.0
    for g in range(len(stats.n)):
        d = stats.means[g] - mu[g]
        total += -0.5 * stats.n[g] * (p * np.log(2 * np.pi) + logdet
                                      + np.trace(Sinv @ stats.covs[g]) + d @ Sinv @ d)
    return float(total)


def simulate(table, values: dict, x_rows: np.ndarray, rng: np.random.Generator):
    """Draw one row of observed endogenous variables per row of exogenous values ``x_rows``."""
    import pandas as pd

    x_rows = np.asarray(x_rows, float).reshape(len(x_rows), len(table.exogenous))
    pats, inv = np.unique(x_rows, axis=0, return_inverse=True)
    mu, Sigma = implied_moments(table, values, pats)
    Y = rng.multivariate_normal(np.zeros(len(Sigma)), Sigma, size=len(x_rows), method="cholesky")
    Y += mu[inv.reshape(-1)]
    df = pd.DataFrame(Y, columns=table.observed)
    for j, name in enumerate(table.exogenous):
        df[name] = x_rows[:, j]
    return df


def check_scale(stats: SufficientStats) -> None:
    """Reject data whose moments are not finite or so large that the sampler cannot start (located
    by column): variances beyond 1e100 overflow the density's determinant."""
    for j, name in enumerate(stats.variables):
        m, v = stats.means[:, j], stats.covs[:, j, j]
        if not (np.all(np.isfinite(m)) and np.all(np.isfinite(v))):
            raise DataError(f"column '{name}': its mean or variance is not finite (inf or huge values); "
                            "rescale the column (e.g. divide by its standard deviation)")
        if np.any(np.abs(m) > 1e100) or np.any(v > 1e100):
            raise DataError(f"column '{name}': values of magnitude ~{max(np.abs(m).max(), np.sqrt(v).max()):.3g} "
                                "are too large to sample; rescale the column (e.g. divide by its standard deviation)")
