"""A target policy given as explicit action probabilities (``counterfeed twin evaluate --target-probs``).

The recommender ``probability-table`` shows, at position ``j`` of every slate, an item drawn from the
table's row ``j`` (``probs[j][i]``: item code ``i``), among the available items not already in the slate: the
row's distribution renormalized over them (a draw from the row, redrawn while it repeats an item or
hits an unavailable one; after 64 redraws the rest are uniform among the allowed items). The slate's
marginals therefore equal the table's when no item has probability at two positions, and are the
sequential draw's marginals otherwise.

Propensities are Monte Carlo, as the Thompson samplers' (``counterfeed/plugins/recommenders/
_montecarlo.py``): ``M = propensity_samples`` slates drawn by the same procedure once per availability
mask give ``hits / M``, standard error ``sqrt(p (1 - p) / M)``; a served item logs ``max(hits, 1) / M``.

The table format is ``counterfeed ope``'s context-free one (docs/ope.md): rows ``item, position,
prob``, read by :func:`table_from_file`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from counterfeed.core.contracts import Batch, Options, Recommender, RecommenderContext, Slates
from counterfeed.core.hookspecs import hookimpl

__all__ = ["TableRecommender", "table_from_file"]

_SLOT = 0x7AB1E
_REDRAWS = 64


def _example() -> list[list[float]]:
    w = 1.0 + (np.arange(60)[None, :] * 7 + np.arange(5)[:, None]) % 11
    return (w / w.sum(1, keepdims=True)).tolist()


class TableRecommender(Recommender):
    """Slates drawn from a fixed per-position item distribution (see module)."""

    name = "probability-table"
    stochastic: ClassVar[bool] = True
    conformance_options: ClassVar[dict[str, Any]] = {"probs": _example()}

    class Options(Options):
        probs: list[list[float]] = Field(description="row j: the probability of each item code at position j")
        propensity_samples: int = Field(20_000, ge=100, le=10_000_000,
                                        description="Monte Carlo slates for the propensities")

    def check_scenario(self, scenario: Any, catalog: Any, field: str) -> None:
        """``probs`` against the scenario (as ``setup`` checks it against the built catalog): one row per
        slate position (at least ``experiment.slate_size``), one column per item of the catalog (when
        ``Catalog.check`` knows the count), finite, >= 0, with a positive sum per row."""
        from counterfeed.core.plan import catalog_items
        from counterfeed.errors import DataError

        where, p, k = f"{field}.probs", self.options.probs, int(scenario.experiment.slate_size)
        widths = sorted({len(row) for row in p})
        if len(widths) > 1:
            raise scenario.error(f"every row of probs must have one column per item, got rows of {widths[0]} to "
                                 f"{widths[-1]} columns", where)
        if len(p) < k:
            raise scenario.error(f"probs must have at least {k} rows (one per slate position: "
                                 f"experiment.slate_size is {k}), got {len(p)}", where)
        try:
            n = catalog_items(scenario, catalog)
        except DataError:  # the catalog's own error: validate reports it from Catalog.check
            n = None
        if n is not None and widths and widths[0] != n:
            raise scenario.error(f"probs must have {n} columns (one per item of catalog '{catalog.name}'), got "
                                 f"{widths[0]}", where)
        a = np.asarray(p, dtype=np.float64)
        if a.size and (np.any(~np.isfinite(a)) or np.any(a < 0) or np.any(a.sum(1) <= 0)):
            raise scenario.error("probabilities must be finite, >= 0, with a positive sum per row", where)

    def setup(self, ctx: RecommenderContext) -> None:
        from counterfeed.errors import ModelError

        super().setup(ctx)
        p = np.asarray(self.options.probs, dtype=np.float64)
        n = ctx.items.n
        if p.ndim != 2 or p.shape[1] != n or p.shape[0] < 1:
            raise ModelError(f"recommender 'probability-table': probs must have rows (positions) of {n} columns "
                             f"(items), got shape {p.shape}")
        # its slates are its rows: validate holds them to experiment.slate_size (check_scenario); a longer
        # list asked of it (offline-ranking's cutoff) gets its rows, which that evaluation scores with a note
        k = min(p.shape[0], ctx.slate_size)
        if np.any(~np.isfinite(p)) or np.any(p < 0) or np.any(p.sum(1) <= 0):
            raise ModelError("recommender 'probability-table': probabilities must be finite, >= 0, with a "
                             "positive sum per row")
        self.cdf_ = np.cumsum(p[:k] / p[:k].sum(1, keepdims=True), axis=1)
        self.hits_: dict[bytes, np.ndarray] = {}

    def _draw(self, n: int, allowed: np.ndarray, uniform) -> np.ndarray:
        """(n, k) slates, positions in order; ``uniform(attempt)`` gives (n, k_table) uniforms in [0, 1)."""
        ids = np.flatnonzero(allowed)
        k = min(self.cdf_.shape[0], ids.size)
        items = np.full((n, k), -1, np.int64)
        draws: dict[int, np.ndarray] = {}
        for j in range(k):
            for a in range(_REDRAWS + 1):
                todo = np.flatnonzero(items[:, j] < 0)
                if not todo.size:
                    break
                if a not in draws:
                    draws[a] = uniform(a)
                u = draws[a][todo, j]
                if a < _REDRAWS:
                    c = np.searchsorted(self.cdf_[j], u * self.cdf_[j, -1], side="right")
                    c = np.minimum(c, self.cdf_.shape[1] - 1)
                    ok = allowed[c] & ~(items[todo, :j] == c[:, None]).any(1)
                    items[todo[ok], j] = c[ok]
                else:  # uniform among the allowed items not yet shown
                    for r, x in zip(todo, u):
                        free = np.setdiff1d(ids, items[r, :j])
                        items[r, j] = free[min(int(x * free.size), free.size - 1)]
        return items

    def _hits(self, allowed: np.ndarray) -> np.ndarray:
        key = np.packbits(allowed).tobytes()
        if key not in self.hits_:
            m, k = self.options.propensity_samples, self.cdf_.shape[0]
            rng = np.random.default_rng(int.from_bytes(key[:8].ljust(8, b"\0"), "little") ^ 0x5EED)
            hits = np.zeros((allowed.size, k))
            for lo in range(0, m, 50_000):
                mm = min(50_000, m - lo)
                slates = self._draw(mm, allowed, lambda a, mm=mm: rng.random((mm, k)))
                for j in range(slates.shape[1]):
                    hits[:, j] += np.bincount(slates[:, j], minlength=allowed.size)
            self.hits_[key] = hits
        return self.hits_[key]

    def _allowed(self, batch: Batch) -> np.ndarray:
        n = self.ctx_.items.n
        return np.ones(n, bool) if batch.available is None else np.asarray(batch.available, bool)

    def recommend(self, batch: Batch) -> Slates:
        allowed = self._allowed(batch)
        users, sessions = batch.users[:, None], batch.sessions[:, None]
        full = self._draw(len(batch), allowed, lambda a: batch.stream.uniform(
            users, sessions, _SLOT + a * self.cdf_.shape[0] + np.arange(self.cdf_.shape[0])[None, :]))
        k = full.shape[1]
        hits = self._hits(allowed)
        prop = np.maximum(hits[full, np.arange(k)[None, :]], 1) / self.options.propensity_samples
        return Slates(items=full, propensities=prop, scores=np.zeros(full.shape))

    def action_probabilities(self, batch: Batch, items: np.ndarray) -> np.ndarray:
        """``hits / M`` of ``items`` (n, k') at their positions; 0 past the slate and for unavailable items."""
        items = np.asarray(items, np.int64)
        allowed = self._allowed(batch)
        hits = self._hits(allowed) / self.options.propensity_samples
        n_items = allowed.size
        kk = min(items.shape[1], self.cdf_.shape[0], int(allowed.sum()))
        out = np.zeros(items.shape)
        q = items[:, :kk]
        ok = (q >= 0) & (q < n_items)
        out[:, :kk] = np.where(ok, hits[np.where(ok, q, 0), np.arange(kk)[None, :]], 0.0)
        return out


def table_from_file(path: str, item_ids: list[Any], slate_size: int) -> list[list[float]]:
    """``probs`` (slate_size rows, one column per twin item) from a context-free ``item, position, prob`` table.

    Raises
    ------
    DataError
        Naming the file: unreadable, columns missing, a per-round table (``round``/``user``/``session``
        columns: the twin simulates new sessions, so only the context-free form applies), positions
        outside the slate, probabilities outside [0, 1], an item the twin does not have, an (item,
        position) listed twice, or a position whose probabilities do not sum to 1.
    """
    import pandas as pd

    from counterfeed.errors import DataError, plain
    from counterfeed.ope.logs import _read_table as read_table
    from counterfeed.ope.target import _SUM_TOL

    df = read_table(path)
    per_round = [c for c in ("round", "user", "session") if c in df.columns]
    if per_round:
        raise DataError(f"{path}: column '{per_round[0]}': a per-round table cannot be simulated (the twin's "
                        "sessions are new); give the context-free form: item, position, prob")
    missing = [c for c in ("item", "position", "prob") if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing column '{missing[0]}'; expected columns item, position, prob")
    pos = pd.to_numeric(df["position"], errors="coerce").to_numpy(dtype=np.float64)
    prob = pd.to_numeric(df["prob"], errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(pos) | (pos < 0) | (pos >= slate_size) | (pos != np.round(pos))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{path}: column 'position' row {i + 1}: {plain(df['position'].iloc[i])}; expected an "
                        f"integer in [0, {slate_size - 1}] (the twin's slate size is {slate_size})")
    bad = ~np.isfinite(prob) | (prob < 0) | (prob > 1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{path}: column 'prob' row {i + 1}: {plain(df['prob'].iloc[i])}; expected a probability "
                        "in [0, 1]")
    index = {str(v): c for c, v in enumerate(item_ids)}
    code = np.array([index.get(str(v), -1) for v in df["item"].tolist()])
    if not (code >= 0).any():
        raise DataError(f"{path}: column 'item': none of its items is in the twin (e.g. {plain(df['item'].iloc[0])}; "
                        f"the twin's items are e.g. {plain(item_ids[0])})")
    if (code < 0).any():  # the twin cannot serve an item it has never seen (tester17 M10)
        i = int(np.flatnonzero(code < 0)[0])
        raise DataError(f"{path}: column 'item' row {i + 1}: item {plain(df['item'].iloc[i])} is not an item of the "
                        f"twin (it was never logged); the twin can only simulate its {len(item_ids)} items")
    cell = pos.astype(np.int64) * len(item_ids) + code
    dup = pd.Index(cell).duplicated()
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        raise DataError(f"{path}: row {i + 1}: item {plain(df['item'].iloc[i])} at position {int(pos[i])} is listed "
                        "twice; expected one probability per (item, position)")
    out = np.zeros((slate_size, len(item_ids)))
    out[pos.astype(np.int64), code] = prob
    sums = out.sum(1)
    off = np.flatnonzero(np.abs(sums - 1) > _SUM_TOL)
    if off.size:
        j = int(off[0])
        raise DataError(f"{path}: column 'prob': the probabilities at position {j} sum to {sums[j]:.6g}; expected "
                        "1 (each position's row is the target's distribution over the items)")
    return out.tolist()


@hookimpl
def register_recommenders(register):
    register(TableRecommender)
