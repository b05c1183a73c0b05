"""Strict JSON for every ``--json`` output and every JSON file counterfeed writes.

RFC 8259 has no NaN or Infinity: :func:`clean` turns non-finite floats into ``null`` (recursively,
NumPy scalars and arrays included) and :func:`dumps` refuses anything else that would not parse
with a strict JSON parser (``allow_nan=False``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from pathlib import Path
from typing import Any

__all__ = ["clean", "dumps", "json_default"]


def json_default(o: Any) -> Any:
    """``default=`` hook for :func:`json.dumps`: NumPy values as Python values (non-finite -> None)."""
    np = sys.modules.get("numpy")  # no NumPy value can exist unless NumPy was imported: keep start-up light
    if np is None:
        return str(o)
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return None if not math.isfinite(float(o)) else float(o)
    if isinstance(o, np.bool_):
        return bool(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    return str(o)


def clean(o: Any) -> Any:
    """A copy of ``o`` with NaN/inf -> None, NumPy values -> Python values, dataclasses -> dicts."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {str(k): clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [clean(v) for v in o]
    np = sys.modules.get("numpy")
    if np is not None and isinstance(o, (np.floating, np.integer, np.bool_, np.ndarray)):
        return clean(json_default(o))
    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        return clean(dataclasses.asdict(o))
    return o


def dumps(obj: Any, **kwargs: Any) -> str:
    """Strict JSON text of ``obj`` (``null`` for NaN/inf; never ``NaN`` or ``Infinity``)."""
    kwargs.setdefault("default", json_default)
    return json.dumps(clean(obj), allow_nan=False, **kwargs)
