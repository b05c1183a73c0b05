"""Multiple-testing corrections for a family of p-values (e.g. several treatment arms vs control).

- ``holm``: Holm's step-down procedure, controls the family-wise error rate (FWER) under any
  dependence. Adjusted p-values: sort ascending ``p_(1) <= ... <= p_(m)``,
  ``q_(i) = max_{j <= i} min(1, (m - j + 1) p_(j))``.
  Reference: Holm, S. (1979). A simple sequentially rejective multiple test procedure.
  Scandinavian Journal of Statistics 6(2), 65-70.
- ``bh``: Benjamini-Hochberg step-up procedure, controls the false discovery rate (FDR) for
  independent or positively dependent tests. ``q_(i) = min_{j >= i} min(1, m p_(j) / j)``.
  Reference: Benjamini, Y. and Hochberg, Y. (1995). Controlling the false discovery rate.
  JRSS B 57(1), 289-300.
- ``none``: the p-values unchanged.

Holm has no simple compatible confidence intervals; the estimators pair Holm p-values with
Bonferroni intervals at level ``1 - (1 - level) / m`` (:func:`bonferroni_level`), which are
simultaneous at ``level`` and never shorter than Holm's implicit ones would need to be.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["adjust_pvalues", "bonferroni_level", "METHODS"]

METHODS = ("none", "holm", "bh")


def _check(p: Sequence[float] | np.ndarray) -> np.ndarray:
    arr = np.asarray(p, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"p-values must be a flat sequence, got shape {arr.shape}")
    if arr.size and (not np.all(np.isfinite(arr)) or arr.min() < 0.0 or arr.max() > 1.0):
        raise ValueError(f"p-values must be finite numbers in [0, 1], got {arr.tolist()}")
    return arr


def adjust_pvalues(p: Sequence[float] | np.ndarray, method: str = "holm") -> np.ndarray:
    """Adjusted p-values, in the input order.

    Parameters
    ----------
    p : the raw p-values of one family of tests.
    method : ``"holm"`` (FWER), ``"bh"`` (FDR) or ``"none"``.

    Returns
    -------
    numpy.ndarray of the same length, each value in [0, 1] and never below the raw p-value.
    """
    if method not in METHODS:
        raise ValueError(f"unknown correction {method!r}; expected one of {', '.join(METHODS)}")
    arr = _check(p)
    m = arr.size
    if m <= 1 or method == "none":
        return arr.copy()
    order = np.argsort(arr, kind="stable")
    ps = arr[order]
    ranks = np.arange(1, m + 1, dtype=np.float64)
    if method == "holm":
        adj = np.maximum.accumulate(np.minimum(1.0, (m - ranks + 1.0) * ps))
    else:  # bh
        adj = np.minimum.accumulate(np.minimum(1.0, m * ps / ranks)[::-1])[::-1]
    out = np.empty(m, dtype=np.float64)
    out[order] = adj
    return out


def bonferroni_level(level: float, m: int) -> float:
    """Per-comparison confidence level ``1 - (1 - level) / m`` giving simultaneous coverage ``level``."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if m < 1:
        raise ValueError(f"number of comparisons must be at least 1, got {m}")
    return 1.0 - (1.0 - level) / m
