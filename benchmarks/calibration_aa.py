"""A/A false-positive rate of diff-in-means and the ratio estimator over 2,000 replications.

Both arms run the same recommender, so every true effect is zero and the rejection rate at
alpha = 5% is the false-positive rate. Target: within [4, 6]% (2,000 replications: the standard
error of a 5% rate is 0.49 points, so [4, 6] is a +-2 sd band around a calibrated test).

    python benchmarks/calibration_aa.py                # 2,000 replications, all cores, resumable
    python benchmarks/calibration_aa.py -n 200 -w 2    # quicker look
"""

from __future__ import annotations

from calibration_common import parser, run_calibration, scenario, verdict

AA = """
name: bench-aa
seed: 2026
population: {users: 500}
catalog: {plugin: synthetic, items: 200, topics: 8}
experiment:
  arms:
    control: {recommender: popularity}
    treatment: {recommender: popularity}
  duration: 2d
  batch_window: 2h
metrics: [clicks, sessions, dwell, ctr]
analysis:
  - estimator: diff-in-means
  - estimator: ratio
output: {dir: runs}
"""


def main() -> None:
    args = parser(__doc__.splitlines()[0], 2000).parse_args()
    res, wall, workers = run_calibration(scenario(AA, "aa"), args, args.out / "calibrate-bench-aa")
    s = res.summary[res.summary["estimand"] == "difference"]
    print(f"\nA/A calibration: {res.completed} replications, {workers} workers, {wall:.0f} s "
          f"({res.report.wall_time:.0f} s computing {len(res.report.computed)} now)")
    print(f"{'estimator':15s} {'metric':10s} {'false-positive rate':>20s} {'95% CI':>18s} {'coverage':>9s}  [4, 6]%")
    for _, r in s.iterrows():
        print(f"{r['estimator']:15s} {r['metric']:10s} {100 * r['rejection_rate']:19.2f}% "
              f"[{100 * r['rejection_lower']:5.2f}, {100 * r['rejection_upper']:5.2f}]% "
              f"{100 * r['coverage']:8.2f}%  {verdict(r['rejection_rate'], 0.04, 0.06)}")
    print(f"output: {res.out_dir}")


if __name__ == "__main__":
    main()
