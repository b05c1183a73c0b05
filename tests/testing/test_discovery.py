"""Discovery controls: COUNTERFEED_LOAD_PLUGINS restricts what loads, COUNTERFEED_TRACE_PLUGINS traces hooks."""

from __future__ import annotations

import importlib.metadata as md

import pytest

from counterfeed.core import plugins as plugins_module
from counterfeed.core.plugins import (BUILTIN_PLUGINS, COMMANDS_MODULE, ENTRY_POINT_GROUP, Registry,
                                     get_registry, reset_registry)
from counterfeed.errors import PluginError, PluginWarning


@pytest.fixture(autouse=True)
def fresh(monkeypatch):
    monkeypatch.delenv("COUNTERFEED_LOAD_PLUGINS", raising=False)
    monkeypatch.delenv("COUNTERFEED_TRACE_PLUGINS", raising=False)
    reset_registry()
    yield
    reset_registry()


def _loaded(reg: Registry) -> set[str]:
    reg.load()  # loading is lazy: plugin modules are imported on first use
    return {name for name, _ in reg.pm.list_name_plugin()}


def test_building_a_registry_imports_no_plugin():
    reg = Registry()
    assert reg.pm.list_name_plugin() == []
    reg.names("recommender")
    assert set(BUILTIN_PLUGINS) <= {name for name, _ in reg.pm.list_name_plugin()}


def test_unset_loads_every_builtin():
    reg = get_registry()
    assert set(BUILTIN_PLUGINS) <= _loaded(reg)
    assert all(reg._sources[m][0] == "builtin" for m in BUILTIN_PLUGINS)


@pytest.mark.parametrize("value, expected", [
    ("counterfeed.plugins.recommenders.basic", {"counterfeed.plugins.recommenders.basic"}),
    ("basic", {"counterfeed.plugins.recommenders.basic"}),
    (" basic , synthetic ,", {"counterfeed.plugins.recommenders.basic", "counterfeed.plugins.catalogs.synthetic"}),
    ("", set()),
])
def test_load_plugins_restricts_builtins(monkeypatch, value, expected):
    monkeypatch.setenv("COUNTERFEED_LOAD_PLUGINS", value)
    reg = get_registry()
    assert _loaded(reg) == expected


def test_load_plugins_naming_an_unknown_plugin_warns(monkeypatch):
    monkeypatch.setenv("COUNTERFEED_LOAD_PLUGINS", "basic,bandit,no-such-plugin")
    with pytest.warns(PluginWarning, match=r"COUNTERFEED_LOAD_PLUGINS names unknown plugin\(s\) 'bandit', "
                      r"'no-such-plugin' .*did you mean 'bandits'\?"):
        reg = get_registry()
    assert _loaded(reg) == {"counterfeed.plugins.recommenders.basic"}


def test_known_names_do_not_warn(monkeypatch, recwarn):
    monkeypatch.setenv("COUNTERFEED_LOAD_PLUGINS", "basic,counterfeed.plugins.catalogs.synthetic")
    get_registry()
    assert not [w for w in recwarn if issubclass(w.category, PluginWarning)]


def test_only_the_commands_module_adds_commands():
    """Registry.load_commands (``counterfeed --help``) imports only COMMANDS_MODULE of the built-ins;
    that is right only while no other built-in implements register_commands."""
    reg = get_registry()
    reg.load()
    impls = {i.plugin_name for i in reg.pm.hook.register_commands.get_hookimpls()}
    assert impls == {COMMANDS_MODULE}


def test_restricted_registry_only_knows_the_loaded_classes(monkeypatch):
    monkeypatch.setenv("COUNTERFEED_LOAD_PLUGINS", "basic")
    reg = get_registry()
    assert reg.names("recommender") and not reg.names("estimator")
    assert {i.plugin for i in reg.all_plugins()} == {"counterfeed.plugins.recommenders.basic"}


def test_reset_registry_rereads_the_environment(monkeypatch):
    monkeypatch.setenv("COUNTERFEED_LOAD_PLUGINS", "basic")
    assert get_registry() is get_registry()
    assert len(_loaded(get_registry())) == 1
    monkeypatch.delenv("COUNTERFEED_LOAD_PLUGINS")
    assert len(_loaded(get_registry())) == 1  # cached until reset
    reset_registry()
    assert set(BUILTIN_PLUGINS) <= _loaded(get_registry())


class _FakeDist:
    name, version = "counterfeed-fake", "1.2.3"


def _fake_entry_points(module: str, name: str = "fake"):
    ep = md.EntryPoint(name=name, value=module, group=ENTRY_POINT_GROUP)
    try:
        ep = ep._for(_FakeDist())  # what importlib.metadata does for installed distributions
    except AttributeError:  # pragma: no cover - older Pythons
        pass
    return lambda group=None: [ep] if group == ENTRY_POINT_GROUP else []


def test_entry_points_are_loaded_with_their_source(monkeypatch):
    monkeypatch.setattr(plugins_module.md, "entry_points", _fake_entry_points("tests.testing.broken_plugins"))
    reg = get_registry()
    info = reg.info("recommender", "wrong-shape")
    assert (info.plugin, info.source, info.version) == ("fake", "counterfeed-fake", "1.2.3")


@pytest.mark.parametrize("allowed, loaded", [("fake", True), ("basic", False), ("basic,fake", True)])
def test_load_plugins_restricts_entry_points(monkeypatch, allowed, loaded):
    monkeypatch.setattr(plugins_module.md, "entry_points", _fake_entry_points("tests.testing.broken_plugins"))
    monkeypatch.setenv("COUNTERFEED_LOAD_PLUGINS", allowed)
    assert ("fake" in _loaded(get_registry())) is loaded


def test_broken_entry_point_names_the_plugin(monkeypatch):
    monkeypatch.setattr(plugins_module.md, "entry_points", _fake_entry_points("no_such_module_xyz", "ghost"))
    with pytest.raises(PluginError, match=r"plugin 'ghost' in load: could not import entry point 'no_such_module_xyz'"):
        get_registry().names("recommender")


def test_trace_plugins_prints_hook_calls(monkeypatch, capsys):
    monkeypatch.setenv("COUNTERFEED_LOAD_PLUGINS", "basic")
    monkeypatch.setenv("COUNTERFEED_TRACE_PLUGINS", "1")
    reg = get_registry()
    reg.hook.register_recommenders(register=lambda cls: None)
    err = capsys.readouterr().err
    assert "[counterfeed trace] register_recommenders(register) -> ['counterfeed.plugins.recommenders.basic']" in err
    assert "[counterfeed trace] register_recommenders done" in err


def test_trace_plugins_shows_the_registrations(monkeypatch, capsys):
    monkeypatch.setenv("COUNTERFEED_LOAD_PLUGINS", "basic")
    monkeypatch.setenv("COUNTERFEED_TRACE_PLUGINS", "1")
    assert "popularity" in get_registry().names("recommender")
    err = capsys.readouterr().err
    assert "[counterfeed trace] register_recommenders(register) -> ['counterfeed.plugins.recommenders.basic']" in err
    assert "[counterfeed trace] register_estimators(register) -> []" in err


def test_no_trace_by_default(capsys):
    get_registry().hook.register_recommenders(register=lambda cls: None)
    assert "[counterfeed trace]" not in capsys.readouterr().err
