"""adaptive-ipw and a zero assignment probability.

``experiment.allocation.floor: 0`` let Thompson sampling give 156 of 500 users probability 0 of the
control; adaptive-ipw then covered 61% at 95%, silently, with numpy divide-by-zero warnings. Now
(a) validate and run reject floor 0 at ``experiment.allocation.floor`` when adaptive-ipw is in the
analysis (a pure bandit keeps it), and (b) probabilities that still hold a 0 give a "not identified"
estimate with no interval and no numpy warning."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from estimator_data import RATIO_METRICS, analysis, frame, ratio_frame
from counterfeed.cli import main
from counterfeed.errors import DataError
from counterfeed.plugins.estimators.adaptive import NOT_IDENTIFIED, AdaptiveIPW, ipw_difference

pytestmark = pytest.mark.filterwarnings("error")  # a leaked numpy RuntimeWarning fails the test

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "scenarios" / "adaptive_thompson.yaml"


def _cli(capsys, *args: str) -> tuple[int, str]:
    try:
        rc = main(list(args))
    except SystemExit as exc:
        rc = exc.code
    return int(rc or 0), capsys.readouterr().err


@pytest.fixture
def floor0(tmp_path, monkeypatch):
    """adaptive_thompson.yaml with ``floor: 0`` written in the file; returns (path, line of the floor)."""
    monkeypatch.chdir(tmp_path)
    text = SCENARIO.read_text().replace("floor: 0.1}", "floor: 0}")
    assert "floor: 0}" in text
    path = tmp_path / "floor0.yaml"
    path.write_text(text)
    line = next(i for i, s in enumerate(text.splitlines(), 1) if "floor: 0}" in s)
    return path, line


def test_validate_rejects_floor_zero_with_adaptive_ipw_at_the_field(floor0, capsys):
    path, line = floor0
    rc, err = _cli(capsys, "validate", str(path))
    assert rc == 2, err
    assert f"floor0.yaml:{line}: experiment.allocation.floor: " in err, err
    assert "adaptive-ipw" in err and "not identified" in err


def test_run_rejects_it_before_simulating_with_the_same_message(floor0, capsys):
    path, _ = floor0
    _, err_v = _cli(capsys, "validate", str(path))
    rc, err_r = _cli(capsys, "run", str(path), "--quiet")
    assert rc == 2
    assert err_r.splitlines()[0] == err_v.splitlines()[0]
    assert not list(Path.cwd().glob("runs/*")), "run wrote output"


def test_set_on_the_command_line_is_located_at_set(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    shutil.copy(SCENARIO, tmp_path / "s.yaml")
    rc, err = _cli(capsys, "validate", "s.yaml", "--set", "experiment.allocation.floor=0")
    assert rc == 2 and "--set: experiment.allocation.floor: " in err, err


def test_a_pure_bandit_keeps_floor_zero(floor0, capsys):
    path, _ = floor0
    rc, err = _cli(capsys, "validate", str(path), "--set",
                   "analysis=[{estimator: diff-in-means, metrics: [clicks]}]")
    assert rc == 0 and "floor" not in err, err


def _data(y_c, y_t, p_control, metrics=None, df=None):
    d = analysis(df if df is not None else frame({"control": np.asarray(y_c, float), "treatment": np.asarray(y_t, float)}),
                 metrics)
    p_control = np.asarray(p_control, float)
    d.assignment_probabilities = np.column_stack([p_control, 1.0 - p_control])
    d.adaptive_assignment = True
    return d


def test_a_zero_probability_gives_no_interval_and_says_not_identified():
    rng = np.random.default_rng(1)
    y_c, y_t = rng.normal(1, 1, 40), rng.normal(2, 1, 60)
    p_c = np.full(100, 0.4)
    p_c[70:] = 0.0  # 30 treated users could never have been in the control
    e, = AdaptiveIPW().estimate(_data(y_c, y_t, p_c))
    assert math.isnan(e.point) and (e.lower, e.upper) == (-math.inf, math.inf) and e.p_value is None
    assert e.diagnostics["identified"] is False and e.diagnostics["n_zero_probability"] == 30
    assert e.diagnostics["warnings"][0].startswith(NOT_IDENTIFIED) and NOT_IDENTIFIED == "not identified"
    doc = json.loads(json.dumps(_json_safe(e.to_dict()), allow_nan=False))
    assert doc["lower"] is None and doc["upper"] is None and doc["p_value"] is None


def test_the_same_data_with_positive_probabilities_is_estimated():
    rng = np.random.default_rng(1)
    y_c, y_t = rng.normal(1, 1, 40), rng.normal(2, 1, 60)
    e, = AdaptiveIPW().estimate(_data(y_c, y_t, np.full(100, 0.4)))
    assert math.isfinite(e.point) and math.isfinite(e.lower) and math.isfinite(e.upper)
    assert e.diagnostics.get("identified", True) and "warnings" not in e.diagnostics


@pytest.mark.parametrize("normalized", [False, True])
def test_ratio_metrics_and_hajek_weights_are_not_identified_too(normalized):
    rng = np.random.default_rng(2)
    df = ratio_frame(rng, 30)
    p_c = np.full(60, 0.5)
    p_c[5] = 1.0  # a control user with probability 0 of the treatment
    est = AdaptiveIPW(normalized=normalized).estimate(_data(None, None, p_c, RATIO_METRICS, df))
    assert est and all(e.diagnostics["identified"] is False and math.isnan(e.point) for e in est)


def test_nan_probability_is_not_identified():
    p_c = np.full(12, 0.5)
    p_c[0] = np.nan
    e, = AdaptiveIPW().estimate(_data(np.arange(6.0), np.arange(6.0) + 1, p_c))
    assert e.diagnostics["identified"] is False


def test_ipw_difference_weights_without_dividing_by_zero():
    y = np.array([1.0, 2.0, 3.0, 4.0])
    arm = np.array([0, 0, 1, 1])
    p_t = np.array([0.0, 0.5, 0.5, 0.5])  # user 0, in the control, had probability 0 of the treatment
    tau, phi = ipw_difference(y, None, arm, p_t, 1.0 - p_t, 1, 0)
    assert tau == pytest.approx((3 + 4) / 0.5 / 4 - (1 / 1.0 + 2 / 0.5) / 4)
    assert np.all(np.isfinite(phi))
    with pytest.raises(DataError, match="not above 0"):
        ipw_difference(y, None, arm, 1.0 - p_t, p_t, 1, 0)  # user 0 got the control with probability 0


def _json_safe(d):
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}
