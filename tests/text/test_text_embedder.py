"""Embedders: the hashing baseline, the spec factory, the cache, and the real MiniLM model offline."""

from __future__ import annotations

import numpy as np
import pytest

from counterfeed.errors import PluginError
from counterfeed.text.cache import EmbeddingCache, default_cache_dir, text_key
from counterfeed.text.embedder import HashingEmbedder, TransformerEmbedder, get_embedder


def test_hashing_is_deterministic_normalized_and_word_based():
    emb = HashingEmbedder(dim=64)
    texts = ["The striker scores a goal", "the STRIKER scores a goal!", "A sourdough starter rises", ""]
    a = emb.embed(texts)
    b = HashingEmbedder(dim=64).embed(texts)
    assert a.shape == (4, 64) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(np.linalg.norm(a[:3], axis=1), 1.0, rtol=1e-6)
    assert np.all(a[3] == 0)                     # empty text -> zero vector
    np.testing.assert_allclose(a[0], a[1])       # case and punctuation do not matter
    assert a[0] @ a[1] > a[0] @ a[2]


def test_get_embedder_specs():
    assert isinstance(get_embedder("hashing"), HashingEmbedder)
    assert get_embedder({"model": "hashing", "dim": 32}).dim == 32
    emb = HashingEmbedder()
    assert get_embedder(emb) is emb
    mini = get_embedder({"model": "minilm", "cache": False})
    assert isinstance(mini, TransformerEmbedder) and mini.dim == 384
    assert "all-MiniLM-L6-v2" in mini.identity


@pytest.mark.parametrize("spec, error, pattern", [
    ({"model": "hashing", "batch_size": 3}, ValueError, "unknown embedder option 'batch_size'"),
    ({"model": "minilm", "dim": 3}, ValueError, "unknown embedder option 'dim'"),
    ({"model": ""}, ValueError, "non-empty string"),
    ({"model": "minilm", "dtype": "float16"}, ValueError, "dtype must be"),
    ("./no/such/model/dir", PluginError, "does not exist"),
    ("nobody/not-a-cached-model", PluginError, "not in the local Hugging Face cache"),
    ("nobody/model-v1.5", PluginError, "not in the local Hugging Face cache"),
    ("a/b/c", PluginError, "does not exist"),
])
def test_get_embedder_bad_specs(spec, error, pattern):
    with pytest.raises(error, match=pattern):
        get_embedder(spec)


def test_default_cache_dir_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("COUNTERFEED_CACHE_DIR", str(tmp_path))
    assert default_cache_dir() == tmp_path / "embeddings"
    monkeypatch.delenv("COUNTERFEED_CACHE_DIR")
    assert default_cache_dir().parts[-3:] == (".cache", "counterfeed", "embeddings")


def test_cache_roundtrip_is_keyed_by_model_identity(tmp_path):
    vecs = np.arange(6, dtype=np.float32).reshape(2, 3)
    keys = [text_key("a"), text_key("b")]
    EmbeddingCache(tmp_path, "model-1", 3).put(keys, vecs)
    got = EmbeddingCache(tmp_path, "model-1", 3).get(keys + [text_key("c")])
    assert set(got) == set(keys)
    np.testing.assert_array_equal(got[keys[1]], vecs[1])
    assert EmbeddingCache(tmp_path, "model-2", 3).get(keys) == {}


def test_unwritable_cache_warns_and_still_embeds(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    cache = EmbeddingCache(blocker / "sub", "m", 3)
    with pytest.warns(RuntimeWarning, match="embedding cache disabled"):
        assert cache.get([text_key("a")]) == {}


# -- the real model (offline) ---------------------------------------------------------------------

def test_minilm_offline_semantics(tmp_path):
    emb = TransformerEmbedder("minilm", cache_dir=tmp_path)
    v = emb.embed([
        "A kitten is sleeping on the sofa.",
        "A small cat naps on the couch.",
        "The central bank raised interest rates again.",
        "Inflation pushed the Federal Reserve to tighten monetary policy.",
    ])
    assert v.shape == (4, 384)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-4)
    sim = v @ v.T
    # paraphrases are nearer than unrelated sentences, in both pairs
    assert sim[0, 1] > sim[0, 2] + 0.3 and sim[0, 1] > sim[0, 3] + 0.3
    assert sim[2, 3] > sim[2, 0] + 0.3 and sim[2, 3] > sim[2, 1] + 0.3


def test_minilm_matches_float32_and_cached_rerun_runs_no_forward_pass(tmp_path):
    texts = ["Sourdough starter tips.", "Mars rover lands.", "Sourdough starter tips.", ""]
    first = TransformerEmbedder("minilm", cache_dir=tmp_path, batch_size=2)
    a = first.embed(texts)
    assert first.forward_calls == 1                 # 2 distinct non-empty texts, batch size 2
    assert np.all(a[3] == 0) and np.array_equal(a[0], a[2])
    again = TransformerEmbedder("minilm", cache_dir=tmp_path)
    b = again.embed(texts)
    assert again.forward_calls == 0
    np.testing.assert_array_equal(a, b)
    exact = TransformerEmbedder("minilm", dtype="float32", cache=False).embed(texts[:2])
    # bfloat16 ("auto" on AMX CPUs) stays within 1e-3 cosine of float32 for this model
    assert np.all(np.sum(exact * a[:2], axis=1) > 0.999)


def test_rebuilding_a_catalog_from_the_cache_runs_no_forward_pass(tmp_path, make_ctx):
    from counterfeed.plugins.catalogs.text import SyntheticTextCatalog

    calls: list[int] = []
    _, model = TransformerEmbedder("minilm", cache=False)._load("cpu")   # the instance every embedder shares
    handle = model.register_forward_hook(lambda *args: calls.append(1))
    try:
        first = SyntheticTextCatalog(items=6, topics=3).build(make_ctx(cache_dir=str(tmp_path)))
        assert len(calls) >= 1
        n_first = len(calls)
        again = SyntheticTextCatalog(items=6, topics=3).build(make_ctx(cache_dir=str(tmp_path)))
        assert len(calls) == n_first                                     # no forward pass at all
    finally:
        handle.remove()
    np.testing.assert_array_equal(first.embeddings, again.embeddings)
    assert (tmp_path / "embeddings" / "embeddings.sqlite3").is_file()


@pytest.mark.parametrize("model", [3, None, "", "  "])
def test_validate_rejects_an_embedder_model_that_is_not_a_name(tmp_path, model):
    """What ``run`` would reject (``get_embedder``: the model must be a non-empty string),
    ``validate`` rejects first, naming the field (tester of 2026-12-01: ``{model: 3}`` passed)."""
    import subprocess
    import sys

    import yaml

    from tests.conftest import SMALL

    spec = {**SMALL, "catalog": {"plugin": "synthetic-text", "items": 40, "topics": 4,
                                 "embedder": {"model": model}}}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    out = subprocess.run([sys.executable, "-m", "counterfeed", "validate", str(path)], capture_output=True,
                         text=True)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "catalog.embedder" in out.stderr and "model" in out.stderr
