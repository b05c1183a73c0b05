"""Every --json output is strict JSON (null, never NaN/Infinity): one writer, counterfeed._json."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from counterfeed import _json


def _strict_loads(text):
    def bad(token):
        raise ValueError(token)
    return json.loads(text, parse_constant=bad)


def test_non_finite_numbers_become_null():
    doc = {"a": float("nan"), "b": [np.float64("inf"), -math.inf, np.float32(1.5)], "c": np.int64(3),
           "d": np.array([1.0, np.nan]), "e": (np.bool_(True), None)}
    out = _strict_loads(_json.dumps(doc))
    assert out == {"a": None, "b": [None, None, 1.5], "c": 3, "d": [1.0, None], "e": [True, None]}


def test_dumps_refuses_what_it_cannot_make_strict():
    class Weird(float):
        pass
    # a float subclass is still cleaned; the allow_nan=False guard stays for anything that slips through
    assert _strict_loads(_json.dumps([Weird("nan")])) == [None]


@pytest.mark.parametrize("module", ["cli.py", "ope/cli.py", "sem/cli.py", "calibration/cli.py"])
def test_cli_modules_write_json_through_the_strict_writer(module):
    src = (Path(__file__).resolve().parents[2] / "counterfeed" / module).read_text()
    assert not re.search(r"\bjson\.dumps\(", src), f"{module} calls json.dumps directly; use counterfeed._json"
