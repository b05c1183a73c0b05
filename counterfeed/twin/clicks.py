"""Click models of the twin: position examination and item appeal, personalized by factorization.

Two examination hypotheses, compared by held-out log-likelihood (Chuklin, Markov & de Rijke 2015,
*Click Models for Web Search*):

* **PBM** (position-based model; Richardson et al. 2007): position ``j`` is examined with probability
  ``theta_j`` independently of the rest, and an examined item is clicked with its attractiveness
  ``alpha``: ``P(click) = theta_j * alpha``. Fitted by expectation-maximization: the E-step gives each
  non-clicked impression's posterior probabilities of having been examined,
  ``theta (1 - alpha) / (1 - theta alpha)``, and attractive, ``alpha (1 - theta) / (1 - theta alpha)``;
  the M-step averages them (Chuklin et al. 2015, sec. 4.2).
* **Cascade** with abandonment (Craswell et al. 2008; the ``choice`` model's ``examination: cascade``):
  the user scans top-down, clicks an examined item with probability ``alpha`` and stops there, and
  after a skipped position goes on with probability ``kappa``. Fitted by maximum likelihood.

The personalized attractiveness is ``alpha_ui = sigmoid(b_i + p_u . v_i - w S_u,topic(i)(t))``
(``S``: the user's decayed count of recent clicks on the item's topic, see :mod:`.satiation`), fitted
by **regression EM** for the PBM (Wang et al. 2018, *Position bias estimation for unbiased learning to
rank in personal search*: the M-step is a weighted logistic factorization on the E-step's soft labels)
and by direct likelihood for the cascade. Rows are weighted by clipped, self-normalized inverse
propensities (exposure correction: Schnabel et al. 2016, *Recommendations as treatments*).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ClickFit", "pbm_em", "cascade_fit", "pbm_loglik", "cascade_loglik", "fit_personal",
           "exposure_weights", "session_matrix"]

_EPS = 1e-6


@dataclass
class ClickFit:
    """Fitted click-model parameters (``theta`` used by the PBM, ``kappa`` by the cascade)."""

    model: str                 # "pbm" or "cascade"
    theta: np.ndarray          # (k,) examination probability per position (PBM)
    kappa: float               # continuation probability (cascade)
    bias: np.ndarray           # (I,) item appeal logit b_i
    user: np.ndarray           # (U, d) user factors p_u
    item: np.ndarray           # (I, d) item factors v_i
    satiation_weight: float    # w >= 0
    loglik: float = float("nan")


def exposure_weights(propensity: np.ndarray, clip: float = 10.0) -> np.ndarray:
    """Inverse-propensity weights clipped at ``clip`` times their mean, normalized to mean 1."""
    w = 1.0 / propensity
    w = np.minimum(w, clip * w.mean())
    return w / w.mean()


def pbm_em(item: np.ndarray, position: np.ndarray, click: np.ndarray, n_items: int, n_pos: int,
           iters: int = 100, tol: float = 1e-7) -> tuple[np.ndarray, np.ndarray]:
    """Non-personalized PBM by EM on (item, position) counts; returns (theta (k,), alpha (I,)).

    The likelihood depends on the data only through the impressions and clicks of each (item,
    position) cell, so each iteration costs O(cells), not O(rows).
    """
    cell = item * n_pos + position
    n = np.bincount(cell, minlength=n_items * n_pos).reshape(n_items, n_pos)
    c = np.bincount(cell, weights=click, minlength=n_items * n_pos).reshape(n_items, n_pos)
    nc = n - c
    theta = np.full(n_pos, 0.5)
    alpha = np.clip((c.sum(1) + 1) / (n.sum(1) + 2) / 0.5, 0.01, 0.99)
    prev = -np.inf
    for _ in range(iters):
        ta = np.clip(theta[None, :] * alpha[:, None], _EPS, 1 - _EPS)
        e = theta[None, :] * (1 - alpha[:, None]) / (1 - ta)   # P(examined | no click)
        a = alpha[:, None] * (1 - theta[None, :]) / (1 - ta)   # P(attractive | no click)
        theta = np.clip((c + nc * e).sum(0) / np.maximum(n.sum(0), 1), _EPS, 1.0)
        alpha = np.clip(((c + nc * a).sum(1) + 0.5) / (n.sum(1) + 1.0), _EPS, 1 - _EPS)
        scale = theta.max()  # identification: the best-examined position has theta = 1
        theta, alpha = theta / scale, np.clip(alpha * scale, _EPS, 1 - _EPS)
        ll = float((c * np.log(ta) + nc * np.log(1 - ta)).sum())
        if ll - prev < tol * max(abs(ll), 1.0):
            break
        prev = ll
    return theta, alpha


def pbm_loglik(prob: np.ndarray, click: np.ndarray) -> float:
    """Bernoulli log-likelihood of clicks under per-impression click probabilities."""
    p = np.clip(prob, _EPS, 1 - _EPS)
    return float(np.sum(click * np.log(p) + (1 - click) * np.log1p(-p)))


def session_matrix(session: np.ndarray, position: np.ndarray, n_sessions: int, k: int,
                   values: np.ndarray, fill: float = np.nan) -> np.ndarray:
    """(R, k) matrix of ``values`` by (session, position); ``fill`` where a position is missing."""
    out = np.full((n_sessions, k), fill)
    out[session, position] = values
    return out


def cascade_loglik(alpha: np.ndarray, clicks: np.ndarray, shown: np.ndarray, kappa: float) -> np.ndarray:
    """(R,) log-likelihood of each session under the cascade (``alpha``, ``clicks``, ``shown``: (R, k)).

    Clicks after the first are impossible under the cascade; they get probability ``1e-6`` each (so
    a log with several clicks per session is told apart by its likelihood, not by an error).
    """
    a = np.clip(np.where(shown, alpha, 0.0), _EPS, 1 - _EPS)
    r, k = clicks.shape
    first = np.where(clicks.any(1), np.argmax(clicks, 1), k)
    pos = np.arange(k)[None, :]
    before = (pos < first[:, None]) & shown
    ll = (np.where(before, np.log1p(-a), 0.0)).sum(1) + np.log(kappa) * before.sum(1)
    has = first < k
    ll[has] += np.log(a[np.flatnonzero(has), first[has]]) - np.log(kappa)
    extra = clicks.sum(1) - has
    ll += extra * np.log(_EPS)
    # no click: the user stopped somewhere after skipping; P = sum over stop points
    none = ~has
    if none.any():
        an = a[none]
        sn = shown[none]
        tail = np.ones(none.sum())  # P(no click from position j on | examined j), backwards
        for j in range(k - 1, -1, -1):
            nxt = np.where(sn[:, j], (1 - an[:, j]) * ((1 - kappa) + kappa * tail), tail)
            tail = nxt
        ll[none] = np.log(np.maximum(tail, 1e-300))
    return ll


def cascade_fit(clicks: np.ndarray, shown: np.ndarray, items: np.ndarray, n_items: int,
                iters: int = 200) -> tuple[float, np.ndarray]:
    """Non-personalized cascade by maximum likelihood (L-BFGS in torch); returns (kappa, alpha (I,))."""
    import torch

    c = torch.as_tensor(clicks, dtype=torch.float64)
    s = torch.as_tensor(shown)
    it = torch.as_tensor(np.where(shown, items, 0))
    logit_a = torch.zeros(n_items, dtype=torch.float64, requires_grad=True)
    logit_k = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([logit_a, logit_k], max_iter=iters, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = -_cascade_torch(torch.sigmoid(logit_a)[it], c, s, torch.sigmoid(logit_k)).sum() / c.shape[0]
        loss = loss + 1e-4 * (logit_a ** 2).mean()
        loss.backward()
        return loss

    opt.step(closure)
    return float(torch.sigmoid(logit_k).detach()), torch.sigmoid(logit_a).detach().numpy()


def _cascade_torch(a, c, s, kappa):
    """Torch version of :func:`cascade_loglik` (first clicks only) for gradients."""
    import torch

    a = torch.where(s, a, torch.zeros_like(a)).clamp(_EPS, 1 - _EPS)
    k = c.shape[1]
    has = c.sum(1) > 0
    first = torch.where(has, torch.argmax(c, 1), torch.full_like(has, k, dtype=torch.long))
    pos = torch.arange(k)[None, :]
    before = (pos < first[:, None]) & s
    ll = torch.where(before, torch.log1p(-a) + torch.log(kappa), torch.zeros_like(a)).sum(1)
    idx = first.clamp(max=k - 1)[:, None]
    ll_click = ll + torch.log(a.gather(1, idx)[:, 0])
    tail = torch.ones(c.shape[0], dtype=a.dtype)
    for j in range(k - 1, -1, -1):
        tail = torch.where(s[:, j], (1 - a[:, j]) * ((1 - kappa) + kappa * tail), tail)
    return torch.where(has, ll_click, torch.log(tail.clamp_min(1e-300)))


#: rows per Adam step at most (beyond ``steps * MAX_BATCH_ROWS`` rows an epoch is a random part of the log)
MAX_BATCH_ROWS = 32_768


def fit_personal(model: str, user: np.ndarray, item: np.ndarray, position: np.ndarray, click: np.ndarray,
                 satiation: np.ndarray, weight: np.ndarray, n_users: int, n_items: int, *, dims: int,
                 theta: np.ndarray, alpha: np.ndarray, kappa: float, session: np.ndarray | None = None,
                 epochs: int = 12, steps: int = 80, l2: float = 0.1, seed: int = 0,
                 init: ClickFit | None = None, satiation_weight: float | None = None) -> ClickFit:
    """Personalized attractiveness for ``model`` ("pbm": regression EM; "cascade": likelihood).

    ``satiation``: (N,) the satiation feature of each row; ``weight``: (N,) exposure weights;
    ``satiation_weight``: held fixed at this value when given (else fitted).
    ``init`` warm-starts (the bootstrap refits start from the point fit).
    """
    import torch

    g = torch.Generator().manual_seed(seed)
    if init is not None:
        P = torch.tensor(init.user, dtype=torch.float32)
        V = torch.tensor(init.item, dtype=torch.float32)
        b = torch.tensor(init.bias, dtype=torch.float32)
        w0 = max(init.satiation_weight, 1e-3)
        theta = init.theta.copy()
    else:
        P = 0.1 * torch.randn(n_users, dims, generator=g)
        V = 0.1 * torch.randn(n_items, dims, generator=g)
        b = torch.tensor(np.log(alpha / (1 - alpha)), dtype=torch.float32)
        w0 = 0.1
    ws = torch.tensor(np.log(np.expm1(w0)), dtype=torch.float32)
    params = [P.requires_grad_(), V.requires_grad_(), b.requires_grad_()]
    if satiation_weight is None:
        params.append(ws.requires_grad_())
    else:  # a fixed weight enters as a scaled feature under softplus(ws) = 1
        s_t = torch.as_tensor(satiation * satiation_weight, dtype=torch.float32)
        ws = torch.tensor(np.log(np.expm1(1.0)), dtype=torch.float32)
    opt = torch.optim.Adam(params, lr=0.05)
    u_t = torch.as_tensor(user)
    i_t = torch.as_tensor(item)
    if satiation_weight is None:
        s_t = torch.as_tensor(satiation, dtype=torch.float32)
    om = torch.as_tensor(weight, dtype=torch.float32)
    y = torch.as_tensor(click, dtype=torch.float32)
    n = user.shape[0]
    th = np.asarray(theta, dtype=np.float64)
    if model == "cascade":
        examined = _cascade_examined(session, position, click, kappa)
    for ep in range(epochs):
        with torch.no_grad():
            eta = (P[u_t] * V[i_t]).sum(1) + b[i_t] - torch.nn.functional.softplus(ws) * s_t
            a = torch.sigmoid(eta).numpy().astype(np.float64)
        if model == "pbm":  # E-step
            t = th[position]
            ta = np.clip(t * a, _EPS, 1 - _EPS)
            soft = np.where(click > 0, 1.0, a * (1 - t) / (1 - ta))
            post_e = np.where(click > 0, 1.0, t * (1 - a) / (1 - ta))
            num = np.bincount(position, weights=post_e * weight, minlength=th.size)
            den = np.bincount(position, weights=weight, minlength=th.size)
            th = np.clip(num / np.maximum(den, _EPS), _EPS, 1.0)
            th = th / th.max()
            target = torch.as_tensor(soft, dtype=torch.float32)
            row_w = om
        else:  # cascade: attractiveness is observed where the position was examined
            target = y
            row_w = om * torch.as_tensor(examined, dtype=torch.float32)
        perm = torch.randperm(n, generator=g)
        # ``steps`` Adam steps per epoch whatever the size; on a large log an epoch sees a random part of it
        batch = min(max(1024, n // steps), MAX_BATCH_ROWS)
        for lo in range(0, min(n, steps * batch), batch):
            idx = perm[lo:lo + batch]
            u, i = u_t[idx], i_t[idx]
            eta = (P[u] * V[i]).sum(1) + b[i] - torch.nn.functional.softplus(ws) * s_t[idx]
            loss = (row_w[idx] * torch.nn.functional.binary_cross_entropy_with_logits(
                eta, target[idx], reduction="none")).mean()
            loss = loss + l2 * ((P[u] ** 2).sum(1).mean() + (V[i] ** 2).sum(1).mean())
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        wsat = float(torch.nn.functional.softplus(ws)) if satiation_weight is None else float(satiation_weight)
        out = ClickFit(model=model, theta=th, kappa=float(kappa), bias=b.detach().numpy().astype(np.float64),
                       user=P.detach().numpy().copy(), item=V.detach().numpy().copy(), satiation_weight=wsat)
    return out


def _cascade_examined(session: np.ndarray, position: np.ndarray, click: np.ndarray, kappa: float) -> np.ndarray:
    """(N,) probability that each row was examined under the cascade, given its session's clicks.

    Rows up to the first click are examined for sure; after a click the user stopped (0); in a
    session without clicks position ``j`` was examined with probability about ``kappa ** j`` (the
    posterior given no click is lower; this is the EM's approximation at the prior).
    """
    n_s = int(session.max()) + 1
    first = np.full(n_s, np.iinfo(np.int64).max)
    np.minimum.at(first, session[click > 0], position[click > 0])
    f = first[session]
    clicked_session = f < np.iinfo(np.int64).max
    return np.where(clicked_session, (position <= f).astype(float), kappa ** position)
