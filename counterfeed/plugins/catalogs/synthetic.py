"""The latent-factor synthetic catalog (``synthetic``)."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from counterfeed.core.contracts import Catalog, CatalogContext, Items, Options
from counterfeed.core.hookspecs import hookimpl

__all__ = ["SyntheticCatalog"]


class SyntheticCatalog(Catalog):
    """Items clustered by topic in the population's latent space.

    Each topic ``t`` has a centroid ``c_t ~ N(0, I/d) * sqrt(d) * topic_separation / sqrt(d)`` (unit
    scale); an item of topic ``t`` has vector ``c_t + N(0, item_spread^2 I / d)`` and quality
    ``N(0, quality_sd^2)``. Topic sizes follow a Zipf law with exponent ``topic_skew`` so some topics
    are bigger than others. With ``new_items_per_day > 0`` that many further items arrive each day
    (``Items.arrival``), for cold-start experiments.
    """

    name = "synthetic"

    class Options(Options):
        items: int = Field(1000, ge=2, le=5_000_000, description="items available at the start")
        topics: int = Field(10, ge=1, le=10_000)
        topic_skew: float = Field(0.5, ge=0, le=5, description="Zipf exponent of topic sizes")
        item_spread: float = Field(0.6, ge=0, le=10, description="spread of items around their topic")
        quality_sd: float = Field(0.5, ge=0, le=10)
        new_items_per_day: int = Field(0, ge=0, le=1_000_000)
        arrival_days: float = Field(60.0, gt=0, le=3650, description="days over which new items arrive")

    def check(self, ctx: CatalogContext) -> int:
        """The number of items: ``items`` plus ``new_items_per_day`` on each of ``floor(arrival_days)`` days."""
        o = self.options
        return o.items + int(o.new_items_per_day * np.floor(o.arrival_days))

    def build(self, ctx: CatalogContext) -> Items:
        o = self.options
        rng = ctx.keys.numpy_generator("catalog", self.name)
        d = ctx.dimensions
        n = self.check(ctx)
        n_new = n - o.items
        centroids = rng.standard_normal((o.topics, d)) / np.sqrt(d)
        centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
        weights = 1.0 / np.arange(1, o.topics + 1) ** o.topic_skew
        topic = rng.choice(o.topics, size=n, p=weights / weights.sum()).astype(np.int64)
        vectors = centroids[topic] + rng.standard_normal((n, d)) * (o.item_spread / np.sqrt(d))
        quality = rng.standard_normal(n) * o.quality_sd
        arrival = np.zeros(n)
        if n_new:
            day = np.repeat(np.arange(1, int(np.floor(o.arrival_days)) + 1), o.new_items_per_day)
            arrival[o.items:] = day.astype(float)
        return Items(vectors=vectors, quality=quality, topic=topic, n_topics=o.topics, arrival=arrival,
                     topic_names=[f"topic-{t}" for t in range(o.topics)])


@hookimpl
def register_catalogs(register):
    register(SyntheticCatalog)
