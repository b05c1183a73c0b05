"""Catalogs whose items carry text: ``synthetic-text`` (generated) and ``table`` (CSV/Parquet).

Both embed the item texts with a text encoder (``embedder`` option: ``"minilm"`` by default, the
pretrained all-MiniLM-L6-v2; ``"hashing"`` for a fast non-neural baseline; a model directory or hub
name) and record the embedder in ``Items.extra["embedder_spec"]`` so that user personas
(:func:`counterfeed.text.text_preferences`) are embedded in the same space.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator

from counterfeed.core.contracts import Catalog, CatalogContext, CatalogTags, Items, Options
from counterfeed.core.hookspecs import hookimpl
from counterfeed.errors import DataError, PluginError, plain
from counterfeed.text.embedder import Embedder, check_embedder_spec, get_embedder

__all__ = ["SyntheticTextCatalog", "TableCatalog"]


def _generator(ctx: CatalogContext, part: str) -> np.random.Generator:
    """A generator that depends only on the catalog stream and ``part``."""
    return np.random.Generator(np.random.Philox(int(ctx.stream.child(part).key)))


def _embedder(spec: str | dict[str, Any], ctx: CatalogContext, plugin: str) -> tuple[Embedder, str]:
    """The embedder and the JSON spec to record (with the cache directory resolved)."""
    opts: dict[str, Any] = {"model": spec} if isinstance(spec, str) else dict(spec)
    if opts.get("model", "minilm") != "hashing" and opts.get("cache_dir") is None and ctx.cache_dir:
        opts["cache_dir"] = str(Path(ctx.cache_dir) / "embeddings")
    try:
        emb = get_embedder(opts)
    except PluginError as exc:
        raise PluginError(str(exc), plugin=plugin, hook="build") from None
    except ValueError as exc:
        raise PluginError(f"embedder: {exc}", plugin=plugin, hook="build") from None
    return emb, json.dumps(opts, sort_keys=True)


def _centroids(rng: np.random.Generator, n_topics: int, d: int, strength: float) -> np.ndarray:
    c = rng.standard_normal((n_topics, d))
    return strength * c / np.linalg.norm(c, axis=1, keepdims=True)


class SyntheticTextCatalog(Catalog):
    """Items with generated titles and descriptions about a number of topics.

    Each item has a latent topic :math:`z_i`; its latent vector is the topic centroid plus noise,
    :math:`v_i = c_{z_i} + \\varepsilon_i` with :math:`\\lVert c_t \\rVert =` ``topic_strength`` and
    :math:`\\varepsilon_i \\sim N(0, \\text{item\\_noise}^2 / d)`, so latent-factor users work.
    Its text is written about a text topic that equals :math:`z_i` with probability ``text_signal``
    and is a uniformly random topic otherwise: at ``text_signal = 0`` the text says nothing about the
    latent vector (it still defines the item's embedding, so users whose interests live in text space
    still see a signal). ``Items.topic`` is the latent topic; ``Items.extra["text_topic"]`` the text one.

    ``items`` items exist from day 0; ``new_items_per_day`` more arrive on each of the days
    ``1..arrival_days`` (``Items.arrival``), drawn from a separate generator so that the initial
    catalog does not depend on the arrival options.
    """

    name = "synthetic-text"
    tags = CatalogTags(text=True)
    conformance_options = {"items": 60, "embedder": "hashing"}

    class Options(Options):
        items: int = Field(1000, ge=1, le=5_000_000, description="items available from day 0")
        topics: int = Field(12, ge=1, le=18, description="number of topics (at most 18 vocabularies)")
        embedder: str | dict[str, Any] = Field("minilm", description="text encoder spec")
        new_items_per_day: int = Field(0, ge=0, le=1_000_000)
        arrival_days: int = Field(30, ge=1, le=3650, description="days on which new items arrive")
        text_signal: float = Field(1.0, ge=0.0, le=1.0, description="P(text topic = latent topic)")
        borrow: float = Field(0.3, ge=0.0, le=1.0, description="P(a text borrows a word of another topic)")
        topic_strength: float = Field(1.0, ge=0.0, description="norm of the latent topic centroids")
        item_noise: float = Field(0.5, ge=0.0, description="spread of latent item vectors around centroids")
        quality_sd: float = Field(0.3, ge=0.0, description="standard deviation of item quality")

        @field_validator("embedder")
        @classmethod
        def _embedder_spec(cls, v: Any) -> Any:
            return check_embedder_spec(v)

    def _block(self, rng: np.random.Generator, n: int, centroids: np.ndarray) -> dict[str, Any]:
        from counterfeed.text.generate import generate_texts

        o = self.options
        t = centroids.shape[0]
        d = centroids.shape[1]
        topic = rng.integers(0, t, n)
        vectors = centroids[topic] + o.item_noise / np.sqrt(d) * rng.standard_normal((n, d))
        quality = o.quality_sd * rng.standard_normal(n)
        keep = rng.random(n) < o.text_signal
        text_topic = np.where(keep, topic, rng.integers(0, t, n))
        texts = generate_texts(text_topic, rng, borrow=o.borrow)
        return {"topic": topic, "vectors": vectors, "quality": quality, "text_topic": text_topic, "text": texts}

    def check(self, ctx: CatalogContext) -> int:
        """The number of items: ``items`` plus ``new_items_per_day`` on each of ``arrival_days`` days."""
        return self.options.items + self.options.new_items_per_day * self.options.arrival_days

    def build(self, ctx: CatalogContext) -> Items:
        from counterfeed.text.generate import topic_descriptions, topic_names

        o = self.options
        centroids = _centroids(_generator(ctx, "centroids"), o.topics, ctx.dimensions, o.topic_strength)
        blocks = [self._block(_generator(ctx, "initial"), o.items, centroids)]
        arrival = [np.zeros(o.items)]
        n_new = o.new_items_per_day * o.arrival_days
        if n_new:
            blocks.append(self._block(_generator(ctx, "arrivals"), n_new, centroids))
            arrival.append(np.repeat(np.arange(1, o.arrival_days + 1, dtype=np.float64), o.new_items_per_day))
        cat = {k: (sum((b[k] for b in blocks), []) if k == "text" else np.concatenate([b[k] for b in blocks]))
               for k in blocks[0]}
        embedder, spec = _embedder(o.embedder, ctx, self.name)
        return Items(
            vectors=cat["vectors"].astype(np.float64), quality=cat["quality"].astype(np.float64),
            topic=cat["topic"].astype(np.int64), n_topics=o.topics, arrival=np.concatenate(arrival),
            text=cat["text"], embeddings=embedder.embed(cat["text"]),
            topic_names=topic_names(o.topics), topic_text=topic_descriptions(o.topics),
            extra={"text_topic": cat["text_topic"].astype(np.int64), "embedder_spec": np.array(spec)},
        )


class TableCatalog(Catalog):
    """Items read from a CSV or Parquet file: one row per item, text from one or more columns.

    Row ``i`` becomes item ``i``; the file's ids are kept in ``Items.extra["source_id"]``. Latent
    vectors (for latent-factor users) are a fixed random projection of the text embedding to the
    population's dimensions (norm about ``topic_strength``), plus the topic centroid when a topic
    column is given. Missing optional columns default to quality 0, arrival 0, a single topic.
    """

    name = "table"
    tags = CatalogTags(reads_table=True, text=True)
    #: the conformance suite's sample table (see CatalogTags), embedded without a model download
    conformance_options = {"path": "items.csv", "text_columns": ["title", "description"],
                           "topic_column": "topic", "quality_column": "quality", "arrival_column": "arrival",
                           "embedder": "hashing"}

    class Options(Options):
        path: str = Field(description="CSV or Parquet file (relative to the scenario file)")
        id_column: str = "id"
        text_columns: list[str] = Field(min_length=1, description="columns joined into the item text")
        separator: str = ". "
        topic_column: str | None = None
        quality_column: str | None = None
        arrival_column: str | None = None
        format: Literal["auto", "csv", "parquet"] = "auto"
        embedder: str | dict[str, Any] = "minilm"
        topic_strength: float = Field(1.0, ge=0.0)

        @field_validator("embedder")
        @classmethod
        def _embedder_spec(cls, v: Any) -> Any:
            return check_embedder_spec(v)

    def _read(self, path: Path):
        import pandas as pd

        fmt = self.options.format
        if fmt == "auto":
            fmt = "parquet" if path.suffix.lower() in (".parquet", ".pq") else "csv"
        if not path.is_file():
            raise DataError(f"{path}: catalog file not found")
        try:
            if fmt == "parquet":
                return pd.read_parquet(path)
            return pd.read_csv(path, dtype=str, keep_default_na=False)
        except Exception as exc:
            raise DataError(f"{path}: cannot read as {fmt}: {type(exc).__name__}: {exc}") from None

    @staticmethod
    def _numeric(df, path: Path, col: str, ids) -> np.ndarray:
        import pandas as pd

        vals = pd.to_numeric(df[col].replace("", np.nan), errors="coerce").to_numpy(np.float64)
        bad = np.flatnonzero(~np.isfinite(vals))
        if bad.size:
            i = int(bad[0])
            raise DataError(f"{path}: column '{col}' row {i + 1} (id {plain(ids[i])}): "
                            f"expected a number, got {plain(df[col].iloc[i])}")
        return vals

    def _table(self, ctx: CatalogContext) -> dict[str, Any]:
        """The table read and checked (every error ``build`` can raise but the embedder's): ids, texts,
        quality, arrival, topic codes and names."""
        o = self.options
        path = Path(o.path).expanduser()
        if not path.is_absolute():
            path = Path(ctx.base_dir) / path
        df = self._read(path)
        wanted = [o.id_column, *o.text_columns] + [c for c in (o.topic_column, o.quality_column,
                                                                o.arrival_column) if c]
        for col in wanted:
            if col not in df.columns:
                raise DataError(f"{path}: missing column '{col}' (columns: {', '.join(map(str, df.columns))})")
        if len(df) == 0:
            raise DataError(f"{path}: the catalog has no rows")
        ids = df[o.id_column].astype(str).to_numpy()
        dup = df[o.id_column].astype(str).duplicated(keep=False).to_numpy()
        if dup.any():
            rows = np.flatnonzero(dup)
            first = ids[rows[0]]
            where = [int(r) + 1 for r in rows if ids[r] == first][:2]
            raise DataError(f"{path}: column '{o.id_column}' has duplicate id {first!r} "
                            f"(rows {where[0]} and {where[1]})")
        parts = [df[c].fillna("").astype(str).str.strip() for c in o.text_columns]
        texts = [o.separator.join(p for p in row if p) for row in zip(*parts)]
        empty = [i for i, t in enumerate(texts) if not t]
        if empty:
            raise DataError(f"{path}: row {empty[0] + 1} (id {plain(ids[empty[0]])}) has empty text in "
                            f"column{'s' if len(o.text_columns) > 1 else ''} {', '.join(o.text_columns)}")
        n = len(texts)
        quality = self._numeric(df, path, o.quality_column, ids) if o.quality_column else np.zeros(n)
        arrival = self._numeric(df, path, o.arrival_column, ids) if o.arrival_column else np.zeros(n)
        if (arrival < 0).any():
            i = int(np.flatnonzero(arrival < 0)[0])
            raise DataError(f"{path}: column '{o.arrival_column}' row {i + 1} (id {plain(ids[i])}): "
                            "arrival must be >= 0 (days)")
        if not (arrival == 0).any():  # the first slates would have nothing to show
            raise DataError(f"{path}: column '{o.arrival_column}': no item arrives at day 0 (the earliest arrives at "
                            f"day {arrival.min():g}); expected at least one row with arrival 0, the catalog at the start")
        if o.topic_column:
            labels = df[o.topic_column].fillna("").astype(str).to_numpy()
            names, topic = np.unique(labels, return_inverse=True)
            names = [str(x) for x in names]
        else:
            names, topic = ["all"], np.zeros(n, dtype=np.int64)
        return {"ids": ids, "texts": texts, "quality": quality, "arrival": arrival, "topic": topic, "names": names}

    def check(self, ctx: CatalogContext) -> int:
        """The number of rows, after reading the table and checking every row as ``build`` does
        (without embedding the text). Raises :class:`~counterfeed.errors.DataError` as ``build``."""
        return len(self._table(ctx)["texts"])

    def build(self, ctx: CatalogContext) -> Items:
        o = self.options
        t = self._table(ctx)
        ids, texts, quality, arrival, topic, names = (t[k] for k in ("ids", "texts", "quality", "arrival",
                                                                    "topic", "names"))
        embedder, spec = _embedder(o.embedder, ctx, self.name)
        emb = embedder.embed(texts)
        d = ctx.dimensions
        proj = _generator(ctx, "projection").standard_normal((emb.shape[1], d)) / np.sqrt(d)
        vectors = o.topic_strength * (emb.astype(np.float64) @ proj)
        if o.topic_column:
            vectors = vectors * 0.5 + _centroids(_generator(ctx, "centroids"), len(names), d, o.topic_strength)[topic]
        return Items(vectors=vectors, quality=quality, topic=topic.astype(np.int64), n_topics=len(names),
                     arrival=arrival, text=texts, embeddings=emb, topic_names=names,
                     topic_text=[f"Items about {nm}." for nm in names],
                     extra={"source_id": ids, "embedder_spec": np.array(spec)})


@hookimpl
def register_catalogs(register):
    register(SyntheticTextCatalog)
    register(TableCatalog)
