"""Boundary (Heywood) checks on an SEM posterior.

lavaan warns when an ML estimate lands outside the parameter space: a negative variance or a
latent correlation beyond +-1 (a *Heywood case*; Kolenikov & Bollen 2012, "Testing negative error
variances: is a Heywood case a symptom of misspecification?", Sociological Methods & Research
41(1)). A Bayesian fit cannot cross the boundary (variances are positive, correlations inside
(-1, 1)), so the same situation shows up as posterior mass piled against the bound. This module
flags it:

- a free variance whose 2.5% posterior quantile is below ``VARIANCE_FRACTION`` (1%) of the
  variable's scale: the total variance of an observed variable, or the marker indicator's variance
  for a latent (1 with ``std_lv``); a healthy residual variance keeps its whole 95% interval away
  from zero;
- a free covariance whose implied correlation has its 95% interval reaching beyond
  ``+-CORRELATION_LIMIT`` (0.99).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Boundary", "boundary_checks", "VARIANCE_FRACTION", "CORRELATION_LIMIT"]

VARIANCE_FRACTION = 0.01
CORRELATION_LIMIT = 0.99


@dataclass(frozen=True)
class Boundary:
    """One parameter whose posterior sits at the edge of the parameter space."""

    param: str  # summary key, e.g. "x1~~x1"
    kind: str  # "variance" or "correlation"
    message: str


def boundary_checks(table, draws: dict[str, np.ndarray], scales: dict[str, float]) -> list[Boundary]:
    """Heywood-type flags for the free variances and covariances of ``table``.

    ``draws`` maps every free parameter key to its posterior draws (original units); ``scales``
    maps each observed and latent variable to its SD scale (``k`` of the standardized model).
    """
    out: list[Boundary] = []
    rows = table.param_rows()
    var_rows = {r.lhs: r for r in rows if r.kind == "variance"}
    for r in rows:
        if r.kind != "variance" or not r.free:
            continue
        d = draws[r.key]
        scale = scales[r.lhs] ** 2
        lo, med = np.quantile(d, [0.025, 0.5])
        if lo < VARIANCE_FRACTION * scale:
            what = "observed" if r.lhs in table.observed else "latent (marker scale)"
            out.append(Boundary(r.key, "variance", (
                f"{r.key}: posterior piles up at the lower bound 0 (median {med:.3g}, 2.5% "
                f"quantile {lo:.2g}, below 1% of the {what} variance {scale:.3g}): a Heywood "
                f"case (lavaan would report a negative variance); the model may be misspecified "
                f"or the variable nearly redundant")))
    for r in rows:
        if r.kind != "covariance" or not r.free:
            continue
        vi, vj = (draws[var_rows[v].key] if var_rows[v].free else var_rows[v].value
                  for v in (r.lhs, r.rhs))
        with np.errstate(divide="ignore", invalid="ignore"):
            rho = draws[r.key] / np.sqrt(vi * vj)
        lo, hi = np.nanquantile(rho, [0.025, 0.975])
        if hi > CORRELATION_LIMIT or lo < -CORRELATION_LIMIT:
            out.append(Boundary(r.key, "correlation", (
                f"{r.key}: correlation at the bound +-1 (95% interval [{lo:.3f}, {hi:.3f}]): a "
                f"Heywood case (lavaan: covariance matrix not positive definite); the two "
                f"variables may not be distinct")))
    return out
