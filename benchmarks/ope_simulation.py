"""Off-policy evaluation against the simulator's truth: static users vs the default dynamic users.

Replicates (a) ``scenarios/ope_offline.yaml`` (logging = random, target = popularity without
exploration, 7-day pre-period, 1-day experiment, user model without satiation, return or churn
dynamics) and (b) the same scenario with the default ``choice`` dynamics and a 7-day experiment,
and prints per OPE estimator its bias, RMSE and the coverage of its 95% interval (Wilson interval)
against two truths:

* ``plugin``: the truth the ``ope`` estimator scores itself against, the click rate per impression
  of the whole counterfactual world ``all-treatment`` (its impressions from time 0, so the pre-period
  impressions served by the logging policy are included);
* ``experiment``: the click rate per impression of ``all-treatment`` during the experiment only,
  recovered from the ``ratio`` estimator's truths of the same replication (ratio of sums in the
  counterfactual worlds): ``ctr_T = d / r + d`` with ``d`` the true difference, ``r`` the relative one.

    python benchmarks/ope_simulation.py                  # 200 replications of each, 2 workers, resumable
    python benchmarks/ope_simulation.py -n 50 --fresh
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from calibration_common import parser, run_calibration, scenario

ROOT = Path(__file__).resolve().parents[1]
STATIC = ROOT / "scenarios" / "ope_offline.yaml"
_STATIC_DYNAMICS = "  satiation_weight: 0\n  return_weight: 0\n  churn_weight: 0\n"


def scenarios() -> dict[str, object]:
    """The static scenario as written and its dynamic variant (default user model, 7-day test)."""
    text = STATIC.read_text()
    if _STATIC_DYNAMICS not in text or "  duration: 1d\n" not in text:
        raise SystemExit(f"{STATIC} no longer has the expected user_model/duration lines")
    dynamic = (text.replace(_STATIC_DYNAMICS, "").replace("  duration: 1d\n", "  duration: 7d\n")
               .replace("name: ope_offline", "name: ope_dynamic"))
    return {"static": scenario(text, "ope-static"), "dynamic": scenario(dynamic, "ope-dynamic")}


def experiment_truth(records: pd.DataFrame) -> pd.Series:
    """Per replication: all-treatment click rate per impression during the experiment (from ``ratio``)."""
    r = records[(records["estimator"] == "ratio") & (records["metric"] == "ctr")]
    d = r[r["estimand"] == "difference"].set_index("replication")["truth"].astype(float)
    rel = r[r["estimand"] == "relative"].set_index("replication")["truth"].astype(float)
    rel = rel.where(rel != 0)
    return d / rel + d


def score(records: pd.DataFrame) -> pd.DataFrame:
    """Bias, RMSE and coverage (Wilson 95%) of each OPE estimator against both truths."""
    from counterfeed.calibration import wilson_interval

    exp_truth = experiment_truth(records)
    rows = []
    ope = records[records["estimator"].astype(str).str.startswith("ope:")]
    for name, g in ope.groupby("estimator", sort=False):
        g = g.set_index("replication")
        for label, truth in (("plugin", g["truth"].astype(float)), ("experiment", exp_truth.reindex(g.index))):
            ok = truth.notna()
            t, pt = truth[ok].to_numpy(), g.loc[ok, "point"].to_numpy(float)
            lo, hi = g.loc[ok, "lower"].to_numpy(float), g.loc[ok, "upper"].to_numpy(float)
            cov = int(np.sum((lo <= t) & (t <= hi)))
            n = int(ok.sum())
            wl, wu = wilson_interval(cov, n)
            rows.append({"estimator": name, "truth": label, "n": n, "mean_estimate": pt.mean(),
                         "mean_truth": t.mean(), "bias": (pt - t).mean(), "rmse": np.sqrt(((pt - t) ** 2).mean()),
                         "coverage": cov / n if n else np.nan, "cov_lo": wl, "cov_hi": wu,
                         "width": (hi - lo).mean()})
    return pd.DataFrame(rows)


def main() -> None:
    p = parser(__doc__.splitlines()[0], 200)
    p.set_defaults(workers=2, out=Path("/tmp/counterfeed-bench"))
    args = p.parse_args()
    for label, sc in scenarios().items():
        res, wall, workers = run_calibration(sc, args, args.out / f"ope-simulation-{label}")
        table = score(res.records)
        print(f"\n{label}: {sc.name}, {res.completed} replications, {workers} workers, {wall:.0f} s "
              f"(output {res.out_dir})")
        print(f"{'estimator':10s} {'truth':10s} {'estimate':>9s} {'truth':>8s} {'bias':>8s} {'RMSE':>8s} "
              f"{'coverage':>9s} {'Wilson 95%':>16s} {'width':>7s}")
        for _, r in table.iterrows():
            print(f"{r['estimator']:10s} {r['truth']:10s} {r['mean_estimate']:9.4f} {r['mean_truth']:8.4f} "
                  f"{r['bias']:+8.4f} {r['rmse']:8.4f} {100 * r['coverage']:8.1f}% "
                  f"[{100 * r['cov_lo']:5.1f}, {100 * r['cov_hi']:5.1f}]% {r['width']:7.4f}")


if __name__ == "__main__":
    main()
