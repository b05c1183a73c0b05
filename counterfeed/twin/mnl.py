"""The multinomial-logit click model with position examination (the ``choice`` model's own family).

Two forms: ``draws = 0`` (the default, used by the twin) is the **attention** form: every shown
position is considered with utility ``eta + log theta_j`` (a position-specific attention weight; the
likelihood is exact and cheap); ``draws > 0`` is the random-examination form described below, fitted
by simulated likelihood (slower; its examination probabilities are weakly identified).

Each position ``j`` is examined independently with probability ``theta_j``; among the examined items and
a no-click option of utility 0, the user picks by multinomial logit (utility ``eta = p_u . v_i + b_i -
w S``), up to ``max_clicks`` rounds without replacement, stopping when the no-click option wins
(McFadden 1974; the examination layer as in the position-based model). For a session with click set
``C`` clicked in order ``a_1..a_n`` and examined set ``E``:

    P(order | E) = prod_r exp(eta_{a_r}) / (1 + sum_{E minus a_<r} exp(eta)) * [1 / (1 + sum_{E minus C} exp(eta)) if n < max_clicks]

and ``P(C) = prod_{j in C} theta_j * E_{E}[sum over orders P(order | E)]`` (the order is not logged; up
to 2 clicks every order is summed, beyond that the position order is used). The expectation over the
unclicked positions' examination is a Monte Carlo average over ``draws`` samples drawn at the current
``theta`` and reweighted by ``prod (theta / theta_hat)^E ((1 - theta) / (1 - theta_hat))^(1 - E)`` (value
1, gradient that of the exact expectation): simulated maximum likelihood (Train 2009, *Discrete Choice
Methods with Simulation*, ch. 10), biased by O(1/draws) in the log.
"""

from __future__ import annotations

import numpy as np

from counterfeed.twin.clicks import ClickFit

__all__ = ["SessionData", "mnl_loglik", "fit_mnl"]


#: sessions per Adam step at most (beyond ``steps * MAX_BATCH_SESSIONS`` sessions an epoch is a random part)
MAX_BATCH_SESSIONS = 4096


class SessionData:
    """The log as (R, k) session matrices: item codes, shown, clicks, satiation; plus user per session."""

    def __init__(self, session, position, item, click, satiation, weight, user, n_sessions, k):
        import torch

        shape = (n_sessions, k)
        it = np.zeros(shape, np.int64)
        sh = np.zeros(shape, bool)
        cl = np.zeros(shape, np.float32)
        sa = np.zeros(shape, np.float32)
        it[session, position] = item
        sh[session, position] = True
        cl[session, position] = click
        sa[session, position] = satiation
        su = np.zeros(n_sessions, np.int64)
        su[session] = user
        sw = np.bincount(session, weights=weight, minlength=n_sessions) / np.maximum(
            np.bincount(session, minlength=n_sessions), 1)
        self.item, self.shown, self.click = torch.as_tensor(it), torch.as_tensor(sh), torch.as_tensor(cl)
        self.satiation, self.user = torch.as_tensor(sa), torch.as_tensor(su)
        self.weight = torch.as_tensor(sw / max(sw.mean(), 1e-12), dtype=torch.float32)
        self.n, self.k = n_sessions, k


def _session_ll(eta, shown, clicks, theta, draws, max_clicks, gen):
    """(R,) simulated log-likelihood of the sessions (see module)."""
    import torch

    r, k = eta.shape
    c = clicks > 0
    n_c = c.sum(1)
    th = theta[None, :].expand(r, k)
    if draws == 0:  # attention: every shown position is considered, with utility eta + log theta_j
        eta = eta + torch.log(th.clamp(1e-6, 1.0))
        th = torch.ones_like(th)
        draws = 1
        ex = shown[None]
    else:
        with torch.no_grad():
            u = torch.rand((draws, r, k), generator=gen)
            ex = (u < th.detach()[None]) | c[None]
            ex = ex & shown[None]
    # reweighting for the gradient in theta (value 1)
    td = th.detach().clamp(1e-6, 1 - 1e-6)
    tt = th.clamp(1e-6, 1 - 1e-6)
    lw = torch.where(ex, torch.log(tt) - torch.log(td), torch.log1p(-tt) - torch.log1p(-td))
    lw = torch.where(c[None] | ~shown[None], torch.zeros_like(lw), lw).sum(-1)  # (M, R)
    e = torch.exp(eta.clamp(-30, 30))
    ee = torch.where(ex, e[None], torch.zeros_like(e[None]))
    total = ee.sum(-1)                                   # (M, R)
    clicked_sum = (e * c).sum(1)                         # (R,)
    stop = torch.where(n_c < max_clicks, -torch.log1p((total - clicked_sum[None]).clamp_min(0)), torch.zeros_like(total))
    # clicked positions in position order (first two)
    order = torch.argsort((~c).to(torch.int8) * k + torch.arange(k)[None, :], dim=1, stable=True)
    a1 = order[:, 0]
    a2 = order[:, 1] if k > 1 else order[:, 0]
    e1 = e.gather(1, a1[:, None])[:, 0]
    e2 = e.gather(1, a2[:, None])[:, 0]
    # general n: position order, product over rounds
    csum = torch.cumsum(torch.where(c, e, torch.zeros_like(e)).gather(1, order), dim=1)  # clicked mass so far
    prev = torch.cat([torch.zeros(r, 1), csum[:, :-1]], dim=1)
    rounds = torch.arange(k)[None, :] < n_c[:, None]
    eo = e.gather(1, order)
    lp_pos = torch.where(rounds[None], torch.log(eo)[None] - torch.log1p((total[..., None] - prev[None]).clamp_min(0)),
                         torch.zeros(1)).sum(-1)         # (M, R) position order
    # exactly two clicks: both orders
    l12 = torch.log(e1) - torch.log1p(total) + torch.log(e2) - torch.log1p((total - e1).clamp_min(0))
    l21 = torch.log(e2) - torch.log1p(total) + torch.log(e1) - torch.log1p((total - e2).clamp_min(0))
    lp_two = torch.logaddexp(l12, l21)
    lp = torch.where((n_c == 2)[None], lp_two, lp_pos) + stop + lw
    ll = torch.logsumexp(lp, 0) - np.log(draws)
    return ll + torch.where(c, torch.log(tt), torch.zeros_like(tt)).sum(1)  # log 1 = 0 under attention


