"""The twin as counterfeed plugins: catalog ``twin``, user model ``twin`` and the twin population.

A scenario says ``population: {twin: DIR}`` (optionally ``replicate: b``); the scenario schema fills
in the catalog and user model with the fitted options (:func:`counterfeed.twin.store.scenario_parts`).

The user model is the ``choice`` model (same satiation, dwell, satisfaction, return and churn; see
``counterfeed/plugins/users/choice.py``) with the fitted click model in place of the multinomial logit:

* ``click_model: pbm``: position ``j`` is examined with probability ``examination_probs[j]``; an
  examined item is clicked with probability ``sigmoid(U)``, ``U = p_u . v_i + b_i - w S_u,topic``;
  at most ``max_clicks`` clicks (the top ones) per slate;
* ``click_model: cascade``: the ``choice`` model's cascade (``continue_prob`` = the fitted ``kappa``,
  no-click utility 0), whose click probability at an examined position is exactly ``sigmoid(U)``;
* ``click_model: mnl``: the ``choice`` model's multinomial logit (up to ``max_clicks`` rounds) among all
  shown items and a no-click option of utility 0, position ``j`` adding ``log examination_probs[j]`` to
  the utility (attention weights; see :mod:`counterfeed.twin.mnl`).

Draws are keyed by (user, session, position or item) as in ``choice``, so twin worlds share their noise.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, ValidationInfo, field_validator

from counterfeed.core.contracts import (Batch, Catalog, CatalogContext, CatalogTags, Items, Options, Population,
                                        Response, Slates)
from counterfeed.core.hookspecs import hookimpl
from counterfeed.core.randomness import Keys
from counterfeed.plugins.users.choice import ChoiceState, ChoiceUserModel
from counterfeed.twin.store import read_meta, read_replicate

__all__ = ["TwinCatalog", "TwinUserModel", "twin_population"]


class TwinCatalog(Catalog):
    """The twin's items: fitted factors, appeal (as quality), topics, and text embeddings when fitted with text."""

    name = "twin"
    #: a tiny twin shipped with counterfeed (1 dimension, 24 items) for the conformance suite
    conformance_options = {"path": str(Path(__file__).parent / "example")}

    class Options(Options):
        path: str = Field(description="the twin directory")
        replicate: int = Field(0, ge=0, description="0: point fit; b >= 1: bootstrap replicate b")

        @field_validator("path")
        @classmethod
        def _twin_directory(cls, v: str) -> str:
            """A twin directory (its ``twin.json`` read and checked): located at ``catalog.path``."""
            from counterfeed.errors import DataError

            try:
                read_meta(v)
            except DataError as exc:
                raise ValueError(str(exc)) from None
            return v

        @field_validator("replicate")
        @classmethod
        def _fitted_replicate(cls, v: int, info: ValidationInfo) -> int:
            """A replicate the twin has (``0..B``): located at ``catalog.replicate``."""
            path = info.data.get("path")  # absent when the path itself was refused
            if path is not None:
                n = len(read_meta(path)["replicates"])
                if v >= n:
                    raise ValueError(f"the twin at {path} has replicates 0..{n - 1} (0: the point fit), got {v}")
            return v

    @property
    def tags(self) -> CatalogTags:
        """Text only when the twin was fitted with item texts or embeddings (recommenders that need text check it)."""
        path = Path(self.options.path)
        return CatalogTags(text=(path / "embeddings.npy").exists() or (path / "texts.json").exists(),
                           topic_text=False)  # its topics are fitted clusters, with no descriptions

    def check(self, ctx: CatalogContext) -> int:
        """The number of items, by building them (reading the fitted arrays is all building does):
        a missing or foreign twin directory fails ``validate`` as it fails ``run``."""
        return self.build(ctx).n

    def build(self, ctx: CatalogContext) -> Items:
        from counterfeed.errors import ModelError

        path = Path(self.options.path)
        rep = read_replicate(path, self.options.replicate)
        d = rep.item.shape[1]
        if d > ctx.dimensions:
            raise ModelError(f"catalog 'twin' ({path}): the twin has {d} dimensions but population.dimensions is "
                             f"{ctx.dimensions}; leave population.dimensions out")
        vectors = np.zeros((rep.item.shape[0], ctx.dimensions))
        vectors[:, :d] = rep.item  # zero padding leaves every utility unchanged
        emb = np.load(path / "embeddings.npy") if (path / "embeddings.npy").exists() else None
        texts = json.loads((path / "texts.json").read_text()) if (path / "texts.json").exists() else None
        n_topics = int(rep.topic.max()) + 1
        return Items(vectors=vectors, quality=rep.bias.astype(np.float64),
                     topic=rep.topic, n_topics=n_topics, arrival=np.zeros(rep.item.shape[0]), text=texts,
                     embeddings=emb)


