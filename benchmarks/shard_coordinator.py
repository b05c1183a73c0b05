"""Where a sharded run's coordinator spends its memory (issue 20, point 2): peak RSS per stage.

One whole ``counterfeed.core.runner.run`` of the engine-scaling world (:mod:`engine_scaling`'s
scenario: popularity, 2k items, 32 dims, slate 10; the A/B world and the two counterfactual worlds,
sessions events only, no report) with ``--shards`` shards on a LocalCluster, in a fresh process. The
runner's stages are wrapped (the names ``run`` calls, patched on ``counterfeed.core.runner``), and a
thread samples the coordinator's resident set every 20 ms. Printed per stage: calls, seconds, the
largest sampled RSS while the stage was the innermost one running, and how far the stage raised the
process's high-water mark (``ru_maxrss``, exact: a short spike a sample misses still counts). Also the
shards' peaks (``ShardedWorld.shard_memory``) and the stage that set the coordinator's peak.

    python benchmarks/shard_coordinator.py --users 1000000 --days 3 --shards 2
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import functools  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

#: the runner's stages, as ``counterfeed.core.runner`` names them (in the order a run reaches them)
STAGES = ("build_population", "_simulate_all", "ShardedWorld.run", "world_outcomes", "world_long_term",
          "truth_table", "user_effects", "observational_truth", "srm", "analysis_data", "user_covariates",
          "_estimate", "score_estimates", "save_run")


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class StageMemory:
    """Attributes the process's memory to the innermost running stage (see the module docstring)."""

    def __init__(self):
        self.stack = ["(outside the stages)"]
        self.rows: dict[str, dict[str, float]] = {}
        self.mark = _peak_mb()
        self.setter = self.stack[0]
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _row(self, name: str) -> dict[str, float]:
        return self.rows.setdefault(name, {"calls": 0, "seconds": 0.0, "rss": 0.0, "raised": 0.0})

    def _sample(self) -> None:
        while not self._done.wait(0.02):
            rss = _rss_mb()
            with self._lock:
                row = self._row(self.stack[-1])
                row["rss"] = max(row["rss"], rss)

    def _switch(self) -> None:
        """The innermost stage's slice ends: what it added to the high-water mark is its."""
        peak = _peak_mb()
        if peak > self.mark:
            self._row(self.stack[-1])["raised"] += peak - self.mark
            self.mark, self.setter = peak, self.stack[-1]

    def wrap(self, owner, attr: str, label: str) -> None:
        real = getattr(owner, attr)

        @functools.wraps(real)
        def staged(*args, **kwargs):
            with self._lock:
                self._switch()
                self.stack.append(label)
                row = self._row(label)
                row["calls"] += 1
            t0 = time.perf_counter()
            try:
                return real(*args, **kwargs)
            finally:
                with self._lock:
                    self._switch()
                    row["seconds"] += time.perf_counter() - t0
                    self.stack.pop()

        setattr(owner, attr, staged)

    def __enter__(self) -> "StageMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()
        with self._lock:
            self._switch()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--days", type=float, default=3.0)
    ap.add_argument("--shards", type=int, default=2)
    args = ap.parse_args()

    import counterfeed.core.runner as runner
    from engine_scaling import bench_scenario

    sc = bench_scenario(args.users, args.days)
    start_mb = _peak_mb()
    stages = StageMemory()
    shard_peaks: list[list[float]] = []
    for name in STAGES:
        if name == "ShardedWorld.run":
            real_run = runner.ShardedWorld.run

            def run_and_record(self, *a, _real=real_run, **k):
                try:
                    return _real(self, *a, **k)
                finally:
                    shard_peaks.append([m / 2**20 for m in getattr(self, "shard_memory", [])]
                                       + [m / 2**20 for m in getattr(self, "shard_memory_simulating", [])])

            runner.ShardedWorld.run = run_and_record
            stages.wrap(runner.ShardedWorld, "run", name)
        else:
            stages.wrap(runner, name, name)
    load0 = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    t0 = time.perf_counter()
    with stages, tempfile.TemporaryDirectory(prefix="cf-coordinator-") as tmp:
        res = runner.run(sc, output_dir=tmp, shards=args.shards)
        sessions = int(res.manifest["timings"]["sessions"])
    seconds = time.perf_counter() - t0
    load1 = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    print(f"sharded run's coordinator: {args.users:,} users, {args.days:g} days, {args.shards} shards, three worlds, "
          f"{sessions:,} sessions, {seconds:.0f} s; load {load0} before, {load1} after")
    print(f"  coordinator peak RSS {_peak_mb():,.0f} MB ({start_mb:,.0f} MB after imports), set during "
          f"{stages.setter}; shard peaks per world, MB (when the simulation ended): "
          + "; ".join(", ".join(f"{m:,.0f}" for m in w[:len(w) // 2])
                      + f" ({', '.join(f'{m:,.0f}' for m in w[len(w) // 2:])})" for w in shard_peaks))
    print(f"  {'stage (innermost)':<24} {'calls':>5} {'seconds':>8} {'max sampled RSS':>16} {'raised peak by':>15}")
    for name, row in stages.rows.items():
        print(f"  {name:<24} {row['calls']:>5.0f} {row['seconds']:>8.1f} {row['rss']:>13,.0f} MB "
              f"{row['raised']:>12,.0f} MB")


if __name__ == "__main__":
    main()
