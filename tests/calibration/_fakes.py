"""Replication functions with a known answer, for testing the calibration machinery alone.

``normal_replicate`` draws ``population.users`` Gaussian outcomes split over two arms, the treatment
shifted by its arm option ``lift`` (default 0), and returns a z-test estimate (with p-value) and a
t-interval-only estimate (no p-value). Exact normal theory, so coverage is the nominal level.
Environment: ``CF_FAKE_SLEEP`` seconds to sleep, ``CF_FAKE_LOG`` a file to append each seed to
(O_APPEND, one line per computed replication), used by the resume test.
"""

from __future__ import annotations

import math
import os
import time

from scipy.stats import norm, t

from counterfeed.core.randomness import Keys


def normal_replicate(scenario_data: dict, seed: int) -> list[dict]:
    arms = list(scenario_data["experiment"]["arms"])
    control, treatment = arms[0], arms[1]
    opts = scenario_data["experiment"]["arms"][treatment]
    lift = float(opts.get("lift", 0.0))
    if opts.get("fail_every") and seed % int(opts["fail_every"]) == 0:
        raise ValueError(f"deliberate failure for seed {seed}")
    if os.environ.get("CF_FAKE_SLEEP"):
        time.sleep(float(os.environ["CF_FAKE_SLEEP"]))
    n = int(scenario_data["population"]["users"]) // 2
    rng = Keys(seed).numpy_generator("fake")
    y0 = rng.normal(0.0, 1.0, n)
    y1 = rng.normal(lift, 1.0, n)
    diff = float(y1.mean() - y0.mean())
    se = math.sqrt(y0.var(ddof=1) / n + y1.var(ddof=1) / n)
    level = float(scenario_data.get("level", 0.95))
    z = float(norm.ppf(0.5 + level / 2))
    tq = float(t.ppf(0.5 + level / 2, 2 * n - 2))
    common = dict(metric="y", arm=treatment, control=control, estimand="difference", segment=None,
                  level=level, truth=lift)
    out = [
        dict(estimator="z-test", point=diff, lower=diff - z * se, upper=diff + z * se,
             p_value=float(2 * norm.sf(abs(diff / se))), **common),
        dict(estimator="t-interval", point=diff, lower=diff - tq * se, upper=diff + tq * se,
             p_value=None, **common),
    ]
    for e in out:
        e["covered"] = bool(e["lower"] <= lift <= e["upper"])
    if os.environ.get("CF_FAKE_LOG"):
        fd = os.open(os.environ["CF_FAKE_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{seed}\n".encode())
        finally:
            os.close(fd)
    return out


from counterfeed.core.scenario import Scenario  # noqa: E402


def fake_scenario(lift: float = 0.0, users: int = 200, seed: int = 5, **arm_options) -> Scenario:
    """A valid scenario for the fake replicate (its plugins are never resolved)."""
    return Scenario.from_dict({
        "name": "fake", "seed": seed, "population": {"users": users},
        "experiment": {"arms": {"a": {"recommender": "random"},
                                "b": {"recommender": "random", "lift": lift, **arm_options}}},
    })
