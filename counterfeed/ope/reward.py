"""Reward models for the direct method and doubly robust estimators, with cross-fitting by round.

A reward model predicts ``q(x, a, j) = E[reward | context x, item a, position j]``. The default,
:class:`LogisticRewardModel`, is an L2-regularized logistic regression on one-hot item + one-hot
position (+ optional numeric context columns). Without context columns it depends on the data only
through per-(item, position) impression counts and reward sums, so it is fitted on those sufficient
statistics: the cost does not grow with the number of rows.
"""

from __future__ import annotations

import contextlib
import math
from abc import ABC, abstractmethod
from typing import Sequence

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit

from counterfeed.ope.logs import OPELog

__all__ = ["RewardModel", "LogisticRewardModel", "CrossFitted", "cross_fit", "fold_of_rounds",
           "fit_folds_on_cells", "MAX_FOLDS"]

#: the most cross-fitting folds: each fold refits the reward model on all the other rounds, so the cost
#: grows with the folds while beyond a few (5 is the default) the out-of-fold predictions barely change;
#: 100 000 folds took a minute for what 5 do in a second
MAX_FOLDS = 100


class RewardModel(ABC):
    """The interface DM and DR use. ``item_code`` is the log's item code; ``-1`` is an unseen item."""

    #: whether predictions depend only on (item, position); then per-position target tables are cheap
    context_free: bool = True

    @abstractmethod
    def fit(self, log: OPELog, rows: np.ndarray) -> "RewardModel":
        """Fit on the impressions ``rows`` (an index or boolean mask into the log); return self."""

    @abstractmethod
    def predict(self, log: OPELog, item_code: np.ndarray, position: np.ndarray,
                rows: np.ndarray | None) -> np.ndarray:
        """Predicted reward of showing ``item_code`` at ``position`` in the context of impressions ``rows``."""


