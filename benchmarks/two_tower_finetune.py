"""Fine-tuning cost of ``text-two-tower``: time per epoch, head-only and LoRA, on a synthetic log.

Usage::

    python benchmarks/two_tower_finetune.py [--items 2000] [--clicks 50000] [--test-clicks 5000]
                                            [--users 5000] [--epochs 3] [--lora-epochs 1 3]
                                            [--lora-rank 8] [--threads 2] [--space minilm]

Builds a ``synthetic-text`` catalog of ``--items`` items (MiniLM embeddings, cached on disk), draws
``--clicks`` training clicks (plus ``--test-clicks`` later ones, held out) of ``--users`` users with
two-topic text personas (in ``--space``: ``minilm``, the catalog's own space, or ``hashing``, the
word-level space of scenarios/text_two_tower.yaml, at utility scale ``--scale``; multinomial logit
over random 10-item slates, so every click has a logged propensity), then fits, with the weight cache off:

- ``head``: the projection head on the frozen encoder, ``--epochs`` epochs;
- ``lora``: LoRA adapters (rank ``--lora-rank`` on the query and value projections) on the last
  transformer layer plus the head, once per entry of ``--lora-epochs``; the one-off cost
  (tokenising once and running the five frozen lower layers over the catalog) is printed separately
  from the per-epoch time.

Each fit prints its wall time, its CPU time (``time.process_time``: all threads of this process),
the load average before and after, and the held-out recall@10 of the fitted model (the clicked item
among the whole catalog, ranked by the pooled user vector), so fewer epochs can be judged by the
quality they give. Baselines measured in the same run: ``matrix-factorization`` (16 factors, 4
epochs) on the same log, and the frozen encoder's held-out recall@10 (no training). A cached rerun
of every fit is checked to run 0 training steps and give identical vectors.
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


def _log(items, n_users: int, n_clicks: int, seed: int, space: str, scale: float):
    """A log with ``n_clicks`` clicks: persona utilities in the text space ``space`` (``minilm``: the
    catalog's own embeddings; ``hashing``: the word-level space of scenarios/text_two_tower.yaml),
    random 10-item slates, propensity 10 / n."""
    from dataclasses import replace

    from counterfeed.core.contracts import Log, Population
    from counterfeed.core.randomness import Keys
    from counterfeed.text.embedder import get_embedder
    from counterfeed.text.personas import text_preferences

    rng = np.random.default_rng(seed)
    pop = Population(n=n_users, preferences=np.zeros((n_users, 1)), segment=np.zeros(n_users, np.int64),
                     segment_names=["all"], activity=np.ones(n_users))
    emb = None if space == "minilm" else get_embedder(space)
    if emb is not None:  # as the choice model's text_space option does
        items = replace(items, embeddings=emb.embed(items.text))
    pref = text_preferences(pop, items, Keys(seed).stream("population:text"), embedder=emb)
    n = items.n
    us, its, ts = [], [], []
    got, t = 0, 0.0
    while got < n_clicks:
        users = rng.integers(0, n_users, 4096)
        slates = np.argsort(rng.random((users.size, n)), axis=1)[:, :10]
        util = scale * np.einsum("ue,uke->uk", pref[users], items.embeddings[slates]) + rng.gumbel(size=slates.shape)
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
    ap.add_argument("--lora-epochs", type=int, nargs="+", default=[1, 3])
    ap.add_argument("--lora-rank", type=int, default=8)
    ap.add_argument("--test-clicks", type=int, default=5_000)
    ap.add_argument("--space", default="minilm", help="users' taste space: minilm (the catalog's) or hashing")
    ap.add_argument("--scale", type=float, default=6.0, help="utility scale of the text tastes")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import torch

    from counterfeed.core.contracts import CatalogContext, RecommenderContext
    from counterfeed.core.randomness import Keys
    from counterfeed.plugins.catalogs.text import SyntheticTextCatalog
    from counterfeed.plugins.recommenders.matrix_factorization import MatrixFactorization
    from counterfeed.plugins.recommenders.text_embedding import TextEmbeddingRecommender
    from counterfeed.plugins.recommenders.text_two_tower import TextTwoTowerRecommender

    print(f"load average at start: {os.getloadavg()[0]:.1f} (cores: {os.cpu_count()}); training threads: "
          f"{args.threads}; torch {torch.__version__}")
    keys = Keys(args.seed)
    t0 = time.perf_counter()
    items = SyntheticTextCatalog({"items": args.items, "topics": 12, "embedder": "minilm"}).build(
        CatalogContext(keys=keys, stream=keys.stream("catalog"), dimensions=16))
    print(f"catalog: {items.n} items embedded in {time.perf_counter() - t0:.1f} s (from the embedding cache "
          "when warm)")
    full = _log(items, args.users, args.clicks + args.test_clicks, args.seed, args.space, args.scale)
    log, test = full.select(np.arange(len(full)) < args.clicks), full.select(np.arange(len(full)) >= args.clicks)
    print(f"log: {len(log):,} training clicks of {np.unique(log.user).size:,} users on {np.unique(log.item).size:,} items")

    ctx = RecommenderContext(items=items, n_users=args.users, slate_size=10, keys=keys, arm="bench")
    mf = MatrixFactorization({"factors": 16, "epochs": 4, "threads": args.threads})
    mf.setup(ctx)
    t0 = time.perf_counter()
    mf.fit(log)
    print(f"baseline: matrix-factorization fit (4 epochs) {time.perf_counter() - t0:.2f} s")
    frozen = TextEmbeddingRecommender({})
    frozen.setup(ctx)
    frozen.fit(log)
    print(f"baseline: frozen encoder (no training), held-out recall@10 {_recall(frozen, test, items):.4f}")

    variants = [("head", {"train": "head", "epochs": args.epochs})]
    for e in args.lora_epochs:
        variants.append((f"lora (last layer, r={args.lora_rank}, {e} ep)",
                         {"train": "lora", "layers": 1, "lora_rank": args.lora_rank, "epochs": e}))
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["COUNTERFEED_CACHE_DIR"] = tmp
        rows = []
        for label, opts in variants:
            rec = TextTwoTowerRecommender({**opts, "threads": args.threads, "batch_items": 256})
            rec.setup(ctx)
            load0, t0, c0 = os.getloadavg()[0], time.perf_counter(), time.process_time()
            rec.fit(log)
            total, cpu = time.perf_counter() - t0, time.process_time() - c0
            info = rec.fit_info_
            per_epoch = info["seconds"] / max(info["epochs"], 1)
            rows.append((label, info["epochs"], total, info["seconds"], per_epoch))
            recall = _recall(rec, test, items)
            again = TextTwoTowerRecommender({**opts, "threads": args.threads, "batch_items": 256})
            again.setup(ctx)
            t1 = time.perf_counter()
            again.fit(log)
            cached = time.perf_counter() - t1
            assert again.steps_ == 0 and np.array_equal(again.item_embeddings_, rec.item_embeddings_)
            print(f"{label}: fit {total:.1f} s wall, {cpu:.1f} s CPU (training {info['seconds']:.1f} s, one-off "
                  f"setup {total - info['seconds']:.1f} s), {info['epochs']} epochs, {info['steps']} steps, "
                  f"{per_epoch:.1f} s/epoch, loss {info['losses'][0]:.3f} -> {info['losses'][-1]:.3f}; held-out "
                  f"recall@10 {recall:.4f}; load average {load0:.1f} -> {os.getloadavg()[0]:.1f}; "
                  f"cached rerun {cached:.2f} s, 0 training steps", flush=True)
    print(f"load average at end: {os.getloadavg()[0]:.1f}")
    budget = 300.0
    for label, epochs, total, train_s, per_epoch in rows:
        print(f"{label}: {epochs} epochs within the 5-minute budget: {'yes' if total <= budget else 'NO'} "
              f"({total:.0f} s); epochs that fit in 5 minutes: {int((budget - (total - train_s)) // per_epoch)}")


def _recall(rec, test, items) -> float:
    """Naive recall@10 of ``rec`` on the held-out clicks (every catalog item a candidate)."""
    from counterfeed.core.randomness import Keys
    from counterfeed.offline.evaluate import held_out_ranks

    ranks, _, _ = held_out_ranks(rec, test, items, 10, Keys(1).stream("policy:offline"))
    return float(((ranks >= 1) & (ranks <= 10)).mean())

if __name__ == "__main__":
    main()
