r"""Off-policy estimators of a target policy's value: expected reward per impression.

Slates are handled position-wise (independent IPS, Li et al. 2018; Kiyohara et al. 2022): every
logged (round, position) is a unit ``i`` with reward :math:`r_i`, logging probability
:math:`\pi_0(a_i \mid x_i, j_i)` of the shown item at that position, and importance weight

.. math:: w_i = \pi_e(a_i \mid x_i, j_i) / \pi_0(a_i \mid x_i, j_i),

optionally clipped, :math:`\bar w_i = \min(w_i, M)`. The estimand is
:math:`V(\pi_e) = \frac1N \sum_i E_{a \sim \pi_e(\cdot \mid x_i, j_i)}[r(x_i, a, j_i)]`, the target's
mean reward per impression over the logged (round, position) slots. Position-wise weighting is
unbiased when the reward at a position depends only on the item at that position (no interaction
between positions) and the logging policy gives every item the target may show there a positive
probability (common support). :math:`\hat q` is the reward model (cross-fitted by round) and
:math:`\hat q_i^{\pi_e} = \sum_a \pi_e(a \mid x_i, j_i)\,\hat q(x_i, a, j_i)`.

Each estimator is written as a sum of ratios :math:`\sum_t \sum_i A_{t,i} / \sum_i B_{t,i}`
(:math:`B = 1` for the plain means), which is what the interval code linearizes by round.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

__all__ = ["Units", "OffPolicyEstimator", "DirectMethod", "InverseProbabilityWeighting",
           "SelfNormalizedInverseProbabilityWeighting", "DoublyRobust", "SelfNormalizedDoublyRobust",
           "SwitchDoublyRobust", "DoublyRobustWithShrinkage", "ESTIMATORS", "make_estimator"]


@dataclass
class Units:
    """Per-unit inputs: raw weight ``w``, reward ``r``, ``q`` = q-hat of the logged item,
    ``dm`` = the target's expected q-hat, ``clip`` = M (None for no clipping), and the round code of
    each unit (``rnd``, in ``[0, n_rounds)``), for per-round sums.
    """

    w: np.ndarray
    r: np.ndarray
    rnd: np.ndarray
    n_rounds: int
    q: np.ndarray | None = None
    dm: np.ndarray | None = None
    clip: float | None = None

    def __post_init__(self) -> None:
        self._sums: dict[str, np.ndarray] = {}
        rnd = self.rnd
        self._starts = None
        if rnd.size and rnd[0] == 0 and rnd[-1] == self.n_rounds - 1:
            # rounds stored contiguously in code order: reduceat is several times faster than bincount
            d = np.diff(rnd)
            if bool(np.all(d >= 0)):
                starts = np.flatnonzero(d)
                if starts.size == self.n_rounds - 1:
                    self._starts = np.r_[0, starts + 1]

    def _replaced(self, keep: tuple[str, ...], **values: np.ndarray | None) -> "Units":
        """A shallow copy with ``values`` set; of the cached per-round sums only ``keep`` (those that do not
        depend on what changed) stay, and the residual is recomputed. The weight-only caches (clipped,
        switched, shrunk) stay valid: the weights never change."""
        import copy

        out = copy.copy(self)
        for name, value in values.items():
            setattr(out, name, value)
        out._sums = {k: v for k, v in self._sums.items() if k in keep}
        out.__dict__.pop("_resid", None)
        return out

    def with_model(self, q: np.ndarray, dm: np.ndarray) -> "Units":
        """The same units with another reward model's ``q`` and ``dm`` (weights and caches of ``w`` kept)."""
        return self._replaced(("count", "w", "wr"), q=q, dm=dm)

    def magnitudes(self) -> "Units":
        """The same units with ``r`` -> ``|r|``, ``q`` -> ``-|q|``, ``dm`` -> ``|dm|`` (weights kept): every
        built-in estimator's numerator adds ``r`` and ``dm`` and subtracts ``q``, so its terms on these units
        are the per-round sums of the magnitudes of what it adds up (the size its rounding error scales with)."""
        return self._replaced(("count", "w"), r=np.abs(self.r),
                              q=None if self.q is None else -np.abs(self.q),
                              dm=None if self.dm is None else np.abs(self.dm))

    def per_round(self, x: np.ndarray) -> np.ndarray:
        """Per-round sums of a per-unit array."""
        if self._starts is not None:
            return np.add.reduceat(x, self._starts)
        return np.bincount(self.rnd, x, minlength=self.n_rounds)

    def cached(self, key: object, make) -> np.ndarray:
        """A per-unit array derived from these units, computed once per key."""
        store = self.__dict__.setdefault("_derived", {})
        if key not in store:
            store[key] = make()
        return store[key]

    def rsum(self, key: str, make) -> np.ndarray:
        """Per-round sums of the per-unit array ``make(self)``, cached under ``key`` (shared by estimators)."""
        got = self._sums.get(key)
        if got is None:
            got = self._sums[key] = self.per_round(make(self))
        return got

    @property
    def counts(self) -> np.ndarray:
        got = self._sums.get("count")
        if got is None:
            if self._starts is not None:
                got = np.diff(np.r_[self._starts, self.rnd.size]).astype(np.float64)
            else:
                got = np.bincount(self.rnd, minlength=self.n_rounds).astype(np.float64)
            self._sums["count"] = got
        return got

    @property
    def resid(self) -> np.ndarray:
        """r - q-hat per unit (computed once)."""
        got = self.__dict__.get("_resid")
        if got is None:
            got = self.__dict__["_resid"] = self.r - self.q
        return got

    # the per-round sums the estimators share
    def wr(self) -> np.ndarray:
        return self.rsum("wr", lambda u: u.wc * u.r)

    def wsum(self) -> np.ndarray:
        return self.rsum("w", lambda u: u.wc)

    def wq(self) -> np.ndarray:
        return self.rsum("wq", lambda u: u.wc * u.q)

    def dmsum(self) -> np.ndarray:
        return self.rsum("dm", lambda u: u.dm)

    @property
    def wc(self) -> np.ndarray:
        """The clipped weights (computed once)."""
        cached = self.__dict__.get("_wc")
        if cached is None:
            cached = self.w if self.clip is None else np.minimum(self.w, self.clip)
            self.__dict__["_wc"] = cached
        return cached


