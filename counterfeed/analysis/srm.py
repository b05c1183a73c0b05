"""Sample ratio mismatch (SRM): is the observed split of users across arms the one configured?

Pearson's chi-square goodness-of-fit test of the observed counts ``O_a`` against the expected
counts ``E_a = N w_a / sum(w)`` (``N`` users in total, configured weights ``w``):

    X^2 = sum_a (O_a - E_a)^2 / E_a,   df = (number of arms with w_a > 0) - 1,

p-value ``P(chi2_df >= X^2)``. A mismatch almost always means a bug in assignment or logging
(users lost or duplicated in one arm), so every estimate of the experiment is suspect. The usual
threshold is very small (0.001) because the test is run on every experiment.

Reference: Fabijan, A. et al. (2019). Diagnosing sample ratio mismatch in online controlled
experiments. KDD '19. Kohavi, R., Tang, D. and Xu, Y. (2020). Trustworthy Online Controlled
Experiments, ch. 21.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from counterfeed._lazy import lazy_module
from counterfeed.errors import DataError

special = lazy_module("scipy.special")  # imported on first use: keeps start-up light (not scipy.stats)

__all__ = ["srm_check"]


def srm_check(counts: Mapping[str, int], split: Mapping[str, float],
              threshold: float = 0.001) -> dict[str, Any]:
    """Chi-square test of observed arm sizes against the configured split.

    Parameters
    ----------
    counts : users observed per arm (arm name -> count).
    split : configured traffic weights per arm (need not sum to 1; they are normalized).
    threshold : flag a mismatch when the p-value is below it.

    Returns
    -------
    dict with ``statistic``, ``df``, ``p_value``, ``flagged``, ``threshold``, ``total``,
    ``observed`` and ``expected`` (arm -> count), all plain Python numbers.

    An arm with weight 0 and no users is left out; an arm with weight 0 but some users is a
    certain mismatch (``p_value`` 0).
    """
    if not 0.0 < threshold < 1.0:
        raise DataError(f"srm threshold must be in (0, 1), got {threshold}")
    if set(counts) != set(split):
        raise DataError(f"srm: arms in counts {sorted(counts)} differ from arms in split {sorted(split)}")
    for arm, c in counts.items():
        if not float(c).is_integer() or c < 0:
            raise DataError(f"srm: count of arm '{arm}' must be a non-negative integer, got {c!r}")
    for arm, w in split.items():
        if not math.isfinite(w) or w < 0:
            raise DataError(f"srm: weight of arm '{arm}' must be a finite non-negative number, got {w!r}")
    total = int(sum(int(c) for c in counts.values()))
    wsum = float(sum(split.values()))
    if total == 0:
        raise DataError("srm: no users in any arm")
    if wsum <= 0:
        raise DataError("srm: the split weights sum to 0")
    arms = list(split)
    observed = {a: int(counts[a]) for a in arms}
    expected = {a: total * float(split[a]) / wsum for a in arms}
    used = [a for a in arms if expected[a] > 0]
    impossible = [a for a in arms if expected[a] == 0 and observed[a] > 0]
    df = max(len(used) - 1, 0)
    if impossible:
        statistic, p_value = math.inf, 0.0
    elif df == 0:
        statistic, p_value = 0.0, 1.0
    else:
        statistic = float(sum((observed[a] - expected[a]) ** 2 / expected[a] for a in used))
        p_value = float(special.chdtrc(df, statistic))  # chi-square survival (= scipy.stats.chi2.sf)
    return {
        "statistic": statistic,
        "df": int(df),
        "p_value": p_value,
        "flagged": bool(p_value < threshold),
        "threshold": float(threshold),
        "total": total,
        "observed": observed,
        "expected": expected,
    }
