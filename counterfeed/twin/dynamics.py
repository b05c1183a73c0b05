"""Visit, return and churn dynamics of the twin: a parametric survival model fitted with statsmodels.

The model is the ``choice`` user model's (``counterfeed/plugins/users/choice.py``). After session ``k``
of user ``u`` (``c_k`` clicks) satisfaction is ``s_k = (1 - m) s_{k-1} + m c_k`` from ``s_{-1} = s0``;
the user churns with probability ``p_k = min(1, r_c exp(w_c (s0 - s_k)))``, else returns after an
exponential gap of rate ``lambda_k = r_v a_u exp(w_r (s_k - s0))``; the first visit comes after an
``Exponential(r_v a_u)`` time. A churned user and one who has not yet come back by the end of the log
``T`` look the same, so the last gap is a mixture (a cure model; Farewell 1982):

    log L = sum_u [log f(first_u) - log F(T)]                       (users are seen if they came)
          + sum_{k not last} [log(1 - p_k) + log lambda_k - lambda_k g_k]
          + sum_{last k}     log(p_k + (1 - p_k) exp(-lambda_k (T - t_k)))

maximized over ``(log r_v, w_r, log r_c, w_c, logit m, s0)`` with
:class:`statsmodels.base.model.GenericLikelihoodModel` (BFGS; standard errors from its Hessian).
User activity ``a_u`` is a gamma frailty estimated by empirical Bayes (Clayton 1978): ``a_u = (k_u +
r) / (Lambda_u + r)`` with ``k_u`` the user's visits, ``Lambda_u`` their expected number at ``a_u = 1``
and ``1/r`` the between-user variance of activity (moments).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import warnings

import numpy as np

__all__ = ["Dynamics", "fit_dynamics", "satisfaction_path", "user_activity"]


@dataclass
class Dynamics:
    """Fitted dynamics (the ``choice`` model's option names)."""

    visit_rate: float
    return_weight: float
    churn_rate: float
    churn_weight: float
    memory: float
    baseline_satisfaction: float
    activity: np.ndarray = field(repr=False)   # (U,) per-user activity (mean about 1)
    se: dict[str, float] = field(default_factory=dict)
    loglik: float = float("nan")

    def options(self) -> dict[str, float]:
        return {"visit_rate": self.visit_rate, "return_weight": max(self.return_weight, 0.0),
                "churn_rate": min(self.churn_rate, 1.0), "churn_weight": max(self.churn_weight, 0.0),
                "memory": self.memory, "baseline_satisfaction": max(self.baseline_satisfaction, 0.0)}


def satisfaction_path(clicks: np.ndarray, first: np.ndarray, memory: float, s0: float) -> np.ndarray:
    """(R,) satisfaction after each session; ``first`` marks each user's first session (sorted by user, time).

    ``s_k = (1-m)^(k+1) s0 + m sum_{l<=k} (1-m)^(k-l) c_l`` computed by one linear filter over all
    sessions with the previous users' contribution subtracted.
    """
    from scipy.signal import lfilter

    q = 1.0 - memory
    y = lfilter([memory], [1.0, -q], clicks)
    idx = np.arange(clicks.size)
    start = np.maximum.accumulate(np.where(first, idx, 0))
    k = idx - start
    prev = np.where(start > 0, y[np.maximum(start - 1, 0)], 0.0)
    decay = q ** (k + 1)
    return y - decay * prev + decay * s0


class _Survival:
    """The likelihood above as a statsmodels GenericLikelihoodModel (built lazily: statsmodels is heavy)."""

    names = ["log_visit_rate", "return_weight", "log_churn_rate", "churn_weight", "logit_memory", "baseline"]

    @staticmethod
    def make(clicks, first, last, gap, tail, first_time, horizon, activity_s, activity_u):
        from statsmodels.base.model import GenericLikelihoodModel

        class Survival(GenericLikelihoodModel):
            def loglikeobs(self, params):
                lv, wr, lc, wc, lm, s0 = params
                m = 1.0 / (1.0 + np.exp(-lm))
                s = satisfaction_path(clicks, first, m, s0)
                lam = np.exp(lv + np.clip(wr * (s - s0), -30, 30)) * activity_s
                p = np.clip(np.exp(lc + np.clip(wc * (s0 - s), -30, 30)), 1e-12, 1 - 1e-9)
                ll = np.where(last, np.log(p + (1 - p) * np.exp(-lam * tail)),
                              np.log1p(-p) + np.log(lam) - lam * gap)
                r0 = np.exp(lv) * activity_u
                ll0 = np.log(r0) - r0 * first_time - np.log(-np.expm1(-r0 * horizon))
                return np.concatenate([ll, ll0])

        n = clicks.size + first_time.size
        return Survival(np.zeros(n), np.ones((n, 1)))


def _start(clicks: np.ndarray, last: np.ndarray, gap: np.ndarray, first_time: np.ndarray) -> np.ndarray:
    rate = (~last).sum() / max(gap[~last].sum(), 1e-9)
    churn = max(last.sum() / clicks.size, 1e-4)
    return np.array([np.log(rate), 0.5, np.log(churn), 0.5, np.log(0.3 / 0.7), float(clicks.mean())])


def fit_dynamics(session_user: np.ndarray, session_time: np.ndarray, clicks: np.ndarray, horizon: float,
                 n_users: int, *, frailty: bool = True, batch_window: float = 0.0) -> Dynamics:
    """Fit the dynamics from sessions sorted by (user, time); ``frailty=False``: every user's activity 1.

    ``batch_window`` (days, 0: none): requests are served at the end of their serving window, ``(floor(t
    / w) + 1) w``, and the next gap runs from there (``counterfeed.core.simulation``), so the gaps and
    the tail are measured from the serving time; a request at or after the horizon is not logged.

    Raises
    ------
    DataError
        When the log has no return visit at all (nothing identifies the return rate).
    """
    from counterfeed.errors import DataError

    su = session_user
    first, last, gap, tail, first_time, users = _layout(su, session_time, horizon, batch_window)
    if (~last).sum() == 0:
        raise DataError("the log has no user with a second session: nothing identifies the return rate")
    activity = np.ones(n_users)
    params = _start(clicks, last, gap, first_time)
    res = None
    for rnd in range(2 if frailty else 1):
        model = _Survival.make(clicks, first, last, gap, tail, first_time, horizon, activity[su], activity[users])
        model.exog_names[:] = []
        with warnings.catch_warnings():  # statsmodels' df bookkeeping does not apply to a 1-column exog
            warnings.simplefilter("ignore", UserWarning)
            res = model.fit(start_params=params, method="bfgs", maxiter=300, disp=0)
        params = np.asarray(res.params)
        if not frailty or rnd == 1:
            break
        activity = _frailty(params, su, clicks, first, last, gap, tail, first_time, users, horizon, n_users)
    lv, wr, lc, wc, lm, s0 = params
    se: dict[str, float] = {}
    try:
        bse = np.asarray(res.bse, float)
        se = {n: float(b) for n, b in zip(_Survival.names, bse) if np.isfinite(b)}
    except Exception:  # a singular Hessian: no standard errors, the bootstrap still gives intervals
        se = {}
    return Dynamics(visit_rate=float(np.exp(lv)), return_weight=float(wr), churn_rate=float(np.exp(lc)),
                    churn_weight=float(wc), memory=float(1 / (1 + np.exp(-lm))), baseline_satisfaction=float(s0),
                    activity=activity, se=se, loglik=float(res.llf))


def _layout(su, st, horizon, batch_window):
    """First/last session flags, gaps and tails from the serving times, first visit times, users seen."""
    first = np.r_[True, su[1:] != su[:-1]]
    last = np.r_[su[1:] != su[:-1], True]
    served = st if batch_window <= 0 else (np.floor(st / batch_window) + 1) * batch_window
    gap = np.where(last, 0.0, np.maximum(np.r_[st[1:], 0.0] - served, 1e-9))
    tail = np.where(last, np.maximum(horizon - served, 0.0), 0.0)
    return first, last, gap, tail, np.maximum(st[first], 1e-9), su[first]


def user_activity(dyn: Dynamics, session_user: np.ndarray, session_time: np.ndarray, clicks: np.ndarray,
                  horizon: float, n_users: int, batch_window: float = 0.0) -> np.ndarray:
    """(U,) the gamma-frailty activity of every user under fitted ``dyn`` (e.g. fitted on a subset of users)."""
    first, last, gap, tail, first_time, users = _layout(session_user, session_time, horizon, batch_window)
    params = (np.log(dyn.visit_rate), dyn.return_weight, np.log(max(dyn.churn_rate, 1e-12)), dyn.churn_weight,
              np.log(dyn.memory / max(1 - dyn.memory, 1e-12)), dyn.baseline_satisfaction)
    return _frailty(params, session_user, clicks, first, last, gap, tail, first_time, users, horizon, n_users)


def _frailty(params, su, clicks, first, last, gap, tail, first_time, users, horizon, n_users) -> np.ndarray:
    """Empirical-Bayes gamma frailty: per-user activity from observed vs expected visits."""
    lv, wr, lc, wc, lm, s0 = params
    m = 1 / (1 + np.exp(-lm))
    s = satisfaction_path(clicks, first, m, s0)
    lam = np.exp(lv + np.clip(wr * (s - s0), -30, 30))
    exposure = np.where(last, tail, gap)
    expected = np.bincount(su, weights=lam * exposure, minlength=n_users)
    expected[users] += np.exp(lv) * first_time
    visits = np.bincount(su, weights=(~last).astype(float), minlength=n_users)
    visits[users] += 1
    seen = expected > 0
    ratio = visits[seen] / expected[seen]
    excess = np.var(ratio) - np.mean(ratio / expected[seen])
    r = 1.0 / max(excess, 1e-3)
    act = np.ones(n_users)
    act[seen] = (visits[seen] + r) / (expected[seen] + r)
    return act / act[seen].mean()
