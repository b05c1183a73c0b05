"""core._raster (the report's own figures drawn with Pillow) and the two figures drawn with it."""

import math

import numpy as np
import pytest
from PIL import Image

from counterfeed.core import figures
from counterfeed.core._raster import limits, nice_ticks


@pytest.mark.parametrize("lo, hi, most, step, decimals", [
    (0.0, 10.0, 8, 2.0, 0), (-0.07, 0.83, 8, 0.2, 1), (0.0037, 0.0121, 8, 0.002, 3), (11.0, 16.5, 8, 1.0, 0),
    (-1.0, 2.0, 8, 0.5, 1), (0.0, 25.0, 8, 5.0, 0), (0.575, 0.7, 8, 0.02, 2), (0.575, 0.7, 6, 0.025, 3),
])
def test_nice_ticks_are_round_steps_inside_the_range(lo, hi, most, step, decimals):
    ticks, dec = nice_ticks(lo, hi, most)
    assert dec == decimals  # 2.5 x 10^k steps print one more decimal
    assert all(lo - 1e-12 <= t <= hi + 1e-12 for t in ticks) and 2 <= len(ticks) <= most + 1
    assert np.allclose(np.diff(ticks), step)
    assert all(abs(t / step - round(t / step)) < 1e-9 for t in ticks)


def test_limits_pad_the_finite_values_and_survive_degenerate_input():
    assert limits([0.0, 10.0, math.nan]) == pytest.approx((-0.5, 10.5))
    assert limits([]) == (-1.0, 1.0)
    lo, hi = limits([3.0, 3.0])
    assert lo < 3.0 < hi
    assert nice_ticks(1.0, 1.0) == ([1.0], 0)


def _ink(path):
    """The figure's pixels, (height, width, 3) ints."""
    return np.asarray(Image.open(path).convert("RGB")).astype(int)


def test_forest_draws_the_interval_point_and_truth_in_their_colours(tmp_path):
    colors = figures.arm_colors(["control", "treatment"], "control")
    rows = [dict(label="diff-in-means · treatment", arm="treatment", point=1.0, lower=0.5, upper=1.5, truth=1.2),
            dict(label="other", arm="treatment", point=math.nan, lower=math.nan, upper=math.nan, truth=None)]
    path = figures.forest(tmp_path / "f.png", "clicks: effect vs control", [("difference", rows)], colors, 0.95)
    img = _ink(path)
    assert img.shape[1] == int(round(9.5 * 110))

    def near(hex_color):
        rgb = np.array([int(hex_color[i:i + 2], 16) for i in (1, 3, 5)])
        return int((np.abs(img - rgb).sum(axis=2) < 30).sum())

    assert near(colors["treatment"]) > 200  # the interval and the point
    assert near(figures.TRUTH_COLOR) > 50  # the true effect's diamond


def test_timeseries_draws_every_panel_with_gaps_at_missing_values(tmp_path):
    days = list(range(10))
    vals = [1.0, 2.0, math.nan, 3.0, 2.5, 2.0, 1.0, 1.5, 2.0, 2.5]
    series = {m: {("ab", "control"): (days, vals), ("all", "control"): (days, vals[::-1])} for m in ("a", "b", "c")}
    colors = figures.arm_colors(["control"], "control")
    path = figures.timeseries(tmp_path / "t.png", series, ["control"], colors, pre_days=3)
    img = _ink(path)
    assert img.shape[:2] == (46 + 2 * int(3.0 * 110), 11 * 110)  # 3 panels on a 2-column grid
    assert (np.abs(img - [0xF1, 0xF3, 0xF5]).sum(axis=2) < 4).sum() > 1000  # the shaded pre-period