class LogisticRewardModel(RewardModel):
    r"""L2-regularized logistic regression on item and position (and context) indicators.

    .. math:: \hat q(x, a, j) = \sigma(b + \alpha_a + \beta_j + x^\top\gamma)

    fitted by minimizing :math:`\sum_i [\log(1 + e^{\eta_i}) - r_i \eta_i] + \tfrac{\lambda}{2}
    (\|\alpha\|^2 + \|\beta\|^2 + \|\gamma\|^2)` with L-BFGS (rewards in [0, 1]; fractional rewards are
    a quasi-likelihood). Rewards outside [0, 1] switch to the identity link (ridge regression).
    Without ``context`` the loss is a function of per-(item, position) counts and reward sums. When every
    (item, position) cell has the same mean reward ``c`` (e.g. every reward is ``c``) the fit is the
    constant model and predicts ``c`` exactly (``constant_``; None otherwise).

    Parameters
    ----------
    l2 : ridge penalty :math:`\lambda` (the intercept is not penalized).
    context : names of ``context_*`` columns to use (default none).
    """

    def __init__(self, l2: float = 1.0, context: Sequence[str] | None = None, max_iter: int = 500):
        self.l2 = float(l2)
        self.context = list(context or [])
        self.max_iter = int(max_iter)

    @property
    def context_free(self) -> bool:  # type: ignore[override]
        return not self.context

    def fit(self, log: OPELog, rows: np.ndarray) -> "LogisticRewardModel":
        rows = np.flatnonzero(rows) if np.asarray(rows).dtype == bool else np.asarray(rows)
        self.n_items_, self.n_pos_ = log.n_items, log.n_positions
        self.identity_ = bool((log.reward < 0).any() or (log.reward > 1).any())
        if self.context_free:
            cell, c_item, c_pos = _cells(log)
            n = np.bincount(cell[rows], minlength=c_item.size).astype(np.float64)
            y = np.bincount(cell[rows], log.reward[rows], minlength=c_item.size)
            return self.fit_cells(c_item, c_pos, n, y)
        r = log.reward[rows]
        if r.size and float(r.min()) == float(r.max()):
            return self._constant(float(r[0]))  # constant rewards: the context explains nothing
        self.constant_ = None
        x = np.column_stack([log.context[c][rows] for c in self.context])
        return self._fit(log.item_code[rows], log.position[rows], np.ones(rows.size), log.reward[rows], x)

    def fit_cells(self, item: np.ndarray, pos: np.ndarray, n: np.ndarray, y: np.ndarray) -> "LogisticRewardModel":
        """Fit from per-(item, position) cell impression counts ``n`` and reward sums ``y``."""
        keep = n > 0
        n, y = n[keep], y[keep]
        if n.size:
            cell_mean = y / n
            spread = float(cell_mean.max() - cell_mean.min())
            if spread <= 16 * np.finfo(np.float64).eps * float(np.abs(cell_mean).max()):
                return self._constant(float(y.sum() / n.sum()))
        self.constant_ = None
        return self._newton(item[keep], pos[keep], n, y)

    def _constant(self, c: float) -> "LogisticRewardModel":
        r"""The fit when every cell has the same mean reward ``c`` (every reward equal to ``c``, say).

        The loss then depends on the data only through ``c``, and its minimizer is the constant model:
        zero item/position/context effects (no penalty) and the unpenalized intercept at the link of
        ``c`` (``-inf``/``+inf`` for ``c`` = 0/1, where the logistic MLE does not exist and the
        optimizer would stop at a prediction of about 1e-12 or 1 - 1e-12). Predictions are then ``c``
        itself, exactly, instead of the optimizer's approximation of it.
        """
        self.constant_ = c
        self.converged_ = True
        if self.identity_:
            self.intercept_ = c
        else:
            self.intercept_ = math.log(c) - math.log1p(-c) if 0 < c < 1 else (math.inf if c >= 1 else -math.inf)
        self.item_effect_ = np.zeros(self.n_items_ + 1)
        self.position_effect_ = np.zeros(self.n_pos_ + 1)
        self.context_coef_ = np.zeros(len(self.context))
        return self

    def _newton(self, item, pos, n, y) -> "LogisticRewardModel":
        """Damped Newton on the (item, position) cells; the item block of the Hessian is diagonal, so
        each step solves a (1 + n_positions)-sized Schur complement: O(cells * n_positions^2)."""
        ni, npos, lam = self.n_items_, self.n_pos_, self.l2
        total = max(float(n.sum()), 1.0)
        a, g = np.zeros(ni), np.zeros(1 + npos)  # g = [intercept, position effects]
        mean = float(y.sum() / total)
        m = float(np.clip(mean, 1e-6, 1 - 1e-6))
        g[0] = mean if self.identity_ else float(np.log(m / (1 - m)))
        pen_g = np.r_[0.0, np.full(npos, lam)]

        def loss(a, g):
            eta = a[item] + g[0] + g[1 + pos]
            if self.identity_:
                core = np.sum(0.5 * n * eta * eta - y * eta)
            else:
                core = np.sum(n * np.logaddexp(0.0, eta) - y * eta)
            return core + 0.5 * lam * (a @ a) + 0.5 * float(pen_g @ (g * g))

        f = loss(a, g)
        self.converged_ = False
        for _ in range(100):
            eta = a[item] + g[0] + g[1 + pos]
            if self.identity_:
                resid, h = n * eta - y, n
            else:
                mu = expit(eta)
                resid, h = n * mu - y, n * mu * (1 - mu)
            ga = np.bincount(item, resid, minlength=ni) + lam * a
            gp = np.bincount(pos, resid, minlength=npos)
            gg = np.r_[resid.sum(), gp] + pen_g * g
            if max(np.abs(ga).max(initial=0.0), np.abs(gg).max()) < 1e-10 * total:
                self.converged_ = True
                break
            da_diag = np.bincount(item, h, minlength=ni) + lam
            C = np.zeros((ni, 1 + npos))
            C[:, 0] = da_diag - lam
            _scatter(C, item, 1 + pos, h)
            hp = np.bincount(pos, h, minlength=npos)
            G = np.zeros((1 + npos, 1 + npos))
            G[0, 0] = h.sum()
            G[0, 1:] = G[1:, 0] = hp
            G[1:, 1:] = np.diag(hp)
            G += np.diag(pen_g)
            Cs = C / da_diag[:, None]
            S = G - C.T @ Cs
            dg = np.linalg.solve(S, gg - Cs.T @ ga)
            da = ga / da_diag - Cs @ dg
            step = 1.0
            while True:
                a_new, g_new = a - step * da, g - step * dg
                f_new = loss(a_new, g_new)
                if f_new <= f + 1e-12 * abs(f) or step < 1e-8:
                    break
                step *= 0.5
            a, g, f = a_new, g_new, f_new
        self.intercept_ = float(g[0])
        self.item_effect_ = np.r_[a, 0.0]
        self.position_effect_ = np.r_[g[1:], 0.0]
        self.context_coef_ = np.zeros(0)
        return self

    def _fit(self, item, pos, n, y, x) -> "LogisticRewardModel":
        ni, npos = self.n_items_, self.n_pos_
        nc = 0 if x is None else x.shape[1]
        total = max(float(n.sum()), 1.0)
        lam = self.l2
        identity = self.identity_

        def unpack(theta):
            return theta[0], theta[1:1 + ni], theta[1 + ni:1 + ni + npos], theta[1 + ni + npos:]

        def f(theta):
            b, a, p, g = unpack(theta)
            eta = b + a[item] + p[pos]
            if nc:
                eta = eta + x @ g
            if identity:
                loss = np.sum(0.5 * n * eta * eta - y * eta)
                resid = n * eta - y
            else:
                loss = np.sum(n * np.logaddexp(0.0, eta) - y * eta)
                resid = n * expit(eta) - y
            pen = theta[1:]
            loss += 0.5 * lam * float(pen @ pen)
            grad = np.empty_like(theta)
            grad[0] = resid.sum()
            grad[1:1 + ni] = np.bincount(item, resid, minlength=ni) + lam * a
            grad[1 + ni:1 + ni + npos] = np.bincount(pos, resid, minlength=npos) + lam * p
            if nc:
                grad[1 + ni + npos:] = x.T @ resid + lam * g
            return loss / total, grad / total

        theta0 = np.zeros(1 + ni + npos + nc)
        mean = float(y.sum() / total)
        theta0[0] = mean if identity else np.log(np.clip(mean, 1e-6, 1 - 1e-6) / (1 - np.clip(mean, 1e-6, 1 - 1e-6)))
        with _one_blas_thread():
            res = minimize(f, theta0, jac=True, method="L-BFGS-B",
                           options={"maxiter": self.max_iter, "gtol": 1e-9, "ftol": 1e-14})
        self.intercept_, a, p, g = unpack(res.x)
        self.item_effect_ = np.r_[a, 0.0]  # index -1 (an unseen item) -> 0
        self.position_effect_ = np.r_[p, 0.0]
        self.context_coef_ = g
        self.converged_ = bool(res.success)
        return self

    def predict(self, log, item_code, position, rows):
        if getattr(self, "constant_", None) is not None:
            return np.full(np.shape(item_code), self.constant_, dtype=np.float64)
        item_code = np.where(np.asarray(item_code) < self.n_items_, item_code, -1)
        position = np.where(np.asarray(position) < self.n_pos_, position, -1)
        eta = self.intercept_ + self.item_effect_[item_code] + self.position_effect_[position]
        if not self.context_free:
            x = np.column_stack([log.context[c][rows] for c in self.context])
            eta = eta + x @ self.context_coef_
        return eta if self.identity_ else expit(eta)


