"""``text-two-tower``: all-MiniLM-L6-v2 fine-tuned on logged clicks, served as a two-tower recommender.

The item tower is the pretrained sentence encoder with a residual projection head, fine-tuned on
the arm's logged clicks with an in-batch sampled-softmax (or BPR) contrastive loss; the user tower
pools the tower vectors of the items the user clicked (exponentially decayed sum, as in
``text-embedding``), optionally plus a trained user-id vector. Model, loss and the exposure
correction are documented in :mod:`counterfeed.plugins.recommenders._two_tower_model`.

Serving is ``text-embedding``'s (this class extends it): cosine between the pooled user vector and
the fine-tuned item vectors over the available items, clicked items ranked last, the same
exploration schemes with exact propensities. Items that nobody clicked (cold start) get their vector
from their text like any other, which is what the fine-tuning is for: it changes the geometry of
the text space, not a per-item table.

Training happens in ``fit`` (the experiment start and every ``retrain_every``). A refit warm-starts
from the previous fit's weights (``warm_start``) and runs ``warm_epochs`` epochs. Every fit's result
(item vectors and trainable weights) is cached on disk under
``$COUNTERFEED_CACHE_DIR/two_tower`` (default ``~/.cache/counterfeed/two_tower``), one safetensors
file per key, the key being the BLAKE2b hash of the base model's identity, the data fingerprint
(the clicks' users, items, times and propensities, the catalog texts), the training options, the
seed and, for a warm start, the previous fit's key. A rerun therefore loads every fit and performs no
forward or backward pass. ``steps_`` counts the forward-backward passes of the last fit (0 when it
came from the cache).

Reference: X. Yi et al., "Sampling-bias-corrected neural modeling for large corpus item
recommendations", RecSys 2019 (two towers, in-batch softmax); N. Reimers & I. Gurevych,
"Sentence-BERT", EMNLP 2019 (the encoder family); E. Hu et al., "LoRA", ICLR 2022.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, ValidationInfo, field_validator

from counterfeed.core.contracts import Log, RecommenderContext
from counterfeed.core.hookspecs import hookimpl
from counterfeed.errors import PluginError, PluginWarning
from counterfeed.plugins.recommenders.text_embedding import TextEmbeddingRecommender
from counterfeed.text.embedder import canonical_model_name, local_model_dir, model_layers

__all__ = ["TextTwoTowerRecommender", "two_tower_cache_dir"]

_VERSION = "1"
#: options that change the trained weights (serving options do not enter the cache key)
_TRAINING_FIELDS = ("train", "layers", "lora_rank", "lora_alpha", "loss", "temperature_train", "negatives",
                    "batch_items", "epochs", "warm_epochs", "warm_start", "lr", "user_embedding",
                    "exposure_correction", "ipw_clip", "time_budget", "model", "max_length", "half_life")


def two_tower_cache_dir() -> Path:
    """``$COUNTERFEED_CACHE_DIR/two_tower`` when the variable is set, else ``~/.cache/counterfeed/two_tower``."""
    root = os.environ.get("COUNTERFEED_CACHE_DIR")
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "counterfeed") / "two_tower"


def _hash(*parts: Any) -> str:
    h = hashlib.blake2b(digest_size=16)
    for p in parts:
        if isinstance(p, np.ndarray):
            h.update(str((p.dtype.str, p.shape)).encode())
            h.update(np.ascontiguousarray(p).tobytes())
        else:
            h.update(json.dumps(p, sort_keys=True, default=str).encode())
        h.update(b"\x00")
    return h.hexdigest()


class TextTwoTowerRecommender(TextEmbeddingRecommender):
    """A fine-tuned text two-tower recommender (see module docstring)."""

    name = "text-two-tower"

    class Options(TextEmbeddingRecommender.Options):
        train: Literal["head", "last", "lora"] = Field(
            "head", description="what trains: the projection head only (frozen encoder), the head and the "
                                "last `layers` transformer layers, or the head and LoRA adapters on them")
        layers: int = Field(1, ge=1, le=24, description="top transformer layers trained (last) or adapted (lora)")
        lora_rank: int = Field(8, ge=1, le=256, description="LoRA rank r")
        lora_alpha: float = Field(16.0, gt=0.0, description="LoRA scaling alpha (update scaled by alpha / r)")
        loss: Literal["softmax", "bpr"] = Field("softmax", description="in-batch sampled softmax or BPR")
        temperature_train: float = Field(0.05, gt=0.0, description="temperature of the training loss")
        negatives: int = Field(64, ge=0, le=10_000, description="uniformly sampled negatives added to each batch")
        batch_items: int = Field(128, ge=2, le=65_536, description="distinct clicked items per training batch")
        epochs: int = Field(3, ge=1, le=1_000, description="epochs of the first fit")
        warm_epochs: int = Field(1, ge=1, le=1_000, description="epochs of a warm-started refit")
        warm_start: bool = Field(True, description="refits start from the previous fit's weights")
        lr: float = Field(1e-3, gt=0.0, description="Adam learning rate")
        user_embedding: bool = Field(False, description="add a trained user-id vector to the pooled profile")
        exposure_correction: Literal["none", "ipw"] = Field(
            "none", description="ipw: weight each click's loss by min(1 / logged propensity, ipw_clip)")
        ipw_clip: float = Field(100.0, ge=1.0, description="largest inverse-propensity weight")
        time_budget: float | None = Field(
            None, gt=0.0, description="seconds a fit may train (stops after the step that passes it; "
                                      "results then depend on the machine's speed)")
        model: str = Field("minilm", description="encoder for train: last / lora (a model spec as for embedder)")
        max_length: int = Field(128, ge=4, le=512, description="tokens per text for train: last / lora")
        threads: int = Field(1, ge=1, le=64, description="torch intra-op threads while training")
        cache: bool = Field(True, description="cache fitted weights on disk (see module docstring)")

        @field_validator("model")
        @classmethod
        def _model_spec(cls, v: str, info: ValidationInfo) -> str:
            if info.data.get("train", "head") != "head":  # the encoder is only loaded for last / lora
                local_model_dir(v, hub=True)
            return canonical_model_name(v)  # one spelling per encoder: the arm's key (plan.Plan.arm_keys)

    def check_scenario(self, scenario: Any, catalog: Any, field: str) -> None:
        """Besides the text check: ``layers`` must not exceed the encoder's layers (train: last / lora)."""
        super().check_scenario(scenario, catalog, field)
        o = self.options
        n = model_layers(o.model) if o.train != "head" else None
        if n is not None and o.layers > n:
            raise scenario.error(f"layers must be in [1, {n}] for model '{o.model}', got {o.layers}",
                                 f"{field}.layers")

    # -- state ---------------------------------------------------------------------------------
    def setup(self, ctx: RecommenderContext) -> None:
        super().setup(ctx)
        self.base_embeddings_ = self.item_embeddings_.copy()
        self.n_fits_ = 0
        self.steps_ = 0
        self.total_steps_ = 0
        self.fit_info_: dict[str, Any] = {}
        self._encoder: Any = None
        self._last: tuple[str, dict[str, Any]] | None = None   # (cache key, trainable state) of the last fit
        self.user_offsets_: np.ndarray | None = None

    def _base_identity(self) -> str:
        o = self.options
        if o.train == "head":
            return _hash("head", self.base_embeddings_)
        from counterfeed.text.embedder import TransformerEmbedder

        emb = TransformerEmbedder(o.model, cache=False, max_length=o.max_length)
        # "encoder-2": the trainable layers run on length-sorted chunks (rounding differs from version 1)
        return _hash(o.train, "encoder-2", emb.identity, list(self.ctx_.items.text or []))

    def _clicks(self, log: Log) -> Any:
        from counterfeed.plugins.recommenders._two_tower_model import Clicks

        o, items = self.options, self.ctx_.items
        hit = np.asarray(log.click, bool) & (np.asarray(log.item) >= 0) & (np.asarray(log.item) < items.n)
        hit &= (np.asarray(log.user) >= 0) & (np.asarray(log.user) < self.profiles_.shape[0])
        t = np.asarray(log.time, np.float64)[hit]
        t_fit = float(t.max()) if t.size else 0.0
        pw = np.exp2(-(t_fit - t) / o.half_life)
        if o.exposure_correction == "ipw":
            p = np.asarray(log.propensity, np.float64)[hit]
            lw = np.minimum(1.0 / np.clip(p, 1e-12, None), o.ipw_clip)
        else:
            lw = np.ones(t.size)
        return Clicks(user=np.asarray(log.user, np.int64)[hit], item=np.asarray(log.item, np.int64)[hit],
                      pool_weight=pw, loss_weight=lw, n_users=self.profiles_.shape[0],
                      candidates=np.flatnonzero(items.arrival <= t_fit).astype(np.int64)), t, \
            np.asarray(log.propensity, np.float64)[hit]

    def fit(self, log: Log) -> None:
        """Fine-tune the item tower on ``log``'s clicks (or load the result from the cache), then
        rebuild the user profiles from ``log`` with the new item vectors."""
        self._check_setup("fit")
        clicks, times, props = self._clicks(log)
        self.n_fits_ += 1
        self.steps_ = 0
        if clicks.item.size == 0:
            self.item_embeddings_ = self.base_embeddings_.copy()
            self._last, self.user_offsets_ = None, None
        else:
            self._fit_tower(clicks, times, props)
        self._mmr = None
        super().fit(log)

    def _fit_tower(self, clicks: Any, times: np.ndarray, props: np.ndarray) -> None:
        from counterfeed.plugins.recommenders._two_tower_model import TrainConfig

        o = self.options
        warm = self._last if (o.warm_start and self._last is not None) else None
        train_opts = {k: getattr(o, k) for k in _TRAINING_FIELDS}
        seed = self.ctx_.keys.derive_seed("text-two-tower")
        data = _hash(clicks.user, clicks.item, times, props, clicks.candidates, clicks.n_users,
                     self.ctx_.items.n)
        key = _hash(_VERSION, self._base_identity(), data, train_opts, seed, warm[0] if warm else None)
        path = (two_tower_cache_dir() / f"{key}.safetensors") if o.cache else None
        loaded = _load(path) if path is not None else None
        if loaded is not None:
            vectors, state, info = loaded
            self.fit_info_ = {**info, "cached": True}
        else:
            cfg = TrainConfig(mode=o.train, layers=o.layers, lora_rank=o.lora_rank, lora_alpha=o.lora_alpha,
                              loss=o.loss, temperature=o.temperature_train, negatives=o.negatives,
                              batch_items=o.batch_items, epochs=o.warm_epochs if warm else o.epochs, lr=o.lr,
                              user_embedding=o.user_embedding, time_budget=o.time_budget, threads=o.threads,
                              seed=seed)
            res = self._train(cfg, clicks, warm[1] if warm else None)
            vectors, state = res.vectors, res.state
            if res.user_vectors is not None:
                state = {**state, "user": res.user_vectors}
            info = {"steps": res.steps, "epochs": res.epochs, "seconds": res.seconds, "losses": res.losses,
                    "stopped_by_budget": res.stopped_by_budget, "clicks": int(clicks.item.size)}
            self.steps_ = res.steps
            self.total_steps_ += res.steps
            self.fit_info_ = {**info, "cached": False}
            if res.stopped_by_budget:
                warnings.warn(f"text-two-tower: the time budget ({o.time_budget:g} s) stopped training after "
                              f"{res.steps} steps ({res.epochs} epochs)", PluginWarning, stacklevel=2)
            if path is not None:
                _save(path, vectors, state, info)
        self._last = (key, state)
        self.item_embeddings_ = np.asarray(vectors, np.float32)
        user = state.get("user")
        self.user_offsets_ = None if user is None else np.asarray(user, np.float32)

    def _train(self, cfg: Any, clicks: Any, warm: dict[str, Any] | None) -> Any:
        from counterfeed.plugins.recommenders._two_tower_model import Encoder, train_tower

        o, items = self.options, self.ctx_.items
        if o.train != "head" and self._encoder is None:
            if not items.text:
                raise PluginError("train: last / lora needs a catalog with text", plugin=self.name, hook="fit")
            from counterfeed.text.embedder import TransformerEmbedder

            model_dir = str(TransformerEmbedder(o.model, cache=False).model_dir)
            try:
                self._encoder = Encoder(model_dir, list(items.text), o.layers, o.max_length, threads=o.threads)
            except ValueError as exc:
                raise PluginError(str(exc), plugin=self.name, hook="fit") from None
        if warm is not None:
            warm = {k: _as_tensor(v) for k, v in warm.items()}
        return train_tower(cfg, clicks, items.n, base=self.base_embeddings_ if o.train == "head" else None,
                           encoder=self._encoder, warm=warm)

    def user_vectors(self, users: np.ndarray) -> np.ndarray:
        """Pooled profiles (``text-embedding``'s), plus the trained user-id vector when there is one."""
        p = super().user_vectors(users)
        if self.user_offsets_ is None:
            return p
        p = p + self.user_offsets_[np.asarray(users, np.int64)]
        norm = np.linalg.norm(p, axis=1, keepdims=True)
        return (p / np.where(norm > 0, norm, 1.0)).astype(np.float32)


