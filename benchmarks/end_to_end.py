"""End-to-end throughput of the quickstart (issue 20, point 5), before and after, in the same run.

What is measured, for each variant, in a fresh process (so interpreter start and imports count, as
they do for a user), interleaved and repeated so that the load of a shared machine hits them alike:

- ``cli``: the whole ``counterfeed run scenarios/quickstart.yaml --quiet --out DIR`` process:
  interpreter start, imports, the three worlds, outcomes, truth, estimation, the run directory
  (Parquet events, outcomes, estimates, manifest), the Markdown/HTML report with its figures, and
  the summary printed at the end. Seconds are the wall time of that process; CPU seconds are its
  own and its worker processes' (``RUSAGE_CHILDREN``).
- ``run``: ``run(scenario, write=False)`` in a fresh Python process, timed from before the first
  import to its return (everything above except the run directory, the report and the printing).
- ``calibrate`` (not run by default): ``counterfeed calibrate`` of a smaller quickstart
  (``--cal-users`` users, 3-day pre-period, 7 days; the same arms) with ``--cal-replications``
  replications on the local executor (all cores): replications per second, before and after.

Sessions are the sessions of the three worlds (A/B, all-control, all-treatment), pre-period
included. Three rates per mode:

- **end to end**: sessions over the simulation's wall time (``simulate_s``: all three worlds, the
  pre-period included, from the first world's start to the last one's end), the rate ``counterfeed
  run`` prints after its worlds ("N sessions, X s sim (R/s)"). This is the issue's measure: its 31k
  ("the quickstart runs at 31k sessions/s end to end: the two worlds with matrix factorization take
  4.5-4.9 s against 1.2 s for the popularity world") is 339,981 sessions over those worlds' seconds,
  run one after another, as that commit's ``counterfeed run`` printed it;
- **whole process**: sessions over the whole wall time of the fresh process (interpreter start,
  imports, and in ``cli`` the run directory and the report with its figures);
- **per CPU second**: sessions over all CPU seconds of the process and its workers (load disturbs it
  much less than wall time).

The summary ends with the issue's target (>= 100,000 sessions/s end to end on 2 cores) against the
medians, and with the factor the target asks over the issue's baseline (100,000 / 31,000 = 3.23x)
against the factors measured here over ``before`` in the same run. Per world: the world's seconds (``manifest.json`` timings; worlds in worker
processes overlap) and all its sessions over them. A pre-period simulated once for the three worlds
(``after``) is added to each world's seconds, as its sessions are in each world's (``before``
simulated it in every world, inside the world's seconds).

Variants:

- ``before``: the quickstart at the commit before issue 20's work (``--before-commit``, checked out
  in a temporary git worktree, with that tree's own ``scenarios/quickstart.yaml``): torch matrix
  factorization, cold refits, worlds one after another;
- ``after``: the quickstart now (compiled matrix factorization with cold refits as before, compiled
  top-k, the compiled kernels mapped from the cache without importing numba (core.native), the pre-period simulated once for the three worlds (core.preperiod), worlds in worker
  processes forked after it when the scenario is large enough, their results mapped from shared
  memory);
- ``after-1``: the same in one process (``--workers 1``), which separates the engine's and the
  training's gains from the concurrency's;
- ``after-als`` (not run by default): the treatment arm on ``als`` (implicit's ALS);
- ``after-hugepages``, ``after-mimalloc`` and ``after-old-allocators`` (not run by default):
  ``after`` with NumPy's transparent huge pages (``NUMPY_MADVISE_HUGEPAGE=1``), with Arrow's
  mimalloc pool (``ARROW_DEFAULT_MEMORY_POOL=mimalloc``), or with both, as ``before`` had them
  (counterfeed.core.allocators turns them off for a run): what that change gives on this machine;
- ``before-new-allocators`` (not run by default): ``before`` with the allocators ``after`` uses (no
  huge pages, Arrow's system pool), to show what they give the old code;
- ``before-renamed`` (``run`` mode only): ``before`` with the treatment arm named ``treatment-b``. That
  code keyed every random draw of an arm by the arm's name, so this is the same code and scenario with
  other draws for the treatment policy: how often ``before`` agrees with itself when only its draws
  change, the yardstick for ``after`` (whose draws changed) against ``before``;
- ``after-old-draws`` (``run`` mode only): the quickstart now with matrix factorization's random
  draws made as ``before`` made them (initial factors by ``torch.randn``, draws keyed by the arm's
  name): the implementation's change alone, without the change of random numbers. Its times
  include importing torch for those draws: it is a check of the estimates, not of the speed.

A loaded machine stretches wall time, so the script also prints sessions per CPU second, which
load disturbs much less, and the load average before and after. Then the estimates of every variant next to the ``before``
ones: same sign, and whether the 95% intervals overlap.

**Conclusions over seeds** (``--seeds``, default 10). The quickstart's matrix factorization is
trained from random initial factors, and in this feedback loop the trained policy, and so the true
effect itself, moves with them: any change of those draws (a new generator, a new key) moves the
true clicks effect by about as much as a change of seed does (about 1 click per user of ~9), so one
seed's intervals, before against after, can be disjoint with no change of conclusions. The script
therefore also runs ``before`` and ``after`` (``run`` mode) at the scenario's seed + 1 ... + k and
prints, per metric, how often the signs agree and the 95% intervals overlap, how often each covers
its own truth, and the mean true effect of each with the mean paired difference and its standard
error (seeds are independent replications).

    python benchmarks/end_to_end.py                       # 2 repetitions, before/after/after-1
    python benchmarks/end_to_end.py --before-commit 9ab57fe   # against main before the shared pre-period
    python benchmarks/end_to_end.py --repeat 3 --modes cli --variants before,after
    python benchmarks/end_to_end.py --before-commit c386342 --modes cli --variants before,after,after-1

Both source trees are byte-compiled (``compileall``) before the first run, as an installed package is,
and each runs once untimed first (``--no-warmup``: not), which compiles its numba kernels into its
own cache: a fresh worktree has none.
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
#: main before issue 20's work (torch MF only, worlds sequential below 200k user-days)
BEFORE_COMMIT = "5d66b26"
VARIANTS = ("before", "after", "after-1", "after-als", "after-old-draws", "before-renamed", "after-hugepages",
            "after-mimalloc", "after-old-allocators", "before-new-allocators")
#: variants that check estimates, not speed: run mode only (their change is made in run()'s process)
CHECKS = ("after-old-draws", "before-renamed")
#: the treatment arm's name in ``before-renamed``
RENAMED = "treatment-b"
_OLD_PAGES, _OLD_POOL = {"NUMPY_MADVISE_HUGEPAGE": "1"}, {"ARROW_DEFAULT_MEMORY_POOL": "mimalloc"}
#: the allocators' environment per variant (counterfeed.core.allocators); the others get none
ALLOCATORS = {"after-hugepages": _OLD_PAGES, "after-mimalloc": _OLD_POOL, "after-old-allocators": _OLD_PAGES | _OLD_POOL,
              "before-new-allocators": {"NUMPY_MADVISE_HUGEPAGE": "0", "ARROW_DEFAULT_MEMORY_POOL": "system"}}
MODES = ("cli", "run", "calibrate")
ALS = {"recommender": "als", "factors": 16}


def child(variant: str, seed: int | None = None) -> None:
    """``run`` mode: run the quickstart once in this process (at ``seed`` instead of the scenario's
    own, when given) and print one JSON line."""
    t0 = time.perf_counter()
    import yaml

    from counterfeed.core.runner import run
    from counterfeed.core.scenario import Scenario

    data = yaml.safe_load((Path.cwd() / "scenarios" / "quickstart.yaml").read_text())  # this tree's own
    if seed is not None:
        data["seed"] = seed
    if variant == "after-als":
        data["experiment"]["arms"]["treatment"] = dict(ALS)
    if variant == "after-old-draws":
        _old_draws()
    if variant == "before-renamed":  # before's code keyed every draw of an arm by its name: other draws
        for part in ("arms", "split"):  # the same assignment: its draws are keyed by the scenario's name
            named = data["experiment"][part]
            data["experiment"][part] = {(RENAMED if a == "treatment" else a): v for a, v in named.items()}
    result = run(Scenario.from_dict(data), write=False, workers=1 if variant == "after-1" else None,
                 keep_events=True)
    wall = time.perf_counter() - t0
    sessions = {w: int(ev.sessions["user"].size) for w, ev in result.events.items()}
    print(json.dumps({"wall_s": wall, "timings": result.timings, "world_sessions": sessions,
                      "estimates": [e.to_dict() for e in result.estimates]}))


def _old_draws() -> None:
    """Make matrix factorization's random draws as ``before`` (5d66b26) made them, in this process:
    initial factors by ``torch.randn`` (that commit's generator) and every draw keyed by the arm's
    name instead of its configuration (main a25f325: the policy streams and the models' draws).
    Everything else is this tree's code: the compiled training loop, the engine, the shared
    pre-period, the worker processes. With the same draws, what remains of a difference from
    ``before`` is the implementation's."""
    import numpy as np
    import torch

    from counterfeed.core import plan
    from counterfeed.plugins.recommenders.matrix_factorization import MatrixFactorization

    plan.Plan.arm_keys = lambda self: list(self.scenario.arms)  # every arm's draws keyed by its name

    def normal_tables(self):
        ctx, f = self.ctx_, self.options.factors
        gen = torch.Generator().manual_seed(ctx.keys.derive_seed("mf-init", ctx.arm, self.n_fits_))
        scale = 0.1 / np.sqrt(f)
        return ((torch.randn(ctx.n_users, f + 1, generator=gen, dtype=torch.float32) * scale).numpy(),
                (torch.randn(ctx.items.n, f + 1, generator=gen, dtype=torch.float32) * scale).numpy())

    MatrixFactorization._normal_tables = normal_tables


def _cpu_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _calibration_scenario(variant: str, out: Path, users: int, quickstart: Path) -> Path:
    import yaml

    data = yaml.safe_load(quickstart.read_text())
    data["population"]["users"] = users
    data["experiment"].update(pre_period="3d", duration="7d")
    data["name"] = "quickstart-calibration"
    if variant == "after-als":
        data["experiment"]["arms"]["treatment"] = dict(ALS)
    path = out / f"calibration-{variant}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def launch(variant: str, mode: str, before_dir: Path | None, out: Path, cal: tuple[int, int] = (600, 8),
           seed: int | None = None) -> dict:
    """Run one variant in a fresh process; its wall and CPU seconds, timings and estimates
    (``seed``: ``run`` mode only, the quickstart at that seed)."""
    env = dict(os.environ)
    for name in ("NUMPY_MADVISE_HUGEPAGE", "ARROW_DEFAULT_MEMORY_POOL"):  # each variant its own, not the caller's
        env.pop(name, None)
    env.update(ALLOCATORS.get(variant, {}))
    cwd = ROOT
    env["PYTHONPATH"] = str(ROOT)  # this tree, whichever counterfeed an editable install points at
    if variant.startswith("before"):
        env["PYTHONPATH"] = str(before_dir)
        cwd = before_dir
    quickstart = cwd / "scenarios" / "quickstart.yaml"  # each tree runs its own quickstart file
    if mode == "run":
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", variant]
        if seed is not None:
            cmd += ["--child-seed", str(seed)]
    elif mode == "calibrate":
        run_out = out / f"cal-{variant}-{time.monotonic_ns()}"
        cmd = [sys.executable, "-m", "counterfeed", "calibrate", str(_calibration_scenario(variant, out, cal[0], quickstart)),
               "-n", str(cal[1]), "--out", str(run_out), "--quiet", "--fresh"]
        if variant == "after-1":
            cmd += ["--workers", "1"]
    else:
        scenario = quickstart
        if variant == "after-als":
            import yaml

            data = yaml.safe_load(quickstart.read_text())
            data["experiment"]["arms"]["treatment"] = dict(ALS)
            scenario = out / "quickstart-als.yaml"
            scenario.write_text(yaml.safe_dump(data))
        run_out = out / f"{variant}-{time.monotonic_ns()}"
        cmd = [sys.executable, "-m", "counterfeed", "run", str(scenario), "--quiet", "--out", str(run_out)]
        if variant == "after-1":
            cmd += ["--workers", "1"]
    cpu0, t0 = _cpu_children(), time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    wall, cpu = time.perf_counter() - t0, _cpu_children() - cpu0
    if proc.returncode != 0:
        raise SystemExit(f"variant {variant} ({mode}) failed:\n{proc.stderr[-3000:]}")
    if mode == "calibrate":  # "sessions" are replications here
        return {"wall_s": wall, "cpu_s": cpu, "sessions": float(cal[1]), "worlds": {}, "estimates": [],
                "simulate_s": float("nan")}
    if mode == "run":
        doc = json.loads(proc.stdout.strip().splitlines()[-1])
        timings, estimates, world_sessions = doc["timings"], doc["estimates"], doc["world_sessions"]
    else:
        (run_dir,) = [p for p in run_out.iterdir() if p.is_dir()]
        timings = json.loads((run_dir / "manifest.json").read_text())["timings"]
        estimates = json.loads((run_dir / "estimates.json").read_text())["estimates"]
        import pyarrow.parquet as pq

        world_sessions = {w.name: pq.read_metadata(w / "sessions.parquet").num_rows
                          for w in (run_dir / "events").iterdir()}
    # a world's seconds with the pre-period it lived: simulated once for all worlds (core.preperiod), its
    # seconds are in no world's own (world_*_s) while its sessions are in every world's; before, each
    # world simulated its own, inside its seconds (preperiod_s absent: 0)
    pre = float(timings.get("preperiod_s", 0.0))
    worlds = {k[len("world_"):-2]: (v + pre, world_sessions.get(k[len("world_"):-2]))
              for k, v in timings.items() if k.startswith("world_")}
    return {"wall_s": wall, "cpu_s": cpu, "sessions": timings["sessions"], "worlds": worlds,
            "estimates": estimates, "simulate_s": timings["simulate_s"]}


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3]) if Path("/proc/loadavg").exists() else "?"


