"""Text and language models: item text generation, text embedders with an on-disk cache, and user
personas in embedding space.

``import counterfeed.text`` is light: torch and transformers load only when a transformer embedder
first encodes.
"""

from __future__ import annotations

from counterfeed.text.cache import EmbeddingCache, default_cache_dir
from counterfeed.text.embedder import Embedder, HashingEmbedder, TransformerEmbedder, get_embedder
from counterfeed.text.personas import (catalog_embedder, persona_mixtures, text_preferences,
                                       topic_embeddings)

__all__ = [
    "Embedder", "HashingEmbedder", "TransformerEmbedder", "get_embedder", "EmbeddingCache",
    "default_cache_dir", "text_preferences", "persona_mixtures", "topic_embeddings", "catalog_embedder",
]
