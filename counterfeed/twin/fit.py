"""``fit_twin``: estimate the twin's parameters from a :class:`~counterfeed.twin.data.TwinLog`.

Steps (each documented in its module): split off held-out users (for ``twin check``); choose the
examination model (PBM by EM vs cascade) by held-out log-likelihood (:mod:`.clicks`); factorize the
attractiveness with exposure weights; topics (from an item table, else k-means of the item factors)
and the satiation half-life (grid, by likelihood; :mod:`.satiation`); dwell (OLS of log dwell on the
utility); for the MNL the users' posterior (Laplace approximation and empirical-Bayes population,
:mod:`.posterior`: the twin simulates draws from it); visit, return and churn dynamics
(:mod:`.dynamics`); then ``bootstrap`` replicates, each a refit of every step from scratch, on a resample
of the users or a log simulated from the point fit (:mod:`.bootstrap`), for the intervals.
"""

from __future__ import annotations

import time as _time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from counterfeed.errors import DataError
from counterfeed.twin.clicks import (cascade_fit, cascade_loglik, exposure_weights, fit_personal, pbm_em,
                                     pbm_loglik, session_matrix)
from counterfeed.twin.data import TwinLog
from counterfeed.twin.dynamics import fit_dynamics, user_activity
from counterfeed.twin.mnl import SessionData, fit_mnl, mnl_loglik
from counterfeed.twin.satiation import item_topics, satiation_feature, satiation_instrument
from counterfeed.twin.store import Replicate

__all__ = ["FitSettings", "fit_twin"]

HALFLIVES = (0.5, 1.0, 2.0, 4.0, 8.0)
#: a half-life must beat the grid's geometric middle by this much log-likelihood to replace it (the 95%
#: likelihood-ratio bound of one parameter, chi2_1(0.95) / 2)
HALFLIFE_LR = 1.92
SELECTION_USERS = 50_000  # users for the choice of the click model
SATIATION_USERS = 20_000  # users for the satiation half-life and weight (its standard error is about 0.02 there)
L2_GRID = (0.03, 0.1, 0.3, 1.0)  # the MNL factors' penalties tried (per session), by held-out likelihood


@dataclass
class FitSettings:
    dims: int = 16
    holdout: float = 0.2
    bootstrap: int = 20
    n_topics: int = 10
    epochs: int = 12
    seed: int = 0
    max_dynamics_users: int = 50_000  # the 6 dynamics parameters are fitted on at most this many
    bootstrap_kind: str = "users"  # or "parametric" (needs the logging policy; :mod:`.bootstrap`)
    l2: float | None = None  # the MNL's L2 penalty; None: chosen on held-out sessions (a user bootstrap holds it)
    topics: np.ndarray | None = field(default=None, repr=False)      # (I,) known topics by item code
    embeddings: np.ndarray | None = field(default=None, repr=False)  # (I, e) text embeddings by item code


