"""``text-two-tower``: conformance, the weight cache (no training on a rerun), determinism, warm starts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from counterfeed.plugins.recommenders.text_two_tower import TextTwoTowerRecommender, two_tower_cache_dir
from counterfeed.testing import check_recommender
from counterfeed.testing.fixtures import make_context, make_log


@pytest.mark.parametrize("options", [
    {"embedder": "hashing"},
    {"embedder": "hashing", "exploration": "softmax", "temperature": 0.1, "user_embedding": True,
     "exposure_correction": "ipw"},
    {"embedder": "hashing", "train": "lora", "layers": 1, "epochs": 1},
    {"embedder": "hashing", "train": "last", "loss": "bpr", "epochs": 1, "exploration": "epsilon"},
])
def test_two_tower_conformance(options):
    assert set(check_recommender(TextTwoTowerRecommender, options).values()) == {"passed"}


class _Counter:
    """Counts backward passes (a wrapper around ``Tensor.backward``) and transformer-layer forwards
    (a global module forward hook)."""

    def __init__(self, monkeypatch):
        self.backward = 0
        self.forward = 0
        original = torch.Tensor.backward

        def backward(t, *a, **k):
            self.backward += 1
            return original(t, *a, **k)

        monkeypatch.setattr(torch.Tensor, "backward", backward)
        self._handle = torch.nn.modules.module.register_module_forward_hook(self._on_forward)

    def _on_forward(self, module, args, out):
        self.forward += 1

    def close(self):
        self._handle.remove()


def _fitted(options, log=None, ctx=None):
    ctx = ctx or make_context(n_items=60, n_users=120, slate_size=5, seed=3)
    rec = TextTwoTowerRecommender({"embedder": "hashing", **options})
    rec.setup(ctx)
    rec.fit(log if log is not None else make_log(ctx, n_requests=600, seed=4))
    return rec, ctx


@pytest.mark.parametrize("train", ["head", "lora"])
def test_cached_rerun_does_no_training(monkeypatch, train):
    counter = _Counter(monkeypatch)
    try:
        first, ctx = _fitted({"train": train, "epochs": 2})
        trained = (counter.backward, counter.forward)
        assert first.steps_ > 0 and trained[0] == first.steps_
        assert any(two_tower_cache_dir().glob("*.safetensors"))
        second, _ = _fitted({"train": train, "epochs": 2})
        assert (counter.backward, counter.forward) == trained  # zero forward and backward passes
        assert second.steps_ == 0 and second.fit_info_["cached"] is True
        np.testing.assert_array_equal(first.item_embeddings_, second.item_embeddings_)
        assert not np.allclose(second.item_embeddings_, second.base_embeddings_)
    finally:
        counter.close()
    if train == "lora":
        assert trained[1] > 0  # the transformer layers did run while training


@pytest.mark.parametrize("options", [{"train": "head", "user_embedding": True, "exposure_correction": "ipw"},
                                     {"train": "last", "epochs": 1}])
def test_two_runs_are_identical(options):
    a, _ = _fitted({**options, "cache": False})
    b, _ = _fitted({**options, "cache": False})
    np.testing.assert_array_equal(a.item_embeddings_, b.item_embeddings_)
    assert a.fit_info_["losses"] == b.fit_info_["losses"]


def test_training_lowers_the_loss_and_moves_vectors():
    rec, _ = _fitted({"epochs": 6, "cache": False})
    losses = rec.fit_info_["losses"]
    assert len(losses) == 6 and losses[-1] < losses[0]
    cos = (rec.item_embeddings_ * rec.base_embeddings_).sum(1)
    assert cos.min() < 0.999  # the head changed the geometry


def test_refit_warm_starts_with_warm_epochs():
    ctx = make_context(n_items=60, n_users=120, slate_size=5, seed=3)
    log1 = make_log(ctx, n_requests=600, seed=4)
    log2 = make_log(ctx, n_requests=300, seed=5, start=1.0, end=2.0)
    from counterfeed.core.contracts import Log

    rec, _ = _fitted({"epochs": 3, "warm_epochs": 1, "cache": False}, log1, ctx)
    assert rec.fit_info_["epochs"] == 3
    rec.fit(Log.concat([log1, log2]))
    assert rec.fit_info_["epochs"] == 1 and rec.steps_ > 0
    cold, _ = _fitted({"epochs": 3, "warm_epochs": 1, "cache": False, "warm_start": False},
                      Log.concat([log1, log2]), ctx)
    assert cold.fit_info_["epochs"] == 3
    assert not np.array_equal(cold.item_embeddings_, rec.item_embeddings_)


def test_exposure_correction_changes_training():
    ctx = make_context(n_items=60, n_users=120, slate_size=5, seed=3)
    log = make_log(ctx, n_requests=600, seed=4)
    log.propensity = np.random.default_rng(0).uniform(0.05, 1.0, len(log))
    plain, _ = _fitted({"cache": False}, log, ctx)
    ipw, _ = _fitted({"cache": False, "exposure_correction": "ipw"}, log, ctx)
    assert not np.allclose(plain.item_embeddings_, ipw.item_embeddings_)


@pytest.mark.parametrize("options, message", [
    ({"train": "all"}, "train"),
    ({"temperature_train": 0}, "temperature_train"),
    ({"layers": 0}, "layers"),
    ({"epoch": 3}, "epoch"),
])
def test_bad_options(options, message):
    with pytest.raises(Exception, match=message):
        TextTwoTowerRecommender(options)


def test_too_many_layers_is_a_plugin_error():
    from counterfeed.errors import PluginError

    with pytest.raises(PluginError, match="layers must be in"):
        _fitted({"train": "last", "layers": 12, "cache": False})
