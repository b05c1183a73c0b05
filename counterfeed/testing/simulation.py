"""Conformance rules for metrics, catalogs and user models."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from counterfeed.core.contracts import Batch, CatalogTags, Items, MetricTags, Response, Slates, WorldEvents
from counterfeed.core.randomness import Keys
from counterfeed.testing._core import Broken, Rule, Subject, common_rules
from counterfeed.testing.fixtures import (make_catalog_context, make_items, make_population,
                                          make_world_events)

__all__ = ["METRIC_RULES", "CATALOG_RULES", "USER_MODEL_RULES"]


# ---------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------


def _compute(s: Subject, events: WorldEvents, start: float, end: float, metric: Any = None) -> np.ndarray:
    metric = s.new() if metric is None else metric
    out = s.call(metric, "compute", events, start, end)
    arr = np.asarray(out)
    if not isinstance(out, np.ndarray) or arr.shape != (events.n_users,):
        raise Broken(f"compute must return a NumPy array of shape ({events.n_users},) (one value per user), "
                     f"got {type(out).__name__} of shape {arr.shape}")
    if arr.dtype.kind != "f":
        raise Broken(f"compute must return floats, got dtype {arr.dtype}")
    # a ratio metric's per-user value may be NaN where its denominator is 0 (estimators use the
    # numerator and denominator columns); every other value must be finite
    bad = np.isinf(arr) if getattr(metric, "aggregation", "") == "ratio" else ~np.isfinite(arr)
    if bad.any():
        raise Broken(f"compute returned non-finite values for {int(bad.sum())} users "
                     "(users without sessions or impressions need a defined value, e.g. 0)")
    return arr


def _restrict(ev: WorldEvents, start: float, end: float) -> WorldEvents:
    keep = ev.session_mask(start, end)
    sessions = {k: v[keep] for k, v in ev.sessions.items()}
    imp = None
    if ev.impressions is not None:
        imp = ev.impressions.select((ev.impressions.time >= start) & (ev.impressions.time < end))
    return replace(ev, sessions=sessions, impressions=imp)


def _rule_metric_values(s: Subject) -> None:
    _compute(s, make_world_events(seed=1), 2.0, 8.0)


def _rule_metric_empty_window(s: Subject) -> None:
    _compute(s, make_world_events(seed=2), 20.0, 30.0)


def _rule_metric_deterministic(s: Subject) -> None:
    ev = make_world_events(seed=3)
    a = _compute(s, ev, 1.0, 9.0)
    b, c = _compute(s, ev, 1.0, 9.0), _compute(s, make_world_events(seed=3), 1.0, 9.0)
    if not (np.array_equal(a, b, equal_nan=True) and np.array_equal(a, c, equal_nan=True)):
        raise Broken("compute gave different values for the same events")


def _rule_metric_window(s: Subject) -> None:
    ev = make_world_events(seed=4)
    for start, end in ((2.0, 6.0), (0.0, 5.0), (5.0, 10.0)):
        a = _compute(s, ev, start, end)
        b = _compute(s, _restrict(ev, start, end), start, end)
        if not np.allclose(a, b, rtol=1e-12, atol=1e-12, equal_nan=True):
            u = int(np.flatnonzero(~np.isclose(a, b, rtol=1e-12, atol=1e-12, equal_nan=True))[0])
            raise Broken(f"over [{start:g}, {end:g}) user {u} gets {a[u]:g}, but {b[u]:g} when the sessions and "
                         "impressions outside the window are removed: the metric uses events outside [start, end)")


def _rule_metric_end(s: Subject) -> None:
    ev = make_world_events(seed=4)
    for start, end in ((2.0, 6.0), (0.0, 5.0), (5.0, 10.0)):
        a = _compute(s, ev, start, end)
        b = _compute(s, _restrict(ev, 0.0, end), start, end)
        if not np.allclose(a, b, rtol=1e-12, atol=1e-12, equal_nan=True):
            u = int(np.flatnonzero(~np.isclose(a, b, rtol=1e-12, atol=1e-12, equal_nan=True))[0])
            raise Broken(f"over [{start:g}, {end:g}) user {u} gets {a[u]:g}, but {b[u]:g} when the sessions and "
                         "impressions at or after the end are removed: a cumulative metric uses events after end")


def _metric_tags(cls: type) -> MetricTags:
    tags = getattr(cls, "tags", None)
    return tags if isinstance(tags, MetricTags) else MetricTags()


def _windowed(cls: type) -> str | None:
    return "cumulative metric (MetricTags.cumulative): see respects_end" if _metric_tags(cls).cumulative else None


def _cumulative(cls: type) -> str | None:
    return None if _metric_tags(cls).cumulative else "applies to cumulative metrics (MetricTags.cumulative)"


def _rule_metric_input_unchanged(s: Subject) -> None:
    ev = make_world_events(seed=5)
    before = {k: v.copy() for k, v in ev.sessions.items()}
    _compute(s, ev, 0.0, 10.0)
    if any(not np.array_equal(before[k], ev.sessions[k]) for k in before):
        raise Broken("compute modified events.sessions")


def _group(s: Subject, events: WorldEvents, start: float, end: float, users: np.ndarray) -> float:
    out = s.call(s.new(), "compute_group", events, start, end, users)
    if not isinstance(out, (float, np.floating)) or np.isinf(out):
        raise Broken(f"compute_group must return a float (NaN where undefined, never inf), got {out!r}")
    return float(out)


def _rule_population(s: Subject) -> None:
    ev = make_world_events(seed=6)
    everyone, half = np.ones(ev.n_users, bool), ev.assignment == 0
    for start, end in ((2.0, 6.0), (0.0, 10.0)):
        for users in (everyone, half):
            a, b = _group(s, ev, start, end, users), _group(s, make_world_events(seed=6), start, end, users)
            if not np.array_equal(a, b, equal_nan=True):
                raise Broken("compute_group gave different values for the same events")
            c = _group(s, _restrict(ev, start, end), start, end, users)
            if not np.isclose(a, c, rtol=1e-12, atol=1e-12, equal_nan=True):
                raise Broken(f"over [{start:g}, {end:g}) the value is {a:g}, but {c:g} when the events "
                             "outside the window are removed: the metric uses events outside [start, end)")
    _group(s, ev, 20.0, 30.0, everyone)  # an empty window: NaN or a number, no exception


def _per_user(cls: type) -> str | None:
    return "population-level metric (no per-user value)" if getattr(cls, "level", "user") == "population" else None


def _population(cls: type) -> str | None:
    return None if getattr(cls, "level", "user") == "population" else "applies to population-level metrics only"


METRIC_RULES: list[Rule] = common_rules("metric") + [
    Rule("values_shape_finite", "`compute` returns an (n_users,) float array of finite values (ratio metrics: "
         "NaN allowed where the denominator is 0).", _rule_metric_values, _per_user),
    Rule("empty_window_finite", "A window without sessions gives finite values.", _rule_metric_empty_window,
         _per_user),
    Rule("deterministic", "The same events give the same values.", _rule_metric_deterministic, _per_user),
    Rule("respects_window", "Only sessions and impressions with start <= time < end count.", _rule_metric_window,
         lambda cls: _per_user(cls) or _windowed(cls)),
    Rule("respects_end", "A cumulative metric uses no session or impression at or after end.", _rule_metric_end,
         lambda cls: _per_user(cls) or _cumulative(cls)),
    Rule("input_unchanged", "`compute` does not modify the events.", _rule_metric_input_unchanged, _per_user),
    Rule("population_group_value", "Population-level metrics: `compute_group(events, start, end, users)` returns "
         "a float (NaN where undefined), deterministic, from events in [start, end) only.", _rule_population,
         _population),
]


# ---------------------------------------------------------------------------------------------
# Catalogs
# ---------------------------------------------------------------------------------------------


_CACHE: list[str] = []


def _cache_dir() -> str:
    """One embedding cache per process, removed at exit: builds after the first reuse embeddings."""
    if not _CACHE:
        _CACHE.append(tempfile.mkdtemp(prefix="counterfeed-conformance-"))
        atexit.register(shutil.rmtree, _CACHE[0], True)
    return _CACHE[0]


def _sample_tables() -> str:
    """A directory with the sample tables of :class:`CatalogTags` ``reads_table`` (written once)."""
    base = Path(_cache_dir()) / "tables"
    if not base.is_dir():
        import pandas as pd

        items = make_items(24, seed=5)
        frame = pd.DataFrame({"id": [f"item-{i}" for i in range(items.n)], "title": items.text,
                              "description": [f"a story about {items.topic_names[t]}" for t in items.topic],
                              "topic": [items.topic_names[t] for t in items.topic],
                              "quality": items.quality, "arrival": np.repeat([0.0, 1.0], items.n // 2)})
        tmp = Path(tempfile.mkdtemp(dir=_cache_dir()))
        frame.to_csv(tmp / "items.csv", index=False)
        frame.to_parquet(tmp / "items.parquet", index=False)
        tmp.rename(base)
    return str(base)


def _catalog_context(s: Subject, seed: int, dimensions: int = 6):
    tags = getattr(s.cls, "tags", None)
    base_dir = _sample_tables() if isinstance(tags, CatalogTags) and tags.reads_table else "."
    return make_catalog_context(dimensions=dimensions, seed=seed, cache_dir=_cache_dir(), base_dir=base_dir)


def _build(s: Subject, seed: int, dimensions: int = 6) -> Items:
    out = s.call(s.new(), "build", _catalog_context(s, seed, dimensions))
    if not isinstance(out, Items):
        raise Broken(f"build must return Items, got {type(out).__name__}")
    return out


def _vec(items: Items, field: str, shape: tuple[int, ...], kinds: str = "fiu") -> np.ndarray:
    arr = np.asarray(getattr(items, field))
    if arr.shape != shape:
        raise Broken(f"items.{field} has shape {arr.shape}, expected {shape}")
    if arr.dtype.kind not in kinds:
        raise Broken(f"items.{field} has dtype {arr.dtype}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise Broken(f"items.{field} has non-finite values")
    return arr


def _rule_catalog_shapes(s: Subject) -> None:
    for d in (6, 3):
        items = _build(s, seed=1, dimensions=d)
        n = items.n
        if n < 1:
            raise Broken("build returned an empty catalog")
        _vec(items, "vectors", (n, d), "f")
        _vec(items, "quality", (n,), "f")
        topic = _vec(items, "topic", (n,), "iu")
        if not isinstance(items.n_topics, (int, np.integer)) or items.n_topics < 1:
            raise Broken(f"items.n_topics must be a positive int, got {items.n_topics!r}")
        if topic.min() < 0 or topic.max() >= items.n_topics:
            raise Broken(f"items.topic must be in [0, {items.n_topics}), got {topic.min()}..{topic.max()}")
        arrival = _vec(items, "arrival", (n,), "fiu")
        if (arrival < 0).any():
            raise Broken("items.arrival must be >= 0 (days since the start)")
        if not arrival.size or arrival.min() > 0:
            raise Broken("no item is available at time 0 (arrival == 0)")
        if items.text is not None and len(items.text) != n:
            raise Broken(f"items.text has {len(items.text)} entries for {n} items")
        if items.embeddings is not None:
            emb = np.asarray(items.embeddings)
            if emb.ndim != 2 or emb.shape[0] != n or not np.isfinite(emb).all():
                raise Broken(f"items.embeddings must be a finite (n_items, e) array, got shape {emb.shape}")
        for field in ("topic_names", "topic_text"):
            v = getattr(items, field)
            if v is not None and len(v) != items.n_topics:
                raise Broken(f"items.{field} has {len(v)} entries for {items.n_topics} topics")


def _rule_catalog_deterministic(s: Subject) -> None:
    a, b = _build(s, seed=3), _build(s, seed=3)
    for field in ("vectors", "quality", "topic", "arrival", "embeddings"):
        x, y = getattr(a, field), getattr(b, field)
        if (x is None) != (y is None) or (x is not None and not np.allclose(x, y, rtol=1e-6, atol=1e-7)):
            raise Broken(f"two builds with the same seed give different items.{field}")
    if a.text != b.text or a.n_topics != b.n_topics:
        raise Broken("two builds with the same seed give different texts or topics")


def _rule_catalog_check(s: Subject) -> None:
    n = s.call(s.new(), "check", _catalog_context(s, seed=4))
    if n is None:
        return
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool):
        raise Broken(f"check must return the number of items (an int) or None, got {n!r}")
    built = _build(s, seed=4).n
    if int(n) != built:
        raise Broken(f"check returned {int(n)} items but build made {built}")


CATALOG_RULES: list[Rule] = common_rules("catalog") + [
    Rule("build_shapes", "`build` returns Items with consistent shapes and vectors of ctx.dimensions.",
         _rule_catalog_shapes),
    Rule("deterministic", "The same seed builds the same catalog.", _rule_catalog_deterministic),
    Rule("check_counts", "`check` accepts valid inputs and returns None or the number of items `build` makes.",
         _rule_catalog_check),
]


# ---------------------------------------------------------------------------------------------
# User models
# ---------------------------------------------------------------------------------------------

_N_USERS, _DIM = 120, 8


def _world(s: Subject) -> tuple[Any, Any, Items]:
    items = make_items(60, _DIM, seed=21)
    model = s.new()
    state = s.call(model, "init_state", make_population(_N_USERS, _DIM, seed=21), items, Keys(21))
    return model, state, items


def _slates(n: int, n_items: int, k: int, seed: int = 0) -> Slates:
    rng = np.random.default_rng(seed)
    items = np.argsort(rng.random((n, n_items)), axis=1)[:, :k].astype(np.int64)
    return Slates(items, np.ones((n, k)), np.zeros((n, k)))


def _request(users: np.ndarray, k: int = 5) -> Batch:
    return Batch(users=users, sessions=users % 4, time=1.5, slate_size=k, stream=Keys(21).stream("policy:a"))


def _respond(s: Subject, model: Any, state: Any, batch: Batch, slates: Slates) -> Response:
    out = s.call(model, "respond", state, batch, slates)
    if not isinstance(out, Response):
        raise Broken(f"respond must return Response, got {type(out).__name__}")
    n, k = np.asarray(slates.items).shape
    for field in ("clicks", "dwell"):
        arr = np.asarray(getattr(out, field))
        if arr.shape != (n, k):
            raise Broken(f"response.{field} has shape {arr.shape}; expected {(n, k)}, one per shown position")
    gap = np.asarray(out.next_gap)
    if gap.shape != (n,):
        raise Broken(f"response.next_gap has shape {gap.shape}; expected ({n},)")
    return out


def _rule_first_visit(s: Subject) -> None:
    model, state, _ = _world(s)
    users = np.arange(_N_USERS, dtype=np.int64)
    fv = np.asarray(s.call(model, "first_visit", state, users))
    if fv.shape != (_N_USERS,):
        raise Broken(f"first_visit returned shape {fv.shape}; expected ({_N_USERS},)")
    if np.isnan(fv).any() or (fv < 0).any():
        raise Broken("first_visit must return times >= 0 (inf for a user who never visits), found NaN or negatives")


def _rule_response_shapes(s: Subject) -> None:
    model, state, items = _world(s)
    users = np.arange(0, 60, dtype=np.int64)
    _respond(s, model, state, _request(users), _slates(60, items.n, 5))
    # fewer available items than the slate size: the slates have 3 positions, the response too
    _respond(s, model, state, _request(users[:10] + 60), _slates(10, items.n, 3, seed=1))


def _rule_clicks_dwell(s: Subject) -> None:
    model, state, items = _world(s)
    out = _respond(s, model, state, _request(np.arange(80, dtype=np.int64)), _slates(80, items.n, 5))
    clicks = np.asarray(out.clicks)
    if clicks.dtype != bool and not np.isin(clicks, (0, 1)).all():
        raise Broken(f"response.clicks must be booleans (or 0/1), got dtype {clicks.dtype}")
    dwell = np.asarray(out.dwell, dtype=float)
    if not np.isfinite(dwell).all() or (dwell < 0).any():
        raise Broken("response.dwell must be finite and >= 0")
    if (dwell[~clicks.astype(bool)] != 0).any():
        raise Broken("response.dwell must be 0 at positions without a click")


def _rule_next_gap(s: Subject) -> None:
    model, state, items = _world(s)
    gap = np.asarray(_respond(s, model, state, _request(np.arange(80, dtype=np.int64)),
                              _slates(80, items.n, 5)).next_gap, dtype=float)
    if np.isnan(gap).any() or (gap <= 0).any() or np.isneginf(gap).any():
        raise Broken("response.next_gap must be > 0 (days) or inf (churn); found NaN, zero or negative values")


def _same_response(a: Response, b: Response, what: str) -> None:
    for field in ("clicks", "dwell", "next_gap"):
        if not np.array_equal(np.asarray(getattr(a, field)), np.asarray(getattr(b, field))):
            raise Broken(f"{what}: response.{field} differs")


def _rule_user_deterministic(s: Subject) -> None:
    users = np.arange(80, dtype=np.int64)
    model, state, items = _world(s)
    model2, state2, _ = _world(s)
    sl = _slates(80, items.n, 5)
    fv1 = np.asarray(s.call(model, "first_visit", state, users))
    fv2 = np.asarray(s.call(model2, "first_visit", state2, users))
    if not np.array_equal(fv1, fv2):
        raise Broken("two identical states give different first visits (use the keyed streams from init_state)")
    _same_response(_respond(s, model, state, _request(users), sl), _respond(s, model2, state2, _request(users), sl),
                   "two identical states answer the same slates differently (use keyed randomness)")


def _rule_user_batch_independent(s: Subject) -> None:
    users = np.arange(80, dtype=np.int64)
    model, state, items = _world(s)
    model2, state2, _ = _world(s)
    sl = _slates(80, items.n, 5)
    full = _respond(s, model, state, _request(users), sl)
    parts = [_respond(s, model2, state2, _request(users[i:i + 40]), Slates(sl.items[i:i + 40], sl.propensities[i:i + 40]))
             for i in (0, 40)]
    joined = Response(*(np.concatenate([np.asarray(getattr(p, f)) for p in parts]) for f in ("clicks", "dwell", "next_gap")))
    _same_response(full, joined, "a user's response depends on the other users in the batch")


USER_MODEL_RULES: list[Rule] = common_rules("user-model") + [
    Rule("first_visit", "`init_state` works and `first_visit` gives (n,) times >= 0.", _rule_first_visit),
    Rule("response_shapes", "`respond` gives clicks and dwell of the slates' shape and next_gap of shape (n,).",
         _rule_response_shapes),
    Rule("clicks_and_dwell", "Clicks are booleans; dwell is finite, >= 0 and 0 where there was no click.",
         _rule_clicks_dwell),
    Rule("next_gap_valid", "next_gap is > 0 or inf (churn), never NaN.", _rule_next_gap),
    Rule("deterministic", "Identical states answer identical batches identically (keyed randomness).",
         _rule_user_deterministic),
    Rule("batch_independent", "A user's response does not depend on the other users in the batch.",
         _rule_user_batch_independent),
]
