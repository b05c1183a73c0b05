"""Byte identity of sharded runs at 200k users (issue 20): 1, 2 and 4 shards write the same run directory.

The scenario (tests/scaling/sharded_scenario.py, at scale: 16 dimensions, 1,000 items, 1-hour
windows) has matrix factorization retrained daily against a Thompson-sampling bandit updated online
every serving window, a pre-period and two segments. The unsharded run is the reference; the sharded ones run on a
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
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "scaling"))
from sharded_scenario import digest, sharded_scenario  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=200_000)
    ap.add_argument("--days", type=float, default=2.0, help="experiment days (after a 1-day pre-period)")
    ap.add_argument("--shards", default="2,4")
    args = ap.parse_args()
    from counterfeed.core.runner import run

    sc = sharded_scenario(args.users, days=args.days, dimensions=16, items=1000, window="1h", factors=16,
                          epochs=5, seed=11)
    with tempfile.TemporaryDirectory(prefix="cf-shards-") as tmp:
        t0 = time.perf_counter()
        ref = run(sc, output_dir=Path(tmp) / "1")
        base = digest(ref.run_dir)
        print(f"{args.users:,} users, unsharded: {ref.timings['sessions']:,.0f} sessions in "
              f"{time.perf_counter() - t0:.1f} s; {len(base)} files", flush=True)
        ok = True
        for shards in (int(x) for x in args.shards.split(",")):
            t0 = time.perf_counter()
            got = digest(run(sc, output_dir=Path(tmp) / str(shards), shards=shards, workers=shards).run_dir)
            differ = sorted(k for k in set(base) | set(got) if base.get(k) != got.get(k))
            ok &= not differ
            print(f"{args.users:,} users, {shards} shards (LocalCluster): {time.perf_counter() - t0:.1f} s; "
                  f"byte-identical to unsharded: {not differ}" + (f" (differ: {differ})" if differ else ""),
                  flush=True)
    print("all byte-identical" if ok else "NOT byte-identical")


if __name__ == "__main__":
    main()
