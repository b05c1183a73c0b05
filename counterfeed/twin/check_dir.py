"""Consistency of a twin directory as it is read (tester17 M13, H5b).

``twin.json`` must be of a format this version writes and carry the keys every command reads;
each ``rep-<b>.npz`` must hold arrays of the shapes ``twin.json`` describes (items, dimensions) and of
one another (users), with finite values. A directory edited or copied by hand, or written by another
version, is then one :class:`DataError` naming the file and what was expected, instead of numbers
from a twin that is not the one fitted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from counterfeed.errors import DataError

__all__ = ["FORMAT", "check_meta", "check_replicate"]

#: the twin directory format this version writes and reads (``twin.json: format``)
FORMAT = 1

_KEYS = {"replicates": list, "item_ids": list, "n_items": int, "n_train_users": int, "dims": int,
         "slate_size": int, "horizon": (int, float), "heldout_users": list}


def check_meta(meta: Any, file: str | Path) -> dict[str, Any]:
    """``meta`` (the parsed ``twin.json`` at ``file``) when it is usable; else a DataError."""
    if not isinstance(meta, dict):
        raise DataError(f"{file}: expected a JSON object (a twin's description), got {type(meta).__name__}")
    fmt = meta.get("format")
    if fmt != FORMAT:
        raise DataError(f"{file}: field 'format' is {fmt!r}; this version of counterfeed reads twin format "
                        f"{FORMAT}: refit the twin with 'counterfeed twin fit'")
    for key, kind in _KEYS.items():
        if key not in meta:
            raise DataError(f"{file}: field '{key}' is missing; refit the twin with 'counterfeed twin fit'")
        if not isinstance(meta[key], kind) or isinstance(meta[key], bool):
            raise DataError(f"{file}: field '{key}' is {meta[key]!r}; expected {_kind(kind)}")
    if not meta["replicates"]:
        raise DataError(f"{file}: field 'replicates' is empty; expected the point fit's options at least")
    if len(meta["item_ids"]) != meta["n_items"]:
        raise DataError(f"{file}: field 'item_ids' lists {len(meta['item_ids'])} items but 'n_items' is "
                        f"{meta['n_items']}")
    return meta


def _kind(kind) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join({list: "a list", int: "an integer", float: "a number"}[k] for k in kinds)


def check_replicate(rep, meta: dict[str, Any], file: str | Path):
    """``rep`` (a :class:`counterfeed.twin.store.Replicate` read from ``file``) when its arrays agree with
    ``meta`` and with one another; else a DataError naming the array and the expected shape."""
    n_items = meta.get("n_items") if isinstance(meta.get("n_items"), int) else rep.bias.shape[0]
    dims = rep.item.shape[-1] if rep.item.ndim == 2 else None
    users = rep.user.shape[0] if rep.user.ndim == 2 else None
    expected = {"item": (n_items, dims), "bias": (n_items,), "topic": (n_items,), "user": (users, dims),
                "activity": (users,), "weight": (users,)}
    if rep.user_chol is not None:
        expected["user_chol"] = (users, dims, dims)
    for name, shape in expected.items():
        a = getattr(rep, name)
        if a.shape != shape or None in shape:
            raise DataError(f"{file}: array '{name}' has shape {a.shape}; expected {_shape(shape)} "
                            f"({n_items} items as twin.json says, the replicate's users and dimensions)")
        if not np.all(np.isfinite(a)):
            raise DataError(f"{file}: array '{name}' has non-finite values")
    if rep.topic.size and rep.topic.min() < 0:
        raise DataError(f"{file}: array 'topic' has a negative topic code; expected codes 0, 1, ...")
    return rep


def _shape(shape) -> str:
    return "(" + ", ".join("?" if s is None else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"