def _as_tensor(v: Any) -> Any:
    import torch

    return torch.from_numpy(np.ascontiguousarray(v)) if isinstance(v, np.ndarray) else v


def _save(path: Path, vectors: np.ndarray, state: dict[str, Any], info: dict[str, Any]) -> None:
    """Write one fit atomically; a cache that cannot be written is skipped with a warning."""
    from safetensors.numpy import save_file

    tensors = {"vectors": np.ascontiguousarray(vectors, np.float32)}
    for k, v in state.items():
        arr = v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)
        tensors[f"state.{k}"] = np.ascontiguousarray(arr, np.float32)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        save_file(tensors, str(tmp), metadata={"info": json.dumps(info)})
        os.replace(tmp, path)
    except OSError as exc:
        warnings.warn(f"text-two-tower: cannot write the weight cache {path}: {exc}", PluginWarning, stacklevel=3)


def _load(path: Path) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, Any]] | None:
    if not path.is_file():
        return None
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            info = json.loads((f.metadata() or {}).get("info", "{}"))
            vectors = f.get_tensor("vectors")
            state = {k[6:]: f.get_tensor(k) for k in f.keys() if k.startswith("state.")}
    except Exception as exc:  # a truncated or foreign file: retrain
        warnings.warn(f"text-two-tower: ignoring unreadable cache file {path}: {exc}", PluginWarning, stacklevel=3)
        return None
    return vectors, state, info


@hookimpl
def register_recommenders(register):
    register(TextTwoTowerRecommender)
