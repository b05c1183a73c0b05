"""End-to-end throughput of the quickstart (issue 20, point 5), before and after, in the same run.

Variants, each run in a fresh process (so imports count, as they do for a user), interleaved and
repeated so that the load of a shared machine hits them alike:

- ``before``: the quickstart at the commit before this work (``--before-commit``, checked out in a
  temporary git worktree): torch matrix factorization, worlds one after another;
- ``after``: the quickstart now (torch matrix factorization, worlds in worker processes);
- ``after-1``: the same in one process (``workers=1``), which separates the engine's and the
  training's gains from the concurrency's;
- ``after-als``: the same with the treatment arm on the ``als`` recommender (implicit's ALS).

Figures: sessions/s end to end (sessions of the three worlds / wall time of ``run(write=False)``,
which includes every import, the simulation, outcomes, truth and estimation), per world (its
sessions / its own seconds), and sessions per CPU second (the process and its worker processes),
which a loaded machine disturbs much less than wall time. Then the estimates of every variant side by side with the ``before``
ones: same sign, and whether the intervals overlap.

    python benchmarks/end_to_end.py                 # 2 repetitions of each variant (a few minutes)
    python benchmarks/end_to_end.py --repeat 3 --variants before,after
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "scenarios" / "quickstart.yaml"
#: main before issue 20's work (torch MF only, worlds sequential below 200k user-days)
BEFORE_COMMIT = "5d66b26"
VARIANTS = ("before", "after", "after-1", "after-als")


def child(variant: str) -> None:
    """Run the quickstart once in this process and print one JSON line."""
    t0 = time.perf_counter()
    import resource

    import yaml

    from counterfeed.core.runner import run
    from counterfeed.core.scenario import Scenario

    data = yaml.safe_load(QUICKSTART.read_text())
    if variant == "after-als":
        data["experiment"]["arms"]["treatment"] = {"recommender": "als", "factors": 16}
    result = run(Scenario.from_dict(data), write=False, workers=1 if variant == "after-1" else None)
    wall = time.perf_counter() - t0
    cpu = sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                  resource.getrusage(resource.RUSAGE_CHILDREN)))
    t = result.timings
    worlds = {k[len("world_"):-2]: v for k, v in t.items() if k.startswith("world_")}
    sessions = result.outcomes.groupby("world")["sessions"].sum().to_dict()
    print(json.dumps({
        "variant": variant, "wall_s": wall, "cpu_s": cpu, "sessions": t["sessions"], "simulate_s": t["simulate_s"],
        "worlds": {w: {"seconds": s, "sessions": float(sessions.get(w, 0))} for w, s in worlds.items()},
        "estimates": [{"metric": e.metric, "estimand": e.estimand, "point": e.point, "lower": e.lower,
                       "upper": e.upper} for e in result.estimates],
    }))


def launch(variant: str, before_dir: Path | None) -> dict:
    env = dict(os.environ)
    cwd = ROOT
    if variant == "before":
        env["PYTHONPATH"] = str(before_dir)
        cwd = before_dir
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", variant],
                         env=env, cwd=cwd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"variant {variant} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3]) if Path("/proc/loadavg").exists() else "?"


def compare_estimates(base: list[dict], other: list[dict]) -> list[str]:
    rows = []
    index = {(e["metric"], e["estimand"]): e for e in base}
    for e in other:
        b = index.get((e["metric"], e["estimand"]))
        if b is None or e["estimand"] != "difference":
            continue
        sign = (b["point"] > 0) == (e["point"] > 0)
        overlap = e["lower"] <= b["upper"] and b["lower"] <= e["upper"]
        rows.append(f"  {e['metric']:<12} before {b['point']:+9.3f} [{b['lower']:+.3f}, {b['upper']:+.3f}]"
                    f"   now {e['point']:+9.3f} [{e['lower']:+.3f}, {e['upper']:+.3f}]"
                    f"   sign {'same' if sign else 'FLIPPED'}, intervals {'overlap' if overlap else 'DISJOINT'}")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    ap.add_argument("--repeat", type=int, default=2, help="runs of each variant (interleaved)")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--before-commit", default=BEFORE_COMMIT)
    args = ap.parse_args()
    if args.child:
        child(args.child)
        return
    variants = [v for v in args.variants.split(",") if v]
    print(f"quickstart end to end; cores available: {len(os.sched_getaffinity(0))}; load before: {load()}")
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory(prefix="cf-before-") as tmp:
        before_dir = None
        if "before" in variants:
            before_dir = Path(tmp) / "tree"
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(before_dir),
                            args.before_commit], check=True)
        try:
            for rep in range(args.repeat):
                for v in variants:
                    r = launch(v, before_dir)
                    runs[v].append(r)
                    print(f"  run {rep + 1} {v:<10} {r['sessions'] / r['wall_s']:>9,.0f} sessions/s "
                          f"({r['sessions']:,.0f} sessions in {r['wall_s']:.2f} s; "
                          f"{r['sessions'] / r['cpu_s']:,.0f} per CPU second)", flush=True)
        finally:
            if before_dir is not None:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(before_dir)],
                               check=False)
    print(f"load after: {load()}\n")
    print("median over runs | end to end sessions/s | per CPU second | per world: seconds (sessions/s)")
    for v in variants:
        rs = runs[v]
        e2e = statistics.median(r["sessions"] / r["wall_s"] for r in rs)
        per_cpu = statistics.median(r["sessions"] / r["cpu_s"] for r in rs)
        parts = []
        for w in rs[0]["worlds"]:
            sec = statistics.median(r["worlds"][w]["seconds"] for r in rs)
            parts.append(f"{w} {sec:.2f} s ({rs[0]['worlds'][w]['sessions'] / sec:,.0f}/s)")
        print(f"  {v:<10} {e2e:>9,.0f} {per_cpu:>9,.0f}   " + "; ".join(parts))
    if "before" in runs:
        base = statistics.median(r["sessions"] / r["wall_s"] for r in runs["before"])
        for v in variants:
            if v != "before":
                now = statistics.median(r["sessions"] / r["wall_s"] for r in runs[v])
                cpu = statistics.median(r["sessions"] / r["cpu_s"] for r in runs[v]) / statistics.median(
                    r["sessions"] / r["cpu_s"] for r in runs["before"])
                print(f"  {v} / before: {now / base:.2f}x end to end, {cpu:.2f}x per CPU second")
        for v in variants:
            if v != "before":
                print(f"\nestimates, {v} vs before (difference in means, 95%):")
                print("\n".join(compare_estimates(runs["before"][0]["estimates"], runs[v][0]["estimates"])))


if __name__ == "__main__":
    main()
