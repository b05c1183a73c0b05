"""The ratios benchmarks/end_to_end.py prints: run by run over interleaved runs, with an interval."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
from scipy import stats

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "end_to_end.py"


def _module():
    spec = importlib.util.spec_from_file_location("end_to_end_benchmark", _PATH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_paired_ratio_is_the_geometric_mean_with_a_t_interval_of_the_log_ratios():
    e2e = _module()
    base = [{"sessions": 100.0, "wall_s": w} for w in (2.0, 2.5, 2.2, 3.0)]
    now = [{"sessions": 100.0, "wall_s": w} for w in (1.0, 1.1, 1.2, 1.3)]
    logs = np.log([b["wall_s"] / n["wall_s"] for n, b in zip(now, base)])
    half = stats.t.ppf(0.975, 3) * logs.std(ddof=1) / 2.0
    want = f"{math.exp(logs.mean()):.2f}x [{math.exp(logs.mean() - half):.2f}, {math.exp(logs.mean() + half):.2f}]"
    assert e2e.paired_ratio(now, base, e2e._RATES[0]) == want + " over 4 pairs"
    # run i against run i, not sorted: a slow pair stays a pair
    assert e2e.paired_ratio(now[::-1], base, e2e._RATES[0]) != e2e.paired_ratio(now, base, e2e._RATES[0])
    # one pair is a ratio without an interval, never a zero-width one
    assert e2e.paired_ratio(now[:1], base[:1], e2e._RATES[0]) == "2.00x (one pair: no interval)"
