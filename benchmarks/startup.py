"""Start-up time of the command line and of the keyed randomness, against ``python -c pass``.

Each figure is the median of ``-n`` fresh processes, measured in the same run as the baseline
(an empty interpreter start). Targets (issue 13, "Fast start"):

- ``counterfeed --help``                          < 0.3 s
- ``counterfeed validate scenarios/quickstart.yaml`` < 0.6 s
- the first keyed random draw in a fresh process   < 50 ms (import of the randomness module plus
  one draw of 1,000 uniforms; numpy's own import is shown separately)

It also lists which heavy modules (scipy, numba, torch, pandas, pyarrow) ``--help`` and ``validate``
import (none is the target), and the cost of the first draw large enough to load the numba kernels,
from the user cache (warm) and compiled into an empty cache (cold, once per installation).
Wall time depends on how busy the machine is; the CPU column (user + system seconds of the
process) much less, so it is the figure to compare across runs on a shared machine.

    python benchmarks/startup.py          # 7 runs each
    python benchmarks/startup.py -n 15
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from counterfeed.testing.startup import heavy_imports

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("scipy", "numba", "torch", "pandas", "pyarrow")

_DRAW = """
import time
import numpy as np
t0 = time.perf_counter()
from counterfeed.core.randomness import Keys
s = Keys(0).stream("visit")
u = s.uniform(np.arange({n}), 0)
t1 = time.perf_counter()
g = s.{method}(np.arange({big}), 1)
t2 = time.perf_counter()
print("{{}} {{}}".format(t1 - t0, t2 - t1))
"""


def _wall(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """(wall seconds, CPU seconds user + system) of one fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _median(cmd: list[str], n: int, env: dict[str, str] | None = None) -> tuple[float, float]:
    """Median wall and median CPU seconds of ``n`` runs (CPU time is less sensitive to a busy machine)."""
    _wall(cmd, env)  # warm the file-system cache
    runs = [_wall(cmd, env) for _ in range(n)]
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


def _heavy(argv: list[str]) -> list[str]:
    return heavy_imports(argv, HEAVY, cwd=ROOT)


def _draws(n: int, env: dict[str, str], method: str = "gumbel", big: int = 100_000) -> tuple[float, float]:
    out = subprocess.run([sys.executable, "-c", _DRAW.format(n=1000, big=big, method=method)], cwd=ROOT,
                         env=env, check=True, capture_output=True, text=True).stdout.split()
    return float(out[0]), float(out[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=7, help="fresh processes per figure (median)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args()
    exe = shutil.which("counterfeed", path=str(Path(sys.executable).parent)) or ""
    cf = [exe] if exe else [sys.executable, "-m", "counterfeed"]
    quick = str(ROOT / "scenarios" / "quickstart.yaml")
    env = dict(os.environ)

    base, base_cpu = _median([sys.executable, "-c", "pass"], args.n)
    numpy, numpy_cpu = _median([sys.executable, "-c", "import numpy"], args.n)
    helpt, help_cpu = _median(cf + ["--help"], args.n)
    validate, validate_cpu = _median(cf + ["validate", quick], args.n)
    _draws(1, env)  # make sure the kernels are compiled and cached (once per installation)
    warm = [_draws(1, env) for _ in range(args.n)]
    first = statistics.median(w[0] for w in warm)
    kernels_warm = statistics.median(w[1] for w in warm)
    with tempfile.TemporaryDirectory() as tmp:
        cold = _draws(1, {**env, "COUNTERFEED_CACHE_DIR": tmp})[1]
    figures = {
        "python -c pass": (base, base_cpu), "python -c 'import numpy'": (numpy, numpy_cpu),
        "counterfeed --help": (helpt, help_cpu),
        "counterfeed validate scenarios/quickstart.yaml": (validate, validate_cpu),
        "first keyed draw (import + 1,000 uniforms)": (first, None),
        "first kernel draw, cached kernels (100,000 Gumbel)": (kernels_warm, None),
        "first kernel draw, empty cache (compile)": (cold, None),
    }
    heavy = {"--help": _heavy(["--help"]), "validate": _heavy(["validate", quick])}
    if args.json:
        print(json.dumps({"median_s": {k: v[0] for k, v in figures.items()},
                          "median_cpu_s": {k: v[1] for k, v in figures.items() if v[1] is not None},
                          "heavy_imports": heavy, "runs": args.n}, indent=2))
        return
    targets = {"counterfeed --help": 0.3, "counterfeed validate scenarios/quickstart.yaml": 0.6,
               "first keyed draw (import + 1,000 uniforms)": 0.05}
    print(f"median of {args.n} fresh processes ({sys.executable}); in-process timing for the draws")
    print(f"{'':52s} {'wall s':>8s} {'- baseline':>11s} {'CPU s':>7s}  target (wall)")
    for name, (v, cpu) in figures.items():
        extra = "" if cpu is None else f"{v - base:11.3f}"
        tgt = targets.get(name)
        mark = "" if tgt is None else f"< {tgt:g} s: {'yes' if v < tgt else 'NO'}"
        print(f"{name:52s} {v:8.3f} {extra:>11s} {'' if cpu is None else f'{cpu:7.3f}':>7s}  {mark}")
    for cmd, mods in heavy.items():
        print(f"heavy modules imported by {cmd}: {', '.join(mods) or 'none'}")


if __name__ == "__main__":
    main()
