"""User interests in text-embedding space: personas that mix a few topic descriptions.

Each user gets ``topics_per_user`` distinct topics (uniformly at random) with mixture weights drawn
from a symmetric Dirichlet(``concentration``). The user's preference vector is the normalized
weighted sum of the topics' description embeddings:

.. math::

    p_u = \\frac{\\sum_{t \\in T_u} w_{ut}\\, e(\\text{topic\\_text}_t)}
               {\\lVert \\sum_{t \\in T_u} w_{ut}\\, e(\\text{topic\\_text}_t) \\rVert}

where :math:`e` is the same encoder that embedded the items, so ``p_u . e(item text)`` is high for
items written about the user's topics: item text carries real signal about utility. Only the
``n_topics`` descriptions are embedded (once); users are mixtures of those vectors, so this is fast
for millions of users.

Draws are keyed by user id when given a :class:`~counterfeed.core.randomness.Stream` (the same user
gets the same persona in every world and any population size), or come from a NumPy ``Generator``.
"""

from __future__ import annotations

import json

import numpy as np

from counterfeed.core.contracts import Items, Population
from counterfeed.core.randomness import Stream
from counterfeed.text.embedder import Embedder, get_embedder

__all__ = ["persona_mixtures", "text_preferences", "topic_embeddings", "catalog_embedder"]

_SLOT_WEIGHT = 1_000  # slots 1000 + j: the j-th topic's Dirichlet weight


def persona_mixtures(n_users: int, n_topics: int, randomness: Stream | np.random.Generator, *,
                     topics_per_user: int = 2, concentration: float = 1.0,
                     users: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Each user's persona: ``(topics, weights)``, both ``(n_users, topics_per_user)``.

    Topics are distinct per user and uniform over ``range(n_topics)`` (Gumbel top-k over equal
    scores); weights are Dirichlet(``concentration``), drawn as normalized Gamma(``concentration``)
    variates by inverting the regularized incomplete gamma function of keyed uniforms. ``users``
    are the ids used as keys (default ``0..n_users-1``).
    """
    if n_topics < 1:
        raise ValueError("needs at least one topic")
    if concentration <= 0:
        raise ValueError("concentration must be positive")
    k = max(1, min(int(topics_per_user), n_topics))
    ids = np.arange(n_users, dtype=np.int64) if users is None else np.asarray(users, np.int64)
    if isinstance(randomness, Stream):
        g = randomness.gumbel(ids[:, None], 0, np.arange(n_topics)[None, :])
        u = randomness.uniform(ids[:, None], 0, _SLOT_WEIGHT + np.arange(k)[None, :])
    else:
        g = randomness.gumbel(size=(ids.size, n_topics))
        u = randomness.random((ids.size, k))
    topics = np.argsort(-g, axis=1, kind="stable")[:, :k]
    from scipy.special import gammaincinv  # scipy where personas are drawn, not at import (fast start)

    gam = gammaincinv(concentration, u)
    gam = np.maximum(gam, 1e-300)
    weights = gam / gam.sum(axis=1, keepdims=True)
    return topics.astype(np.int64), weights


def catalog_embedder(items: Items) -> str | dict:
    """The embedder spec the catalog recorded in ``items.extra["embedder_spec"]`` (else ``"minilm"``)."""
    raw = items.extra.get("embedder_spec")
    if raw is None:
        return "minilm"
    spec = json.loads(str(np.asarray(raw).item()))
    return spec


def topic_embeddings(items: Items, embedder: Embedder | str | dict | None = None) -> np.ndarray:
    """(n_topics, e) embeddings of ``items.topic_text`` (or the topic names when there is no text)."""
    emb = get_embedder(catalog_embedder(items) if embedder is None else embedder)
    texts = items.topic_text or items.topic_names
    if not texts:
        raise ValueError("the catalog has neither topic_text nor topic_names")
    if len(texts) != items.n_topics:
        raise ValueError(f"the catalog has {items.n_topics} topics but {len(texts)} topic texts")
    return emb.embed(list(texts))


def text_preferences(population: Population, items: Items, randomness: Stream | np.random.Generator,
                     embedder: Embedder | str | dict | None = None, *, topics_per_user: int = 2,
                     concentration: float = 1.0) -> np.ndarray:
    """(n_users, e) L2-normalized preference vectors in the items' embedding space.

    Parameters
    ----------
    population : the users (``population.ids`` key the draws).
    items : a catalog with ``topic_text`` (or ``topic_names``); its ``embeddings`` should come from
        the same ``embedder``.
    randomness : a keyed stream (preferred) or a NumPy generator.
    embedder : the encoder (an :class:`Embedder` or a spec for :func:`get_embedder`); default: the
        one the catalog recorded (:func:`catalog_embedder`), so users and items share a space.
    topics_per_user : topics in each persona.
    concentration : Dirichlet concentration of the mixture weights (small: one dominant topic;
        large: equal mixtures).
    """
    t_emb = topic_embeddings(items, embedder)
    if items.embeddings is not None and items.embeddings.shape[1] != t_emb.shape[1]:
        raise ValueError(f"items are embedded in {items.embeddings.shape[1]} dimensions but the embedder "
                         f"gives {t_emb.shape[1]}: use the embedder that embedded the catalog")
    topics, weights = persona_mixtures(population.n, items.n_topics, randomness,
                                       topics_per_user=topics_per_user, concentration=concentration,
                                       users=population.ids)
    pref = np.zeros((population.n, t_emb.shape[1]), dtype=np.float32)
    for j in range(topics.shape[1]):
        pref += weights[:, j:j + 1].astype(np.float32) * t_emb[topics[:, j]]
    norm = np.linalg.norm(pref, axis=1, keepdims=True)
    return pref / np.where(norm > 0, norm, 1.0)
