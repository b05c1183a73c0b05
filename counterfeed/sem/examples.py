"""Reference models with known truth, used by the tests and benchmarks."""

from __future__ import annotations

import numpy as np

__all__ = ["MEDIATION_MODEL", "MEDIATION_TRUTH", "HS39_MODEL", "simulate_mediation"]

HS39_MODEL = "visual =~ x1 + x2 + x3\ntextual =~ x4 + x5 + x6\nspeed =~ x7 + x8 + x9"

MEDIATION_MODEL = """
engagement =~ clicks + dwell + sessions
engagement ~ a*treatment
retained   ~ b*engagement + c*treatment
indirect := a*b
total    := c + a*b
"""

#: True values (original units: dwell in seconds) keyed like SEMFit.summary's index.
MEDIATION_TRUTH = {
    "engagement=~dwell": 30.0, "engagement=~sessions": 0.8,
    "engagement~treatment": 0.3, "retained~engagement": 0.5, "retained~treatment": 0.1,
    "clicks~~clicks": 0.5, "dwell~~dwell": 450.0, "sessions~~sessions": 0.4,
    "retained~~retained": 0.5, "engagement~~engagement": 1.0,
    "clicks~1": 3.0, "dwell~1": 120.0, "sessions~1": 2.0, "retained~1": 1.0,
    "indirect": 0.15, "total": 0.25,
}


def simulate_mediation(n: int, rng: np.random.Generator):
    """n users, half treated, from the mediation SEM with MEDIATION_TRUTH."""
    import pandas as pd

    t = MEDIATION_TRUTH
    treat = (rng.permutation(n) < n // 2).astype(float)
    eng = t["engagement~treatment"] * treat + rng.normal(0, np.sqrt(t["engagement~~engagement"]), n)
    out = {"treatment": treat}
    for name, lam in (("clicks", 1.0), ("dwell", t["engagement=~dwell"]),
                      ("sessions", t["engagement=~sessions"])):
        out[name] = t[f"{name}~1"] + lam * eng + rng.normal(0, np.sqrt(t[f"{name}~~{name}"]), n)
    out["retained"] = (t["retained~1"] + t["retained~engagement"] * eng
                       + t["retained~treatment"] * treat
                       + rng.normal(0, np.sqrt(t["retained~~retained"]), n))
    return pd.DataFrame(out)