def _scatter(C: np.ndarray, rows: np.ndarray, cols: np.ndarray, vals: np.ndarray) -> None:
    """C[rows, cols] += vals for repeated indexes (bincount on the flat index; faster than np.add.at)."""
    C += np.bincount(rows * C.shape[1] + cols, vals, minlength=C.size).reshape(C.shape)


def _one_blas_thread():
    """L-BFGS-B does many tiny LAPACK calls: a multi-threaded BLAS makes them 100x slower."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl ships with the scientific stack
        return contextlib.nullcontext()
    return threadpool_limits(1)


def _cells(log: OPELog) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(cell of each impression, item of each cell, position of each cell) for the (item, position) cells.

    Dense ``item * n_positions + position`` when that is small, else the observed pairs only.
    """
    n_pos = log.n_positions
    key = log.item_code * n_pos
    key += log.position
    size = log.n_items * n_pos
    if size <= (1 << 22):
        cells = np.arange(size)
        return key, cells // n_pos, cells % n_pos
    uniq, cell = np.unique(key, return_inverse=True)
    return cell.astype(np.int64), uniq // n_pos, uniq % n_pos


def fold_of_rounds(n_rounds: int, folds: int, rng: np.random.Generator) -> np.ndarray:
    """A balanced random fold index in ``[0, folds)`` for every round."""
    return rng.permutation(np.arange(n_rounds) % max(folds, 1))


