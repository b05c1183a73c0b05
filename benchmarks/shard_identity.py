"""Byte identity of sharded runs at 200k users (issue 20): 1, 2 and 4 shards write the same run directory.

The scenario has matrix factorization retrained daily against a Thompson-sampling bandit updated
online every serving window, a pre-period and two segments (the shape of
tests/scaling/test_shards.py, at scale). The unsharded run is the reference; the sharded ones run on a
``distributed.LocalCluster`` with one single-threaded worker per shard. Printed per shard count: the
wall time, the number of files compared, and whether every file (outcomes, events of every world,
truth, estimates; not the manifest, which holds timings) is byte-identical to the reference.

    python benchmarks/shard_identity.py                    # 200k users, 1 + 2 days
    python benchmarks/shard_identity.py --users 20000 --shards 2,4
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import hashlib  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402


def scenario(users: int, days: float):
    from counterfeed.core.scenario import Scenario

    return Scenario.from_dict({
        "name": "shard-identity", "seed": 11,
        "population": {"users": users, "dimensions": 16,
                       "segments": {"casual": {"share": 0.7, "activity": 0.7},
                                    "heavy": {"share": 0.3, "activity": 2.0}}},
        "catalog": {"plugin": "synthetic", "items": 1000, "topics": 12},
        "experiment": {"arms": {"control": {"recommender": "thompson"},
                                "treatment": {"recommender": "matrix-factorization", "factors": 16}},
                       "pre_period": "1d", "duration": f"{days}d", "batch_window": "1h",
                       "retrain_every": "1d", "slate_size": 10},
        "analysis": [{"estimator": "diff-in-means"}, {"estimator": "cuped"}],
        "output": {"report": False}})


def digest(run_dir: Path) -> dict[str, str]:
    return {str(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run_dir.rglob("*")) if p.is_file() and p.name != "manifest.json"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=200_000)
    ap.add_argument("--days", type=float, default=2.0, help="experiment days (after a 1-day pre-period)")
    ap.add_argument("--shards", default="2,4")
    args = ap.parse_args()
    from counterfeed.core.runner import run

    sc = scenario(args.users, args.days)
    with tempfile.TemporaryDirectory(prefix="cf-shards-") as tmp:
        t0 = time.perf_counter()
        ref = run(sc, output_dir=Path(tmp) / "1")
        base = digest(ref.run_dir)
        print(f"{args.users:,} users, unsharded: {ref.timings['sessions']:,.0f} sessions in "
              f"{time.perf_counter() - t0:.1f} s; {len(base)} files", flush=True)
        ok = True
        for shards in (int(x) for x in args.shards.split(",")):
            t0 = time.perf_counter()
            got = digest(run(sc, output_dir=Path(tmp) / str(shards), shards=shards).run_dir)
            differ = sorted(k for k in set(base) | set(got) if base.get(k) != got.get(k))
            ok &= not differ
            print(f"{args.users:,} users, {shards} shards (LocalCluster): {time.perf_counter() - t0:.1f} s; "
                  f"byte-identical to unsharded: {not differ}" + (f" (differ: {differ})" if differ else ""),
                  flush=True)
    print("all byte-identical" if ok else "NOT byte-identical")


if __name__ == "__main__":
    main()