#: per-round (numerator, denominator) sums; the estimate is sum_t sum(A_t) / sum(B_t)
Terms = list[tuple[np.ndarray, np.ndarray]]


class OffPolicyEstimator(ABC):
    """Base: ``terms(units)`` returns the per-round (numerator, denominator) sums of the estimate."""

    name: ClassVar[str] = ""
    needs_model: ClassVar[bool] = False
    uses_clip: ClassVar[bool] = True

    @abstractmethod
    def terms(self, u: Units) -> Terms:
        """Per-round (numerator, denominator) sums whose ratio of totals is the estimate."""

    def weights(self, u: Units) -> np.ndarray | None:
        """The weights this estimator effectively uses (for ESS and max-weight diagnostics)."""
        return u.wc

    def weights_used(self, u: Units) -> bool:
        """Whether any weight is nonzero (False: a model-based estimator is the direct method here)."""
        w = self.weights(u)
        return w is not None and bool(np.any(w))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class DirectMethod(OffPolicyEstimator):
    r"""DM: :math:`\hat V = \frac1N \sum_i \hat q_i^{\pi_e}`.

    Unbiased only when :math:`\hat q` is correct; no weights, so low variance. Reference: Beygelzimer &
    Langford (2009); Dudik, Erhan, Langford & Li (2014), "Doubly robust policy evaluation and optimization".
    """

    name = "dm"
    needs_model = True
    uses_clip = False

    def terms(self, u: Units) -> Terms:
        return [(u.dmsum(), u.counts)]

    def weights(self, u: Units) -> np.ndarray | None:
        return None


class InverseProbabilityWeighting(OffPolicyEstimator):
    r"""IPS: :math:`\hat V = \frac1N \sum_i \bar w_i r_i`.

    Unbiased under common support without clipping; clipping trades bias for variance. Reference:
    Horvitz & Thompson (1952); Li, Chu, Langford & Wang (2011); position-wise for slates: Li et al. (2018),
    "Offline evaluation of ranking policies with click models".
    """

    name = "ips"

    def terms(self, u: Units) -> Terms:
        return [(u.wr(), u.counts)]


class SelfNormalizedInverseProbabilityWeighting(OffPolicyEstimator):
    r"""SNIPS: :math:`\hat V = \sum_i \bar w_i r_i / \sum_i \bar w_i`.

    Consistent (bias O(1/N)), invariant to adding a constant to the reward, and equal to the plain mean
    reward when all weights are equal. Reference: Swaminathan & Joachims (2015), "The self-normalized
    estimator for counterfactual learning".
    """

    name = "snips"

    def terms(self, u: Units) -> Terms:
        return [(u.wr(), u.wsum())]


class DoublyRobust(OffPolicyEstimator):
    r"""DR: :math:`\hat V = \frac1N \sum_i [\hat q_i^{\pi_e} + \bar w_i (r_i - \hat q_i)]`.

    Unbiased if either the weights (common support, no clipping) or :math:`\hat q` is correct; with a
    cross-fitted :math:`\hat q` the variance is that of the weighted residuals. Reference: Dudik, Erhan,
    Langford & Li (2014), "Doubly robust policy evaluation and optimization".
    """

    name = "dr"
    needs_model = True

    def terms(self, u: Units) -> Terms:
        return [(u.dmsum() + u.wr() - u.wq(), u.counts)]


