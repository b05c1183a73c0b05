"""Shared helpers of the calibration benchmarks (not part of the test run)."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from counterfeed.core.scenario import load_scenario  # noqa: E402


def scenario(text: str, name: str):
    return load_scenario(f"<benchmark {name}>", text=text)


def parser(description: str, replications: int) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("-n", "--replications", type=int, default=replications)
    p.add_argument("-w", "--workers", type=int, default=None, help="default: all available cores")
    p.add_argument("--executor", default="local", choices=["local", "dask", "serial"])
    p.add_argument("--scheduler", default=None)
    p.add_argument("--out", type=Path, default=Path("runs/benchmarks"))
    p.add_argument("--fresh", action="store_true", help="discard stored replications (default: resume)")
    return p


def run_calibration(sc, args, out: Path):
    from counterfeed.calibration import calibrate
    from counterfeed.core.executors import get_executor

    t0 = time.perf_counter()
    with get_executor(args.executor, workers=args.workers, scheduler=args.scheduler) as ex:
        res = calibrate(sc, args.replications, executor=ex, out_dir=out, fresh=args.fresh, quiet=False)
    return res, time.perf_counter() - t0, ex.workers


def verdict(value: float, lo: float, hi: float) -> str:
    return "PASS" if lo <= value <= hi else "FAIL"
