"""The synthetic-text and table catalogs: determinism, recoverable topics, arrivals, file errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from counterfeed.core.plugins import Registry
from counterfeed.errors import DataError
from counterfeed.plugins.catalogs.text import SyntheticTextCatalog, TableCatalog
from counterfeed.text.embedder import HashingEmbedder
from counterfeed.text.personas import catalog_embedder


def _synthetic(ctx, **opts):
    opts.setdefault("embedder", "hashing")
    return SyntheticTextCatalog(**opts).build(ctx)


def _centroid_accuracy(items, labels) -> float:
    """Nearest-centroid classification of ``labels`` from the embeddings: fit on even rows, test on odd."""
    emb = items.embeddings
    train, test = np.arange(0, items.n, 2), np.arange(1, items.n, 2)
    cent = np.stack([emb[train][labels[train] == t].mean(axis=0) for t in range(items.n_topics)])
    pred = np.argmax(emb[test] @ cent.T, axis=1)
    return float(np.mean(pred == labels[test]))


def test_synthetic_text_catalog_shapes_and_fields(make_ctx):
    items = _synthetic(make_ctx(dimensions=6), items=50, topics=5)
    assert items.n == 50 and items.vectors.shape == (50, 6) and items.quality.shape == (50,)
    assert items.embeddings.shape == (50, 384) and items.embeddings.dtype == np.float32
    assert len(items.text) == 50 and all(len(t.split()) >= 15 for t in items.text)
    assert items.topic_names == ["cooking", "travel", "technology", "football", "music"]
    assert len(items.topic_text) == 5 and items.n_topics == 5
    assert set(np.unique(items.topic)) <= set(range(5)) and np.all(items.arrival == 0)
    assert catalog_embedder(items) == {"model": "hashing"}


def test_synthetic_text_catalog_is_deterministic(make_ctx):
    a = _synthetic(make_ctx(seed=3), items=80)
    b = _synthetic(make_ctx(seed=3), items=80)
    c = _synthetic(make_ctx(seed=4), items=80)
    assert a.text == b.text
    np.testing.assert_array_equal(a.vectors, b.vectors)
    np.testing.assert_array_equal(a.embeddings, b.embeddings)
    assert a.text != c.text


def test_arrivals_do_not_change_the_initial_catalog(make_ctx):
    base = _synthetic(make_ctx(), items=40)
    grown = _synthetic(make_ctx(), items=40, new_items_per_day=3, arrival_days=4)
    assert grown.n == 52
    assert grown.text[:40] == base.text
    np.testing.assert_array_equal(grown.vectors[:40], base.vectors)
    np.testing.assert_array_equal(grown.arrival, [0] * 40 + [1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4])
    assert list(grown.available(2.5)).count(True) == 46


def test_topics_are_recoverable_from_text_and_text_signal_zero_breaks_it(make_ctx):
    # 1200 items, 12 topics: chance is 1/12 = 0.083; on 600 test items its standard error is 0.011,
    # so "above 0.6" and "below 0.2" are each more than 10 standard errors from the other regime.
    # (Hashed bags of words with generic filler give about 0.7: recoverable, not trivially.)
    items = _synthetic(make_ctx(seed=5), items=1200, topics=12)
    assert _centroid_accuracy(items, items.topic) > 0.6
    # latent vectors carry the topic too (centroid + noise)
    lat = items.vectors / np.linalg.norm(items.vectors, axis=1, keepdims=True)
    assert _centroid_accuracy(type(items)(**{**items.__dict__, "embeddings": lat}), items.topic) > 0.8
    noise = _synthetic(make_ctx(seed=5), items=1200, topics=12, text_signal=0.0)
    assert _centroid_accuracy(noise, noise.topic) < 0.2
    # ... while the text topic is still recoverable from the text
    assert _centroid_accuracy(noise, noise.extra["text_topic"]) > 0.6


def test_no_single_word_gives_the_topic_away(make_ctx):
    items = _synthetic(make_ctx(seed=2), items=400, topics=6)
    common = {"the", "a", "and", "of"}
    for t in range(6):
        texts = [items.text[i].lower() for i in np.flatnonzero(items.extra["text_topic"] == t)]
        words = set.intersection(*(set(s.replace(".", " ").replace(",", " ").split()) for s in texts))
        assert words - common - {"to", "the", "a"} <= {"an", "on", "how", "for", "with", "it", "is",
                                                         "what", "comes", "next", "quite", "nothing"}


def test_catalog_registered_through_hooks():
    reg = Registry(builtins=("counterfeed.plugins.catalogs.text",
                             "counterfeed.plugins.recommenders.text_embedding"), load_entry_points=False)
    assert {"synthetic-text", "table"} <= set(reg.names("catalog"))
    assert "text-embedding" in reg.names("recommender")
    with pytest.raises(Exception, match="topics"):
        reg.create("catalog", "synthetic-text", {"topics": 40}, field="catalog")


# -- table catalog ------------------------------------------------------------------------------

ROWS = {"sku": ["a1", "b2", "c3"], "title": ["Red boots", "Mars rover", "Sourdough"],
        "body": ["Leather, waterproof.", "Lands on Mars.", "A tangy loaf."],
        "genre": ["fashion", "space", "cooking"], "score": ["0.5", "-1", "2"], "day": ["0", "3", "1.5"]}


def _table(tmp_path, make_ctx, rows=None, suffix=".csv", **opts):
    df = pd.DataFrame(rows if rows is not None else ROWS)
    path = tmp_path / f"catalog{suffix}"
    if suffix == ".csv":
        df.to_csv(path, index=False)
    else:
        df.to_parquet(path)
    opts = {"path": path.name, "id_column": "sku", "text_columns": ["title", "body"], "embedder": "hashing",
            **opts}
    return TableCatalog(**opts).build(make_ctx(base_dir=str(tmp_path))), path


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_table_catalog_reads_text_and_attributes(tmp_path, make_ctx, suffix):
    items, _ = _table(tmp_path, make_ctx, suffix=suffix, topic_column="genre", quality_column="score",
                      arrival_column="day")
    assert items.text == ["Red boots. Leather, waterproof.", "Mars rover. Lands on Mars.", "Sourdough. A tangy loaf."]
    assert items.topic_names == ["cooking", "fashion", "space"] and list(items.topic) == [1, 2, 0]
    np.testing.assert_allclose(items.quality, [0.5, -1, 2])
    np.testing.assert_allclose(items.arrival, [0, 3, 1.5])
    assert list(items.extra["source_id"]) == ["a1", "b2", "c3"]
    np.testing.assert_allclose(items.embeddings, HashingEmbedder().embed(items.text))
    assert items.vectors.shape == (3, 8)


def test_table_catalog_defaults(tmp_path, make_ctx):
    items, _ = _table(tmp_path, make_ctx, text_columns=["title"])
    assert items.n_topics == 1 and np.all(items.quality == 0) and np.all(items.arrival == 0)


@pytest.mark.parametrize("change, opts, pattern", [
    (None, {"text_columns": ["title", "summary"]}, r"catalog\.csv: missing column 'summary' \(columns: sku, title"),
    (None, {"id_column": "id"}, r"missing column 'id'"),
    ({"sku": ["a1", "b2", "a1"]}, {}, r"column 'sku' has duplicate id 'a1' \(rows 1 and 3\)"),
    ({"title": ["x", "", "z"], "body": ["y", " ", "w"]}, {}, r"row 2 \(id 'b2'\) has empty text in columns title, body"),
    ({"score": ["1", "lots", "2"]}, {"quality_column": "score"}, r"column 'score' row 2 \(id 'b2'\): expected a number, got 'lots'"),
    ({"day": ["0", "-2", "1"]}, {"arrival_column": "day"}, r"column 'day' row 2 \(id 'b2'\): arrival must be >= 0"),
])
def test_table_catalog_bad_input(tmp_path, make_ctx, change, opts, pattern):
    rows = {**ROWS, **(change or {})}
    with pytest.raises(DataError, match=pattern):
        _table(tmp_path, make_ctx, rows=rows, **opts)


def test_table_catalog_missing_file(tmp_path, make_ctx):
    cat = TableCatalog(path="nope.csv", text_columns=["t"], embedder="hashing")
    with pytest.raises(DataError, match=r"nope\.csv: catalog file not found"):
        cat.build(make_ctx(base_dir=str(tmp_path)))


def test_unknown_model_directory_is_an_options_error(tmp_path, make_ctx):
    """A missing model directory is rejected with the options (so ``validate`` rejects it, tester #6 of
    issues 18/19), before ``build`` would have raised its PluginError ("does not exist")."""
    with pytest.raises(ValueError, match=r"embedder\n.*model directory './missing-model' does not exist"):
        SyntheticTextCatalog(items=3, embedder="./missing-model")
