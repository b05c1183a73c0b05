"""Off-policy value of a per-user treatment rule from a randomized experiment: IPW and doubly robust
estimates with influence-function intervals and cross-fitted outcome models.

A rule ``pi`` gives each user ``i`` an arm ``pi_i``. From the experiment's data (arm ``A_i`` drawn with
known probability ``p_i(a)``, outcome ``Y_i``, covariates ``X_i``) its value
``V(pi) = E[Y(pi(X))]`` is estimated by the mean of a per-user score ``Gamma_i``:

- inverse propensity weighting (IPW): ``Gamma_i = 1{A_i = pi_i} Y_i / p_i(pi_i)``;
- doubly robust (DR, augmented IPW): ``Gamma_i = mu_{pi_i}(X_i) + 1{A_i = pi_i} (Y_i - mu_{pi_i}(X_i)) /
  p_i(pi_i)``, where ``mu_a(x) = E[Y | A = a, X = x]`` is fitted by cross-fitting: the users are
  split into ``folds`` keyed folds and each fold's ``mu_a`` comes from a model fitted on the other
  folds' users of arm ``a`` (scikit-learn's ``HistGradientBoostingRegressor``).

Both are unbiased when the probabilities are the true assignment probabilities (a randomized
experiment); DR has smaller variance when ``mu`` predicts ``Y``. The interval is
``mean(Gamma) +- z * sd(Gamma) / sqrt(n)`` (the influence-function variance; Dudik, Langford & Li
2011, "Doubly Robust Policy Evaluation and Learning", ICML; Athey & Wager 2021, "Policy Learning With
Observational Data", Econometrica 89(1)). Differences between two rules (``gain``) use the difference
of their scores, so the interval accounts for their correlation.

Two estimands, two intervals:

- the **population value** ``V(pi) = E[Y(pi(X))]`` over users drawn afresh: the influence-function
  interval above (:meth:`PolicyValue.from_scores`);
- the **realised value for these users**, ``V_n = mean_i Y_i(pi_i)`` with the users' potential outcomes
  held fixed (the finite-population, design-based estimand: Neyman 1923; Imbens & Rubin 2015,
  "Causal Inference", ch. 6): only the assignment is random. The DR error is then
  ``Gamma_i - Y_i(pi_i) = (1{A_i = pi_i} / p_i(pi_i) - 1)(Y_i(pi_i) - mu_{pi_i}(X_i))``, mean zero
  with variance ``(1 - p_i) / p_i * r_i^2``, and only ONE potential outcome of each user enters, so
  ``sum_i 1{A_i = pi_i} (1 - p_i) / p_i^2 r_i^2 / n^2`` is an unbiased (Horvitz-Thompson) estimate of
  the variance (:func:`design_value`); IPW is the case ``mu = 0``. Valid without interference (a
  user's outcome depends on their own arm only), which a world with frozen models satisfies.

Honesty condition: the interval is valid for a rule fixed before looking at the users it is
evaluated on. A rule learned from the same experiment must come from out-of-fold predictions (each
user's predicted effect from a model that did not see that user), as CATE estimators' ``user_effects``
are; a rule fitted in-sample makes the IPW/DR estimate optimistic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from counterfeed.core.scoring import interval_quantile
from counterfeed.errors import DataError


__all__ = ["PolicyValue", "PolicyScores", "policy_scores", "cross_fit_outcomes", "design_value"]


@dataclass(frozen=True)
class PolicyValue:
    """A value estimate: ``point``, ``lower``, ``upper`` at ``level``, its standard error and ``n``."""

    point: float
    lower: float
    upper: float
    se: float
    level: float
    n: int

    @classmethod
    def from_scores(cls, scores: np.ndarray, level: float) -> "PolicyValue":
        """Mean of ``scores`` with the normal interval of its influence-function standard error."""
        n = int(scores.size)
        if n < 2:
            raise DataError(f"a policy value needs at least two users, got {n}")
        point = float(scores.mean())
        se = float(scores.std(ddof=1) / np.sqrt(n))
        z = interval_quantile(level)
        return cls(point, point - z * se, point + z * se, se, float(level), n)

    def covers(self, value: float) -> bool:
        return bool(self.lower <= value <= self.upper)

    def to_dict(self) -> dict[str, float | int]:
        return {"point": self.point, "lower": self.lower, "upper": self.upper, "se": self.se,
                "level": self.level, "n": self.n}


def design_value(scores: np.ndarray, rule: np.ndarray, arm: np.ndarray, y: np.ndarray, probabilities: np.ndarray,
                 mu: np.ndarray | None, level: float) -> PolicyValue:
    """The mean of ``scores`` (``(n,)`` DR scores of ``rule``, or IPW ones with ``mu=None``) with the
    design-based interval for the realised value of these users (module docstring): standard error
    ``sqrt(sum_i 1{A_i = pi_i} (1 - p_i) / p_i^2 (Y_i - mu_{pi_i}(X_i))^2) / n``. Shapes as in
    :func:`policy_scores`; raises DataError for fewer than two users."""
    n = int(scores.size)
    if n < 2:
        raise DataError(f"a policy value needs at least two users, got {n}")
    rows = np.arange(n)
    p = probabilities[rows, rule]
    r = y - (mu[rows, rule] if mu is not None else 0.0)
    hit = arm == rule
    se = float(np.sqrt(np.sum(hit * (1 - p) / p**2 * r * r)) / n)
    point = float(scores.mean())
    z = interval_quantile(level)
    return PolicyValue(point, point - z * se, point + z * se, se, float(level), n)


@dataclass(frozen=True)
class PolicyScores:
    """Per-user IPW and DR scores of one rule (``(n,)`` each); see the module docstring."""

    ipw: np.ndarray
    dr: np.ndarray


def cross_fit_outcomes(x: np.ndarray, y: np.ndarray, arm: np.ndarray, n_arms: int, folds: int,
                       rng: np.random.Generator) -> np.ndarray:
    """(n, n_arms) cross-fitted ``mu_a(x_i)``: each user's prediction from models fitted on the other
    folds' users of arm ``a``.

    A fold-arm cell with fewer than 10 training users falls back to the mean outcome of those users
    (0 when there are none), so tiny arms do not fail. Models: scikit-learn
    ``HistGradientBoostingRegressor`` (``max_iter=100``, ``learning_rate=0.1``, ``min_samples_leaf=20``,
    a fixed ``random_state`` drawn from ``rng``), deterministic given ``rng``.
    """
    from sklearn.ensemble import HistGradientBoostingRegressor

    n = y.size
    fold = rng.permutation(np.arange(n) % folds)
    mu = np.zeros((n, n_arms))
    for f in range(folds):
        test = fold == f
        for a in range(n_arms):
            train = (fold != f) & (arm == a)
            if train.sum() < 10 or x.shape[1] == 0:
                mu[test, a] = float(y[train].mean()) if train.any() else 0.0
                continue
            model = HistGradientBoostingRegressor(max_iter=100, learning_rate=0.1, min_samples_leaf=20,
                                                  random_state=int(rng.integers(2**31 - 1)))
            model.fit(x[train], y[train])
            mu[test, a] = model.predict(x[test])
    return mu


def policy_scores(rule: np.ndarray, arm: np.ndarray, y: np.ndarray, probabilities: np.ndarray,
                  mu: np.ndarray) -> PolicyScores:
    """IPW and DR scores of ``rule`` (``(n,)`` arm index per user).

    ``arm`` (n,) the arm each user had in the experiment, ``y`` (n,) the outcome, ``probabilities``
    (n, n_arms) each user's assignment probabilities, ``mu`` (n, n_arms) cross-fitted outcome
    predictions (:func:`cross_fit_outcomes`). Raises DataError when a user's rule arm had probability
    0 (the rule's value is then not identified from the experiment).
    """
    rows = np.arange(y.size)
    p = probabilities[rows, rule]
    if np.any(p <= 0):
        raise DataError(f"{int(np.sum(p <= 0))} users get an arm they could not be assigned in the "
                        "experiment: the rule's value is not identified")
    hit = (arm == rule).astype(np.float64)
    m = mu[rows, rule]
    return PolicyScores(ipw=hit * y / p, dr=m + hit * (y - m) / p)
