"""Wall time of the same calibration on 1 worker vs 2 (or more) workers of the local executor.

    python benchmarks/calibration_scaling.py -n 40             # 1 vs 2 workers
    python benchmarks/calibration_scaling.py -n 40 --workers-list 1,2,4
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from calibration_aa import AA
from calibration_common import parser, scenario


def main() -> None:
    p = parser(__doc__.splitlines()[0], 40)
    p.add_argument("--workers-list", default="1,2")
    args = p.parse_args()
    from counterfeed.calibration import calibrate
    from counterfeed.core.executors import get_executor

    sc = scenario(AA, "scaling")
    times, summaries = {}, {}
    for w in [int(x) for x in args.workers_list.split(",")]:
        with tempfile.TemporaryDirectory() as tmp, get_executor("local", workers=w) as ex:
            t0 = time.perf_counter()
            res = calibrate(sc, args.replications, executor=ex, out_dir=Path(tmp), figures=False)
            times[w] = time.perf_counter() - t0
            summaries[w] = res.summary
        print(f"{w} worker(s): {times[w]:.1f} s for {args.replications} replications "
              f"({times[w] / args.replications:.2f} s each)")
    base = min(times)
    for w, t in times.items():
        same = summaries[w].equals(summaries[base])
        print(f"speed-up {w} vs {base} worker(s): {times[base] / t:.2f}x  (identical summary: {same})")


if __name__ == "__main__":
    main()