class CrossFitted:
    """K reward models, model ``f`` fitted on every round outside fold ``f`` (Chernozhukov et al. 2018).

    ``folds=1`` fits one model on everything (no cross-fitting).
    """

    def __init__(self, models: list[RewardModel], fold: np.ndarray):
        self.models, self.fold = models, fold
        self._f_imp: np.ndarray | None = None
        self._cell: np.ndarray | None = None  # item_code * n_positions + position, when known

    def fold_of_impressions(self, log: OPELog) -> np.ndarray:
        if self._f_imp is None or self._f_imp.size != len(log):
            self._f_imp = (self.fold[log.round] if len(self.models) > 1
                           else np.zeros(len(log), np.int64))
        return self._f_imp

    def predict_logged(self, log: OPELog) -> np.ndarray:
        """Out-of-fold prediction for each logged impression."""
        f_imp = self.fold_of_impressions(log)
        n_pos = log.n_positions
        size = log.n_items * n_pos
        if all(m.context_free for m in self.models) and len(self.models) * size <= (1 << 24):
            cells = np.arange(size)
            table = np.stack([m.predict(log, cells // n_pos, cells % n_pos, None) for m in self.models])
            key = self._cell if self._cell is not None else log.item_code * n_pos + log.position
            if len(self.models) > 1:
                key = f_imp * size
                key += self._cell if self._cell is not None else log.item_code * n_pos + log.position
            return table.ravel()[key]
        return self._predict_rows(log, log.item_code, np.arange(len(log)), f_imp)

    def expected_under(self, log: OPELog, support) -> np.ndarray:
        """Per impression, the target's expected predicted reward at that position (out of fold)."""
        f_imp = self.fold_of_impressions(log)
        if support.per_position and all(m.context_free for m in self.models):
            n_pos = max(log.n_positions, int(support.position.max()) + 1)
            table = np.zeros((len(self.models), n_pos))
            for f, m in enumerate(self.models):
                q = m.predict(log, support.item_code, support.position, None)
                table[f] = np.bincount(support.position, support.weight * q, minlength=n_pos)
            key = f_imp * n_pos
            key += log.position
            return table.ravel()[key]
        if support.per_position:
            out = np.zeros(len(log))
            for j in np.unique(support.position):
                sel = support.position == j
                rows = np.flatnonzero(log.position == j)
                for a, w in zip(support.item_code[sel], support.weight[sel]):
                    out[rows] += w * self._predict_rows(log, np.full(rows.size, a), rows, f_imp)
            return out
        q = self._predict_rows(log, support.item_code, support.unit, f_imp)
        return np.bincount(support.unit, support.weight * q, minlength=len(log))

    def _predict_rows(self, log, item_code, rows, f_imp):
        out = np.empty(rows.size)
        fr = f_imp[rows]
        for f, m in enumerate(self.models):
            s = np.flatnonzero(fr == f)
            out[s] = m.predict(log, item_code[s], log.position[rows[s]], rows[s])
        return out


def fit_folds_on_cells(model: "LogisticRewardModel", log: OPELog, c_item: np.ndarray, c_pos: np.ndarray,
                       n: np.ndarray, y: np.ndarray) -> list[RewardModel]:
    """One copy of a context-free ``model`` per fold, fitted on the other folds' (folds, cells) counts
    ``n`` and reward sums ``y`` (one fold: fitted on everything)."""
    import copy

    folds = n.shape[0]
    identity = bool((log.reward < 0).any() or (log.reward > 1).any())
    models: list[RewardModel] = []
    for f in range(folds):
        m = copy.deepcopy(model)
        m.n_items_, m.n_pos_, m.identity_ = log.n_items, log.n_positions, identity
        train = np.arange(folds) != f if folds > 1 else np.ones(1, bool)
        models.append(m.fit_cells(c_item, c_pos, n[train].sum(axis=0), y[train].sum(axis=0)))
    return models


def cross_fit(log: OPELog, model: RewardModel | None = None, *, folds: int = 5,
              rng: np.random.Generator | None = None, fold: np.ndarray | None = None,
              round_weights: np.ndarray | None = None) -> CrossFitted:
    """Fit ``folds`` copies of ``model`` (default :class:`LogisticRewardModel`) with folds by round.

    ``fold`` (per round) fixes the fold assignment instead of drawing it from ``rng``;
    ``round_weights`` (per round, non-negative integers) counts each round that many times, as a
    bootstrap draw over rounds does (the reward model is then refitted on the resampled log).
    """
    import copy

    model = model if model is not None else LogisticRewardModel()
    rng = rng if rng is not None else np.random.default_rng(0)
    if fold is not None:
        folds = int(fold.max()) + 1 if fold.size else 1
    else:
        folds = max(1, min(int(folds), log.n_rounds))
        fold = fold_of_rounds(log.n_rounds, folds, rng) if folds > 1 else np.zeros(log.n_rounds, np.int64)
    rw = None if round_weights is None else np.asarray(round_weights, dtype=np.float64)[log.round]
    models: list[RewardModel] = []
    if isinstance(model, LogisticRewardModel) and model.context_free:
        n_pos = log.n_positions
        cell, c_item, c_pos = _cells(log)
        size = c_item.size
        f_imp = fold[log.round]
        key = f_imp * size
        key += cell
        n = np.bincount(key, rw, minlength=folds * size).reshape(folds, size).astype(np.float64)
        y = np.bincount(key, log.reward if rw is None else log.reward * rw, minlength=folds * size).reshape(folds, size)
        fitted = CrossFitted(fit_folds_on_cells(model, log, c_item, c_pos, n, y), fold)
        fitted._f_imp = f_imp
        if size == log.n_items * n_pos:  # dense cells: cell == item_code * n_positions + position
            fitted._cell = cell
        return fitted
    f_imp = fold[log.round]
    for f in range(folds):
        rows = np.flatnonzero(f_imp != f) if folds > 1 else np.arange(len(log))
        if rw is not None:  # a resampled round appears as many times as it was drawn
            rows = np.repeat(rows, rw[rows].astype(np.int64))
        models.append(copy.deepcopy(model).fit(log, rows))
    return CrossFitted(models, fold)
