"""The choice user model, sped up for issue 20's end-to-end throughput, answers exactly as before.

The reference below is the model's code before the change (satiation decayed in place and gathered
again by ``take_along_axis``, the first choice round on copies of every row, ``np.add.at`` with a
float64 one). The new code must give bit-identical responses and states window after window.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from counterfeed.core.contracts import Batch, CatalogContext, Response, Slates
from counterfeed.core.population import build_population
from counterfeed.core.randomness import Keys
from counterfeed.core.scenario import load_scenario
from counterfeed.plugins.catalogs.synthetic import SyntheticCatalog
from counterfeed.plugins.users.choice import ChoiceUserModel


class _Reference(ChoiceUserModel):
    """The model as it was (utility, respond's choice rounds, consequences' satiation update)."""

    def utility(self, state, users, items, t):
        o, it, rows = self.options, state.items, state.rows(users)
        dt = np.maximum(t - state.last_visit[rows], 0.0)
        decay = (0.5 ** (dt / o.satiation_halflife)).astype(np.float32)
        state.satiation[rows] *= decay[:, None]
        state.last_visit[rows] = t
        util = np.einsum("nd,nkd->nk", state.preferences[rows], it.vectors[items]) * o.preference_scale
        util += o.quality_weight * it.quality[items]
        if o.satiation_weight:
            util -= o.satiation_weight * np.take_along_axis(state.satiation[rows], it.topic[items], axis=1)
        return util

    def respond(self, state, batch, slates):
        o, users, sessions, items = self.options, batch.users, batch.sessions, slates.items
        n, k = items.shape
        util = self.utility(state, users, items, batch.time)
        uu, ss, pos = users[:, None], sessions[:, None], np.arange(k)[None, :]
        examined = state.keys.stream("user:examine").uniform(uu, ss, pos) < self.examination_probability(k)[None, :]
        choice, clicked, stride, rows = state.keys.stream("user:choice"), np.zeros((n, k), bool), state.items.n + 1, np.arange(n)
        for r in range(o.max_clicks):
            ur, sr = users[rows], sessions[rows]
            best, value = choice.gumbel_max(util[rows], examined[rows] & ~clicked[rows], ur, sr,
                                            items[rows] + 1 + r * stride)
            click = value > o.no_click_utility + choice.gumbel(ur, sr, r * stride)
            rows, best = rows[click], best[click]
            clicked[rows, best] = True
            if not rows.size:
                break
        return self.consequences(state, batch, items, util, clicked)

    def consequences(self, state, batch, items, util, clicked):
        before = state.satiation.copy()
        out = super().consequences(state, batch, items, util, clicked)
        cu, ct = np.nonzero(clicked)
        np.add.at(before, (state.rows(batch.users)[cu], state.items.topic[items[cu, ct]]), 1.0)
        np.testing.assert_array_equal(state.satiation, before)  # the float64 one of the old code
        return out


def _same(a, b):
    assert type(a) is type(b)
    for name in vars(a):
        x, y = getattr(a, name), getattr(b, name)
        if isinstance(x, np.ndarray):
            assert x.dtype == y.dtype and np.array_equal(x, y, equal_nan=True), name


@pytest.mark.parametrize("options", [{}, {"max_clicks": 4, "satiation_weight": 2.0, "satiation_halflife": 0.3},
                                     {"satiation_weight": 0.0, "no_click_utility": -1.0}])
def test_responses_and_states_are_bit_identical_to_the_old_code_window_after_window(options):
    sc = load_scenario("scenarios/quickstart.yaml").with_overrides({"population.users": 300})
    keys = Keys(11)
    pop = build_population(sc.population, keys)
    items = SyntheticCatalog(SyntheticCatalog.Options(items=60, topics=3)).build(
        CatalogContext(keys=keys, stream=keys.stream("catalog"), dimensions=sc.population.dimensions))
    new, old = ChoiceUserModel(ChoiceUserModel.Options(**options)), _Reference(_Reference.Options(**options))
    s_new = new.init_state(pop, items, keys)
    s_old = copy.deepcopy(s_new)
    rng = np.random.default_rng(2)
    sessions = np.zeros(pop.n, np.int64)
    clicks = 0
    for w in range(40):  # few items and topics: repeated clicks on a topic (np.add.at's duplicates)
        users = np.sort(rng.choice(pop.n, size=rng.integers(1, 120), replace=False))
        slate = np.stack([rng.choice(items.n, size=8, replace=False) for _ in users])
        batch = Batch(users=users, sessions=sessions[users].copy(), time=0.1 * w + 0.05, slate_size=8,
                      stream=keys.stream("policy:x"))
        slates = Slates(items=slate, propensities=np.ones(slate.shape))
        got, want = new.respond(s_new, batch, slates), old.respond(s_old, batch, slates)
        assert isinstance(got, Response)
        _same(got, want)
        _same(s_new, s_old)
        sessions[users] += 1
        clicks += int(got.clicks.sum())
    assert clicks > 100
