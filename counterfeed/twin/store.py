"""The twin directory: ``twin.json`` (fitted options of every replicate, fit report), one ``rep-<b>.npz``
per replicate (item factors, appeal, topics, user factors, activity, bootstrap weights; an MNL twin's
user factors are posterior means, with ``user_chol`` the Cholesky factors of their covariances), optional
``embeddings.npy`` / ``texts.json`` and ``scenario.yaml`` (the fragment ``population: {twin: DIR}``).

Replicate 0 is the point fit; replicates ``1..B`` are the bootstrap refits over users.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from counterfeed.errors import DataError

__all__ = ["Replicate", "read_meta", "read_replicate", "write_twin", "scenario_parts", "TwinSpecError",
           "TWIN_FILE"]

TWIN_FILE = "twin.json"


@dataclass
class Replicate:
    """One fitted twin (arrays only; options are in ``twin.json``)."""

    item: np.ndarray       # (I, d) item factors
    bias: np.ndarray       # (I,) appeal logits
    topic: np.ndarray      # (I,) topic codes
    user: np.ndarray       # (U, d) user factors
    activity: np.ndarray   # (U,) visit-rate multipliers
    weight: np.ndarray     # (U,) bootstrap multiplicities (1 for the point fit, 0 for held-out users)
    #: (U, d, d) Cholesky factors of the user factors' posterior covariances (MNL; :mod:`.posterior`):
    #: simulated users are drawn ``user + user_chol e``; None: the points ``user`` are simulated
    user_chol: np.ndarray | None = None


def read_meta(path: str | Path) -> dict[str, Any]:
    """``twin.json`` of a twin directory; a DataError naming the path when it is not one."""
    f = Path(path) / TWIN_FILE
    if not f.exists():
        raise DataError(f"{path}: not a twin directory (no {TWIN_FILE}; create one with 'counterfeed twin fit')")
    try:
        meta = json.loads(f.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{f}: cannot read ({exc})") from None
    from counterfeed.twin.check_dir import check_meta

    return check_meta(meta, f)


def read_replicate(path: str | Path, b: int) -> Replicate:
    f = Path(path) / f"rep-{b}.npz"
    if not f.exists():
        meta = read_meta(path)
        raise DataError(f"{path}: no replicate {b}; the twin has replicates 0..{len(meta['replicates']) - 1}")
    from counterfeed.twin.check_dir import check_replicate

    try:
        with np.load(f, allow_pickle=False) as z:
            rep = Replicate(**{k: z[k] for k in ("item", "bias", "topic", "user", "activity", "weight")},
                            user_chol=z["user_chol"] if "user_chol" in z.files else None)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{f}: not a readable twin replicate ({type(exc).__name__}: {exc}); refit the twin "
                        "with 'counterfeed twin fit'") from None
    try:  # the arrays are checked against what twin.json says of them (read_meta checks the rest)
        meta = json.loads((Path(path) / TWIN_FILE).read_text())
    except (OSError, ValueError):
        meta = {}
    return check_replicate(rep, meta if isinstance(meta, dict) else {}, f)


def write_twin(out: str | Path, meta: dict[str, Any], replicates: list[Replicate],
               embeddings: np.ndarray | None = None, texts: list[str] | None = None) -> Path:
    """Write the directory atomically: into ``<out>.tmp-<pid>`` first, renamed when complete."""
    from counterfeed import _json

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise DataError(f"{out}: exists and is not empty; choose another --out")
    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=False)
    try:
        for b, r in enumerate(replicates):
            extra = {} if r.user_chol is None else {"user_chol": r.user_chol.astype(np.float32)}
            np.savez(tmp / f"rep-{b}.npz", item=r.item.astype(np.float32), bias=r.bias.astype(np.float32),
                     topic=r.topic.astype(np.int64), user=r.user.astype(np.float32),
                     activity=r.activity.astype(np.float32), weight=r.weight.astype(np.float32), **extra)
        if embeddings is not None:
            np.save(tmp / "embeddings.npy", embeddings.astype(np.float32))
        if texts is not None:
            (tmp / "texts.json").write_text(json.dumps(texts))
        (tmp / TWIN_FILE).write_text(_json.dumps(meta, indent=2))
        (tmp / "scenario.yaml").write_text(
            "# The twin as a scenario's population, catalog and user model (docs/twin.md)\n"
            f"population:\n  twin: {out.resolve()}\n")
        from counterfeed.core import interrupts

        interrupts.check()  # a swallowed Ctrl-C still publishes nothing
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    except BaseException:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


class TwinSpecError(ValueError):
    """A ``population: {twin: DIR, replicate: b}`` the twin directory does not serve; ``field`` is the
    option at fault (``"twin"`` or ``"replicate"``), by which the scenario locates it."""

    def __init__(self, message: str, field: str):
        super().__init__(message)
        self.field = field


def scenario_parts(twin: str, replicate: int = 0) -> dict[str, Any]:
    """What ``population: {twin: DIR}`` stands for: users, dimensions, catalog and user-model specs.

    Raises :class:`TwinSpecError` (a ``ValueError``; the scenario turns it into a ScenarioError located at
    ``population.twin`` or ``population.replicate``).
    """
    path = Path(twin).expanduser().resolve()
    try:
        meta = read_meta(path)
    except DataError as exc:
        raise TwinSpecError(str(exc), "twin") from None
    reps = meta["replicates"]
    if not 0 <= replicate < len(reps):
        raise TwinSpecError(f"replicate {replicate} is out of range: the twin has replicates 0..{len(reps) - 1}",
                            "replicate")
    try:  # what building the catalog would find wrong, found when the scenario is validated (M3)
        read_replicate(path, replicate)
    except DataError as exc:
        raise TwinSpecError(str(exc), "twin") from None
    opts = dict(reps[replicate])
    return {"users": int(meta["n_train_users"]), "dimensions": int(meta["dims"]),
            "catalog": {"plugin": "twin", "path": str(path), "replicate": replicate},
            "user_model": {"plugin": "twin", "path": str(path), "replicate": replicate, **opts}}


def write_example(out: str | Path, dims: int = 6, n_items: int = 24, n_users: int = 8, seed: int = 0) -> None:
    """The tiny twin shipped in ``counterfeed/twin/example`` (used by the catalog's conformance options)."""
    rng = np.random.default_rng(seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rep = Replicate(item=rng.normal(0, 0.4, (n_items, dims)), bias=rng.normal(-1.5, 0.5, n_items),
                    topic=np.arange(n_items) % 3, user=rng.normal(0, 0.4, (n_users, dims)),
                    activity=np.ones(n_users), weight=np.ones(n_users))
    np.savez(out / "rep-0.npz", item=rep.item.astype(np.float32), bias=rep.bias.astype(np.float32),
             topic=rep.topic.astype(np.int64), user=rep.user.astype(np.float32),
             activity=rep.activity.astype(np.float32), weight=rep.weight.astype(np.float32))
    meta = {"format": 1, "source": "example", "dims": dims, "n_users": n_users, "n_train_users": n_users,
            "n_items": n_items, "slate_size": 5, "horizon": 7.0, "logging": {"recommender": "random"},
            "item_ids": list(range(n_items)), "heldout_users": [], "replicates": [{}]}
    (out / TWIN_FILE).write_text(json.dumps(meta, indent=1))
