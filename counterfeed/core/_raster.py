"""A small 2-D chart canvas drawn with Pillow: axes, nice ticks, lines, markers, text, PNG out.

The run report's own figures (``figures.forest``, ``figures.timeseries``) are drawn with it: the
quickstart's 8 figures took about 1.7 CPU s in matplotlib (layout passes, a second draw for the tight
bounding box, PNG encoding) plus 0.35 s to import it, a fifth of a whole ``counterfeed run`` (issue
20). Here a figure is a few hundred Pillow primitives: lines and shapes are drawn at ``SCALE`` times
the output size and averaged down over ``SCALE`` x ``SCALE`` blocks (anti-aliasing), text is DejaVu Sans through
FreeType (matplotlib's own font file, found without importing matplotlib). Sizes are in output
pixels; ``pt(x)`` converts typographic points at the report's 110 dpi.
"""

from __future__ import annotations

import importlib.util
import math
from functools import lru_cache
from pathlib import Path
from typing import Sequence

__all__ = ["Canvas", "Axes", "nice_ticks", "pt", "DPI"]

DPI = 110
SCALE = 2  # supersampling factor


def pt(points: float) -> float:
    """Typographic points to output pixels at :data:`DPI`."""
    return points * DPI / 72.0


@lru_cache(maxsize=None)
def _font(size_px: int, bold: bool):
    from PIL import ImageFont

    spec = importlib.util.find_spec("matplotlib")  # locates the package without importing it
    if spec is not None and spec.origin:
        ttf = Path(spec.origin).parent / "mpl-data" / "fonts" / "ttf" / ("DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf")
        if ttf.is_file():
            return ImageFont.truetype(str(ttf), size_px)
    return ImageFont.load_default(size_px)


def nice_ticks(lo: float, hi: float, most: int = 8) -> tuple[list[float], int]:
    """Ticks at a 1/2/2.5/5 x 10^k step inside ``[lo, hi]`` (at most ``most`` + 1 of them) and the
    decimals that print them exactly."""
    span = hi - lo
    if not (math.isfinite(span) and span > 0):
        return [lo], 0
    raw = span / most
    mag = 10.0 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw * (1 - 1e-9))
    first = math.ceil(lo / step - 1e-9)
    ticks = [(first + i) * step for i in range(int(math.floor(hi / step + 1e-9)) - first + 1)]
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    if round(step / 10.0 ** -decimals, 6) % 1:  # 2.5 x 10^k needs one more
        decimals += 1
    return [0.0 if abs(t) < step * 1e-9 else t for t in ticks], decimals


def limits(values: Sequence[float], margin: float = 0.05) -> tuple[float, float]:
    """The finite values' range widened by ``margin`` of it on each side (matplotlib's default)."""
    vals = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    if not vals:
        return -1.0, 1.0
    lo, hi = min(vals), max(vals)
    if hi == lo:
        pad = abs(lo) * 0.05 or 0.5
        return lo - pad, hi + pad
    pad = (hi - lo) * margin
    return lo - pad, hi + pad


def _num(value: float, decimals: int) -> str:
    """A tick label, with a typographic minus sign as matplotlib writes it."""
    return f"{value:.{decimals}f}".replace("-", "\u2212")