class TwinUserModel(ChoiceUserModel):
    """The fitted user model (see module); its options are written by ``counterfeed twin fit``."""

    name = "twin"

    class Options(ChoiceUserModel.Options):
        path: str = Field("", description="the twin directory (for the record: the population carries the users)")
        replicate: int = Field(0, ge=0)
        click_model: Literal["pbm", "cascade", "mnl"] = "pbm"
        examination_probs: list[float] = Field(default_factory=lambda: [1.0])
        preference_scale: float = Field(1.0, ge=0, le=100)
        no_click_utility: float = Field(0.0, ge=-100, le=100)

    def _theta(self, k: int) -> np.ndarray:
        theta = np.asarray(self.options.examination_probs, float)
        return np.r_[theta, np.full(max(0, k - theta.size), theta[-1] if theta.size else 1.0)][:k]

    def examination_probability(self, k: int) -> np.ndarray:
        return np.ones(k) if self.options.click_model == "mnl" else self._theta(k)

    def utility(self, state: ChoiceState, users: np.ndarray, items: np.ndarray, t: float) -> np.ndarray:
        util = super().utility(state, users, items, t)
        if self.options.click_model == "mnl":  # attention weights: position j adds log theta_j
            util = util + np.log(np.maximum(self._theta(items.shape[1]), 1e-12))[None, :]
        return util

    def respond(self, state: ChoiceState, batch: Batch, slates: Slates) -> Response:
        o = self.options
        if o.click_model != "pbm":  # the choice model's cascade, or its MNL with the fitted examination
            return super().respond(state, batch, slates)
        users, sessions, items = batch.users, batch.sessions, slates.items
        n, k = items.shape
        util = self.utility(state, users, items, batch.time)
        uu, ss = users[:, None], sessions[:, None]
        examined = (state.keys.stream("user:examine").uniform(uu, ss, np.arange(k)[None, :])
                    < self.examination_probability(k)[None, :])
        attracted = state.keys.stream("user:choice").uniform(uu, ss, items + 1) < 1.0 / (1.0 + np.exp(-util))
        clicked = examined & attracted
        clicked &= np.cumsum(clicked, axis=1) <= o.max_clicks
        return self.consequences(state, batch, items, util, clicked)


def twin_population(path: str, replicate: int, n: int, keys: Keys, dims: int | None = None) -> Population:
    """``n`` users drawn from the replicate's fitted users (weighted by their bootstrap multiplicity).

    With ``n`` equal to the number of fitted users and the point fit, user ``u`` is fitted user ``u``;
    otherwise user ``u`` is a keyed draw (stream ``population:twin``), the same in every world. When
    the replicate carries posterior covariances (``user_chol``, an MNL twin), user ``u``'s factors are
    a keyed draw from its fitted user's posterior, ``mean + L e`` (stream ``population:twin-posterior``;
    :mod:`counterfeed.twin.posterior`), again the same in every world.
    """
    rep = read_replicate(path, replicate)
    d = max(dims or rep.user.shape[1], rep.user.shape[1])
    w = rep.weight.astype(np.float64)
    ids = np.arange(n, dtype=np.int64)
    if n == w.size and np.all(w == 1):
        idx = ids
    else:
        cum = np.cumsum(w) / w.sum()
        idx = np.searchsorted(cum, keys.stream("population:twin").uniform(ids), side="right").clip(0, w.size - 1)
    prefs = np.zeros((n, d))
    user = rep.user[idx].astype(np.float64)
    if rep.user_chol is not None:  # a draw from the user's posterior (counterfeed.twin.posterior), keyed per user
        k = rep.user.shape[1]
        e = keys.stream("population:twin-posterior").normal(ids[:, None], 0, np.arange(k)[None, :])
        user = user + np.einsum("nde,ne->nd", rep.user_chol[idx].astype(np.float64), e)
    prefs[:, :rep.user.shape[1]] = user  # zero-padded to population.dimensions, as the catalog
    return Population(n=n, preferences=prefs, segment=np.zeros(n, np.int64),
                      segment_names=["all"], activity=rep.activity[idx].astype(np.float64))


def twin_dims(path: str) -> int:
    return int(read_meta(path)["dims"])


@hookimpl
def register_catalogs(register):
    register(TwinCatalog)


@hookimpl
def register_user_models(register):
    register(TwinUserModel)

