"""Text embedding throughput: items/s cold (model forward passes) and cached (no forward pass).

Usage::

    python benchmarks/text_embedding_speed.py [--items 1000] [--dtype auto|float32|bfloat16]
                                              [--batch-size 32] [--threads N]

Embeds ``--items`` synthetic catalog texts (title + two or three sentences, ~40 words) with
all-MiniLM-L6-v2 into a fresh temporary cache, then embeds them again with a new embedder instance
reading the cache. Prints the effective dtype and torch threads, the model load time, items/s cold
and items/s cached, and the forward passes of the cached run (must be 0).
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--items", type=int, default=1000)
    ap.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"])
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    from counterfeed.text.embedder import TransformerEmbedder
    from counterfeed.text.generate import generate_texts

    rng = np.random.default_rng(0)
    texts = generate_texts(rng.integers(0, 18, args.items), rng)
    words = np.mean([len(t.split()) for t in texts])
    with tempfile.TemporaryDirectory() as cache:
        opts = dict(cache_dir=cache, dtype=args.dtype, batch_size=args.batch_size, threads=args.threads,
                    device=args.device)
        cold = TransformerEmbedder("minilm", **opts)
        t0 = time.perf_counter()
        cold.embed(["warm-up: load the model"])
        load = time.perf_counter() - t0
        cold.forward_calls = 0
        t0 = time.perf_counter()
        a = cold.embed(texts)
        t_cold = time.perf_counter() - t0
        warm = TransformerEmbedder("minilm", **opts)
        t0 = time.perf_counter()
        b = warm.embed(texts)
        t_cached = time.perf_counter() - t0
        assert np.array_equal(a, b)
        import torch

        threads = args.threads or torch.get_num_threads()
    print(f"model all-MiniLM-L6-v2  dtype={cold.dtype}  device={args.device}  torch threads={threads}  "
          f"batch_size={args.batch_size}")
    print(f"items={args.items}  mean words/text={words:.1f}  model load={load:.2f} s")
    print(f"cold:   {args.items / t_cold:9.1f} items/s  ({cold.forward_calls} forward passes, {t_cold:.2f} s)")
    print(f"cached: {args.items / t_cached:9.1f} items/s  ({warm.forward_calls} forward passes, {t_cached:.3f} s)")


if __name__ == "__main__":
    main()
