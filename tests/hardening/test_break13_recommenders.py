"""Break test 13's recommender findings (A3, A7, A8), each with the behaviour it asked for.

- A7: ``features: embeddings`` (linucb, linear-thompson) on a catalog without text, and a re-ranker's
  ``base`` that needs text (or a base with ``features: embeddings``), passed ``validate`` and failed in
  ``setup``. Both are now rejected before simulating, located at the arm's ``features``, ``base`` or
  ``base_options.<option>``: a re-ranker runs its base's own ``check_scenario``.
- A8: a Thompson sampler with ``candidates`` below ``experiment.slate_size`` returned short slates and
  failed at the first request. It now ranks ``max(candidates, k)`` items, as ``popularity``'s softmax
  ``candidates`` and the re-rankers' ``candidates`` do; with ``k <= candidates`` nothing changes.
- A3: ``offline-ranking`` (``cutoff`` 100) with a sampler (``candidates`` 50) failed after simulating
  every world with a raw NumPy broadcast error. The sampler now fills the list; a recommender that still
  returns a shorter list is scored on what it returned, with a note, and a malformed one is a plugin error.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from counterfeed.core.contracts import Batch, Items, Log, Recommender, RecommenderContext, Slates
from counterfeed.core.randomness import Keys
from counterfeed.errors import PluginError
from counterfeed.offline.evaluate import evaluate_offline
from counterfeed.plugins.recommenders.bandits import BetaThompsonSampling, LinearThompsonSampling
from tests.conftest import SMALL, cli, scenario_file


def _write(tmp_path: Path, name: str = "s.yaml", **changes) -> Path:
    base = {**SMALL, "output": {"report": False, "dir": str(tmp_path / "runs")}, "metrics": ["clicks", "ctr"],
            "analysis": [{"estimator": "diff-in-means"}]}
    base["experiment"] = {**SMALL["experiment"], "duration": "2d", "pre_period": "1d"}
    return scenario_file(tmp_path / name, base, **changes)


def _rejected(capsys, tmp_path: Path, path: Path, field: str, message: str) -> None:
    """validate and run both exit 2 with ``path:LINE: field: ...message...``, and nothing is written."""
    for verb in ("validate", "run"):
        args = (verb, path, "--quiet") if verb == "run" else (verb, path)
        code, _, err = cli(capsys, *args)
        assert code == 2, (verb, err)
        assert re.search(rf"{re.escape(str(path))}:\d+: {re.escape(field)}: .*{re.escape(message)}", err), (verb, err)
        assert "Traceback" not in err and "plugin '" not in err, err  # located, not a setup failure
    assert not (tmp_path / "runs").exists()


# -- A7: embeddings features and wrapped bases against the catalog --------------------------------------


@pytest.mark.parametrize("recommender", ["linucb", "linear-thompson"])
def test_features_embeddings_on_a_catalog_without_text_is_rejected_at_the_option(tmp_path, capsys, recommender):
    path = _write(tmp_path, **{"experiment.arms.treatment": {"recommender": recommender, "features": "embeddings"}})
    _rejected(capsys, tmp_path, path, "experiment.arms.treatment.features",
              f"recommender '{recommender}' with features: embeddings needs a catalog with text embeddings")


def test_a_text_base_of_a_reranker_is_rejected_at_base(tmp_path, capsys):
    path = _write(tmp_path, **{"experiment.arms.treatment": {"recommender": "popularity-debiased",
                                                             "base": "text-embedding"}})
    _rejected(capsys, tmp_path, path, "experiment.arms.treatment.base",
              "base 'text-embedding' of re-ranker 'popularity-debiased': recommender 'text-embedding' needs a "
              "catalog with text")


def test_a_base_option_the_catalog_cannot_serve_is_rejected_at_base_options(tmp_path, capsys):
    path = _write(tmp_path, **{"experiment.arms.treatment": {"recommender": "mmr", "base": "linucb",
                                                             "base_options": {"features": "embeddings"}}})
    _rejected(capsys, tmp_path, path, "experiment.arms.treatment.base_options.features",
              "base 'linucb' of re-ranker 'mmr': recommender 'linucb' with features: embeddings")


def test_nested_rerankers_delegate_to_the_innermost_base(tmp_path, capsys):
    inner = {"base": "text-embedding"}
    path = _write(tmp_path, **{"experiment.arms.treatment": {"recommender": "mmr", "base": "calibrated",
                                                             "base_options": inner}})
    _rejected(capsys, tmp_path, path, "experiment.arms.treatment.base_options.base",
              "base 'calibrated' of re-ranker 'mmr': base 'text-embedding' of re-ranker 'calibrated'")


@pytest.mark.parametrize("arm", [
    {"recommender": "linucb", "features": "auto"},  # auto falls back to the latent vectors
    {"recommender": "linear-thompson", "features": "vectors"},
    {"recommender": "mmr", "base": "linucb"},
    {"recommender": "popularity-debiased", "base": "popularity"},
])
def test_the_valid_neighbours_still_run(tmp_path, capsys, arm):
    path = _write(tmp_path, **{"experiment.arms.treatment": arm})
    code, out, err = cli(capsys, "validate", path)
    assert code == 0 and out.startswith("ok:"), err
    code, _, err = cli(capsys, "run", path, "--quiet")
    assert code == 0, err


def test_features_embeddings_on_a_text_catalog_validates(tmp_path, capsys):
    path = _write(tmp_path, **{"catalog": {"plugin": "synthetic-text", "items": 40, "topics": 4,
                                           "embedder": {"model": "hashing"}},
                               "experiment.arms.treatment": {"recommender": "mmr", "base": "linucb",
                                                             "base_options": {"features": "embeddings"}}})
    code, out, err = cli(capsys, "validate", path)
    assert code == 0 and out.startswith("ok:"), err


# -- A8: candidates below the slate size ------------------------------------------------------------------


@pytest.mark.parametrize("recommender, candidates", [("thompson", 3), ("linear-thompson", 2)])
def test_a_sampler_with_fewer_candidates_than_the_slate_fills_the_slate(tmp_path, capsys, recommender, candidates):
    path = _write(tmp_path, **{"experiment.slate_size": 10,
                               "experiment.arms.treatment": {"recommender": recommender, "candidates": candidates}})
    code, _, err = cli(capsys, "validate", path)
    assert code == 0, err
    code, _, err = cli(capsys, "run", path, "--quiet")
    assert code == 0, err  # it failed at the first request: "slate items must have shape (n, 10) ..., got (n, 3)"


def _items(n: int = 40, seed: int = 0) -> Items:
    rng = np.random.default_rng(seed)
    return Items(rng.normal(size=(n, 4)), rng.normal(size=n), np.arange(n) % 3, 3, np.zeros(n))


@pytest.mark.parametrize("cls", [BetaThompsonSampling, LinearThompsonSampling], ids=lambda c: c.name)
def test_sampler_slates_widen_to_the_slate_and_only_then(cls):
    items = _items()
    users = np.arange(12)

    def slates(candidates: int, k: int):
        rec = cls(candidates=candidates, propensity_samples=400)
        rec.setup(RecommenderContext(items, 20, k, Keys(3), "t"))
        rec.fit(Log.empty())
        batch = Batch(users, np.zeros(12, np.int64), 0.5, k, Keys(3).stream("policy:t"))
        return rec.recommend(batch), rec.action_probabilities(batch, rec.recommend(batch).items)

    s, p = slates(3, 8)  # 3 candidates, 8 positions: 8 distinct items, valid propensities
    assert s.items.shape == (12, 8) and p.shape == (12, 8)
    assert all(np.unique(row).size == 8 for row in s.items)
    assert np.all((s.propensities > 0) & (s.propensities <= 1))
    # with k <= candidates the candidate set is unchanged: asking 8 candidates for 8 positions is the same
    s8, _ = slates(8, 8)
    np.testing.assert_array_equal(s.items, s8.items)
    np.testing.assert_array_equal(s.propensities, s8.propensities)
    s5, _ = slates(5, 4)  # and fewer positions than candidates never widens it
    assert s5.items.shape == (12, 4)
    assert set(np.unique(s5.items)) <= set(np.unique(slates(5, 5)[0].items))


# -- A3: offline-ranking's cutoff longer than what a recommender ranks -------------------------------------


def test_offline_ranking_with_samplers_runs(tmp_path, capsys):
    import json

    path = _write(tmp_path, **{"experiment.arms": {"control": {"recommender": "popularity"},
                                                   "treatment": {"recommender": "thompson"},
                                                   "lints": {"recommender": "linear-thompson"}},
                               "analysis": [{"estimator": "offline-ranking"}]})
    code, _, err = cli(capsys, "validate", path)
    assert code == 0, err
    code, _, err = cli(capsys, "run", path, "--quiet")
    assert code == 0, err  # was: "shape mismatch: value array of shape (32,50) could not be broadcast ..."
    est = json.loads(next((tmp_path / "runs").glob("*/estimates.json")).read_text())
    rows = est if isinstance(est, list) else est.get("estimates", est)
    arms = {e["arm"] for e in rows if str(e.get("estimand", "")).startswith("offline:")}
    assert arms == {"treatment", "lints"}
    assert not any("shorter than asked" in json.dumps(e) for e in rows)  # the samplers fill the list


def _logs(n_items: int, seed: int = 0) -> tuple[Log, Log]:
    rng = np.random.default_rng(seed)
    n = 3000
    user = rng.integers(0, 60, n)
    session = rng.integers(0, 5, n)
    time = rng.uniform(0, 2, n)
    item = rng.integers(0, n_items, n)
    click = rng.random(n) < 0.3
    log = Log(user, session, time, np.zeros(n, np.int64), item, click, click * 1.0, np.full(n, 0.2))
    t = log.time
    return log.select(t < 1.5), log.select(t >= 1.5)


class _Short(Recommender):
    """Ranks at most ``limit`` items, whatever it is asked (a plugin that breaks the slate contract)."""

    name = "short"

    def __init__(self, limit: int | None = 3, rows: int = 0):
        self.limit, self.rows = limit, rows

    def recommend(self, batch: Batch) -> Slates:
        n = len(batch) + self.rows
        k = batch.slate_size if self.limit is None else min(self.limit, batch.slate_size)
        items = np.tile(np.arange(k), (n, 1))
        return Slates(items, np.ones(items.shape))


def test_a_recommender_returning_shorter_lists_is_scored_on_them_with_a_note():
    items = _items(30)
    train, test = _logs(30)
    rep = evaluate_offline("short", None, train, test, items, 60, ks=[2, 10], cutoff=20, recommender=_Short(3))
    full = evaluate_offline("short", None, train, test, items, 60, ks=[2, 10], cutoff=20, recommender=_Short(None))
    assert any("returned lists shorter than asked" in n and "3 of 20 items" in n for n in rep.notes), rep.notes
    assert rep.list_warnings and not full.list_warnings
    # the first 3 ranks are the same lists, so recall@2 agrees; recall@10 counts only what was returned
    assert rep.value("recall@2") == pytest.approx(full.value("recall@2"))
    assert rep.value("recall@10") < full.value("recall@10")


def test_a_recommender_returning_the_wrong_rows_is_a_plugin_error_not_a_numpy_one():
    items = _items(30)
    train, test = _logs(30)
    with pytest.raises(PluginError, match=r"plugin 'short' in recommend: slate items must be an integer array"):
        evaluate_offline("short", None, train, test, items, 60, ks=[2], cutoff=5, recommender=_Short(None, rows=1))


@pytest.mark.parametrize("probs, message", [
    ([[0.5, 0.5]], "probs must have at least 5 rows (one per slate position: experiment.slate_size is 5), got 1"),
    ([[1.0] * 120] * 4, "probs must have at least 5 rows"),
    ([[1.0] * 7] * 5, "probs must have 120 columns (one per item of catalog 'synthetic'), got 7"),
    ([[1.0] * 120] * 4 + [[1.0] * 119], "every row of probs must have one column per item"),
    ([[1.0] * 120] * 4 + [[0.0] * 120], "probabilities must be finite, >= 0, with a positive sum per row"),
])
def test_a_probability_table_of_the_wrong_shape_is_rejected_at_probs(tmp_path, capsys, probs, message):
    path = _write(tmp_path, **{"experiment.arms.treatment": {"recommender": "probability-table", "probs": probs}})
    _rejected(capsys, tmp_path, path, "experiment.arms.treatment.probs", message)


def test_a_probability_table_of_the_right_shape_runs(tmp_path, capsys):
    path = _write(tmp_path, **{"experiment.arms.treatment": {"recommender": "probability-table",
                                                             "probs": [[1.0] * 120] * 6,
                                                             "propensity_samples": 200}})
    for verb in ("validate", "run"):
        code, _, err = cli(capsys, verb, path, *(["--quiet"] if verb == "run" else []))
        assert code == 0, (verb, err)


def test_offline_ranking_scores_a_probability_table_on_its_rows_with_a_note(tmp_path, capsys):
    """A table of 6 positions ranks 6 items, not offline-ranking's cutoff of 100: it failed in setup after
    every world ("probs must have at least 100 rows"); it is now scored on its 6 with a note."""
    import json

    path = _write(tmp_path, **{"experiment.arms.treatment": {"recommender": "probability-table",
                                                             "probs": [[1.0] * 120] * 6, "propensity_samples": 200},
                               "analysis": [{"estimator": "offline-ranking"}]})
    code, _, err = cli(capsys, "run", path, "--quiet")
    assert code == 0, err
    rows = json.loads(next((tmp_path / "runs").glob("*/estimates.json")).read_text())
    rows = rows if isinstance(rows, list) else rows.get("estimates", rows)
    ranked = [e for e in rows if str(e.get("estimand", "")).startswith("offline:") and e["arm"] == "treatment"]
    assert ranked and all("shorter than asked" in json.dumps(e) for e in ranked), ranked[:1]
