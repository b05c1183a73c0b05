"""The tiny prior grammar: ``normal(0, 1)``, ``halfnormal(2)``, ``lognormal(0, 0.5)``,
``exponential(1)``, ``uniform(-1, 1)``, ``beta(2, 2)``. Parsed with a regular expression, never eval."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from counterfeed.sem.errors import SEMModelError

__all__ = ["Prior", "parse_prior", "FAMILIES"]

FAMILIES = {
    "normal": ("mu", "sigma"),
    "halfnormal": ("sigma",),
    "lognormal": ("mu", "sigma"),
    "exponential": ("lam",),
    "uniform": ("lower", "upper"),
    "beta": ("alpha", "beta"),
}
_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_PRIOR_RE = re.compile(rf"^\s*([a-z]+)\s*\(\s*({_NUM}(?:\s*,\s*{_NUM})*)?\s*\)\s*$")


@dataclass(frozen=True)
class Prior:
    family: str
    args: tuple[float, ...]

    def __str__(self) -> str:
        return f"{self.family}({', '.join(f'{a:g}' for a in self.args)})"

    @property
    def positive(self) -> bool:
        return self.family in ("halfnormal", "lognormal", "exponential") or (
            self.family == "uniform" and self.args[0] >= 0)

    def scaled(self, f):
        """The prior of theta/f when this is the prior of theta (f > 0; numbers or tensors)."""
        a = self.args
        if self.family == "normal":
            return ("normal", (a[0] / f, a[1] / f))
        if self.family == "halfnormal":
            return ("halfnormal", (a[0] / f,))
        if self.family == "lognormal":
            import numpy as np
            log = np.log if isinstance(f, (int, float)) else __import__("pytensor.tensor").tensor.log
            return ("lognormal", (a[0] - log(f), a[1]))
        if self.family == "exponential":
            return ("exponential", (a[0] * f,))
        if self.family == "uniform":
            return ("uniform", (a[0] / f, a[1] / f))
        return (self.family, a)


def parse_prior(text: str, *, where: str = "prior") -> Prior:
    """Parse one prior spec, e.g. ``"normal(0, 1)"``; raises SEMModelError with the reason."""
    if isinstance(text, Prior):
        return text
    m = _PRIOR_RE.match(str(text))
    if not m:
        raise SEMModelError(f"{where}: cannot parse prior '{text}'; expected e.g. 'normal(0, 1)' "
                            f"with one of {', '.join(FAMILIES)}")
    family = m.group(1)
    if family not in FAMILIES:
        raise SEMModelError(f"{where}: unknown prior family '{family}'; expected one of "
                            f"{', '.join(FAMILIES)}")
    args = tuple(float(x) for x in re.split(r"\s*,\s*", m.group(2))) if m.group(2) else ()
    names = FAMILIES[family]
    if len(args) != len(names):
        raise SEMModelError(f"{where}: {family} takes {len(names)} argument(s) "
                            f"({', '.join(names)}), got {len(args)} in '{text}'")
    if any(not math.isfinite(x) for x in args):
        raise SEMModelError(f"{where}: prior arguments must be finite in '{text}'")
    bad = {
        "normal": args[-1] <= 0 if family == "normal" else False,
        "halfnormal": family == "halfnormal" and args[0] <= 0,
        "lognormal": family == "lognormal" and args[1] <= 0,
        "exponential": family == "exponential" and args[0] <= 0,
        "uniform": family == "uniform" and args[0] >= args[1],
        "beta": family == "beta" and min(args) <= 0,
    }
    if bad[family]:
        raise SEMModelError(f"{where}: invalid arguments in '{text}' (scales and rates must be "
                            f"positive, uniform needs lower < upper)")
    return Prior(family, args)
