"""The optional item table of ``twin fit --items``: topics and texts of the logged items.

Columns: ``id`` (the log's item ids), optional ``topic`` (any labels) and optional text (``text``, or
``title`` and/or ``description``, joined). Texts are embedded with counterfeed's text encoder
(all-MiniLM-L6-v2 by default, ``counterfeed/text``); the twin's catalog carries the embeddings (so
content recommenders can be evaluated in it) and items seen rarely borrow factors from their text.
"""

from __future__ import annotations

import numpy as np

from counterfeed.errors import DataError

__all__ = ["read_items"]


def read_items(path: str, item_ids: np.ndarray, embedder: str = "minilm"):
    """(topics (I,) int or None, embeddings (I, e) or None, texts list or None) in the log's item order.

    Raises
    ------
    DataError
        No ``id`` column, or a logged item missing from the table (naming one).
    """
    import pandas as pd

    from counterfeed.ope.logs import _read_table, normalize_ids

    df = _read_table(str(path))
    if "id" not in df.columns:
        raise DataError(f"{path}: missing column 'id' (the item ids of the log); columns are: "
                        f"{', '.join(map(str, df.columns))}")
    ids = normalize_ids(df["id"].to_numpy(), str(path), "id")
    index = pd.Index(ids)
    if not index.is_unique:
        dup = index[index.duplicated()][0]
        raise DataError(f"{path}: column 'id': item {dup} is listed twice")
    pos = index.get_indexer(pd.Index(list(item_ids)))
    if (pos < 0).any():
        raise DataError(f"{path}: column 'id': logged item {item_ids[int(np.flatnonzero(pos < 0)[0])]} is not in "
                        "the item table")
    rows = df.iloc[pos]
    topics = None
    if "topic" in df.columns:
        empty = rows["topic"].isna().to_numpy() | (rows["topic"].astype(str).str.strip() == "").to_numpy()
        if empty.any():
            i = int(np.flatnonzero(empty)[0])
            raise DataError(f"{path}: column 'topic' row {int(pos[i]) + 1} (item {rows['id'].iloc[i]}): empty; "
                            "expected a topic label for every logged item (or leave the column out)")
        topics = pd.factorize(rows["topic"].astype(str))[0].astype(np.int64)
    cols = ["text"] if "text" in df.columns else [c for c in ("title", "description") if c in df.columns]
    if not cols:
        return topics, None, None
    texts = rows[cols].fillna("").astype(str).agg(". ".join, axis=1).tolist()
    from counterfeed.text.embedder import get_embedder

    try:
        emb = get_embedder(embedder).embed(texts)
    except ValueError as exc:
        raise DataError(f"--embedder: {exc}") from None
    return topics, np.asarray(emb, np.float32), texts
