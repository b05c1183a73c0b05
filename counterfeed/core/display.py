"""Numbers for people: the one formatting of values in the report, the run summary and plugins'
report sections (no heavy imports, so any plugin module can use it)."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["num", "fmt", "fmt_p", "repeated_estimators", "estimator_label"]


def num(x: Any) -> float | None:
    """A finite float, or None (None, NaN, inf, booleans and non-numbers all become None)."""
    if x is None or isinstance(x, bool):
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def fmt(x: Any, signed: bool = False) -> str:
    """4 significant digits, thousands separators from 10,000 up to 1e15 (scientific above, and below 0.001);
    "—" for none."""
    v = num(x)
    if v is None:
        return "—"
    if abs(v) >= 1e15:  # beyond this, thousands separators would print hundreds of digits
        s = f"{v:.4g}"
    elif v != 0 and abs(v) >= 1e4:
        s = f"{v:,.0f}"
    elif v != 0 and abs(v) < 1e-3:
        s = f"{v:.2e}"
    else:
        s = f"{v:.4g}"
    return ("+" + s) if signed and v > 0 else s


def _levels(levels: Any, default: float) -> list[float]:
    return sorted({round(num(v) or default, 6) for v in levels} or {round(default, 6)})


def levels_differ(levels: Any, default: float) -> bool:
    """Whether a set of estimates has more than one interval level (analyses that set their own)."""
    return len(_levels(levels, default)) > 1


def level_text(levels: Any, default: float) -> str:
    """The interval level(s) of a set of estimates as a percentage: ``"95%"``, or ``"80% and 95%"``
    when analyses set their own ``level`` (an estimate's ``None`` level is ``default``)."""
    got = _levels(levels, default)
    text = [f"{v:.0%}" if abs(v * 100 - round(v * 100)) < 1e-6 else f"{v:.1%}" for v in got]
    return text[0] if len(text) == 1 else ", ".join(text[:-1]) + " and " + text[-1]


def fmt_p(x: Any) -> str:
    """A p-value: three decimals, or "< 0.001"; "—" for none."""
    v = num(x)
    if v is None:
        return "—"
    return "< 0.001" if v < 0.001 else f"{v:.3f}"


def _entry(x: Any) -> int | None:
    """An analysis entry index as an int (None, NaN and non-numbers: None)."""
    v = num(x)
    return None if v is None else int(v)


def repeated_estimators(rows: Any) -> set[str]:
    """The estimators that more than one ``analysis`` entry ran among ``rows`` (pairs of estimator name and
    entry index, e.g. from estimates or calibration records): their rows need the entry to be told apart."""
    entries: dict[str, set[int]] = {}
    for name, entry in rows:
        if _entry(entry) is not None:
            entries.setdefault(str(name), set()).add(_entry(entry))
    return {name for name, got in entries.items() if len(got) > 1}


def estimator_label(name: Any, entry: Any, repeated: Any = ()) -> str:
    """``name``, or ``"name (analysis[i])"`` when ``name`` is among ``repeated``
    (:func:`repeated_estimators`): the estimator as tables show it."""
    i = _entry(entry)
    return f"{name} (analysis[{i}])" if str(name) in repeated and i is not None else str(name)
