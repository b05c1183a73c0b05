"""The built-in user model ``choice``: position-biased multinomial-logit choice with satiation,
return and churn.

Per session of user ``u`` (session index ``s``) shown slate ``i_1..i_k``:

- utility of item ``i``: ``U = preference_scale * p_u . v_i + quality_weight * q_i
  - satiation_weight * S_u[topic_i] (+ text_scale * t_u . e_i with text interests)``
- examination: position ``j`` (0-based) is examined with probability ``position_bias ** j``
  (``examination: position``), or the user scans top-down and stops after a click or with
  probability ``1 - continue_prob`` per position (``examination: cascade``);
- choice: multinomial logit among the examined, not yet clicked items and a no-click option of
  utility ``no_click_utility``, by Gumbel-max with noise keyed per ``(user, session, item)`` so the
  same item draws the same noise whichever slate it is in; up to ``max_clicks`` rounds;
- dwell (minutes) of a click: ``dwell_mean * exp(dwell_utility * (U - no_click_utility)) * LogNormal(0, 0.5)``;
- satiation: each click adds 1 to ``S_u[topic]``; ``S_u`` halves every ``satiation_halflife`` days;
- satisfaction ``sigma_u``: exponential moving average (weight ``memory``) of clicks per session,
  starting at ``baseline_satisfaction``;
- return: next visit after ``Exponential(rate)`` days, ``rate = visit_rate * activity_u *
  exp(return_weight * (sigma_u - baseline))``;
- churn: after each session with probability ``min(1, churn_rate * exp(churn_weight * (baseline - sigma_u)))``.

Every random draw is keyed by (user, session, item or position), so worlds share their noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator

from counterfeed.core.contracts import (Batch, Items, Options, Population, Response, Slates,
                                        UserModel)
from counterfeed.core.hookspecs import hookimpl
from counterfeed.core.randomness import Keys, position_choices

__all__ = ["ChoiceUserModel", "ChoiceState"]

_CHUNK = 2048  # requests per block when gathering item vectors (keeps a block in cache)


@dataclass
class ChoiceState:
    preferences: np.ndarray          # (n, d) latent preferences
    text_preferences: np.ndarray | None
    satiation: np.ndarray            # (n, topics) float32
    last_visit: np.ndarray           # (n,) time of the last satiation update
    satisfaction: np.ndarray         # (n,)
    activity: np.ndarray             # (n,)
    items: Items
    keys: Keys
    text_items: np.ndarray | None = None  # (n_items, e) item vectors in the users' text space (text_space)
    offset: int = 0  # global id of row 0 (a sharded world's block of users; draws keep global ids)

    def rows(self, users: np.ndarray) -> np.ndarray:
        """The state rows of (global) user ids."""
        return users - self.offset if self.offset else users


class ChoiceUserModel(UserModel):
    """Position-biased MNL choice with satiation, satisfaction-driven return and churn (see module)."""

    name = "choice"

    class Options(Options):
        preference_scale: float = Field(3.0, ge=0, le=100)
        quality_weight: float = Field(1.0, ge=-100, le=100)
        no_click_utility: float = Field(1.5, ge=-100, le=100)
        examination: Literal["position", "cascade"] = "position"
        position_bias: float = Field(0.85, gt=0, le=1, description="examination decay per position")
        continue_prob: float = Field(0.85, gt=0, le=1, description="cascade: probability to look further")
        max_clicks: int = Field(2, ge=1, le=50)
        dwell_mean: float = Field(2.0, gt=0, le=1000, description="minutes")
        dwell_utility: float = Field(0.3, ge=0, le=10)
        satiation_weight: float = Field(0.3, ge=0, le=100)
        satiation_halflife: float = Field(2.0, gt=0, le=3650, description="days")
        visit_rate: float = Field(1.0, gt=0, le=1000, description="visits per day at baseline")
        return_weight: float = Field(1.0, ge=0, le=100)
        churn_rate: float = Field(0.01, ge=0, le=1, description="churn probability per session at baseline")
        churn_weight: float = Field(2.0, ge=0, le=100)
        baseline_satisfaction: float = Field(0.5, ge=0, le=50)
        memory: float = Field(0.3, gt=0, le=1, description="weight of the latest session in satisfaction")
        interests: Literal["latent", "text"] = "latent"
        text_scale: float = Field(4.0, ge=0, le=100, description="weight of text interests (interests: text)")
        latent_weight: float = Field(1.0, ge=0, le=1, description="weight of latent interests when interests: text")
        text_space: str | dict | None = Field(
            None, description="interests: text: embedder of the users' text space (default: the catalog's); "
                              "another one puts tastes in a text space the recommenders' embeddings do not share")

        @field_validator("text_space")
        @classmethod
        def _text_space_spec(cls, v: Any) -> Any:
            """The checks of every ``embedder`` option (names, values, the model's directory or cache copy)."""
            from counterfeed.text.embedder import check_embedder_spec

            return None if v is None else check_embedder_spec(v)

    def check_scenario(self, scenario: Any, catalog: Any, field: str) -> None:
        """``interests: text`` needs a catalog plugin whose items have text embeddings and topic
        descriptions (its ``CatalogTags.has_topic_text``): ``init_state`` would refuse the catalog it builds."""
        if self.options.interests == "text" and not catalog.tags.has_topic_text:
            what = "no topic descriptions" if catalog.tags.text else "no text"
            raise scenario.error(f"'text' needs a catalog with text embeddings and topic descriptions (e.g. "
                                 f"catalog plugin 'synthetic-text'); catalog '{catalog.name}' has {what}",
                                 f"{field}.interests")

    def init_state(self, population: Population, items: Items, keys: Keys) -> ChoiceState:
        n = population.n
        text_prefs = text_items = None
        state_items = items
        if self.options.interests == "text":
            if items.embeddings is None or items.topic_text is None:
                from counterfeed.errors import ModelError
                raise ModelError("user_model.interests: 'text' needs a catalog with text embeddings "
                                 "and topic descriptions (e.g. catalog plugin 'synthetic-text')")
            from counterfeed.text.personas import text_preferences

            text_items = None
            if self.options.text_space is not None:  # tastes and item vectors in another encoder's space
                from dataclasses import replace

                from counterfeed.text.embedder import get_embedder

                if not items.text:
                    from counterfeed.errors import ModelError
                    raise ModelError("user_model.text_space needs a catalog whose items have text")
                emb = get_embedder(self.options.text_space)
                text_items = emb.embed(items.text)
                items = replace(items, embeddings=text_items)
            text_prefs = text_preferences(population, items, keys.stream("population:text"),
                                          embedder=None if text_items is None else emb)
            items = state_items
        return ChoiceState(
            preferences=population.preferences,
            text_preferences=text_prefs,
            satiation=np.zeros((n, max(items.n_topics, 1)), dtype=np.float32),
            last_visit=np.zeros(n),
            satisfaction=np.full(n, self.options.baseline_satisfaction),
            activity=population.activity,
            items=items,
            keys=keys,
            text_items=text_items,
            offset=population.offset,
        )

    def first_visit(self, state: ChoiceState, users: np.ndarray) -> np.ndarray:
        rate = self.options.visit_rate * state.activity[state.rows(users)]
        return state.keys.stream("user:visit").exponential(users, 0) / rate

    def utility(self, state: ChoiceState, users: np.ndarray, items: np.ndarray, t: float) -> np.ndarray:
        """(n, k) deterministic utility of ``items`` for ``users`` at time ``t`` (decays satiation)."""
        o = self.options
        it = state.items
        rows = state.rows(users)
        dt = np.maximum(t - state.last_visit[rows], 0.0)
        decay = (0.5 ** (dt / o.satiation_halflife)).astype(np.float32)
        satiation = state.satiation[rows] * decay[:, None]  # the users' rows, decayed (and kept below)
        state.satiation[rows] = satiation
        state.last_visit[rows] = t
        p = state.preferences[rows]
        util = np.empty(items.shape)
        for lo in range(0, len(users), _CHUNK):  # gather item vectors in cache-sized blocks
            hi = lo + _CHUNK
            util[lo:hi] = np.einsum("nd,nkd->nk", p[lo:hi], it.vectors[items[lo:hi]])
        scale = o.preference_scale * (o.latent_weight if state.text_preferences is not None else 1.0)
        util *= scale
        if state.text_preferences is not None:
            t_items = it.embeddings if state.text_items is None else state.text_items
            util += o.text_scale * np.einsum("ne,nke->nk", state.text_preferences[rows], t_items[items])
        util += o.quality_weight * it.quality[items]
        if o.satiation_weight:
            util -= o.satiation_weight * satiation[np.arange(len(users))[:, None], it.topic[items]]
        return util

    def examination_probability(self, k: int) -> np.ndarray:
        """(k,) probability that each position is examined (``examination: position``)."""
        return self.options.position_bias ** np.arange(k)

    def respond(self, state: ChoiceState, batch: Batch, slates: Slates) -> Response:
        o = self.options
        users, sessions = batch.users, batch.sessions
        items = slates.items
        n, k = items.shape
        util = self.utility(state, users, items, batch.time)
        keys = state.keys
        if o.examination == "position":  # rounds of keyed Gumbel-max choices; item draws of round r at
            # slot item + 1 + r * (n_items + 1), so no two rounds share one
            clicked = position_choices(keys.stream("user:examine"), keys.stream("user:choice"), util,
                                       self.examination_probability(k), users, sessions, items,
                                       state.items.n + 1, o.max_clicks, o.no_click_utility)
        else:
            # position j is examined if the user did not stop at any earlier position; the first
            # examined item whose utility beats its own no-click draw is clicked
            uu, ss = users[:, None], sessions[:, None]
            stop = keys.stream("user:examine").uniform(uu, ss, np.arange(k)[None, :]) >= o.continue_prob
            examined = np.concatenate([np.ones((n, 1), bool), np.cumsum(stop, axis=1)[:, :-1] == 0], axis=1)
            choice = keys.stream("user:choice")
            g = choice.gumbel(uu, ss, items + 1)
            g0 = choice.gumbel(uu, ss, 0 * items)
            beats = examined & (util + g > o.no_click_utility + g0)
            first = np.argmax(beats, axis=1)
            hit = np.nonzero(beats[np.arange(n), first])[0]
            clicked = np.zeros((n, k), dtype=bool)
            clicked[hit, first[hit]] = True
        return self.consequences(state, batch, items, util, clicked)

    def consequences(self, state: ChoiceState, batch: Batch, items: np.ndarray, util: np.ndarray,
                     clicked: np.ndarray) -> Response:
        """Dwell of the clicks, satiation, satisfaction, return and churn after ``clicked`` (n, k)."""
        o = self.options
        users, sessions = batch.users, batch.sessions
        keys = state.keys
        n, k = items.shape
        dwell = np.zeros((n, k))
        rows = state.rows(users)
        if clicked.any():
            cu, ct = np.nonzero(clicked)
            it_c = items[cu, ct]
            noise = keys.stream("user:dwell").normal(users[cu], sessions[cu], it_c)
            # the exponent capped one above where the 600-minute cap binds: the same values (a capped one
            # was above 600 before the cap and still is), without exp's overflow for extreme utilities
            top = np.log(600.0 / o.dwell_mean) + 1.0
            d = o.dwell_mean * np.exp(np.minimum(o.dwell_utility * (util[cu, ct] - o.no_click_utility) + 0.5 * noise,
                                                 top))
            dwell[cu, ct] = np.minimum(d, 600.0)
            one = state.satiation.dtype.type(1)  # of the array's type: np.add.at's fast loop (same sums)
            np.add.at(state.satiation, (rows[cu], state.items.topic[it_c]), one)
        n_clicks = clicked.sum(axis=1)
        s = state.satisfaction[rows] * (1 - o.memory) + o.memory * n_clicks
        state.satisfaction[rows] = s
        base = o.baseline_satisfaction
        rate = o.visit_rate * state.activity[rows] * np.exp(o.return_weight * (s - base))
        gap = keys.stream("user:visit").exponential(users, sessions + 1) / rate
        p_churn = np.minimum(1.0, o.churn_rate * np.exp(o.churn_weight * (base - s)))
        churn = keys.stream("user:churn").uniform(users, sessions) < p_churn
        gap = np.where(churn, np.inf, gap)
        return Response(clicks=clicked, dwell=dwell, next_gap=gap)


@hookimpl
def register_user_models(register):
    register(ChoiceUserModel)
