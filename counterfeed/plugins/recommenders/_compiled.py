"""The recommenders' compiled loops (:mod:`counterfeed.plugins.recommenders._kernels`) as NumPy
functions: each allocates the kernel's work arrays and calls it through
:mod:`counterfeed.core.native` (no numba import once the kernels are cached)."""

from __future__ import annotations

import numpy as np

from counterfeed.core.native import kernel

__all__ = ["topk_rows", "count_cells", "adagrad_epochs"]

_TOPK = kernel("topk_rows")
_COUNT = kernel("count_cells")
_ADAGRAD = kernel("adagrad_epochs")


def topk_rows(scores: np.ndarray, available: np.ndarray, k: int, out: np.ndarray) -> None:
    """``out[r]`` (``out`` (n, k) int64) = the ``k`` items of row ``r`` of ``scores`` (n, n_items)
    float64 with the highest scores, best first, ties by lower item id; ``available`` (n_items,)
    bool, or empty for everything available; NaN ranks as -inf. Raises ``TypeError`` for arrays
    of another dtype or layout."""
    _TOPK(scores, available, int(k), out, np.empty(k, np.float64))


def count_cells(imp: np.ndarray, clk: np.ndarray, keys: np.ndarray, clicks: np.ndarray, fresh: np.ndarray) -> int:
    """Add one impression per entry of ``keys`` (int64 cells) to the grid ``imp`` (int32) and one
    click to ``clk`` (int32) where ``clicks`` > 0; the cells that were 0 go to ``fresh``
    (int64, at least ``keys.size``) in order of first touch. Returns their count."""
    return _COUNT(imp, clk, keys, np.ascontiguousarray(clicks, dtype=np.float64), fresh)


def adagrad_epochs(U, V, acc_u, acc_v, pu, pi, wp, wn, perms, batch_size, lr, l2, losses) -> None:
    """Run ``perms.shape[0]`` epochs of mini-batch Adagrad in place on the float32 tables ``U``
    (n_users, f + 1) and ``V`` (n_items, f + 1) and their accumulators (the kernel's docstring has
    the loss and the update); ``pu``, ``pi`` (n,) int64 pairs, ``wp``, ``wn`` (n,) float32 weights,
    ``perms`` (epochs, n) int64 visiting orders, ``losses`` (epochs,) float64 receives each epoch's
    mean data term. Raises ``ValueError`` for a ``batch_size`` below 1 (the kernel's check)."""
    n = pu.size
    batch_size = int(batch_size)
    rows = max(batch_size, 0)  # the row lists' length; a batch_size below 1 is refused by the kernel
    _ADAGRAD(U, V, acc_u, acc_v, pu, pi, wp, wn, perms, batch_size, float(lr), float(l2), losses,
             np.zeros_like(U), np.zeros_like(V), np.zeros(U.shape[0], np.int64), np.zeros(V.shape[0], np.int64),
             np.empty(min(rows, U.shape[0]), np.int64), np.empty(min(rows, V.shape[0]), np.int64),
             np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.float32), np.empty(n, np.float32),
             np.empty((n, 4), np.int32), np.empty(min(rows, n), np.float32))