def mnl_loglik(data: SessionData, P, V, b, w, theta, max_clicks: int, draws: int = 0, seed: int = 0,
               rows=None) -> float:
    """Held-out simulated log-likelihood (sum over sessions ``rows``, all by default)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    idx = torch.arange(data.n) if rows is None else torch.as_tensor(rows)
    out = 0.0
    with torch.no_grad():
        for lo in range(0, idx.numel(), 20000):
            i = idx[lo:lo + 20000]
            eta = _eta(data, i, P, V, b, w)
            out += float(_session_ll(eta, data.shown[i], data.click[i], torch.as_tensor(theta, dtype=torch.float32),
                                     draws, max_clicks, g).sum())
    return out


def _eta(data, i, P, V, b, w):
    import torch

    it = data.item[i]
    eta = b[it] - w * data.satiation[i]
    if P is not None and P.shape[1] > 0:
        eta = eta + (P[data.user[i]][:, None, :] * V[it]).sum(-1)
    return eta.to(torch.float32)


def fit_mnl(data: SessionData, n_users: int, n_items: int, *, dims: int, max_clicks: int, epochs: int = 12,
            steps: int = 80, draws: int = 0, l2: float = 0.1, seed: int = 0, rows=None,
            init: ClickFit | None = None, satiation_weight: float | None = None) -> ClickFit:
    """Fit ``theta``, ``b``, ``w`` and (``dims > 0``) the factors by Adam on minibatches of sessions.

    ``rows``: the sessions to fit (default all);
    ``satiation_weight``: ``w`` held fixed at this value when given (else fitted).
    """
    import torch

    g = torch.Generator().manual_seed(seed)
    if init is not None:
        P, V = torch.tensor(init.user), torch.tensor(init.item)
        b = torch.tensor(init.bias, dtype=torch.float32)
        lt = torch.tensor(np.log(np.clip(init.theta, 1e-4, 1 - 1e-4) / (1 - np.clip(init.theta, 1e-4, 1 - 1e-4))),
                          dtype=torch.float32)
        ws = torch.tensor(np.log(np.expm1(max(init.satiation_weight, 1e-3))), dtype=torch.float32)
    else:
        P = 0.1 * torch.randn(n_users, dims, generator=g)
        V = 0.1 * torch.randn(n_items, dims, generator=g)
        b = torch.full((n_items,), -2.0)
        lt = torch.full((data.k,), 2.0) - 0.3 * torch.arange(data.k, dtype=torch.float32)
        ws = torch.tensor(np.log(np.expm1(0.1)), dtype=torch.float32)
    params = [b.requires_grad_(), lt.requires_grad_()]
    if satiation_weight is None:
        params.append(ws.requires_grad_())
    if dims > 0:
        params += [P.requires_grad_(), V.requires_grad_()]
    opt = torch.optim.Adam(params, lr=0.05)
    idx_all = torch.arange(data.n) if rows is None else torch.as_tensor(rows)
    n_fit = max(int(idx_all.numel()), 1)  # sessions fitted: the item prior's penalty is spread over them
    sw = data.weight
    # ``steps`` Adam steps per epoch whatever the size; on a large log an epoch sees a random part of it
    batch = min(max(128, idx_all.numel() // steps), MAX_BATCH_SESSIONS)
    for _ in range(epochs):
        perm = idx_all[torch.randperm(idx_all.numel(), generator=g)]
        for lo in range(0, min(perm.numel(), steps * batch), batch):
            i = perm[lo:lo + batch]
            w = torch.nn.functional.softplus(ws) if satiation_weight is None else satiation_weight
            eta = _eta(data, i, P if dims > 0 else None, V, b, w)
            theta = torch.sigmoid(lt)
            ll = _session_ll(eta, data.shown[i], data.click[i], theta, draws, max_clicks, g)
            loss = -(sw[i] * ll).mean()
            if dims > 0:
                # users: per session (their posterior replaces the points, counterfeed.twin.posterior); items: a
                # Gaussian prior, l2 |V|^2 over all the sessions, which washes out as an item's data grow. Per
                # session (each shown item's |V_i|^2 every time it is shown) it never did, and with the users'
                # per-session penalty it acted as a nuclear-norm penalty on P V^T (Srebro et al. 2005): the users'
                # posterior had rank 3-4 of 8 and the item factors spanned 67-77% of the true user x item
                # interactions (s8/ts: text-embedding's CTR loss under-predicted by 23% on 10 validation logs)
                loss = loss + l2 * ((P[data.user[i]] ** 2).sum(1).mean() + (V ** 2).sum() / n_fit)
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        return ClickFit(model="mnl", theta=torch.sigmoid(lt).numpy().astype(np.float64), kappa=1.0,
                        bias=b.detach().numpy().astype(np.float64),
                        user=P.detach().numpy().copy() if dims > 0 else np.zeros((n_users, 0), np.float32),
                        item=V.detach().numpy().copy() if dims > 0 else np.zeros((n_items, 0), np.float32),
                        satiation_weight=float(torch.nn.functional.softplus(ws)) if satiation_weight is None
                        else float(satiation_weight))
