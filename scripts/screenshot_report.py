#!/usr/bin/env python
"""Screenshot a run's report.html with headless Chromium.

    python scripts/screenshot_report.py RUN_DIR OUT.png [--width 1400] [--height 4000]

Builds the report first when RUN_DIR has no report.html. Needs Debian's ``chromium`` on PATH.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def screenshot(run_dir: str | Path, out: str | Path, *, width: int = 1400, height: int = 4000,
               timeout: float = 120.0) -> Path:
    """Render ``RUN_DIR/report.html`` to ``out`` (PNG) and return the path."""
    run_dir, out = Path(run_dir).resolve(), Path(out).resolve()
    html = run_dir / "report.html"
    if not html.is_file():
        from counterfeed.core.report import write_report

        html = write_report(run_dir)["html"]
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise RuntimeError("chromium is not installed (apt-get install -y chromium)")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cf-chromium-") as profile:
        cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--hide-scrollbars", f"--user-data-dir={profile}", f"--window-size={width},{height}",
               f"--screenshot={out}", html.as_uri()]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0 or not out.is_file():
        raise RuntimeError(f"chromium failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("out")
    ap.add_argument("--width", type=int, default=1400)
    ap.add_argument("--height", type=int, default=4000)
    args = ap.parse_args(argv)
    try:
        path = screenshot(args.run_dir, args.out, width=args.width, height=args.height)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