def compare_estimates(base: list[dict], other: list[dict]) -> list[str]:
    """Each difference-in-means row of ``other`` next to ``base``'s, then a count of the signs that agree
    and the 95% intervals that overlap."""
    rows: list[str] = []
    same = overlaps = 0
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
        same += sign
        overlaps += overlap
    if rows:
        rows.append(f"  at this seed: {same} of {len(rows)} signs the same, {overlaps} of {len(rows)} intervals overlap "
                    "(a change of the recommender's random draws moves the truth like a change of seed: see "
                    "--seeds and the before-renamed and after-old-draws variants)")
    return rows


def _seeded_runs(k: int, variants: list[str], before_dir: Path | None, out: Path) -> dict[str, list[dict]]:
    """Each variant's ``run``-mode result at the quickstart's seed + 1 ... + ``k``."""
    import yaml

    base = int(yaml.safe_load((ROOT / "scenarios" / "quickstart.yaml").read_text())["seed"])
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    for j in range(1, k + 1):
        for v in variants:
            runs[v].append(launch(v, "run", before_dir, out, seed=base + j))
        print(f"  conclusions: seed {base + j} done ({j} of {k}; load {load()})", flush=True)
    return runs


def compare_over_seeds(before: list[dict], now: list[dict], name: str) -> list[str]:
    """Per metric, over the seeds: how often the signs agree and the 95% intervals overlap, how often
    each covers its own truth, and the true effects (mean over seeds, and the mean paired difference
    with its standard error: the seeds are independent replications of the scenario)."""
    def diff_estimates(doc: dict) -> dict[str, dict]:
        return {e["metric"]: e for e in doc["estimates"] if e["estimand"] == "difference" and e["segment"] is None}

    pairs = [(diff_estimates(b), diff_estimates(n)) for b, n in zip(before, now)]
    lines = [f"\nconclusions over {len(pairs)} other seed{'s' if len(pairs) != 1 else ''}, {name} vs before "
             "(difference in means, 95%):",
             f"  {'metric':<12} {'same sign':>9} {'overlap':>8} {'covered (before/now)':>21}"
             f" {'true effect before':>19} {'now':>9} {'now - before (paired)':>24}"]
    for metric in pairs[0][0]:
        rows = [(b[metric], n[metric]) for b, n in pairs if metric in b and metric in n]
        same = sum((b["point"] > 0) == (n["point"] > 0) for b, n in rows)
        overlap = sum(n["lower"] <= b["upper"] and b["lower"] <= n["upper"] for b, n in rows)
        cov_b = sum(bool(b.get("covered")) for b, _ in rows)
        cov_n = sum(bool(n.get("covered")) for _, n in rows)
        tb, tn = zip(*[(b["truth"], n["truth"]) for b, n in rows
                       if b.get("truth") is not None and n.get("truth") is not None])
        d = [y - x for x, y in zip(tb, tn)]
        se = f"{statistics.stdev(d) / len(d) ** 0.5:.2g}" if len(d) > 1 else "n/a (one seed)"
        lines.append(f"  {metric:<12} {same:>5}/{len(rows):<3} {overlap:>4}/{len(rows):<3} {cov_b:>10}/{cov_n:<10}"
                     f" {statistics.fmean(tb):>+19.4g} {statistics.fmean(tn):>+9.4g}"
                     f" {statistics.fmean(d):>+14.4g} +- {se}")
    return lines


