"""Fixtures: a fresh registry with the test recommenders."""

from __future__ import annotations

import importlib
import types

import pytest
from ope_sim import EpsilonByClicks, FixedRanking, StochasticNoProps

from counterfeed.core.hookspecs import hookimpl


@pytest.fixture
def registry(monkeypatch):
    """A fresh process registry (built-ins that import) with the test recommenders registered."""
    from counterfeed.core import plugins

    builtins = []
    for mod in plugins.BUILTIN_PLUGINS:
        try:
            importlib.import_module(mod)
            builtins.append(mod)
        except ImportError:
            continue
    reg = plugins.Registry(load_entry_points=False, builtins=builtins)
    monkeypatch.setattr(plugins, "_REGISTRY", reg)
    mod = types.ModuleType("ope_test_recommenders")

    @hookimpl
    def register_recommenders(register):
        for cls in (FixedRanking, EpsilonByClicks, StochasticNoProps):
            register(cls)

    mod.register_recommenders = register_recommenders
    name = reg.register_plugin(mod, name="ope-test-recommenders")
    yield reg
    reg.unregister_plugin(name)
