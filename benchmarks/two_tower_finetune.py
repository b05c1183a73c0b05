"""Fine-tuning cost of ``text-two-tower``: time per epoch, head-only and LoRA, on a synthetic log.

Usage::

    python benchmarks/two_tower_finetune.py [--items 2000] [--clicks 50000] [--users 5000]
                                            [--epochs 3] [--lora-epochs 1] [--threads 2]

Builds a ``synthetic-text`` catalog of ``--items`` items (MiniLM embeddings, cached on disk), draws
``--clicks`` clicks of ``--users`` users with two-topic text personas (multinomial logit over random
10-item slates, so every click has a logged propensity), then fits, with the weight cache off:

- ``head``: the projection head on the frozen encoder, ``--epochs`` epochs;
- ``lora``: LoRA adapters (rank 8) on the last transformer layer plus the head, ``--lora-epochs``;
  the one-off cost (tokenising once and running the frozen lower layers over the catalog) is
  printed separately from the per-epoch time.

Baseline measured in the same run: ``matrix-factorization`` (16 factors, 4 epochs) fitted on the
same log, and the frozen encoder's forward pass over the catalog. Prints the load average, so the
figures can be read against how busy the machine was. A cached rerun of a fit is checked to run 0
training steps.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402


def _log(items, n_users: int, n_clicks: int, seed: int):
    """A log with ``n_clicks`` clicks: persona utilities, random 10-item slates, propensity 10 / n."""
    from counterfeed.core.contracts import Log, Population
    from counterfeed.core.randomness import Keys
    from counterfeed.text.personas import text_preferences

    rng = np.random.default_rng(seed)
    pop = Population(n=n_users, preferences=np.zeros((n_users, 1)), segment=np.zeros(n_users, np.int64),
                     segment_names=["all"], activity=np.ones(n_users))
    pref = text_preferences(pop, items, Keys(seed).stream("population:text"))
    n = items.n
    us, its, ts = [], [], []
    got, t = 0, 0.0
    while got < n_clicks:
        users = rng.integers(0, n_users, 4096)
        slates = np.argsort(rng.random((users.size, n)), axis=1)[:, :10]
        util = 6.0 * np.einsum("ue,uke->uk", pref[users], items.embeddings[slates]) + rng.gumbel(size=slates.shape)
        best = util.argmax(1)
        clicked = util.max(1) > 1.5 + rng.gumbel(size=users.size)
        us.append(users[clicked])
        its.append(slates[np.arange(users.size), best][clicked])
        ts.append(np.full(int(clicked.sum()), t))
        got += int(clicked.sum())
        t += 0.1
    u, i, tt = (np.concatenate(a)[:n_clicks] for a in (us, its, ts))
    m = u.size
    return Log(user=u.astype(np.int64), session=np.arange(m, dtype=np.int64), time=tt,
               position=np.zeros(m, np.int64), item=i.astype(np.int64), click=np.ones(m, bool), dwell=np.zeros(m),
               propensity=np.full(m, 10.0 / n))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--items", type=int, default=2000)
    ap.add_argument("--clicks", type=int, default=50_000)
    ap.add_argument("--users", type=int, default=5000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lora-epochs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import torch

    from counterfeed.core.contracts import CatalogContext, RecommenderContext
    from counterfeed.core.randomness import Keys
    from counterfeed.plugins.catalogs.text import SyntheticTextCatalog
    from counterfeed.plugins.recommenders.matrix_factorization import MatrixFactorization
    from counterfeed.plugins.recommenders.text_two_tower import TextTwoTowerRecommender

    print(f"load average at start: {os.getloadavg()[0]:.1f} (cores: {os.cpu_count()}); training threads: "
          f"{args.threads}; torch {torch.__version__}")
    keys = Keys(args.seed)
    t0 = time.perf_counter()
    items = SyntheticTextCatalog({"items": args.items, "topics": 12, "embedder": "minilm"}).build(
        CatalogContext(keys=keys, stream=keys.stream("catalog"), dimensions=16))
    print(f"catalog: {items.n} items embedded in {time.perf_counter() - t0:.1f} s (from the embedding cache "
          "when warm)")
    log = _log(items, args.users, args.clicks, args.seed)
    print(f"log: {len(log):,} clicks of {np.unique(log.user).size:,} users on {np.unique(log.item).size:,} items")

    ctx = RecommenderContext(items=items, n_users=args.users, slate_size=10, keys=keys, arm="bench")
    mf = MatrixFactorization({"factors": 16, "epochs": 4, "threads": args.threads})
    mf.setup(ctx)
    t0 = time.perf_counter()
    mf.fit(log)
    print(f"baseline: matrix-factorization fit (4 epochs) {time.perf_counter() - t0:.2f} s")

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["COUNTERFEED_CACHE_DIR"] = tmp
        rows = []
        for label, opts in (("head", {"train": "head", "epochs": args.epochs}),
                            ("lora (last layer, r=8)", {"train": "lora", "layers": 1, "epochs": args.lora_epochs})):
            rec = TextTwoTowerRecommender({**opts, "threads": args.threads, "batch_items": 256})
            rec.setup(ctx)
            t0 = time.perf_counter()
            rec.fit(log)
            total = time.perf_counter() - t0
            info = rec.fit_info_
            per_epoch = info["seconds"] / max(info["epochs"], 1)
            rows.append((label, info["epochs"], info["steps"], total, info["seconds"], per_epoch))
            again = TextTwoTowerRecommender({**opts, "threads": args.threads, "batch_items": 256})
            again.setup(ctx)
            t1 = time.perf_counter()
            again.fit(log)
            cached = time.perf_counter() - t1
            assert again.steps_ == 0 and np.array_equal(again.item_embeddings_, rec.item_embeddings_)
            print(f"{label}: fit {total:.1f} s (training {info['seconds']:.1f} s, one-off setup "
                  f"{total - info['seconds']:.1f} s), {info['epochs']} epochs, {info['steps']} steps, "
                  f"{per_epoch:.1f} s/epoch, loss {info['losses'][0]:.3f} -> {info['losses'][-1]:.3f}; "
                  f"cached rerun {cached:.2f} s, 0 training steps")
    print(f"load average at end: {os.getloadavg()[0]:.1f}")
    budget = 300.0
    for label, epochs, _, total, train_s, per_epoch in rows:
        print(f"{label}: {epochs} epochs within the 5-minute budget: {'yes' if total <= budget else 'NO'} "
              f"({total:.0f} s); epochs that fit in 5 minutes: {int((budget - (total - train_s)) // per_epoch)}")


if __name__ == "__main__":
    main()