def _at_least(minimum: int):
    """An argparse type: a whole number of at least ``minimum``."""
    def parse(text: str) -> int:
        n = int(text)
        if n < minimum:
            raise argparse.ArgumentTypeError(f"expected a whole number of at least {minimum}, got {text}")
        return n
    return parse


#: a run's sessions/s: end to end (the simulation of all worlds: the issue's measure), over the whole
#: process's wall time, per CPU second
_RATES = (lambda r: r["sessions"] / r["simulate_s"], lambda r: r["sessions"] / r["wall_s"],
          lambda r: r["sessions"] / r["cpu_s"])
#: the issue's target (sessions/s end to end on 2 cores) and the baseline it was set against
TARGET, ISSUE_BASELINE = 100_000, 31_000


def _median(rs: list[dict], f) -> float:
    return statistics.median(f(r) for r in rs)


def paired_ratio(now: list[dict], base: list[dict], f) -> str:
    """``now`` against ``base`` run by run (the runs were interleaved, so run i of each met the same
    load): the geometric mean of ``f(now[i]) / f(base[i])`` with a 95% Student-t interval of the mean
    log ratio over the pairs (the pairs as independent replications); no interval from one pair."""
    import math

    logs = [math.log(f(a) / f(b)) for a, b in zip(now, base)]
    mean = statistics.fmean(logs)
    if len(logs) < 2:
        return f"{math.exp(mean):.2f}x (one pair: no interval)"
    from scipy.stats import t

    half = t.ppf(0.975, len(logs) - 1) * statistics.stdev(logs) / len(logs) ** 0.5
    return f"{math.exp(mean):.2f}x [{math.exp(mean - half):.2f}, {math.exp(mean + half):.2f}] over {len(logs)} pairs"


