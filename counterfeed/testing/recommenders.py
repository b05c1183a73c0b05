"""Conformance rules for recommenders (:class:`counterfeed.Recommender`).

The empirical propensity rule (``propensities_match_frequencies``, stochastic policies only) serves
``N = 1500`` sessions of each of 3 users from one fitted state and compares, for every position,

- each item whose expected count ``N p`` is at least 5 with its observed count: ``|count - N p|``
  must stay within 5 binomial standard deviations ``sqrt(N p (1 - p))`` (plus 1 for discreteness);
- the draws of all other items, pooled, with ``N (1 - sum of the tested p)`` in the same way (the
  probabilities of one position sum to 1, so the untested items share what the tested ones leave);
- the sum of the reported propensities of the distinct items seen at a position must not exceed 1.

The action-probability rule (``action_probabilities``, stochastic policies only) asks
``action_probabilities`` about the slates served in that test, which must equal the logged
propensities (relative 1e-6, absolute 1e-4, the allowance for a Monte Carlo policy that logs
``max(hits, 1) / M``), and about every item at every position for a few requests (with and without
unavailable items): probabilities in [0, 1], 0 for unavailable items and past the slate, summing to
1 over the items at each slate position.

Five standard deviations make a false alarm on a correct policy a ``~6e-7`` event per cell; the
draws are keyed, so a given policy either always passes or always fails.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from counterfeed.core.contracts import Batch, Log, RecommenderContext, Slates
from counterfeed.testing._core import Broken, Rule, Subject, common_rules
from counterfeed.testing.fixtures import make_batch, make_context, make_log

__all__ = ["RECOMMENDER_RULES", "N_FREQUENCY_SESSIONS"]

N_FREQUENCY_SESSIONS = 1500
_Z = 5.0
_ACTION_ATOL = 1e-4


def _context() -> RecommenderContext:
    return make_context(n_items=60, n_users=200, slate_size=5, seed=11)


def _ready(s: Subject, ctx: RecommenderContext | None = None) -> tuple[Any, RecommenderContext]:
    ctx = _context() if ctx is None else ctx
    rec = s.new()
    s.call(rec, "setup", ctx)
    s.call(rec, "fit", Log.empty())
    s.call(rec, "update", Log.empty())
    return rec, ctx


def _batch(ctx: RecommenderContext, available: np.ndarray | None = None) -> Batch:
    users = np.arange(0, 80, 2, dtype=np.int64)  # 40 requests from distinct users
    return make_batch(ctx, users, sessions=users % 3, available=available)


def _serve(s: Subject, rec: Any, batch: Batch) -> Slates:
    out = s.call(rec, "recommend", batch)
    if not isinstance(out, Slates):
        raise Broken(f"recommend must return Slates, got {type(out).__name__}")
    return out


def _check_shape(out: Slates, batch: Batch, n_available: int) -> None:
    k = min(batch.slate_size, n_available)
    n = len(batch)
    items, prop = np.asarray(out.items), np.asarray(out.propensities)
    if items.shape != (n, k):
        raise Broken(f"recommend returned items of shape {items.shape} for {n} requests and slate size {k}; "
                     f"expected {(n, k)}")
    if prop.shape != (n, k):
        raise Broken(f"recommend returned propensities of shape {prop.shape}; expected {(n, k)}")
    if out.scores is not None and np.asarray(out.scores).shape != (n, k):
        raise Broken(f"scores have shape {np.asarray(out.scores).shape}; expected {(n, k)} or None")


def _check_ids(out: Slates, n_items: int) -> None:
    items = np.asarray(out.items)
    if items.dtype.kind not in "iu":
        raise Broken(f"item ids must be integers, got dtype {items.dtype}")
    if items.size and (items.min() < 0 or items.max() >= n_items):
        raise Broken(f"item ids must be in [0, {n_items}), got values from {items.min()} to {items.max()}")


def _check_repeats(out: Slates) -> None:
    items = np.sort(np.asarray(out.items), axis=1)
    dup = (items[:, 1:] == items[:, :-1]).any(axis=1)
    if dup.any():
        r = int(np.flatnonzero(dup)[0])
        raise Broken(f"slate {r} shows the same item twice: {np.asarray(out.items)[r].tolist()}")


def _check_available(out: Slates, available: np.ndarray) -> None:
    items = np.asarray(out.items)
    bad = ~available[items]
    if bad.any():
        r, j = (int(x) for x in np.argwhere(bad)[0])
        raise Broken(f"slate {r} shows item {items[r, j]} at position {j}, which batch.available marks unavailable")


def _check_propensities(out: Slates) -> None:
    p = np.asarray(out.propensities, dtype=float)
    if not np.isfinite(p).all():
        raise Broken("propensities must be finite (found NaN or inf)")
    if (p <= 0).any() or (p > 1).any():
        raise Broken(f"propensities must be in (0, 1], got values from {p.min():g} to {p.max():g}")


def _check_all(out: Slates, batch: Batch, n_items: int) -> None:
    avail = np.ones(n_items, bool) if batch.available is None else batch.available
    _check_shape(out, batch, int(avail.sum()))
    _check_ids(out, n_items)
    _check_repeats(out)
    _check_available(out, avail)
    _check_propensities(out)


# ---------------------------------------------------------------------------------------------


def _rule_lifecycle(s: Subject) -> None:
    rec, ctx = _ready(s)
    _serve(s, rec, _batch(ctx))


def _rule_shape(s: Subject) -> None:
    rec, ctx = _ready(s)
    batch = _batch(ctx)
    _check_shape(_serve(s, rec, batch), batch, ctx.items.n)
    small = np.zeros(ctx.items.n, bool)
    small[[3, 17, 42]] = True  # fewer available items than the slate size: slates shrink to 3
    batch = _batch(ctx, small)
    _check_shape(_serve(s, rec, batch), batch, 3)


def _rule_ids(s: Subject) -> None:
    rec, ctx = _ready(s)
    _check_ids(_serve(s, rec, _batch(ctx)), ctx.items.n)


def _rule_repeats(s: Subject) -> None:
    rec, ctx = _ready(s)
    _check_repeats(_serve(s, rec, _batch(ctx)))


def _rule_available(s: Subject) -> None:
    rec, ctx = _ready(s)
    avail = np.zeros(ctx.items.n, bool)
    avail[1::2] = True  # every other item; the best items by any score are likely among the others
    out = _serve(s, rec, _batch(ctx, avail))
    _check_ids(out, ctx.items.n)
    _check_available(out, avail)


def _rule_propensities(s: Subject) -> None:
    rec, ctx = _ready(s)
    _check_propensities(_serve(s, rec, _batch(ctx)))


def _same(a: Slates, b: Slates, what: str) -> None:
    if not np.array_equal(np.asarray(a.items), np.asarray(b.items)):
        r = int(np.flatnonzero((np.asarray(a.items) != np.asarray(b.items)).any(axis=1))[0])
        raise Broken(f"{what}: request {r} got {np.asarray(a.items)[r].tolist()} and "
                     f"{np.asarray(b.items)[r].tolist()}")
    if not np.allclose(np.asarray(a.propensities), np.asarray(b.propensities), rtol=1e-6, atol=0):
        raise Broken(f"{what}: same items but different propensities")


def _rule_deterministic(s: Subject) -> None:
    rec, ctx = _ready(s)
    batch = _batch(ctx)
    first = _serve(s, rec, batch)
    _same(first, _serve(s, rec, batch), "serving the same batch twice gave different slates "
                                         "(draw randomness from batch.stream keyed by user and session)")
    other, _ = _ready(s, _context())
    _same(first, _serve(s, other, batch), "two identically set-up instances gave different slates "
                                          "(no global or unkeyed randomness)")


def _rule_batch_independent(s: Subject) -> None:
    rec, ctx = _ready(s)
    batch = _batch(ctx)
    full = _serve(s, rec, batch)
    h = len(batch) // 2
    parts = [_serve(s, rec, Batch(batch.users[sl], batch.sessions[sl], batch.time, batch.slate_size,
                                  batch.stream, batch.available)) for sl in (slice(0, h), slice(h, None))]
    halves = Slates(np.concatenate([np.asarray(p.items) for p in parts]),
                    np.concatenate([np.asarray(p.propensities) for p in parts]))
    _same(full, halves, "a request's slate depends on the other requests in the batch")


def _rule_frequencies(s: Subject) -> None:
    rec, ctx = _ready(s)
    n = N_FREQUENCY_SESSIONS
    for user in (0, 7, 123):
        batch = make_batch(ctx, np.full(n, user), sessions=np.arange(n))
        out = _serve(s, rec, batch)
        _check_all(out, batch, ctx.items.n)
        items, prop = np.asarray(out.items), np.asarray(out.propensities, dtype=float)
        for j in range(items.shape[1]):
            _check_position(user, j, items[:, j], prop[:, j], n)


def _check_position(user: int, j: int, items: np.ndarray, prop: np.ndarray, n: int) -> None:
    where = f"user {user}, position {j}"
    uniq, inverse, counts = np.unique(items, return_inverse=True, return_counts=True)
    p = np.zeros(uniq.size)
    for c in range(uniq.size):
        pc = prop[inverse == c]
        if np.ptp(pc) > 1e-9 * max(1.0, pc.max()):
            raise Broken(f"{where}: item {uniq[c]} is logged with different propensities "
                         f"({pc.min():g} to {pc.max():g}) across sessions drawn from the same state")
        p[c] = pc[0]
    if p.sum() > 1 + 1e-6:
        raise Broken(f"{where}: the propensities of the distinct items shown there sum to {p.sum():.4f} > 1")
    tested = n * p >= 5
    for c in np.flatnonzero(tested):
        sd = np.sqrt(n * p[c] * (1 - p[c]))
        if abs(counts[c] - n * p[c]) > _Z * sd + 1:
            raise Broken(f"{where}: item {uniq[c]} has propensity {p[c]:.4f} but was shown in "
                         f"{counts[c]} of {n} draws (expected {n * p[c]:.1f} +- {_Z:g} x {sd:.1f})")
    rest_p = max(0.0, 1.0 - p[tested].sum())
    rest = int(counts[~tested].sum())
    sd = np.sqrt(n * rest_p * (1 - rest_p))
    if abs(rest - n * rest_p) > _Z * sd + 1:
        raise Broken(f"{where}: items with small propensities were shown {rest} times in {n} draws, expected "
                     f"{n * rest_p:.1f} +- {_Z:g} x {sd:.1f} from the propensities of the frequent items")


def _rule_fit(s: Subject) -> None:
    rec = s.new()
    ctx = _context()
    s.call(rec, "setup", ctx)
    s.call(rec, "fit", make_log(ctx, n_requests=400, seed=5))
    s.call(rec, "update", make_log(ctx, n_requests=40, seed=6, start=1.0, end=1.05))
    batch = _batch(ctx)
    _check_all(_serve(s, rec, batch), batch, ctx.items.n)
    avail = np.zeros(ctx.items.n, bool)
    avail[::3] = True
    batch = _batch(ctx, avail)
    _check_all(_serve(s, rec, batch), batch, ctx.items.n)


def _check_action_probabilities(s: Subject, rec: Any, batch: Batch, out: Slates, where: str) -> None:
    """``action_probabilities`` of the served slates equal the logged propensities."""
    got = np.asarray(s.call(rec, "action_probabilities", batch, np.asarray(out.items)), dtype=float)
    logged = np.asarray(out.propensities, dtype=float)
    if got.shape != logged.shape:
        raise Broken(f"action_probabilities returned shape {got.shape} for items of shape {logged.shape}")
    # absolute 1e-4: a Monte Carlo policy logs max(hits, 1) / M where its estimate is hits / M
    bad = ~np.isclose(got, logged, rtol=1e-6, atol=_ACTION_ATOL)
    if bad.any():
        r, j = (int(x) for x in np.argwhere(bad)[0])
        raise Broken(f"{where}: request {r}, position {j}: action_probabilities gives {got[r, j]:.6g} for the "
                     f"shown item {np.asarray(out.items)[r, j]} but recommend logged propensity {logged[r, j]:.6g}")


def _rule_action_probabilities(s: Subject) -> None:
    rec, ctx = _ready(s)
    s.call(rec, "fit", make_log(ctx, n_requests=400, seed=5))
    n_items, users = ctx.items.n, (0, 7, 123)
    for user in users:  # the logged propensities, themselves checked against frequencies
        batch = make_batch(ctx, np.full(N_FREQUENCY_SESSIONS, user), sessions=np.arange(N_FREQUENCY_SESSIONS))
        _check_action_probabilities(s, rec, batch, _serve(s, rec, batch), f"user {user}")
    avail = np.ones(n_items, bool)
    avail[::4] = False
    for available in (None, avail):
        # every item at every position for 3 users x 2 sessions: one distribution per (request, position)
        req_u = np.repeat(np.repeat(np.array(users), 2), n_items)
        req_s = np.tile(np.repeat(np.arange(2), n_items), len(users))
        batch = make_batch(ctx, req_u, sessions=req_s, available=available)
        k = ctx.slate_size
        items = np.repeat(np.tile(np.arange(n_items), 2 * len(users))[:, None], k + 1, axis=1)
        p = np.asarray(s.call(rec, "action_probabilities", batch, items), dtype=float)
        if p.shape != items.shape:
            raise Broken(f"action_probabilities returned shape {p.shape} for items of shape {items.shape}")
        if not np.isfinite(p).all() or (p < 0).any() or (p > 1 + 1e-9).any():
            raise Broken("action_probabilities must be finite and in [0, 1]")
        if available is not None and (p[~avail[items]] > 0).any():
            raise Broken("action_probabilities gives a positive probability to an item batch.available excludes")
        sums = p.reshape(-1, n_items, k + 1).sum(axis=1)
        kk = min(k, n_items if available is None else int(np.count_nonzero(available)))
        want = np.r_[np.ones(kk), np.zeros(k + 1 - kk)]
        off = np.abs(sums - want[None, :]) > 1e-6
        if off.any():
            r, j = (int(x) for x in np.argwhere(off)[0])
            raise Broken(f"the probabilities of all items at position {j} sum to {sums[r, j]:.6g} for request "
                         f"{r} (expected {want[j]:g}: one item per slate position, none past the slate)")


def _only_stochastic(cls: type) -> str | None:
    return None if getattr(cls, "stochastic", False) else "applies to stochastic = True policies only"


RECOMMENDER_RULES: list[Rule] = common_rules("recommender") + [
    Rule("setup_fit_update_empty", "`setup`, `fit(Log.empty())`, `update(Log.empty())` and `recommend` work.",
         _rule_lifecycle),
    Rule("slate_shape", "`recommend` returns items and propensities of shape (n, min(k, available)).", _rule_shape),
    Rule("item_ids_valid", "Item ids are integers in [0, n_items).", _rule_ids),
    Rule("no_repeated_items", "No item appears twice in one slate.", _rule_repeats),
    Rule("only_available_items", "Slates show only items that `batch.available` allows.", _rule_available),
    Rule("propensities_valid", "Propensities are finite and in (0, 1].", _rule_propensities),
    Rule("deterministic", "The same batch gives identical slates (keyed randomness only).", _rule_deterministic),
    Rule("batch_independent", "A request's slate does not depend on the other requests in its batch.",
         _rule_batch_independent),
    Rule("propensities_match_frequencies", "Stochastic policies: logged propensities match the empirical "
         "frequencies of many keyed draws.", _rule_frequencies, _only_stochastic),
    Rule("action_probabilities", "Stochastic policies: `action_probabilities` equals the propensities "
         "`recommend` logs (checked against frequencies above), is 0 for unavailable items and past the "
         "slate, and sums to 1 over the items at each slate position.", _rule_action_probabilities,
         _only_stochastic),
    Rule("fit_then_recommend", "`fit` on a small synthetic log and `update` on a window, then valid slates.",
         _rule_fit),
]