class Canvas:
    """A white RGB image of ``width`` x ``height`` output pixels."""

    def __init__(self, width: float, height: float):
        from PIL import Image, ImageDraw

        self.width, self.height = int(round(width)), int(round(height))
        self.image = Image.new("RGB", (self.width * SCALE, self.height * SCALE), "white")
        self.draw = ImageDraw.Draw(self.image)

    def text_width(self, text: str, size: float, bold: bool = False) -> float:
        return _font(int(round(size * SCALE)), bold).getlength(text) / SCALE

    def text(self, x: float, y: float, text: str, size: float, color: str = "#212529", bold: bool = False,
             anchor: str = "la") -> None:
        """``anchor``: Pillow's two letters, horizontal (l, m, r) then vertical (a: top, m, s: baseline)."""
        self.draw.text((x * SCALE, y * SCALE), text, fill=color, font=_font(int(round(size * SCALE)), bold),
                       anchor=anchor)

    def line(self, points: Sequence[tuple[float, float]], color: str, width: float,
             dash: tuple[float, float] | None = None, round_caps: bool = False) -> None:
        """A polyline; ``dash`` = (on, off) lengths in output pixels."""
        pts = [(x * SCALE, y * SCALE) for x, y in points]
        w = max(1, int(round(width * SCALE)))
        if dash is None:
            self.draw.line(pts, fill=color, width=w, joint="curve")
            if round_caps:
                for x, y in (pts[0], pts[-1]):
                    self.draw.ellipse((x - w / 2, y - w / 2, x + w / 2, y + w / 2), fill=color)
            return
        on, off = dash[0] * SCALE, dash[1] * SCALE
        drawing, left = True, on
        for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
            seg = math.hypot(x1 - x0, y1 - y0)
            done = 0.0
            while done < seg:
                step = min(left, seg - done)
                if drawing:
                    a, b = done / seg, (done + step) / seg
                    self.draw.line([(x0 + (x1 - x0) * a, y0 + (y1 - y0) * a),
                                    (x0 + (x1 - x0) * b, y0 + (y1 - y0) * b)], fill=color, width=w)
                done += step
                left -= step
                if left <= 1e-9:
                    drawing = not drawing
                    left = on if drawing else off

    def marker(self, x: float, y: float, kind: str, color: str, size: float, edge: str | None = "white",
               edge_width: float = 1.2) -> None:
        """``kind`` ``o`` (circle) or ``D`` (diamond), ``size`` the diameter in output pixels."""
        x, y = x * SCALE, y * SCALE
        r = size * SCALE / 2
        e = edge_width * SCALE
        shape = self.draw.ellipse if kind == "o" else self.draw.polygon
        for rad, fill in ((r + e / 2, edge), (r - e / 2 if edge else r, color)):
            if fill is None:
                continue
            if kind == "o":
                shape((x - rad, y - rad, x + rad, y + rad), fill=fill)
            else:
                rad *= 1.15
                shape([(x, y - rad), (x + rad, y), (x, y + rad), (x - rad, y)], fill=fill)

    def rect(self, x0: float, y0: float, x1: float, y1: float, fill: str) -> None:
        self.draw.rectangle((x0 * SCALE, y0 * SCALE, x1 * SCALE, y1 * SCALE), fill=fill)

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.image.reduce(SCALE).save(path, format="PNG")
        return path


class Axes:
    """A data-to-pixel box on a canvas: ``(left, top, right, bottom)`` in output pixels."""

    SPINE, GRID, TICK_TEXT = "#868e96", "#e9ecef", "#212529"

    def __init__(self, canvas: Canvas, box: tuple[float, float, float, float],
                 xlim: tuple[float, float], ylim: tuple[float, float]):
        self.c, self.box = canvas, box
        self.xlim, self.ylim = xlim, ylim

    def x(self, v: float) -> float:
        lo, hi = self.xlim
        return self.box[0] + (v - lo) / (hi - lo) * (self.box[2] - self.box[0])

    def y(self, v: float) -> float:
        lo, hi = self.ylim
        return self.box[3] - (v - lo) / (hi - lo) * (self.box[3] - self.box[1])

    def frame(self, xticks: bool = True, yticks: bool = True, xgrid: bool = True, ygrid: bool = True,
              font: float = pt(10)) -> None:
        """Grid lines, the left and bottom spines, and numeric tick labels."""
        left, top, right, bottom = self.box
        if xticks:
            ticks, dec = nice_ticks(*self.xlim)
            for t in ticks:
                px = self.x(t)
                if xgrid:
                    self.c.line([(px, top), (px, bottom)], self.GRID, pt(0.8))
                self.c.line([(px, bottom), (px, bottom + 4)], self.SPINE, 1)
                self.c.text(px, bottom + 6, _num(t, dec), font, self.TICK_TEXT, anchor="ma")
        if yticks:
            ticks, dec = nice_ticks(*self.ylim, most=6)
            for t in ticks:
                py = self.y(t)
                if ygrid:
                    self.c.line([(left, py), (right, py)], self.GRID, pt(0.8))
                self.c.line([(left - 4, py), (left, py)], self.SPINE, 1)
                self.c.text(left - 7, py, _num(t, dec), font, self.TICK_TEXT, anchor="rm")
        self.c.line([(left, top), (left, bottom)], self.SPINE, 1)
        self.c.line([(left, bottom), (right, bottom)], self.SPINE, 1)

    def polyline(self, xs: Sequence[float], ys: Sequence[float], color: str, width: float,
                 dash: tuple[float, float] | None = None) -> None:
        """A data line, broken at non-finite values (as matplotlib draws NaN)."""
        run: list[tuple[float, float]] = []
        for xv, yv in list(zip(xs, ys)) + [(math.nan, math.nan)]:
            if math.isfinite(xv) and math.isfinite(yv):
                run.append((self.x(xv), self.y(yv)))
                continue
            if len(run) > 1:
                self.c.line(run, color, width, dash)
            run = []