def verdict(runs: dict[tuple[str, str], list[dict]], modes: list[str]) -> None:
    """Print the issue's target (100,000 sessions/s end to end on 2 cores) against ``after``'s median
    end-to-end rate, met or not as written. Then, as a ratio and without a verdict, ``after`` over
    ``before`` in this run next to the ratio the target asks of the issue's baseline (100,000 /
    31,000 = 3.23): on a shared machine ``before``'s own rate here shows what the cores gave this run."""
    for m in ("cli", "run"):
        after = runs.get((m, "after")) or []
        if m not in modes or not after:
            continue
        e2e = _median(after, _RATES[0])
        print(f"target ({m}): >= {TARGET:,} sessions/s end to end on 2 cores: after's median {e2e:,.0f} "
              f"(lowest {min(_RATES[0](r) for r in after):,.0f}, highest {max(_RATES[0](r) for r in after):,.0f}): "
              f"{'met' if e2e >= TARGET else 'NOT met'}. The whole process: {_median(after, _RATES[1]):,.0f} "
              "sessions/s (not the issue's measure)")
        before = runs.get((m, "before")) or []
        if before:
            base = _median(before, _RATES[0])
            print(f"  after / before in this run: {e2e / base:.2f}x end to end (before ran at {base:,.0f} here, "
                  f"against the issue's {ISSUE_BASELINE:,}); the target is {TARGET / ISSUE_BASELINE:.2f}x the "
                  "issue's baseline")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    ap.add_argument("--child-seed", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--seeds", type=_at_least(0), default=10, help="conclusions at this many other seeds (the "
                    "scenario's seed + 1, + 2, ...): each variant's estimates and true effects against "
                    "before's, seed by seed (0: only the timed runs' comparison at the scenario's seed)")
    ap.add_argument("--repeat", type=_at_least(1), default=2, help="runs of each variant and mode (interleaved)")
    ap.add_argument("--variants", default="before,after,after-1")
    ap.add_argument("--modes", default="cli,run", help="cli (the whole process), run (run(write=False)), "
                    "calibrate (a small calibration: replications/s)")
    ap.add_argument("--before-commit", default=BEFORE_COMMIT)
    ap.add_argument("--no-warmup", dest="warmup", action="store_false",
                    help="skip the untimed first run of each tree (it fills the tree's numba cache)")
    ap.add_argument("--cal-users", type=int, default=600, help="calibrate mode: users per replication")
    ap.add_argument("--cal-replications", type=int, default=8, help="calibrate mode: replications")
    args = ap.parse_args()
    if args.child:
        child(args.child, args.child_seed)
        return
    variants = [v for v in args.variants.split(",") if v]
    modes = [m for m in args.modes.split(",") if m]
    for v in variants + modes:
        if v not in VARIANTS + MODES:
            raise SystemExit(f"unknown variant or mode {v!r}; expected one of {', '.join(VARIANTS + MODES)}")
    seeds = args.seeds
    if seeds and "before" not in variants:
        print("note: --seeds compares with 'before', which is not among the variants: no seeded runs")
        seeds = 0
    if seeds and not {"cli", "run"} & set(modes):
        print("note: --seeds runs the quickstart, and neither cli nor run mode is asked for: no seeded runs")
        seeds = 0
    for v in [v for v in CHECKS if v in variants and "run" not in modes]:
        print(f"note: {v} runs in run mode only" + (" (and in the seeded comparison)" if seeds else ""))
    print(f"quickstart end to end; cores available: {len(os.sched_getaffinity(0))}; load average before: {load()}")
    runs: dict[tuple[str, str], list[dict]] = {(m, v): [] for m in modes for v in variants}
    seeded: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="cf-e2e-") as tmp:
        before_dir = None
        if any(v.startswith("before") for v in variants):
            before_dir = Path(tmp) / "tree"
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(before_dir),
                            args.before_commit], check=True)
        # byte-compile both trees first, as installing a package does: with PYTHONDONTWRITEBYTECODE
        # set (as on this machine) a fresh tree would compile its ~120 modules from source in every
        # run (about 0.3 CPU s), and the fresh before-worktree would pay it while this tree does not
        for tree in [ROOT] + ([before_dir] if before_dir is not None else []):
            subprocess.run([sys.executable, "-m", "compileall", "-q", str(tree / "counterfeed")],
                           check=True, stdout=subprocess.DEVNULL)
        try:
            if args.warmup:  # a fresh worktree's first run compiles its numba kernels (its own cache)
                for v in dict.fromkeys(v.split("-")[0] for v in variants):
                    launch(v, "run", before_dir, Path(tmp))
            for rep in range(args.repeat):
                for m in modes:
                    for v in variants:
                        if v in CHECKS and m != "run":
                            continue  # its change is made in run()'s process: run mode only
                        r = launch(v, m, before_dir, Path(tmp), (args.cal_users, args.cal_replications))
                        runs[(m, v)].append(r)
                        if m == "calibrate":
                            rate = f"{r['sessions'] / r['wall_s']:>9,.2f} replications/s ({r['sessions']:,.0f} in "
                        else:
                            rate = (f"{_RATES[0](r):>9,.2f} sessions/s end to end ({r['simulate_s']:.2f} s of "
                                    f"simulation), whole process {_RATES[1](r):,.2f} ({r['sessions']:,.0f} in ")
                        print(f"  run {rep + 1} {m:<3} {v:<15} {rate}{r['wall_s']:.2f} s; "
                              f"{r['sessions'] / r['cpu_s']:,.2f} per CPU second; load {load()})", flush=True)
            if seeds:
                seeded = _seeded_runs(seeds, [v for v in variants if v in ("before", "after", "after-als", *CHECKS)],
                                      before_dir, Path(tmp))
        finally:
            if before_dir is not None:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(before_dir)],
                               check=False)
    print(f"load average after: {load()}\n")
    print("median over runs | sessions/s end to end (the simulation of all worlds: the issue's measure) "
          "| sessions/s of the whole process | sessions per CPU second | per world: seconds (sessions/s)\n"
          "(calibrate: replications instead of sessions, per the whole process)")
    for m in modes:
        for v in variants:
            rs = runs[(m, v)]
            if not rs:
                continue
            e2e, whole, per_cpu = (_median(rs, f) for f in _RATES) if m != "calibrate" else \
                (float("nan"), *(_median(rs, f) for f in _RATES[1:]))
            parts = []
            for w, (_, n) in rs[0]["worlds"].items():
                sec = statistics.median(r["worlds"][w][0] for r in rs)
                parts.append(f"{w} {sec:.2f} s" + (f" ({n / sec:,.0f}/s)" if n else ""))
            print(f"  {m:<9} {v:<15} {e2e:>9,.2f} {whole:>9,.2f} {per_cpu:>9,.2f}   " + "; ".join(parts))
            if len(rs) > 1 and m != "calibrate":  # the spread behind each median: these machines are noisy
                spread = [min(f(r) for r in rs) for f in _RATES] + [max(f(r) for r in rs) for f in _RATES]
                print(f"  {'':<9} {'(lowest, highest)':<15} " + "  ".join(f"{lo:,.0f}-{hi:,.0f}"
                                                                        for lo, hi in zip(spread[:3], spread[3:])))
    print()
    verdict(runs, modes)
    if "before" in variants:
        print("measured in this run over before (ratios of medians; run by run: geometric mean, 95%):")
        for m in modes:
            if not runs[(m, "before")] or m == "calibrate":
                continue
            base = [_median(runs[(m, "before")], f) for f in _RATES]
            for v in variants:
                if v not in ("before", *CHECKS) and runs[(m, v)]:
                    now = [_median(runs[(m, v)], f) for f in _RATES]
                    print(f"  {m} {v} / before: {now[0] / base[0]:.2f}x end to end, {now[1] / base[1]:.2f}x whole "
                          f"process, {now[2] / base[2]:.2f}x per CPU second; run by run: "
                          f"end to end {paired_ratio(runs[(m, v)], runs[(m, 'before')], _RATES[0])}, whole process "
                          f"{paired_ratio(runs[(m, v)], runs[(m, 'before')], _RATES[1])}")
        if "calibrate" in modes and runs[("calibrate", "before")]:
            base = _median(runs[("calibrate", "before")], _RATES[1])
            for v in variants:
                if v not in ("before", *CHECKS) and runs[("calibrate", v)]:
                    now = _median(runs[("calibrate", v)], _RATES[1])
                    print(f"  calibrate {v} / before: {now / base:.2f}x replications/s; run by run, 95%: "
                          f"{paired_ratio(runs[('calibrate', v)], runs[('calibrate', 'before')], _RATES[1])}")
        for v in variants:
            m = next((m for m in modes if m != "calibrate" and runs[(m, v)]), None)
            if v != "before" and m is not None:
                print(f"\nestimates, {v} vs before ({m}; difference in means, 95%):")
                print("\n".join(compare_estimates(runs[(m, "before")][0]["estimates"], runs[(m, v)][0]["estimates"])))
        if seeded:
            for v in seeded:
                if v != "before":
                    print("\n".join(compare_over_seeds(seeded["before"], seeded[v], v)))


if __name__ == "__main__":
    main()