def _split(n: int, frac: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    n_out = int(round(frac * n)) if n >= 3 else 0
    n_out = min(n_out, n - 2)
    perm = rng.permutation(n)
    return np.sort(perm[n_out:]), np.sort(perm[:n_out])


def _select_examination(log: TwinLog, rng: np.random.Generator, sessions: SessionData | None) -> dict[str, Any]:
    """Fit PBM (EM), cascade and MNL (item-level) on 80% of the users; held-out log-likelihood on the rest
    (of at most ``SELECTION_USERS`` users drawn at random: a choice between three models needs no more)."""
    if log.n_users > SELECTION_USERS:
        log = log.select_users(np.sort(rng.choice(log.n_users, SELECTION_USERS, replace=False)))
        sessions = None if sessions is None else _sessions(log, np.zeros(len(log)), exposure_weights(log.propensity))
    fit_u, val_u = _split(log.n_users, 0.2, rng)
    k = log.n_positions
    fit_rows = np.isin(log.user, fit_u)
    val_rows = ~fit_rows
    it, pos, c = log.item, log.position, log.click
    theta, alpha = pbm_em(it[fit_rows], pos[fit_rows], c[fit_rows], log.n_items, k)
    prior = float(np.median(alpha))
    seen = np.bincount(it[fit_rows], minlength=log.n_items) > 0
    alpha = np.where(seen, alpha, prior)
    ll_pbm = pbm_loglik(theta[pos[val_rows]] * alpha[it[val_rows]], c[val_rows])
    # cascade on a session matrix
    fs = np.unique(log.session[fit_rows])
    vs = np.unique(log.session[val_rows])
    shown = session_matrix(log.session, pos, log.n_sessions, k, np.ones(len(log)), 0).astype(bool)
    clicks = session_matrix(log.session, pos, log.n_sessions, k, c, 0)
    items = session_matrix(log.session, pos, log.n_sessions, k, it, 0).astype(np.int64)
    sub = fs if fs.size <= 300_000 else rng.choice(fs, 300_000, replace=False)
    kappa, alpha_c = cascade_fit(clicks[sub], shown[sub], items[sub], log.n_items)
    alpha_c = np.where(seen, alpha_c, float(np.median(alpha_c)))
    ll_cas = float(cascade_loglik(alpha_c[items[vs]], clicks[vs], shown[vs], kappa).sum())
    n_val = int(val_rows.sum())
    lls = {"pbm": ll_pbm, "cascade": ll_cas}
    mnl_theta = theta
    if sessions is not None:
        import torch

        max_clicks = int(log.session_clicks().max())
        sub_m = fs if fs.size <= 100_000 else rng.choice(fs, 100_000, replace=False)
        m = fit_mnl(sessions, log.n_users, log.n_items, dims=0, max_clicks=max(max_clicks, 1), epochs=4,
                    rows=sub_m, seed=int(rng.integers(2**31)))
        bias = torch.as_tensor(np.where(seen, m.bias, np.median(m.bias)), dtype=torch.float32)
        lls["mnl"] = mnl_loglik(sessions, None, None, bias, 0.0, m.theta, max(max_clicks, 1), rows=vs)
        mnl_theta = m.theta
    model = max(lls, key=lls.get)
    return {"model": model, "theta": mnl_theta if model == "mnl" else theta,
            "alpha": alpha if model == "pbm" else alpha_c, "kappa": kappa,
            "heldout_loglik_per_impression": {k2: v / max(n_val, 1) for k2, v in lls.items()},
            "heldout_impressions": n_val}


def _satiation(log: TwinLog, topics: np.ndarray, prob: np.ndarray,
               rng: np.random.Generator) -> tuple[float, float, dict[str, float], dict[str, float], dict[str, float]]:
    """The satiation half-life and weight: per grid half-life, a logistic regression of the clicks on the
    instrumented feature (:func:`~counterfeed.twin.satiation.satiation_instrument`) with the fit without
    satiation as offset (``logit prob``); the half-life of the best likelihood, its weight (at least 0).

    Returns (half-life, weight, log-likelihood by half-life, weight by half-life, {first-stage slope, the
    weight's standard error from the logit's Hessian (given the first stage: a lower bound)})."""
    import torch

    rows = np.arange(len(log))
    if log.n_users > SATIATION_USERS:  # whole histories of a subset of users (the feature needs them)
        rows = np.flatnonzero(np.isin(log.user, rng.choice(log.n_users, SATIATION_USERS, replace=False)))
    y = torch.as_tensor(log.click[rows], dtype=torch.float64)
    p0 = np.clip(prob[rows], 1e-6, 1 - 1e-6)
    base = torch.as_tensor(np.log(p0 / (1 - p0)))
    out: dict[str, float] = {}
    weights: dict[str, float] = {}
    slopes: dict[str, float] = {}
    ses: dict[str, float] = {}
    for h in HALFLIVES:
        f, slopes[str(h)] = satiation_instrument(log.user[rows], topics[log.item[rows]], log.time[rows],
                                                 log.click[rows], prob[rows], h)
        s = torch.as_tensor(f)
        w = torch.zeros(2, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([w], max_iter=50, line_search_fn="strong_wolfe")

        def nll(w):
            return torch.nn.functional.binary_cross_entropy_with_logits(base + w[1] - w[0] * s, y, reduction="sum")

        def closure():
            opt.zero_grad()
            loss = nll(w)
            loss.backward()
            return loss

        opt.step(closure)
        with torch.no_grad():  # (LBFGS.step returns the loss at the start, not at the optimum)
            out[str(h)] = -float(nll(w))
        weights[str(h)] = float(w[0].detach())
        hess = torch.autograd.functional.hessian(nll, w.detach()).numpy()
        ses[str(h)] = float(np.sqrt(max(np.linalg.pinv(hess)[0, 0], 0.0)))
    best = max(out, key=out.get)
    middle = str(HALFLIVES[len(HALFLIVES) // 2])
    if out[best] - out[middle] < HALFLIFE_LR:  # not identified: the middle, a factor <= 4 from any grid value
        best = middle
    return float(best), max(weights[best], 0.0), out, weights, {"first_stage_slope": slopes[best], "se": ses[best]}


def _click_prob(fit, log: TwinLog, sel: dict[str, Any], eta: np.ndarray) -> np.ndarray:
    """(N,) each impression's click probability under ``fit`` (``eta``: its utilities): MNL, the first
    choice's ``theta_j e^eta / (1 + sum_session theta e^eta)``; PBM ``theta_j sigmoid(eta)``; cascade
    ``kappa^j sigmoid(eta)`` (the instrument of :func:`~counterfeed.twin.satiation.satiation_instrument`
    needs them only up to a common scale)."""
    sig = 1.0 / (1.0 + np.exp(-np.clip(eta, -30, 30)))
    if fit.model == "pbm":
        return fit.theta[log.position] * sig
    if fit.model == "cascade":
        return float(np.clip(sel["kappa"], 1e-3, 1.0)) ** log.position * sig
    e = np.clip(fit.theta[log.position], 1e-6, 1.0) * np.exp(np.clip(eta, -30, 30))
    return e / (1.0 + np.bincount(log.session, weights=e, minlength=log.n_sessions)[log.session])


def _dwell(log: TwinLog, eta: np.ndarray) -> tuple[float, float]:
    """``log dwell = log(dwell_mean) + dwell_utility * U + 0.5 N(0,1)`` by OLS (statsmodels) on the clicks."""
    import statsmodels.api as sm

    rows = (log.click > 0) & (log.dwell > 0) & (log.dwell < 600)
    if not log.has_dwell or rows.sum() < 10:
        return 2.0, 0.0
    res = sm.OLS(np.log(log.dwell[rows]), sm.add_constant(eta[rows])).fit()
    a, b = res.params
    return float(np.clip(np.exp(a), 1e-3, 1000)), float(np.clip(b, 0.0, 10.0))


def _eta(fit, log: TwinLog, s: np.ndarray) -> np.ndarray:
    return ((fit.user[log.user] * fit.item[log.item]).sum(1) + fit.bias[log.item]
            - fit.satiation_weight * s).astype(np.float64)


def _text_shrink(fit, embeddings: np.ndarray, counts: np.ndarray, n0: float = 20.0) -> None:
    """Items with few impressions borrow their factors from their text (ridge from embeddings)."""
    from sklearn.linear_model import Ridge

    target = np.c_[fit.item, fit.bias]
    well = counts >= max(n0, np.median(counts))
    if well.sum() < 5:
        return
    pred = Ridge(alpha=1.0).fit(embeddings[well], target[well]).predict(embeddings)
    lam = (counts / (counts + n0))[:, None]
    mixed = lam * target + (1 - lam) * pred
    fit.item, fit.bias = mixed[:, :-1].astype(np.float32), mixed[:, -1]


def _options(fit, sel: dict[str, Any], halflife: float, dwell: tuple[float, float], dyn, max_clicks: int,
             k: int) -> dict[str, Any]:
    opts: dict[str, Any] = {"click_model": fit.model,
                            "examination_probs": [float(np.clip(x, 1e-6, 1.0)) for x in fit.theta[:k]],
                            "examination": "cascade" if fit.model == "cascade" else "position",
                            "continue_prob": float(np.clip(sel["kappa"], 1e-3, 1.0)),
                            "max_clicks": int(np.clip(max_clicks, 1, 50)),
                            "satiation_weight": float(min(fit.satiation_weight, 100.0)),
                            "satiation_halflife": float(halflife), "quality_weight": 1.0,
                            "preference_scale": 1.0, "no_click_utility": 0.0,
                            "dwell_mean": dwell[0], "dwell_utility": dwell[1]}
    opts.update({k2: float(np.clip(v, 1e-6 if k2 in ("visit_rate", "memory") else 0.0,
                                   1000.0 if k2 == "visit_rate" else 100.0))  # the choice model's bounds
                 for k2, v in dyn.options().items()})
    opts["memory"] = float(min(opts["memory"], 1.0))
    opts["churn_rate"] = float(min(opts["churn_rate"], 1.0))
    opts["baseline_satisfaction"] = float(min(opts["baseline_satisfaction"], 50.0))
    return opts


def fit_twin(log: TwinLog, settings: FitSettings | None = None, say=lambda msg: None, *,
             replicate: bool = False) -> tuple[dict[str, Any], list[Replicate]]:
    """Fit the twin; returns (``twin.json`` contents, replicates: point fit first, then the bootstrap).

    Raises DataError when the log (or its fitting users' part) has no click or no skip
    (:func:`_check_clicks`) and warns FEW CLICKS below :data:`FEW_CLICKS`. ``replicate``: the refit of
    a bootstrap replicate (:mod:`.bootstrap`), which is neither refused nor warned: a resample without
    clicks is a draw of the estimator's sampling distribution (it widens the intervals), and the point
    fit's warning has been given."""
    st = settings or FitSettings()
    if st.bootstrap and st.bootstrap_kind == "parametric" and not log.logging:
        raise DataError(f"--bootstrap-kind parametric: {log.source} does not say which policy logged it (only a run "
                        "directory does), and the parametric bootstrap simulates that policy; use "
                        "--bootstrap-kind users")
    if not replicate:  # what the data cannot identify is refused before any warning or progress line
        _check_clicks(log)
        _check_returns(log)
        _warn_sparse(log, st.dims)
    rng = np.random.default_rng(st.seed)
    t_start = _time.perf_counter()
    train_u, held_u = _split(log.n_users, st.holdout, rng)
    if st.holdout > 0 and held_u.size == 0:
        warnings.warn(f"no users held out for 'twin check': the log has {log.n_users} users and holding out "
                      f"needs at least 3 (--holdout {st.holdout:g} asked for {st.holdout * log.n_users:.1f})",
                      stacklevel=2)
    train = log.select_users(train_u)
    clickers, skippers = click_users(train)
    few = "" if replicate else few_clicks_warning(int(train.click.sum()), len(train),
                                                    f"{log.source}: the {train.n_users} fitting users",
                                                    clickers, skippers)
    if not replicate:
        _check_clicks(train, held=(log, held_u.size, st.holdout))
        _check_returns(train, held=(log, held_u.size, st.holdout))
        _check_bootstrap_returns(train, st, log.source)
    if few:
        warnings.warn(few, stacklevel=2)
    k = train.n_positions
    weight = exposure_weights(train.propensity)
    zero = np.zeros(len(train))
    sessions = _sessions(train, zero, weight)
    sel = _select_examination(train, rng, sessions)
    say(f"examination model: {sel['model']} (held-out log-likelihood per impression "
        f"{sel['heldout_loglik_per_impression']})")
    max_clicks = int(train.session_clicks().max())
    fitter = _Fitter(sel, train, weight, st, max_clicks)
    l2_ll = fitter.choose_l2(sessions, rng) if st.l2 is None else {}
    fitter.l2 = fitter.l2 if st.l2 is None else float(st.l2)
    fit = fitter(zero, max(2, st.epochs // 3), st.seed, None)
    topics = st.topics if st.topics is not None else item_topics(fit.item, st.n_topics, st.seed)
    prob = _click_prob(fit, train, sel, _eta(fit, train, zero))
    halflife, w_sat, hl_ll, w_by_h, w_info = _satiation(train, topics, prob, rng)
    s = satiation_feature(train.user, topics[train.item], train.time, train.click, halflife)
    fitter.satiation_weight = w_sat  # the factorization is refitted with the weight held at its estimate
    fit = fitter(s, st.epochs, st.seed, fit)
    counts = np.bincount(train.item, minlength=train.n_items).astype(float)
    if st.embeddings is not None:
        _text_shrink(fit, st.embeddings, counts)
    dwell = _dwell(train, _eta(fit, train, s))
    dyn_users = _dyn_subset(train, st, rng)
    dyn = _fit_dyn(train, dyn_users)
    activity = np.ones(train.n_users)
    activity[dyn_users] = dyn.activity
    if dyn_users.size < train.n_users:  # parameters from a subset of users; every user's activity
        activity = user_activity(dyn, train.session_user, train.session_time, train.session_clicks(),
                                 train.horizon, train.n_users, train.window)
    post = fitter.posterior(s, fit)
    say(f"point fit done in {_time.perf_counter() - t_start:.1f} s")
    reps = [Replicate(item=fit.item, bias=fit.bias, topic=topics, user=fit.user if post is None else post.mean,
                      activity=activity, weight=np.ones(train.n_users),
                      user_chol=None if post is None else post.chol)]
    options = [_options(fit, sel, halflife, dwell, dyn, max_clicks, k)]
    kind = st.bootstrap_kind
    meta = {
        "format": 1, "source": log.source, "dims": st.dims, "n_users": log.n_users,
        "n_train_users": train.n_users, "n_items": log.n_items, "n_impressions": len(log),
        "n_sessions": log.n_sessions, "slate_size": int(log.slate_size or k), "horizon": log.horizon,
        "n_clicks": int(log.click.sum()), "n_train_clicks": int(train.click.sum()),
        "n_train_impressions": len(train), "n_train_clickers": clickers, "n_train_skippers": skippers,
        "logging": log.logging, "run": log.extra.get("run", {}), "item_ids": log.item_ids.tolist(),
        "heldout_users": log.user_ids[held_u].tolist(), "train_users": log.user_ids[train_u].tolist(),
        "examination": {k2: v for k2, v in sel.items() if k2 in ("model", "heldout_loglik_per_impression",
                                                                  "heldout_impressions")},
        "factorization": {"l2": fitter.l2, "heldout_loglik_by_l2": l2_ll,
                          "user_posterior": None if post is None else post.report()},
        "satiation": {"halflife_days": halflife, "loglik_by_halflife": hl_ll, "weight": w_sat,
                      "weight_by_halflife": w_by_h, **w_info,
                      "topics": "given" if st.topics
                      is not None else f"k-means of item factors ({int(topics.max()) + 1})"},
        "dynamics": {"loglik": dyn.loglik, "se": dyn.se, "users": int(dyn_users.size)},
        "text": st.embeddings is not None, "seconds": _time.perf_counter() - t_start,
        "settings": {"dims": st.dims, "holdout": st.holdout, "bootstrap": st.bootstrap, "epochs": st.epochs,
                     "seed": st.seed},
        "bootstrap": kind, "replicates": options,
    }
    if st.bootstrap:
        from counterfeed.twin.bootstrap import parametric_bootstrap, user_bootstrap

        if kind == "parametric":
            meta, reps = parametric_bootstrap(meta, reps, st, say, embeddings=st.embeddings)
        else:
            meta, reps = user_bootstrap(meta, reps, st, train, fitter.l2, say)
        meta["seconds"] = _time.perf_counter() - t_start
    return meta, reps


#: clicks per fitted parameter below which a logistic model's estimates are unstable (Peduzzi et al. 1996,
#: J Clin Epidemiol 49: about 10 events per variable)
EVENTS_PER_PARAMETER = 10


def _check_clicks(log: TwinLog, held: tuple[TwinLog, int, float] | None = None) -> None:
    """Refuse (DataError) a log whose impressions are all skips or all clicks: no click model is identified
    from it (a click probability, an examination curve, an item's appeal all need both outcomes: the
    likelihood is largest at appeals of -inf, or +inf, which only the fit's penalty holds finite, and the
    twin then predicted effects with narrow intervals from a model the data never determined; tester: 900 impressions, no click, a CTR effect of
    -0.00064 [-0.0061, 0.0049]). ``held``: (the whole log, users held out, --holdout) when ``log`` is
    the fitting users' part, whose clicks may all be among the held-out users."""
    n, c = len(log), int(log.click.sum())
    if 0 < c < n:
        return
    what = "no impression was clicked" if c == 0 else "every impression was clicked"
    if held is None:
        raise DataError(f"{log.source}: {c} clicks in {n} impressions ({log.n_users} users): {what}, so the "
                        "twin's click model is not identified (it needs both clicks and skips); nothing was fitted")
    whole, n_held, frac = held
    other = int(whole.click.sum()) - c  # the held-out users' clicks
    raise DataError(f"{whole.source}: the {log.n_users} fitting users have {c} clicks in {n} impressions ({what}; "
                    f"the log's other {other} clicks and {len(whole) - n - other} skips are among the {n_held} "
                    f"users held out by --holdout {frac:g}), so the twin's click model is not identified; lower "
                    "--holdout, or fit a longer log")


def _check_returns(log: TwinLog, held: tuple[TwinLog, int, float] | None = None) -> None:
    """Refuse (DataError) a log in which no user has a second session: the return rate of the visit/return
    dynamics (:func:`~counterfeed.twin.dynamics.fit_dynamics`) is then not identified. Checked before
    fitting, so the error comes before any progress line. ``held``: as :func:`_check_clicks`'s, when
    ``log`` is the fitting users' part and the users who returned may all be held out."""
    if np.any(np.bincount(log.session_user, minlength=log.n_users) >= 2):
        return
    if held is None:
        raise DataError(f"{log.source}: the log has no user with a second session ({log.n_users} users, one session "
                        "each), so nothing identifies the twin's return rate; nothing was fitted (fit a longer log)")
    whole, n_held, frac = held
    returning = int(np.sum(np.bincount(whole.session_user, minlength=whole.n_users) >= 2))
    raise DataError(f"{whole.source}: none of the {log.n_users} fitting users has a second session (the log's "
                    f"{returning} user(s) who returned are all among the {n_held} users held out by --holdout "
                    f"{frac:g}), so "
                    "nothing identifies the twin's return rate; lower --holdout, or fit a longer log")


def _check_bootstrap_returns(train: TwinLog, st: FitSettings, source: str) -> None:
    """Refuse (DataError) before fitting a user bootstrap one of whose resamples
    (:func:`~counterfeed.twin.bootstrap.user_draw`, drawn before any fit) holds none of the fitting users
    who returned: that replicate's return rate is not identified, and the bootstrap used to stop there,
    after the point fit and the replicates before it had printed their progress."""
    if not st.bootstrap or st.bootstrap_kind != "users":
        return
    from counterfeed.twin.bootstrap import user_draw

    returned = np.bincount(train.session_user, minlength=train.n_users) >= 2
    for b in range(1, st.bootstrap + 1):
        if not returned[user_draw(st.seed, b, train.n_users)].any():
            raise DataError(f"{source}: bootstrap replicate {b} of {st.bootstrap} resamples none of the "
                            f"{int(returned.sum())} fitting user(s) who returned for a second session, so its "
                            "return rate is not identified (too few returning users for a bootstrap over users); "
                            "fit a longer log, or give --bootstrap 0 (a point fit without intervals)")


#: fewer clicks (or fewer skips) than this among the fitting users is a loud warning at ``twin fit`` and on
#: every effect of ``twin evaluate``: the events-per-variable rule (Peduzzi et al. 1996, about 10 events of
#: the rarer outcome per parameter) applied to the click model's single most basic parameter, its overall
#: click rate. Below it not even that one parameter is supported, let alone the examination curve, appeals
#: and factors (with k rare events a rate's relative standard error is about 1/sqrt(k): 32% at 10). A floor,
#: not a target: ``_warn_sparse`` asks for 10 per item parameter.
FEW_CLICKS = EVENTS_PER_PARAMETER


def few_clicks_warning(clicks: int, impressions: int, who: str, clickers: int | None = None,
                       skippers: int | None = None) -> str:
    """The FEW CLICKS warning when the rarer of clicks and skips is below :data:`FEW_CLICKS`, or when
    fewer than :data:`FEW_CLICKS` users clicked (``clickers``) or skipped (``skippers``), else ``""``.

    Why 10: Peduzzi et al. (1996)'s events-per-variable rule counts the rarer outcome, about 10 per fitted
    parameter; the click model has at least one (the overall click rate), so fewer than 10 clicks (or
    skips) support not even that one (its relative standard error is then above ~1/sqrt(10) = 32%).
    Users count too: the twin draws new users' tastes from the spread of the fitted users', and 50 clicks
    of 2 users tell that spread no more than 2 users do (the events are clustered by user)."""
    skips = impressions - clicks
    if min(clicks, skips) >= FEW_CLICKS and min(FEW_CLICKS if clickers is None else clickers,
                                                FEW_CLICKS if skippers is None else skippers) >= FEW_CLICKS:
        return ""
    if min(clicks, skips) < FEW_CLICKS:
        rare = f"{clicks} clicks" if clicks <= skips else f"{skips} skips (impressions not clicked)"
        what = f"have {rare} in {impressions} impressions"
    elif clickers is not None and clickers < FEW_CLICKS:
        what = f"include only {clickers} users who clicked ({clicks} clicks in {impressions} impressions)"
    else:
        what = f"include only {skippers} users who skipped an item ({skips} skips in {impressions} impressions)"
    return (f"FEW CLICKS: {who} {what}, fewer than {FEW_CLICKS} (the "
            "events-per-variable rule, Peduzzi et al. 1996, for even one parameter): the click model is fitted "
            "on a handful of events and is barely identified, so the twin's predictions and intervals are not "
            "to be trusted; fit a longer log")


def click_users(log: Any) -> tuple[int, int]:
    """How many of ``log``'s users clicked at least once, and how many skipped at least one impression."""
    clicked = np.asarray(log.click, dtype=bool)
    return int(np.unique(log.user[clicked]).size), int(np.unique(log.user[~clicked]).size)


def _warn_sparse(log: TwinLog, dims: int) -> None:
    """Warn when the median shown item has fewer than ``EVENTS_PER_PARAMETER`` clicks per parameter of its
    own (``dims`` factors and an appeal): on such a log (tester s8: 600 items shown 1-17 times, 1.3 clicks
    each) item appeals were fitted to +-14 logits and a bootstrap replicate's users to 5e4, and the twin
    predicted popularity's effect with the wrong sign."""
    clicks = np.bincount(log.item, weights=log.click, minlength=log.n_items)
    shown = np.bincount(log.item, minlength=log.n_items) > 0
    med, need = float(np.median(clicks[shown])), EVENTS_PER_PARAMETER * (dims + 1)
    if med < need:
        warnings.warn(f"{log.source}: the median item has {med:g} clicks for its {dims + 1} parameters ({dims} "
                      f"factors and an appeal; about {need} are needed, Peduzzi et al. 1996): the item parameters "
                      f"will be unstable and the twin's predictions unreliable; fit fewer --dims, or a longer log",
                      stacklevel=3)


def _sessions(log: TwinLog, satiation: np.ndarray, weight: np.ndarray) -> SessionData:
    return SessionData(log.session, log.position, log.item, log.click, satiation, weight, log.user,
                       log.n_sessions, log.n_positions)


class _Fitter:
    """The personalized fit of the selected click model (PBM/cascade: :mod:`.clicks`; MNL: :mod:`.mnl`)."""

    def __init__(self, sel: dict[str, Any], log: TwinLog, weight: np.ndarray, st: FitSettings, max_clicks: int):
        self.sel, self.log, self.weight, self.st, self.max_clicks = sel, log, weight, st, max(max_clicks, 1)

    l2 = 0.01  # per-row loss (PBM, cascade); the MNL's is chosen by choose_l2
    satiation_weight: float | None = None  # held fixed once estimated (:func:`_satiation`)

    def choose_l2(self, sessions: SessionData, rng: np.random.Generator) -> dict[str, float]:
        """MNL: the L2 penalty of the factors with the best likelihood on 10% of the sessions left out."""
        if self.sel["model"] != "mnl":
            return {}
        import torch

        lg = self.log
        users = rng.permutation(lg.n_users)[:20_000]  # a subsample of users keeps the grid cheap
        mine = np.flatnonzero(np.isin(lg.session_user, users))
        perm = rng.permutation(mine)
        n_val = max(1, mine.size // 10)
        val, tr = np.sort(perm[:n_val]), np.sort(perm[n_val:])
        out: dict[str, float] = {}
        for l2 in L2_GRID:
            f = fit_mnl(sessions, lg.n_users, lg.n_items, dims=self.st.dims, max_clicks=self.max_clicks,
                        epochs=max(2, self.st.epochs // 3), seed=self.st.seed, rows=tr, l2=l2,
                        init=_mnl_init(self.sel, lg, self.st.dims, self.st.seed))
            out[str(l2)] = mnl_loglik(sessions, torch.as_tensor(f.user), torch.as_tensor(f.item),
                                      torch.as_tensor(f.bias, dtype=torch.float32), 0.0, f.theta, self.max_clicks,
                                      rows=val)
        self.l2 = float(max(out, key=out.get))
        return out

    def posterior(self, s: np.ndarray, fit):
        """MNL with factors: the users' Laplace posterior under the empirical-Bayes population
        (:mod:`.posterior`); the twin simulates draws from it. None for PBM/cascade (points simulated)."""
        if self.sel["model"] != "mnl" or fit.user.shape[1] == 0:
            return None
        from counterfeed.twin.posterior import recalibrate_appeal, user_posterior

        c0 = _time.process_time()
        data = _sessions(self.log, s, self.weight)
        post = user_posterior(data, fit, self.max_clicks, seed=self.st.seed)
        fit.bias = recalibrate_appeal(data, fit, post, seed=self.st.seed)  # calibrated for the draws
        post.cpu_seconds = _time.process_time() - c0
        return post

    def __call__(self, s: np.ndarray, epochs: int, seed: int, init):
        lg, sel = self.log, self.sel
        if sel["model"] == "mnl":
            init = init or _mnl_init(sel, lg, self.st.dims, seed)
            return fit_mnl(_sessions(lg, s, self.weight), lg.n_users, lg.n_items, dims=self.st.dims,
                           max_clicks=self.max_clicks, epochs=epochs, seed=seed, init=init,
                           l2=self.l2, satiation_weight=self.satiation_weight)
        return fit_personal(sel["model"], lg.user, lg.item, lg.position, lg.click, s, self.weight, n_users=lg.n_users,
                            n_items=lg.n_items, dims=self.st.dims, theta=sel["theta"], alpha=sel["alpha"],
                            kappa=sel["kappa"], session=lg.session, epochs=epochs, seed=seed, init=init,
                            l2=self.l2, satiation_weight=self.satiation_weight)


def _mnl_init(sel: dict[str, Any], lg: TwinLog, dims: int, seed: int):
    from counterfeed.twin.clicks import ClickFit

    rng = np.random.default_rng(seed)
    a = np.clip(sel["alpha"], 1e-4, 1 - 1e-4)
    return ClickFit(model="mnl", theta=np.asarray(sel["theta"]), kappa=1.0, bias=np.log(a / (1 - a)),
                    user=(0.1 * rng.standard_normal((lg.n_users, dims))).astype(np.float32),
                    item=(0.1 * rng.standard_normal((lg.n_items, dims))).astype(np.float32), satiation_weight=0.1)


def _dyn_subset(train: TwinLog, st: FitSettings, rng: np.random.Generator) -> np.ndarray:
    if train.n_users <= st.max_dynamics_users:
        return np.arange(train.n_users)
    return np.sort(rng.choice(train.n_users, st.max_dynamics_users, replace=False))


def _fit_dyn(train: TwinLog, users: np.ndarray):
    keep = np.zeros(train.n_users, bool)
    keep[users] = True
    rows = keep[train.session_user]
    code = np.cumsum(keep) - 1
    su = code[train.session_user[rows]]
    return fit_dynamics(su, train.session_time[rows], train.session_clicks()[rows], train.horizon, users.size,
                        batch_window=train.window)

