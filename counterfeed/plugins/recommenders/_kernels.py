"""Compiled (numba) loops of the built-in recommenders: the top-k selection behind every greedy
slate, and the counting and training loops of ``matrix-factorization``. Imported only to compile
them (:mod:`counterfeed.core.native`, which loads the cached machine code without numba); callers
use :mod:`counterfeed.plugins.recommenders._compiled`, which allocates their work arrays (the
kernels allocate nothing).

``adagrad_epochs``: mini-batch Adagrad on the weighted logistic loss. One call runs every epoch of a fit in place on the factor tables. Per mini-batch, every pair's
logit is read from the tables as they were at the start of the mini-batch, the per-sample
gradients are summed per distinct row, and each touched row takes one Adagrad step; untouched rows
do not move (their gradient is zero). This is the update the earlier torch implementation made
with ``index_select``/``index_add_``, without torch's per-operation overhead or its import.
Arithmetic is float32 for the tables and accumulators, float64 for the per-batch sums.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from counterfeed.core._kernels import kernel_cache

__all__ = ["adagrad_epochs", "topk_rows", "count_cells"]


with kernel_cache(__file__):

    @numba.njit(cache=True)
    def topk_rows(scores, available, k, out, vals):  # pragma: no cover - compiled
        """``out[r]`` = the ``k`` items of row ``r`` of ``scores`` (n, n_items) with the highest
        scores, best first, ties by lower item id; items with ``available[j]`` False score -inf
        (``available`` has one entry per item, or none: everything available). One pass per row
        keeping the best ``k`` in order, ``O(n_items + k * changes)``; NaN ranks as -inf. ``vals``
        (k,) float64 is work space."""
        n, m = scores.shape
        masked = available.size > 0
        for r in range(n):
            cnt = 0
            for j in range(m):
                v = scores[r, j]
                if (masked and not available[j]) or v != v:
                    v = -np.inf
                if cnt == k:
                    if not v > vals[k - 1]:
                        continue
                    pos = k - 1
                else:
                    pos = cnt
                    cnt += 1
                while pos > 0 and vals[pos - 1] < v:
                    vals[pos] = vals[pos - 1]
                    out[r, pos] = out[r, pos - 1]
                    pos -= 1
                vals[pos] = v
                out[r, pos] = j

    @numba.njit(cache=True)
    def count_cells(imp, clk, keys, clicks, fresh):  # pragma: no cover - compiled
        """Add one impression per entry of ``keys`` to the (user, item) grid ``imp`` and one click to
        ``clk`` where ``clicks`` > 0 (what ``np.add.at`` did, without its unbuffered per-element
        cost); cells that were 0 before go to ``fresh`` in order of first touch. Returns their count."""
        n_fresh = 0
        for t in range(keys.size):
            c = keys[t]
            if imp[c] == 0:
                fresh[n_fresh] = c
                n_fresh += 1
            imp[c] += 1
            if clicks[t] > 0:
                clk[c] += 1
        return n_fresh

    @numba.njit(cache=True, error_model="numpy", inline="always")
    def _adagrad_rows(table, acc, grad, count, rows, n_rows, inv, reg, lr):  # pragma: no cover - compiled
        """One Adagrad step on the ``n_rows`` touched ``rows`` of ``table`` (the bias column last,
        unregularised): gradient ``grad[r] * inv + reg * count[r] * table[r]``; resets ``grad`` and
        ``count`` of those rows."""
        f = table.shape[1] - 1
        for t in range(n_rows):
            row = rows[t]
            r = reg * count[row]
            count[row] = 0
            for d in range(f):  # the factors (a loop without branches, which the compiler vectorizes)
                gg = grad[row, d] * inv + r * table[row, d]
                a = acc[row, d] + gg * gg
                acc[row, d] = a
                table[row, d] -= lr * gg / math.sqrt(a)
                grad[row, d] = 0.0
            gg = grad[row, f] * inv + 0.0  # the bias
            a = acc[row, f] + gg * gg
            acc[row, f] = a
            table[row, f] -= lr * gg / math.sqrt(a)
            grad[row, f] = 0.0

    @numba.njit(cache=True, error_model="numpy")  # no fastmath: the same floats on every x86-64 CPU
    def adagrad_epochs(U, V, acc_u, acc_v, pu, pi, wp, wn, perms, batch_size, lr, l2, losses,  # pragma: no cover
                       gu, gv, cu, cv, rows_u, rows_v, qu, qi, qp, qn, rec, logits):
        """Run ``perms.shape[0]`` epochs in place.

        ``U`` (n_users, f + 1) and ``V`` (n_items, f + 1) float32 hold the factors with the bias in
        the last column (``s = U[u, :f] . V[i, :f] + U[u, f] + V[i, f]``); ``acc_u``/``acc_v`` are
        their Adagrad accumulators. ``pu``, ``pi`` (n,) int64 pairs with float32 weights ``wp``
        (clicks) and ``wn`` (negatives); ``perms`` (epochs, n) the visiting order of each epoch.
        The loss of a mini-batch is ``sum(wp softplus(-s) + wn softplus(s)) / sum(wp + wn)``
        plus ``l2`` times the mean squared norm of its sampled rows; ``losses[e]`` receives epoch
        ``e``'s mean over pairs of the data term.

        Work space (``_compiled.adagrad_epochs`` allocates it): ``gu``, ``gv`` zeros shaped as
        ``U``, ``V`` (per-row sums of dloss/ds times the other side's row, unnormalised); ``cu``,
        ``cv`` int64 zeros, one per row (samples of each row in the mini-batch, 0: untouched);
        ``rows_u``, ``rows_v`` int64 of ``min(batch_size, rows)``; ``qu``, ``qi`` int64 and ``qp``,
        ``qn`` float32 of ``n``; ``rec`` (n, 4) int32: every pair as one 16-byte record (user,
        item, the bits of wp and wn), so that the epochs' gathers in random order miss the cache
        once per pair, not once per array (about 10% of a fit). int32 ids fit: a table of 2**31
        rows would not fit in memory. ``logits`` float32 of ``min(batch_size, n)``: a mini-batch's
        logits, computed in a first pass over its pairs (each a sum in the same order as before; no
        pair's sum waits for the previous pair's gradient work, so the processor overlaps them).
        """
        n = pu.size
        f = U.shape[1] - 1
        recf = rec.view(np.float32)
        for j in range(n):
            rec[j, 0], rec[j, 1] = pu[j], pi[j]
            recf[j, 2], recf[j, 3] = wp[j], wn[j]
        for e in range(perms.shape[0]):
            for j in range(n):  # this epoch's order, gathered once (sequential reads below)
                k = perms[e, j]
                qu[j], qi[j], qp[j], qn[j] = rec[k, 0], rec[k, 1], recf[k, 2], recf[k, 3]
            total = 0.0
            for start in range(0, n, batch_size):
                stop = min(start + batch_size, n)
                m = stop - start
                norm = 0.0
                batch_loss = 0.0
                nu = 0
                nv = 0
                for j in range(start, stop):  # the logits, from the tables as at the batch's start
                    u, i = qu[j], qi[j]
                    s = U[u, f] + V[i, f]
                    for d in range(f):
                        s += U[u, d] * V[i, d]
                    logits[j - start] = s
                for j in range(start, stop):
                    u, i, p, q = qu[j], qi[j], qp[j], qn[j]
                    sd = float(logits[j - start])
                    w = p + q
                    norm += w
                    ez = math.exp(-sd)  # float32, as sd is
                    g = np.float32(w / (1.0 + ez) - p)  # d loss / d s, before / norm
                    # the loss (a diagnostic) from the same exp, in float64, without cancellation:
                    # softplus(x) = max(x, 0) + log1p(exp(-|x|)) and exp(-|s|) = ez or 1 / ez
                    s64, e64 = np.float64(sd), np.float64(ez)
                    if s64 >= 0.0:
                        l1 = math.log1p(e64)
                        sp_neg, sp_pos = l1, s64 + l1  # softplus(-s), softplus(s)
                    else:
                        l1 = math.log1p(1.0 / e64)
                        sp_neg, sp_pos = l1 - s64, l1
                    batch_loss += p * sp_neg + q * sp_pos
                    if cu[u] == 0:
                        rows_u[nu] = u
                        nu += 1
                    if cv[i] == 0:
                        rows_v[nv] = i
                        nv += 1
                    cu[u] += 1
                    cv[i] += 1
                    for d in range(f):  # two loops, each vectorized
                        gu[u, d] += g * V[i, d]
                    for d in range(f):
                        gv[i, d] += g * U[u, d]
                    gu[u, f] += g
                    gv[i, f] += g
                norm = max(norm, 1e-9)
                total += batch_loss / norm * m
                reg = 2.0 * l2 / m
                inv = 1.0 / norm
                _adagrad_rows(U, acc_u, gu, cu, rows_u, nu, inv, reg, lr)
                _adagrad_rows(V, acc_v, gv, cv, rows_v, nv, inv, reg, lr)
            losses[e] = total / n
