"""The item tower of ``text-two-tower`` and its contrastive training loop (torch; imported lazily).

Item tower
----------
``v_i = normalize(x_i + x_i A)`` with ``x_i`` the mean-pooled output of the encoder for item ``i``'s
text and ``A`` a ``(d, d)`` projection head initialised at zero (so training starts from the frozen
encoder's geometry). What trains:

- ``head``: only ``A``; ``x_i`` is the frozen embedding (computed once);
- ``last``: ``A`` and the top ``layers`` transformer layers; the output of the frozen lower layers
  is computed once per catalog (token ids are tokenised once) and kept in memory, so a training step
  runs only the trainable layers;
- ``lora``: ``A`` and LoRA adapters (Hu et al., 2021, through ``peft``) on the query and value
  projections of the top ``layers`` layers; the frozen lower layers are cached as for ``last``.

User tower and loss
-------------------
The user representation for a logged click ``c = (u, i, t_c)`` is the decayed sum of the tower
vectors of the user's *other* clicks (leave-one-out), ``q_c = normalize(sum_{c' != c} w_{c'} v_{i_{c'}})``
with ``w_{c'} = 2^{-(t_fit - t_{c'})/h}``, plus an optional trainable user-id vector. The pooled
vectors are a snapshot refreshed at the start of every epoch and treated as constants (stop-gradient),
so a step runs the tower only on the items of its batch. A batch is a set of distinct clicked
items (every clicked item once per epoch, in a seeded random order) plus ``negatives`` items drawn
uniformly from the items available at fit time; the batch's clicks are scored against all of them:

- ``softmax``: the in-batch sampled softmax, ``-log softmax(q_c . V_batch / tau)[i_c]``; batch items
  are sampled uniformly over clicked items, so the log-Q correction of Yi et al. (2019) is a
  constant and drops out;
- ``bpr``: ``-mean_j log sigmoid((q_c . v_{i_c} - q_c . v_j) / tau)`` over the batch's other items
  (Rendle et al., 2009).

Each click's loss is weighted by ``omega_c`` and the batch loss is ``sum omega_c l_c / sum omega_c``.
With ``exposure_correction: ipw``, ``omega_c = min(1 / p_c, clip)`` with ``p_c`` the logged
propensity of the clicked impression (inverse-propensity weighting of the training loss, Schnabel et
al., 2016; Joachims, Swaminathan & Schnabel, 2017), so items the logging policy showed often do not
dominate what the model learns. Optimiser: Adam (Kingma & Ba, 2015).

Determinism: training runs with ``torch.use_deterministic_algorithms(True)``, the configured number
of intra-op threads (1 by default), no dropout, and seeded generators (item order, negatives, LoRA
initialisation); the caller's torch settings are restored afterwards.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

__all__ = ["Clicks", "TrainConfig", "TrainResult", "Encoder", "train_tower", "training_mode"]


@dataclass
class Clicks:
    """The training clicks: ``(m,)`` users, items, pooling weights and loss weights."""

    user: np.ndarray
    item: np.ndarray
    pool_weight: np.ndarray
    loss_weight: np.ndarray
    n_users: int
    candidates: np.ndarray  # items available at fit time (negatives are drawn from them)


@dataclass
class TrainConfig:
    mode: str
    layers: int
    lora_rank: int
    lora_alpha: float
    loss: str
    temperature: float
    negatives: int
    batch_items: int
    epochs: int
    lr: float
    user_embedding: bool
    time_budget: float | None
    threads: int
    seed: int


@dataclass
class TrainResult:
    vectors: np.ndarray                       # (n_items, d) float32 unit rows
    state: dict[str, Any]                     # trainable tensors (for warm starts and the cache)
    user_vectors: np.ndarray | None           # (n_users, d) float32 or None
    steps: int = 0                            # forward-backward passes
    epochs: int = 0
    seconds: float = 0.0
    losses: list[float] = field(default_factory=list)
    stopped_by_budget: bool = False


@contextmanager
def training_mode(torch: Any, threads: int) -> Iterator[None]:
    """Deterministic algorithms and ``threads`` intra-op threads for the block; restored afterwards."""
    det = torch.are_deterministic_algorithms_enabled()
    before = torch.get_num_threads()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)
        torch.use_deterministic_algorithms(det)


class Encoder:
    """Token ids and the frozen lower layers' outputs of one catalog, computed once.

    ``hidden`` holds each item's ``(tokens, d)`` output of layer ``n_layers - top`` (ragged, float32),
    ``mask`` the attention masks; ``layers`` are deep copies of the top ``top`` transformer layers.
    """

    def __init__(self, model_dir: str, texts: list[str], top: int, max_length: int, batch_size: int = 64,
                 threads: int = 1):
        import copy

        import torch
        from transformers import AutoModel, AutoTokenizer

        tok = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        # sdpa attention takes a boolean (batch, 1, query, key) mask, True = attend
        model = AutoModel.from_pretrained(model_dir, local_files_only=True,
                                          attn_implementation="sdpa").float().eval()
        n_layers = len(model.encoder.layer)
        if not 1 <= top <= n_layers:
            raise ValueError(f"layers must be in [1, {n_layers}] for this model, got {top}")
        enc = tok(list(texts), truncation=True, max_length=max_length)   # token ids, once
        self.lengths = np.array([len(ids) for ids in enc["input_ids"]], np.int64)
        self.layers = copy.deepcopy(model.encoder.layer[n_layers - top:])
        model.encoder.layer = model.encoder.layer[:n_layers - top]     # only the frozen lower layers run
        self.hidden: list[Any] = [None] * len(texts)
        before = torch.get_num_threads()
        torch.set_num_threads(int(threads))
        try:
            with torch.inference_mode():
                for chunk in self._chunks(self.lengths, batch_size):   # similar lengths: little padding
                    batch = tok.pad({"input_ids": [enc["input_ids"][int(i)] for i in chunk]}, return_tensors="pt")
                    h = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
                    for r, i in enumerate(chunk):
                        self.hidden[int(i)] = h[r, :self.lengths[i]].clone()
        finally:
            torch.set_num_threads(before)
        self.dim = int(model.config.hidden_size)

    @staticmethod
    def _chunks(lengths: np.ndarray, size: int) -> list[np.ndarray]:
        """Positions ``0..len(lengths)-1`` in chunks of ``size``, sorted by length (stable): little padding."""
        order = np.argsort(lengths, kind="stable")
        return [order[lo:lo + size] for lo in range(0, order.size, size)]

    def forward(self, idx: np.ndarray, layers: Any, chunk: int = 64) -> Any:
        """(len(idx), d) mean-pooled outputs of ``layers`` on the cached inputs of items ``idx``.

        The items run in chunks of ``chunk`` sequences of similar length (each padded to its own
        longest), and the rows are put back in ``idx``'s order; padding is masked, so the result is
        the same as one padded batch up to floating-point rounding.
        """
        import torch

        idx = np.asarray(idx, np.int64)
        parts, where = [], []
        for c in self._chunks(self.lengths[idx], chunk):
            parts.append(self._forward(idx[c], layers))
            where.append(c)
        if not parts:
            return torch.zeros(0, self.dim)
        inverse = torch.as_tensor(np.argsort(np.concatenate(where), kind="stable"))
        return torch.cat(parts)[inverse]

    def _forward(self, idx: np.ndarray, layers: Any) -> Any:
        import torch

        seqs = [self.hidden[int(i)] for i in idx]
        h = torch.nn.utils.rnn.pad_sequence(seqs, batch_first=True)
        lengths = torch.as_tensor(self.lengths[idx])
        mask = torch.arange(h.shape[1])[None, :] < lengths[:, None]
        am = mask[:, None, None, :].expand(-1, 1, h.shape[1], -1)
        for layer in layers:
            out = layer(h, attention_mask=am)
            h = out[0] if isinstance(out, tuple) else out
        m = mask.unsqueeze(-1).to(h.dtype)
        return (h * m).sum(1) / m.sum(1).clamp(min=1e-9)


class _Tower:
    """The trainable item tower over either frozen pooled vectors or an :class:`Encoder`."""

    def __init__(self, torch: Any, cfg: TrainConfig, base: np.ndarray | None, encoder: Encoder | None,
                 n_users: int, dim: int):
        self.torch, self.cfg, self.encoder = torch, cfg, encoder
        self.base = None if base is None else torch.from_numpy(np.ascontiguousarray(base, np.float32))
        self.head = torch.zeros(dim, dim, requires_grad=True)
        self.layers = None
        params = [self.head]
        if encoder is not None:
            import copy

            self.layers = copy.deepcopy(encoder.layers)  # the encoder's copy stays pristine
            self.layers.eval()  # no dropout: deterministic training
            if cfg.mode == "lora":
                from peft import LoraConfig, inject_adapter_in_model

                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(cfg.seed)
                    conf = LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=0.0,
                                      target_modules=["query", "value"])
                    self.layers = inject_adapter_in_model(conf, self.layers)
                for name, p in self.layers.named_parameters():
                    p.requires_grad_("lora_" in name)
            else:
                for p in self.layers.parameters():
                    p.requires_grad_(True)
            params += [p for p in self.layers.parameters() if p.requires_grad]
        self.user = torch.zeros(n_users, dim, requires_grad=True) if cfg.user_embedding else None
        if self.user is not None:
            params.append(self.user)
        self.params = params

    def state(self) -> dict[str, Any]:
        out = {"head": self.head.detach().clone()}
        if self.layers is not None:
            for name, p in self.layers.named_parameters():
                if p.requires_grad:
                    out[f"layers.{name}"] = p.detach().clone()
        if self.user is not None:
            out["user"] = self.user.detach().clone()
        return out

    def load(self, state: dict[str, Any]) -> None:
        with self.torch.no_grad():
            self.head.copy_(state["head"])
            if self.layers is not None:
                named = dict(self.layers.named_parameters())
                for key, value in state.items():
                    if key.startswith("layers.") and key[7:] in named:
                        named[key[7:]].copy_(value)
            if self.user is not None and "user" in state and state["user"].shape == self.user.shape:
                self.user.copy_(state["user"])

    def __call__(self, idx: np.ndarray) -> Any:
        torch = self.torch
        x = self.base[torch.as_tensor(idx)] if self.encoder is None else self.encoder.forward(idx, self.layers)
        return torch.nn.functional.normalize(x + x @ self.head, dim=1)

    def all_vectors(self, n_items: int, chunk: int = 256) -> Any:
        torch = self.torch
        with torch.no_grad():
            return torch.cat([self(np.arange(lo, min(lo + chunk, n_items))) for lo in range(0, n_items, chunk)])


def _batch_loss(torch: Any, cfg: TrainConfig, q: Any, cand_vecs: Any, label: Any, w: Any) -> Any:
    logits = q @ cand_vecs.T / cfg.temperature
    if cfg.loss == "softmax":
        per = torch.nn.functional.cross_entropy(logits, label, reduction="none")
    else:  # bpr against every other candidate
        pos = logits.gather(1, label[:, None])
        other = torch.ones_like(logits, dtype=torch.bool)
        other[torch.arange(logits.shape[0]), label] = False
        per = (-torch.nn.functional.logsigmoid(pos - logits) * other).sum(1) / other.sum(1).clamp(min=1)
    return (w * per).sum() / w.sum().clamp(min=1e-12)


def train_tower(cfg: TrainConfig, clicks: Clicks, n_items: int, *, base: np.ndarray | None,
                encoder: Encoder | None, warm: dict[str, Any] | None = None, on_step: Any = None) -> TrainResult:
    """Train the tower on ``clicks`` (see the module docstring); ``warm`` is a previous ``state``."""
    import torch

    start = time.perf_counter()
    dim = base.shape[1] if base is not None else encoder.dim
    with training_mode(torch, cfg.threads):
        tower = _Tower(torch, cfg, base, encoder, clicks.n_users, dim)
        if warm is not None:
            tower.load(warm)
        opt = torch.optim.Adam(tower.params, lr=cfg.lr)
        rng = np.random.default_rng(cfg.seed)
        by_item = np.argsort(clicks.item, kind="stable")
        items_sorted = clicks.item[by_item]
        clicked = np.unique(clicks.item)
        t_user = torch.as_tensor(clicks.user)
        t_pw = torch.as_tensor(clicks.pool_weight, dtype=torch.float32)
        t_lw = torch.as_tensor(clicks.loss_weight, dtype=torch.float32)
        res = TrainResult(vectors=np.zeros((0, dim), np.float32), state={}, user_vectors=None)
        for _ in range(cfg.epochs):
            snap = tower.all_vectors(n_items)
            # leave-one-out pooled profile of each click, a constant during the epoch
            sums = torch.zeros(clicks.n_users, dim).index_add_(0, t_user, t_pw[:, None] * snap[clicks.item])
            ctx = sums[t_user] - t_pw[:, None] * snap[clicks.item]
            has_ctx = ctx.norm(dim=1) > 1e-6
            ctx = torch.nn.functional.normalize(ctx, dim=1)
            order = rng.permutation(clicked)
            total, n_b = 0.0, 0
            for lo in range(0, order.size, cfg.batch_items):
                batch = np.sort(order[lo:lo + cfg.batch_items])
                a = np.searchsorted(items_sorted, batch, "left")
                b = np.searchsorted(items_sorted, batch, "right")
                rows = np.concatenate([by_item[x:y] for x, y in zip(a, b)])
                label = np.repeat(np.arange(batch.size), b - a)
                keep = has_ctx[torch.as_tensor(rows)].numpy() | (tower.user is not None)
                rows, label = rows[keep], label[keep]
                if rows.size == 0:
                    continue
                neg = clicks.candidates[rng.integers(0, clicks.candidates.size, cfg.negatives)] \
                    if cfg.negatives and clicks.candidates.size else np.zeros(0, np.int64)
                cand = np.concatenate([batch, neg])
                tr = torch.as_tensor(rows)
                q = ctx[tr] * has_ctx[tr, None]
                if tower.user is not None:
                    q = torch.nn.functional.normalize(q + tower.user[t_user[tr]], dim=1, eps=1e-9)
                loss = _batch_loss(torch, cfg, q, tower(cand), torch.as_tensor(label), t_lw[tr])
                opt.zero_grad()
                loss.backward()
                opt.step()
                res.steps += 1
                total, n_b = total + float(loss.detach()), n_b + 1
                if on_step is not None:
                    on_step()
                if cfg.time_budget is not None and time.perf_counter() - start > cfg.time_budget:
                    res.stopped_by_budget = True
                    break
            res.epochs += 1
            res.losses.append(total / max(n_b, 1))
            if res.stopped_by_budget:
                break
        res.vectors = tower.all_vectors(n_items).numpy().astype(np.float32)
        res.state = tower.state()
        res.user_vectors = None if tower.user is None else tower.user.detach().numpy().astype(np.float32)
    res.seconds = time.perf_counter() - start
    return res
