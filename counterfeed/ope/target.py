"""The target policy: its probability of each logged (item, position), and its full distribution for
the direct method.

A target comes from explicit probabilities (a table per (round, position, item) or a context-free table
per (item, position)) or from a recommender plugin (:func:`target_from_recommender`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from counterfeed.core._guard import guarded
from counterfeed.errors import DataError, PluginError
from counterfeed.ope.logs import OPELog, _floats, _integers, _read_table, _show, normalize_ids

__all__ = ["Target", "Support", "load_target", "target_from_table", "target_from_recommender",
           "catalog_from_log", "check_target_evaluable"]

_SUM_TOL = 1e-6


@dataclass
class Support:
    """The target's distribution over items, as weighted (item, position) pairs.

    ``per_position=True``: rows ``(position, item_code, weight)`` shared by every impression at that
    position. Otherwise ``unit`` gives the impression each row belongs to. ``item_code`` indexes the
    log's items; ``-1`` is an item the log never shows. Weights sum to 1 per impression.
    """

    item_code: np.ndarray
    weight: np.ndarray
    position: np.ndarray | None = None
    unit: np.ndarray | None = None

    @property
    def per_position(self) -> bool:
        return self.unit is None


@dataclass
class Target:
    """``prob[i]``: the target's probability of showing impression ``i``'s item at its position."""

    prob: np.ndarray
    support: Support | None
    name: str = "target"
    why_no_support: str = ""
    warnings: list[str] = field(default_factory=list)  # caveats every estimate inherits


def _codes(log: OPELog, items: np.ndarray, source: str = "<target>", name: str = "item") -> np.ndarray:
    """Log item code of each id (``-1``: not in the log), after :func:`~counterfeed.ope.logs.normalize_ids`."""
    import pandas as pd

    items = normalize_ids(items, source, name)
    idx = pd.Index(log.item_ids)
    if (idx.dtype.kind in "iu") != (items.dtype.kind in "iu"):  # integers never equal strings
        return np.full(items.shape, -1, np.int64)
    return idx.get_indexer(items).astype(np.int64)


def _examples(ids: np.ndarray, n: int = 3) -> str:
    return ", ".join(_show(x) for x in np.asarray(ids)[:n])


def load_target(path: str, log: OPELog) -> Target:
    """Read a target-probability table (CSV/Parquet) and align it with the log."""
    return target_from_table(log, _read_table(str(path)), source=str(path))


def target_from_table(log: OPELog, df: Any, *, source: str = "<target>") -> Target:
    """Target from a table with ``round, position, item, prob`` or context-free ``item, position, prob``.

    For a simulator log, ``user, session`` may stand in for ``round``.
    """
    cols = set(df.columns)
    for c in ("item", "position", "prob"):
        if c not in cols:
            raise DataError(f"{source}: missing column '{c}'; a target table has columns round, position, "
                            "item, prob (or item, position, prob)")
    prob = _floats(df["prob"].to_numpy(), source, "prob")
    bad = (prob < 0) | (prob > 1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{source}: column 'prob' row {i + 1}: probability {_show(prob[i])} is outside [0, 1]")
    pos = _integers(df["position"].to_numpy(), source, "position")
    if (pos < 0).any():
        i = int(np.flatnonzero(pos < 0)[0])
        raise DataError(f"{source}: column 'position' row {i + 1}: position {pos[i]} is negative")
    code = _codes(log, df["item"].to_numpy(), source)
    if not (code >= 0).any():
        raise DataError(f"{source}: no id in column 'item' matches an item of the log {log.source} (the log's "
                        f"ids look like {_examples(log.item_ids)}; the table's like "
                        f"{_examples(df['item'].to_numpy())})")
    keys = [c for c in ("round", "user", "session") if c in cols] + ["position", "item"]
    dup = df.duplicated(subset=keys).to_numpy()
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        raise DataError(f"{source}: row {i + 1}: duplicated ({', '.join(keys)})")
    if "round" in cols or {"user", "session"} <= cols:
        return _per_round(log, df, pos, code, prob, source)
    return _per_position(log, pos, code, prob, source)


def _per_position(log: OPELog, pos: np.ndarray, code: np.ndarray, prob: np.ndarray, source: str) -> Target:
    n_pos = max(log.n_positions, int(pos.max()) + 1)
    seen = code >= 0
    width = log.n_items + 1
    p = np.zeros(len(log))
    if n_pos * width <= (1 << 24):  # dense (position, item) table: one gather per impression
        dense = np.zeros(n_pos * width)
        dense[pos[seen] * width + code[seen]] = prob[seen]
        p = dense[log.position * width + log.item_code]
    elif seen.any():
        key = pos[seen] * width + code[seen]
        order = np.argsort(key, kind="stable")
        ks = key[order]
        logged = log.position * width + log.item_code
        at = np.minimum(np.searchsorted(ks, logged), ks.size - 1)
        p = np.where(ks[at] == logged, prob[seen][order][at], 0.0)
    sums = np.bincount(pos, prob, minlength=n_pos)
    used = np.flatnonzero(np.bincount(log.position, minlength=n_pos))
    off = np.abs(sums[used] - 1) > _SUM_TOL
    if off.any():
        j = int(used[off][0])
        return Target(p, None, "table", f"{source}: probabilities at position {j} sum to {sums[j]:.6g}, not 1")
    return Target(p, Support(code, prob, position=pos), "table")


def _per_round(log: OPELog, df: Any, pos: np.ndarray, code: np.ndarray, prob: np.ndarray,
               source: str) -> Target:
    import pandas as pd

    if "round" in df.columns:
        rid = normalize_ids(df["round"].to_numpy(), source, "round")
    else:
        rid = (_integers(df["user"].to_numpy(), source, "user") << np.int64(32)) + \
            _integers(df["session"].to_numpy(), source, "session")
    rcode = pd.Index(log.round_ids).get_indexer(rid).astype(np.int64)
    if not (rcode >= 0).any():
        raise DataError(f"{source}: no round of the table matches a logged round (the log's rounds look like "
                        f"{_examples(log.round_ids)}; the table's like {_examples(rid)})")
    n_pos = max(log.n_positions, int(pos.max()) + 1)
    lookup = np.full(log.n_rounds * n_pos, -1, np.int64)
    lookup[log.round * n_pos + log.position] = np.arange(len(log))
    unit = np.where(rcode >= 0, lookup[np.maximum(rcode, 0) * n_pos + pos], -1)
    keep = unit >= 0
    unit, code, prob = unit[keep], code[keep], prob[keep]
    match = (code == log.item_code[unit]) & (code >= 0)
    p = np.bincount(unit[match], prob[match], minlength=len(log))
    sums = np.bincount(unit, prob, minlength=len(log))
    off = np.abs(sums - 1) > _SUM_TOL
    if off.any():
        i = int(np.flatnonzero(off)[0])
        why = (f"{source}: probabilities for round {_show(log.round_ids[log.round[i]])}, position "
               f"{log.position[i]} sum to {sums[i]:.6g}, not 1")
        return Target(p, None, "table", why)
    return Target(p, Support(code, prob, unit=unit), "table")


def catalog_from_log(log: OPELog, *more: OPELog) -> Any:
    """An :class:`~counterfeed.core.contracts.Items` for ids ``0..max(item)`` (over every log given) with
    zero features."""
    from counterfeed.core.contracts import Items

    for lg in (log, *more):
        if lg.item.dtype.kind not in "iu" or (lg.item < 0).any():
            raise DataError(f"{lg.source}: column 'item' must hold non-negative integer ids to evaluate a "
                            "recommender (or pass explicit target probabilities)")
    n = max(int(lg.item.max()) for lg in (log, *more)) + 1
    return Items(vectors=np.zeros((n, 1)), quality=np.zeros(n), topic=np.zeros(n, np.int64), n_topics=1,
                 arrival=np.zeros(n))


def _check_evaluable(rec: Any, name: str) -> None:
    from counterfeed.core.contracts import Recommender

    if rec.stochastic and type(rec).action_probabilities is Recommender.action_probabilities:
        raise PluginError("is stochastic and does not implement action_probabilities(batch, items), so it "
                          "cannot be a target of off-policy evaluation; pass explicit target probabilities "
                          "instead", plugin=name, hook="action_probabilities")


def check_target_evaluable(name: str, options: dict[str, Any] | None = None, *, registry: Any = None) -> None:
    """Raise before any data is read if recommender ``name`` with ``options`` cannot be an OPE target.

    Errors: :class:`~counterfeed.errors.ScenarioError` (unknown name, bad options, from the registry)
    or :class:`~counterfeed.errors.PluginError` (a stochastic recommender without
    ``action_probabilities``). Used by ``validate`` for a scenario's ``ope`` analysis.
    """
    from counterfeed.core.plugins import get_registry

    reg = registry if registry is not None else get_registry()
    _check_evaluable(reg.create("recommender", name, options or {}, field="policy"), name)


def target_from_recommender(log: OPELog, name: str, options: dict[str, Any] | None = None, *,
                            seed: int = 0, items: Any = None, n_users: int | None = None,
                            slate_size: int | None = None, fit_log: Any = None, fit_is_eval: bool | None = None,
                            dm_samples: int = 16, chunk: int = 65536, registry: Any = None) -> Target:
    """Target probabilities of a registered recommender on the logged rounds.

    The recommender is created from the registry, ``setup`` with the catalog (``items``, else
    :func:`catalog_from_log`), ``fit`` on ``fit_log`` (default: the log itself), and asked about every
    logged round in batches (users and sessions from the log, stream ``Keys(seed).stream("policy:target")``).
    The logged items' probabilities come from the recommender's ``action_probabilities(batch, items)``
    (:class:`~counterfeed.core.contracts.Recommender`; for a deterministic recommender, 1 where its
    slate matches the logged item).
    The direct method's expectation over the target uses its slate (deterministic) or ``dm_samples``
    slates drawn from child streams (stochastic, Monte Carlo).

    ``fit_is_eval`` (default: ``fit_log`` is None) says the recommender learns from the very log it is
    evaluated on; if its ``fit`` learns anything, the target carries a winner's-curse warning.
    """
    from counterfeed.core.contracts import Batch, Recommender, RecommenderContext
    from counterfeed.core.plugins import get_registry
    from counterfeed.core.randomness import Keys

    reg = registry if registry is not None else get_registry()
    rec = reg.create("recommender", name, options or {}, field="policy")
    _check_evaluable(rec, name)
    items = items if items is not None else catalog_from_log(log)
    users, sessions = log.users_sessions()
    k = int(slate_size or log.n_positions)
    if int(log.n_positions) > k:
        raise DataError(f"{log.source}: positions go up to {log.n_positions - 1} but the slate size is {k}")
    keys = Keys(seed)
    with guarded(name, "setup/fit"):
        rec.setup(RecommenderContext(items=items, n_users=int(n_users or users.max() + 1), slate_size=k,
                                     keys=keys, arm="target"))
        rec.fit(fit_log if fit_log is not None else log.to_contract_log())
    stochastic = bool(rec.stochastic)
    stream = keys.stream("policy:target")
    time = float(log.time.max()) if log.time is not None else 0.0
    # the logged (round, position) -> item table, -1 where nothing was logged
    logged = np.full((log.n_rounds, k), -1, np.int64)
    logged[log.round, log.position] = log.item.astype(np.int64)
    rows = np.full((log.n_rounds, k), -1, np.int64)
    rows[log.round, log.position] = np.arange(len(log))
    prob_rk = np.zeros((log.n_rounds, k))
    samples = dm_samples if stochastic else 1
    s_unit, s_item, s_w = [], [], []
    for lo in range(0, log.n_rounds, chunk):
        sl = slice(lo, min(lo + chunk, log.n_rounds))
        batch = Batch(users=users[sl], sessions=sessions[sl], time=time, slate_size=k, stream=stream)
        shown = logged[sl]
        with guarded(name, "recommend/action_probabilities"):
            try:
                probs = rec.action_probabilities(batch, np.maximum(shown, 0))
            except NotImplementedError as exc:
                raise PluginError(f"cannot be evaluated off-policy: {exc}; pass explicit target probabilities "
                                  "(--target-probs) instead", plugin=name, hook="action_probabilities") from exc
            prob_rk[sl] = np.where(shown >= 0, probs, 0.0)
            for s in range(samples):
                b = batch if s == 0 else Batch(batch.users, batch.sessions, time, k, stream.child(f"dm{s}"))
                slates = rec.recommend(b)
                got = np.full(shown.shape, -2, np.int64)
                kk = min(k, slates.items.shape[1])
                got[:, :kk] = slates.items[:, :kk]
                r = rows[sl]
                ok = (r >= 0) & (got >= 0)
                s_unit.append(r[ok])
                s_item.append(got[ok])
                s_w.append(np.full(int(ok.sum()), 1.0 / samples))
    prob = prob_rk[log.round, log.position]
    if (prob < -1e-12).any() or (prob > 1 + 1e-9).any():
        raise PluginError("returned probabilities outside [0, 1]", plugin=name, hook="action_probabilities")
    unit = np.concatenate(s_unit)
    item_code = _codes(log, np.concatenate(s_item))
    cover = np.bincount(unit, minlength=len(log))
    why = "" if (cover == samples).all() else f"recommender '{name}' returned slates shorter than the logged positions"
    support = Support(item_code, np.concatenate(s_w), unit=unit) if not why else None
    notes = []
    if (fit_log is None if fit_is_eval is None else fit_is_eval) and type(rec).fit is not Recommender.fit:
        notes.append(f"the target '{name}' was fitted on the log it is evaluated on (winner's curse): it favours "
                     "what happened to be rewarded in this log, so the estimates are biased upward (its own "
                     "noise looks like value); fit it on a separate log (ope --fit-log FILE, or the 'ope' "
                     "analysis' fit_on: pre_period)")
    m = getattr(getattr(rec, "options", None), "propensity_samples", None)
    if stochastic and isinstance(m, int):
        notes.append(f"the target's probabilities are Monte Carlo estimates over propensity_samples = {m} draws "
                     f"(standard error up to {0.5 / m ** 0.5:.3g} per probability, shared by the rounds of a "
                     "batch and not in the interval); raise propensity_samples to shrink it")
    return Target(np.clip(prob, 0.0, 1.0), support, name, why, notes)


