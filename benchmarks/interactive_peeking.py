"""Daily peeking at an A/A test on the real engine: naive vs always-valid false-positive rates.

scenarios/sequential_aa.yaml runs the same popularity ranker in both arms on pooled training data,
so both arms serve identical slates and the A/B world's events do not depend on who is in which arm
(checked below against the all-control world, bit for bit). Each seed therefore simulates one world
and is analysed under ``--splits`` independent re-randomizations (salted hashes) of its users; every
(seed, split) is one A/A test with 14 daily looks. A test "rejects" when any look's interval
excludes 0. Reported: the share of tests rejecting with the naive Welch interval (peeking) and with
the asymptotic confidence sequence, plus the fixed-horizon (last look only) naive rate.

    python benchmarks/interactive_peeking.py              # 10 seeds x 40 splits (about 2 min)
    python benchmarks/interactive_peeking.py -n 3 --splits 20
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from counterfeed.core.contracts import CatalogContext  # noqa: E402
from counterfeed.core.estimation import AnalysisData  # noqa: E402
from counterfeed.core.experiment import assign  # noqa: E402
from counterfeed.core.outcomes import look_outcomes  # noqa: E402
from counterfeed.core.population import build_population  # noqa: E402
from counterfeed.core.randomness import Keys  # noqa: E402
from counterfeed.core.runner import WorldTask, resolve, simulate_world  # noqa: E402
from counterfeed.core.scenario import load_scenario  # noqa: E402
from counterfeed.plugins.estimators.sequential import SequentialDifference  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--seeds", type=int, default=10)
    ap.add_argument("--splits", type=int, default=40)
    ap.add_argument("--metric", default="clicks")
    args = ap.parse_args()
    base = load_scenario("scenarios/sequential_aa.yaml")
    t0 = time.perf_counter()
    rows = []
    for seed in range(1, args.seeds + 1):
        sc = base.with_overrides({"seed": seed})
        plan = resolve(sc)
        keys = Keys(sc.seed)
        items = plan.catalog().build(CatalogContext(keys=keys, stream=keys.stream("catalog"),
                                                    dimensions=sc.population.dimensions))
        pop = build_population(sc.population, keys)
        ab = simulate_world(WorldTask(sc, "ab", items, pop))
        if seed == 1:
            cf = simulate_world(WorldTask(sc, "all-control", items, pop))
            def ordered(ev):  # within a serving window the engine groups sessions by arm
                s = ev.sessions
                o = np.lexsort((s["session"], s["user"]))
                return [s[c][o] for c in ("user", "session", "time", "clicks", "impressions")]

            same = all(np.array_equal(a, b) for a, b in zip(ordered(ab.events), ordered(cf.events)))
            print(f"A/B world events identical to the all-control world: {same}")
        infos = {m: plan.metrics[m].info() for m in plan.analysed}
        est = SequentialDifference(metrics=[args.metric])
        start, end = float(sc.experiment.pre_period), float(sc.experiment.pre_period + sc.experiment.duration)
        looks = look_outcomes(ab.events, plan.metrics, start, est.look_times(end - start))
        for split in range(args.splits):
            arm_idx = assign(pop.n, {"control": 0.5, "treatment": 0.5}, f"peek-{split}", seed)
            arms = np.array(["control", "treatment"], dtype=object)[arm_idx]
            outcomes = ab.outcomes.drop(columns="world").assign(arm=arms)
            data = AnalysisData(outcomes=outcomes, arms=sc.arms, control=sc.control, metrics=infos,
                                level=sc.level, seed=seed, start=start, end=end, looks=looks)
            e = est.estimate(data)[0]
            last = e.diagnostics["path"][-1]
            rows.append((seed, e.diagnostics["naive_rejected_any_day"], e.diagnostics["rejected_any_day"],
                         last["naive_lower"] > 0 or last["naive_upper"] < 0))
        r = np.array(rows)[np.array(rows)[:, 0] == seed]
        print(f"seed {seed}: naive peeking {r[:, 1].mean():.3f}  always-valid {r[:, 2].mean():.3f}  "
              f"fixed horizon {r[:, 3].mean():.3f}", flush=True)
    r = np.array(rows, dtype=float)
    n = len(r)
    print(f"\n{n} A/A tests ({args.seeds} seeds x {args.splits} splits), 14 daily looks, metric "
          f"'{args.metric}', {time.perf_counter() - t0:.0f} s")
    for name, col in (("naive interval, any day", 1), ("always-valid CS, any day", 2),
                      ("naive interval, last day only", 3)):
        rate = r[:, col].mean()
        per_seed = [r[r[:, 0] == s, col].mean() for s in range(1, args.seeds + 1)]
        se_seed = np.std(per_seed, ddof=1) / np.sqrt(len(per_seed)) if len(per_seed) > 1 else float("nan")
        print(f"{name:32s} false-positive rate {rate:.3f}  (binomial se {np.sqrt(rate * (1 - rate) / n):.3f}, "
              f"between-seed se {se_seed:.3f})")


if __name__ == "__main__":
    main()
