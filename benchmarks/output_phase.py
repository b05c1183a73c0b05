"""The quickstart's output phase, before and after, in the same run: from the end of the simulation
to the exit of the ``counterfeed run scenarios/quickstart.yaml --quiet --out DIR`` process.

That phase writes the run directory (Parquet event logs, outcomes, estimates, manifest), draws the
report's figures and writes report.md/report.html, prints the summary, and exits. The whole run's
wall time (``benchmarks/end_to_end.py``) is dominated by the simulation, whose noise on a shared
machine hides a change of a few tenths of a second; this script times only the phase after it.

Each run is a fresh process of the CLI with a hook that notes the clock when ``_simulate_all``
returns; per run it prints the phase's wall seconds (to the process's exit), the CPU seconds of the
main process in it (its threads included) and of its child processes (the report's figure helpers),
interleaving ``before`` (a commit, checked out in a temporary git worktree) and ``after`` (this
checkout). Medians at the end. A loaded machine stretches wall time; CPU seconds move much less.

    python benchmarks/output_phase.py --before-commit d690414 --repeat 5
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _usage() -> tuple[float, float]:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, kids.ru_utime + kids.ru_stime


def child(out: str) -> None:
    """One CLI run in this process; its last stdout line: when the simulation ended and the CPU then."""
    import counterfeed.cli as cli
    import counterfeed.core.runner as runner

    mark: dict[str, float] = {}
    simulate = runner._simulate_all

    def timed(*args, **kwargs):
        result = simulate(*args, **kwargs)
        mark["sim_end"] = time.time()
        mark["cpu_self"], mark["cpu_children"] = _usage()
        return result

    runner._simulate_all = timed
    try:
        cli.main(["run", "scenarios/quickstart.yaml", "--quiet", "--out", out])
    except SystemExit as exc:
        if exc.code:
            raise
    own, kids = _usage()
    print(json.dumps({**mark, "cpu_self_end": own, "cpu_children_end": kids, "done": time.time()}), flush=True)


def launch(tree: Path, out: Path) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", str(out)], cwd=tree, env=env,
                          capture_output=True, text=True, check=False)
    exited = time.time()
    if proc.returncode != 0:
        raise SystemExit(f"run in {tree} failed:\n{proc.stderr[-3000:]}")
    m = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"wall_s": exited - m["sim_end"], "exit_s": exited - m["done"], "main_cpu_s": m["cpu_self_end"] - m["cpu_self"],
            "helpers_cpu_s": m["cpu_children_end"] - m["cpu_children"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--before-commit", required="--child" not in sys.argv)
    ap.add_argument("--repeat", type=int, default=5, help="runs of each tree (interleaved)")
    args = ap.parse_args()
    if args.child:
        child(args.child)
        return
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    print(f"quickstart output phase; cores available: {len(os.sched_getaffinity(0))}; load average: {load}")
    runs: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory(prefix="cf-output-") as tmp:
        before = Path(tmp) / "tree"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(before), args.before_commit],
                       check=True)
        try:
            trees = {"before": before, "after": ROOT}
            for tree in trees.values():  # as an installed package is; the first run fills numba's cache
                subprocess.run([sys.executable, "-m", "compileall", "-q", str(tree / "counterfeed")], check=True,
                               stdout=subprocess.DEVNULL)
                launch(tree, Path(tmp) / "warmup")
            for rep in range(args.repeat):
                for name, tree in trees.items():
                    r = launch(tree, Path(tmp) / f"{name}-{rep}")
                    runs[name].append(r)
                    print(f"  run {rep + 1} {name:<6} {r['wall_s']:.3f} s wall; CPU: main {r['main_cpu_s']:.3f} s, "
                          f"helpers {r['helpers_cpu_s']:.3f} s", flush=True)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(before)], check=False)
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    print(f"load average after: {load}\nmedians (simulation end to process exit):")
    med = {n: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for n, rs in runs.items()}
    for name, m in med.items():
        print(f"  {name:<6} {m['wall_s']:.3f} s wall; CPU: main {m['main_cpu_s']:.3f} s, helpers "
              f"{m['helpers_cpu_s']:.3f} s, together {m['main_cpu_s'] + m['helpers_cpu_s']:.3f} s")
    print(f"  after / before: {med['after']['wall_s'] / med['before']['wall_s']:.2f}x wall")


if __name__ == "__main__":
    main()