class SelfNormalizedDoublyRobust(OffPolicyEstimator):
    r"""SNDR: :math:`\hat V = \frac1N \sum_i \hat q_i^{\pi_e} + \sum_i \bar w_i (r_i - \hat q_i) / \sum_i \bar w_i`.

    DR with the correction self-normalized, as in SNIPS. Reference: Kallus & Uehara (2019),
    "Intrinsically efficient, stable, and bounded off-policy evaluation"; Open Bandit Pipeline
    (Saito et al. 2021).
    """

    name = "sndr"
    needs_model = True

    def terms(self, u: Units) -> Terms:
        return [(u.dmsum(), u.counts), (u.wr() - u.wq(), u.wsum())]


class SwitchDoublyRobust(OffPolicyEstimator):
    r"""Switch-DR: :math:`\hat V = \frac1N \sum_i [\hat q_i^{\pi_e} + 1\{w_i \le \tau\}\, w_i (r_i - \hat q_i)]`.

    Uses the DR correction where the raw weight is at most ``tau`` and falls back to the direct method
    where weights are larger; ``tau = inf`` is DR, ``tau = 0`` is DM. Reference: Wang, Agarwal & Dudik
    (2017), "Optimal and adaptive off-policy evaluation in contextual bandits".
    """

    name = "switch-dr"
    needs_model = True
    uses_clip = False

    def __init__(self, tau: float = 10.0):
        self.tau = float(tau)

    def terms(self, u: Units) -> Terms:
        corr = u.per_round(self.weights(u) * u.resid)
        return [(u.dmsum() + corr, u.counts)]

    def weights(self, u: Units) -> np.ndarray | None:
        return u.cached(("switch", self.tau), lambda: np.where(u.w <= self.tau, u.w, 0.0))

    def __repr__(self) -> str:
        return f"SwitchDoublyRobust(tau={self.tau})"


class DoublyRobustWithShrinkage(OffPolicyEstimator):
    r"""DR-OS: :math:`\hat V = \frac1N \sum_i [\hat q_i^{\pi_e} + \tilde w_i (r_i - \hat q_i)]`,
    :math:`\tilde w_i = \lambda w_i / (w_i^2 + \lambda)`.

    Optimistic shrinkage of the weights toward 0, minimizing a bound on the MSE; ``lam = inf`` is DR,
    ``lam = 0`` is DM. Reference: Su, Dimakopoulou, Krishnamurthy & Dudik (2020), "Doubly robust
    off-policy evaluation with shrinkage".
    """

    name = "dr-os"
    needs_model = True
    uses_clip = False

    def __init__(self, lam: float = 100.0):
        self.lam = float(lam)

    def shrunk(self, w: np.ndarray) -> np.ndarray:
        if np.isinf(self.lam):
            return w
        with np.errstate(over="ignore", invalid="ignore"):
            out = self.lam * w / (w * w + self.lam)
        big = w > 1e150  # w * w overflows: lam * w / (w^2 + lam) is lam / w to double precision there
        if big.any():
            out[big] = self.lam / w[big]
        out[w == 0] = 0.0  # lam = 0: 0 / 0 there, and the shrunk weight of a zero weight is 0
        return out

    def terms(self, u: Units) -> Terms:
        return [(u.dmsum() + u.per_round(self.weights(u) * u.resid), u.counts)]

    def weights(self, u: Units) -> np.ndarray | None:
        return u.cached(("shrink", self.lam), lambda: self.shrunk(u.w))

    def __repr__(self) -> str:
        return f"DoublyRobustWithShrinkage(lam={self.lam})"


ESTIMATORS: dict[str, type[OffPolicyEstimator]] = {
    cls.name: cls for cls in (DirectMethod, InverseProbabilityWeighting,
                              SelfNormalizedInverseProbabilityWeighting, DoublyRobust,
                              SelfNormalizedDoublyRobust, SwitchDoublyRobust, DoublyRobustWithShrinkage)
}


def make_estimator(spec: "str | OffPolicyEstimator", *, tau: float = 10.0, lam: float = 100.0) -> OffPolicyEstimator:
    """An estimator from its registry name (``dm, ips, snips, dr, sndr, switch-dr, dr-os``) or itself."""
    from counterfeed.errors import DataError

    if isinstance(spec, OffPolicyEstimator):
        return spec
    key = str(spec).strip().lower().replace("_", "-")
    key = {"switch": "switch-dr", "switchdr": "switch-dr", "dros": "dr-os"}.get(key, key)
    cls = ESTIMATORS.get(key)
    if cls is None:
        import difflib

        close = difflib.get_close_matches(key, list(ESTIMATORS), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else f"; expected one of {', '.join(ESTIMATORS)}"
        raise DataError(f"unknown OPE estimator '{spec}'{hint}")
    if cls is SwitchDoublyRobust:
        return cls(tau=tau)
    if cls is DoublyRobustWithShrinkage:
        return cls(lam=lam)
    return cls()
