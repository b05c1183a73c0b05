"""Durations in scenario files: ``'14d'``, ``'6h'``, ``'30m'``, ``'90s'``, ``'2w'`` or a number of days.

Re-exported by :mod:`counterfeed.core.scenario_schema`, where the schema's ``Duration`` types use them.
"""

from __future__ import annotations

import math
import re
from typing import Any

__all__ = ["parse_duration", "format_duration"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(w|d|h|m|min|s)\s*$")
_UNIT_DAYS = {"w": 7.0, "d": 1.0, "h": 1 / 24, "m": 1 / 1440, "min": 1 / 1440, "s": 1 / 86400}


def parse_duration(value: Any) -> float:
    """``'14d'``, ``'6h'``, ``'30m'``, ``'90s'``, ``'2w'`` or a number of days -> days (float)."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as '14d' or '6h'")
    if isinstance(value, (int, float)):
        days = float(value)
    elif isinstance(value, str):
        m = _DURATION.match(value)
        if not m:
            raise ValueError(f"expected a duration such as '14d', '6h', '30m' or a number of days, got {value!r}")
        days = float(m.group(1)) * _UNIT_DAYS[m.group(2)]
    else:
        got = "null (for none, give 0d)" if value is None else type(value).__name__
        raise ValueError(f"expected a duration such as '14d' or '6h', got {got}")
    if not math.isfinite(days) or days < 0 or days > 3650:
        raise ValueError(f"duration must be between 0 and 3650 days, got {value!r}")
    return days


def format_duration(days: float) -> str:
    if days == 0:
        return "0d"
    for unit, size in (("d", 1.0), ("h", 1 / 24), ("m", 1 / 1440)):
        n = days / size
        if abs(n - round(n)) < 1e-9:
            return f"{int(round(n))}{unit}"
    return f"{days * 86400:g}s"
