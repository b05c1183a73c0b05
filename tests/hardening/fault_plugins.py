"""Faulty plugins for tests/hardening/test_plugin_faults.py (registered inside the tests only)."""

from __future__ import annotations

import numpy as np

from counterfeed import hookimpl
from counterfeed.core.contracts import Catalog, Estimate, Estimator, Metric, Response, Slates
from counterfeed.plugins.recommenders.basic import RandomRecommender
from counterfeed.plugins.users.choice import ChoiceUserModel


class _Random(RandomRecommender):
    """The built-in random recommender under another name, so one method can be broken."""


def _rec(name: str, **methods) -> type:
    return type(name.title().replace("-", ""), (_Random,), {"name": name, **methods})


def _boom(what: str):
    def method(self, *args, **kwargs):
        raise RuntimeError(f"{what} exploded")
    return method


def _bad_slates(self, batch):
    return Slates(np.zeros((len(batch), 1), np.int64), np.ones((len(batch), 1)))


def _not_slates(self, batch):
    return {"items": [0]}


def _bad_propensity(self, batch):
    s = RandomRecommender.recommend(self, batch)
    return Slates(s.items, np.full(s.items.shape, 1.5))


class _Choice(ChoiceUserModel):
    pass


def _um(name: str, **methods) -> type:
    return type(name.title().replace("-", ""), (_Choice,), {"name": name, **methods})


def _respond_bad_shape(self, state, batch, slates):
    r = ChoiceUserModel.respond(self, state, batch, slates)
    return Response(clicks=r.clicks[:, :1], dwell=r.dwell[:, :1], next_gap=r.next_gap)


def _respond_not_response(self, state, batch, slates):
    return (1, 2, 3)


def _first_visit_negative(self, state, users):
    return -np.ones(len(users))


class RaisingCatalog(Catalog):
    name = "fault-catalog"

    def build(self, ctx):
        raise OSError("catalog source unreachable")


class WrongShapeMetric(Metric):
    name = "fault-shape"

    def compute(self, events, start, end):
        return np.zeros(3)


class TextMetric(Metric):
    name = "fault-text"

    def compute(self, events, start, end):
        return ["many"] * 3


class RaisingMetric(Metric):
    name = "fault-raise"

    def compute(self, events, start, end):
        raise ZeroDivisionError("no users")


class InfMetric(Metric):
    name = "fault-inf"

    def compute(self, events, start, end):
        n = int(events.sessions["user"].max()) + 1 if len(events.sessions["user"]) else 0
        return np.full(max(n, 1), np.inf)


def _estimate(est, data, point, lower, upper):
    return Estimate(estimator=est.name, metric="clicks", arm=data.treatments[0], control=data.control,
                    point=point, lower=lower, upper=upper)


class NotEstimate(Estimator):
    name = "fault-not-estimate"

    def estimate(self, data):
        return [{"point": 1.0}]


class NotList(Estimator):
    name = "fault-not-list"

    def estimate(self, data):
        return _estimate(self, data, 0.0, -1.0, 1.0)


class BadInterval(Estimator):
    name = "fault-interval"

    def estimate(self, data):
        return [_estimate(self, data, 2.0, -1.0, 1.0)]


class NonePoint(Estimator):
    name = "fault-none-point"

    def estimate(self, data):
        return [_estimate(self, data, None, None, None)]


class RaisingEstimator(Estimator):
    name = "fault-raise-estimator"

    def estimate(self, data):
        raise np.linalg.LinAlgError("singular matrix")


RECOMMENDERS = [
    _rec("fault-recommend", recommend=_boom("recommend")),
    _rec("fault-fit", fit=_boom("fit")),
    _rec("fault-update", update=_boom("update")),
    _rec("fault-setup", setup=_boom("setup")),
    _rec("fault-slate-shape", recommend=_bad_slates),
    _rec("fault-not-slates", recommend=_not_slates),
    _rec("fault-propensity", recommend=_bad_propensity),
    _rec("fault-init", __init__=_boom("constructor")),
]
USER_MODELS = [
    _um("fault-respond", respond=_boom("respond")),
    _um("fault-respond-shape", respond=_respond_bad_shape),
    _um("fault-respond-type", respond=_respond_not_response),
    _um("fault-first-visit", first_visit=_first_visit_negative),
    _um("fault-init-state", init_state=_boom("init_state")),
]


class FaultPlugin:
    """Registers every faulty class (each is only used when a scenario names it)."""

    @hookimpl
    def register_recommenders(self, register):
        for cls in RECOMMENDERS:
            register(cls)

    @hookimpl
    def register_user_models(self, register):
        for cls in USER_MODELS:
            register(cls)

    @hookimpl
    def register_catalogs(self, register):
        register(RaisingCatalog)

    @hookimpl
    def register_metrics(self, register):
        for cls in (WrongShapeMetric, TextMetric, RaisingMetric, InfMetric):
            register(cls)

    @hookimpl
    def register_estimators(self, register):
        for cls in (NotEstimate, NotList, BadInterval, NonePoint, RaisingEstimator):
            register(cls)


class RaisingRegistration:
    @hookimpl
    def register_recommenders(self, register):
        raise RuntimeError("registry exploded")


class NotAClassRegistration:
    @hookimpl
    def register_metrics(self, register):
        register(42)


class DuplicateRegistration:
    @hookimpl
    def register_recommenders(self, register):
        register(type("Shadow", (_Random,), {"name": "random"}))


class NoOptionsRegistration:
    @hookimpl
    def register_estimators(self, register):
        from pydantic import BaseModel

        class Loose(BaseModel):  # no extra="forbid": typos would be swallowed
            level: float = 0.95

        register(type("LooseEstimator", (NotList,), {"name": "fault-loose", "Options": Loose}))


class RaisingLifecycle:
    def __init__(self, hook: str):
        self.hook = hook

    @hookimpl
    def counterfeed_run_start(self, scenario, run_dir):
        if self.hook == "counterfeed_run_start":
            raise RuntimeError("export service down")

    @hookimpl
    def counterfeed_world_end(self, scenario, world, events):
        if self.hook == "counterfeed_world_end":
            raise RuntimeError("export service down")

    @hookimpl
    def counterfeed_run_end(self, scenario, result):
        if self.hook == "counterfeed_run_end":
            raise RuntimeError("export service down")
