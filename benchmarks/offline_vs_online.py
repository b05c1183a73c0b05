"""Do offline ranking metrics predict the online effect? Rank correlations against the simulator's truth.

Usage::

    python benchmarks/offline_vs_online.py [--users 800] [--days 10] [--pre 7] [--boot 500]

One run of a scenario (the catalog and users of scenarios/text_two_tower.yaml, with a stochastic
logging policy: popularity with 30% epsilon exploration, so every item has a positive logged
propensity) with one arm per recommender: popularity (greedy), matrix factorization, the frozen
text-embedding recommender, three text-two-tower variants (head-only, head-only with IPW exposure
correction, LoRA on the last layer) and a bandit (linucb).

- **Offline**: every recommender is fitted on the pre-period log (everyone on the logging policy) up
  to two days before the experiment start and ranks the items for the held-out clicks of the last
  two pre-period days (:func:`counterfeed.offline.evaluate_offline`): recall@10, NDCG@10, MRR,
  naive and IPW, and coverage@10.
- **Online truth**: each arm's true effect vs the logging policy from the counterfactual worlds
  (everyone on that arm), on clicks per user (short term) and on sessions per user and retention
  (long term).

For each offline metric and each online outcome, Spearman's rank correlation over the recommenders,
with a percentile bootstrap interval over users (users resampled jointly for the held-out clicks
and the per-user online outcomes; the recommenders are fixed). With 8 policies a rank correlation
is coarse: an interval that spans zero means the offline metric does not order them reliably.
The closing lines name the best predictor of each outcome by a stated criterion (the largest point
rho; only rho > 0 counts, so "none predicts positively" when every rho is <= 0; equal rhos are named
as a tie; :func:`best_predictors`).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "text_two_tower.yaml"
ARMS = {
    "logging": {"recommender": "popularity", "exploration": "epsilon", "epsilon": 0.3},
    "popularity": {"recommender": "popularity"},
    "mf": {"recommender": "matrix-factorization", "factors": 16},
    "frozen": {"recommender": "text-embedding", "half_life": 7},
    "tower": {"recommender": "text-two-tower", "half_life": 7, "epochs": 20, "warm_epochs": 5, "lr": 0.003},
    "tower-ipw": {"recommender": "text-two-tower", "half_life": 7, "epochs": 20, "warm_epochs": 5, "lr": 0.003,
                  "exposure_correction": "ipw", "ipw_clip": 50},
    "tower-lora": {"recommender": "text-two-tower", "half_life": 7, "train": "lora", "layers": 1, "epochs": 2,
                   "warm_epochs": 1, "lr": 0.001},
    "linucb": {"recommender": "linucb"},
}
OFFLINE = ["recall@10", "ndcg@10", "mrr"]
ONLINE = ["clicks", "sessions", "retained"]


def _ratio(values: np.ndarray, weights: np.ndarray, code: np.ndarray, n_users: int, counts: np.ndarray) -> float:
    a = np.bincount(code, weights=weights * values, minlength=n_users)
    b = np.bincount(code, weights=weights, minlength=n_users)
    return float((a * counts).sum() / max((b * counts).sum(), 1e-300))


def best_predictors(rhos: dict[str, tuple[float, float, float]], tol: float = 1e-9) -> str:
    """One sentence naming the offline metric(s) that predict an online outcome best, and the criterion.

    ``rhos`` maps an offline metric's name to (Spearman rho on the full sample, bootstrap lower, upper).
    Criterion: the largest point rho, and only a positive rho counts as predicting; metrics within
    ``tol`` of the largest are a tie and are all named (rank correlations over a few recommenders take
    few distinct values, so ties are common). Says when no rho is positive, and whether the best one's
    bootstrap interval lies above zero.
    """
    finite = {k: v for k, v in rhos.items() if np.isfinite(v[0])}
    if not finite:
        return "none (every rank correlation is undefined)"
    top = max(v[0] for v in finite.values())
    if top <= 0:
        return f"none predicts positively (largest rho {top:+.2f}; {len(finite)} metrics, all rho <= 0)"
    tied = [k for k, v in finite.items() if abs(v[0] - top) <= tol]
    above = [k for k in tied if finite[k][1] > 0]
    sure = ("its bootstrap interval lies above 0" if len(tied) == 1 and above else
            "its bootstrap interval includes 0" if len(tied) == 1 else
            f"intervals above 0: {', '.join(above) or 'none'}")
    names = tied[0] if len(tied) == 1 else f"a tie of {len(tied)}: {', '.join(tied)}"
    return f"{names}, rho {top:+.2f} ({sure})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--users", type=int, default=800)
    ap.add_argument("--days", type=int, default=10)
    ap.add_argument("--pre", type=int, default=7)
    ap.add_argument("--boot", type=int, default=500)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--skip", default="", help="comma-separated arms to leave out (e.g. tower-lora)")
    args = ap.parse_args()

    import counterfeed
    from counterfeed.core.experiment import counterfactual_world
    from counterfeed.core.scenario import load_scenario
    from counterfeed.offline import evaluate_offline, split_log

    arms = {k: v for k, v in ARMS.items() if k not in set(filter(None, args.skip.split(",")))}
    print(f"load average at start: {os.getloadavg()[0]:.1f}")
    base = load_scenario(SCENARIO)
    sc = base.with_overrides({"seed": args.seed, "population.users": args.users, "experiment.duration": f"{args.days}d",
                              "experiment.pre_period": f"{args.pre}d", "experiment.arms": arms,
                              "experiment.split": {a: 1.0 / len(arms) for a in arms},
                              "experiment.control": "logging", "analysis": []})
    t0 = time.perf_counter()
    res = counterfeed.run(sc, write=False, keep_events=True)
    print(f"simulated {len(arms) + 1} worlds in {time.perf_counter() - t0:.0f} s")
    ab = res.events["ab"]
    items = ab.items
    pre = ab.impressions.select(ab.impressions.time < args.pre)
    train, test, split = split_log(pre, split_time=args.pre - 2.0)
    n = ab.n_users

    offline = {}
    for arm, spec in arms.items():
        opts = {k: v for k, v in spec.items() if k != "recommender"}
        t1 = time.perf_counter()
        offline[arm] = evaluate_offline(spec["recommender"], opts, train, test, items, n, ks=[10], cutoff=100,
                                        seed=args.seed)
        print(f"offline {arm:11s} ({time.perf_counter() - t1:5.1f} s): " + ", ".join(
            f"{m} {offline[arm].value(m, 'naive'):.4f}/{offline[arm].value(m, 'ipw'):.4f}" for m in OFFLINE)
            + f", coverage@10 {offline[arm].coverage[10]:.3f}")

    out = res.outcomes
    online = {}
    for arm in arms:
        w = out[out["world"] == counterfactual_world(arm)].sort_values("user")
        online[arm] = {m: w[m].to_numpy(np.float64) for m in ONLINE}
    names = list(arms)
    print("\ntrue online effect vs the logging policy (counterfactual worlds, per user):")
    for arm in names:
        print(f"  {arm:11s} " + ", ".join(f"{m} {online[arm][m].mean() - online['logging'][m].mean():+.3f}"
                                          for m in ONLINE))

    rng = np.random.default_rng(args.seed)
    draws = [np.ones(n)] + [np.bincount(rng.integers(0, n, n), minlength=n).astype(np.float64)
                            for _ in range(args.boot)]

    def offline_value(arm: str, metric: str, weighting: str, counts: np.ndarray) -> float:
        c = offline[arm].clicks
        w = c["weight"] if weighting == "ipw" else np.ones_like(c["weight"])
        return _ratio(c[metric], w, c["user"], n, counts)

    def online_value(arm: str, metric: str, counts: np.ndarray) -> float:
        return float((online[arm][metric] * counts).sum() / counts.sum())

    print(f"\nSpearman rank correlation over {len(names)} recommenders (95% bootstrap interval over users, "
          f"{args.boot} draws):")
    header = f"{'offline metric':18s}" + "".join(f"{m:>28s}" for m in ONLINE)
    print(header)
    best: dict[str, dict[str, tuple[float, float, float]]] = {t: {} for t in ONLINE}
    for metric in OFFLINE:
        for weighting in ("naive", "ipw"):
            cells = []
            for target in ONLINE:
                rhos = []
                if np.ptp([online_value(a, target, draws[0]) for a in names]) == 0:
                    cells.append("undefined (no variation)")
                    continue
                for counts in draws:
                    x = [offline_value(a, metric, weighting, counts) for a in names]
                    y = [online_value(a, target, counts) for a in names]
                    rhos.append(stats.spearmanr(x, y).statistic)
                rhos = np.asarray(rhos, np.float64)
                lo, hi = np.nanpercentile(rhos[1:], [2.5, 97.5])
                cells.append(f"{rhos[0]:+.2f} [{lo:+.2f}, {hi:+.2f}]")
                best[target][f"{metric} ({weighting})"] = (float(rhos[0]), float(lo), float(hi))
            print(f"{metric + ' ' + weighting:18s}" + "".join(f"{c:>28s}" for c in cells))
    cov = [offline[a].coverage[10] for a in names]
    cells = []
    for target in ONLINE:
        y = [online_value(a, target, draws[0]) for a in names]
        cells.append(f"{stats.spearmanr(cov, y).statistic:+.2f}" if np.ptp(y) > 0 else "undefined (no variation)")
    print(f"{'coverage@10':18s}" + "".join(f"{c:>28s}" for c in cells) + "   (no interval: a list property)")
    print("best predictor (criterion: the largest Spearman rho over the recommenders on the full sample; "
          "only rho > 0 counts; equal rhos are a tie):")
    for target, rhos_by_metric in best.items():
        if rhos_by_metric:
            print(f"  best predictor of {target}: {best_predictors(rhos_by_metric)}")
    print(f"total {time.perf_counter() - t0:.0f} s; load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
