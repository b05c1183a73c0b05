"""Every hook in hookspecs.py, exercised through a test plugin registered and unregistered in the test.

Registration hooks: register_recommenders, register_user_models, register_catalogs, register_metrics,
register_estimators. CLI: register_commands. Lifecycle: counterfeed_run_start, counterfeed_world_end,
counterfeed_run_end (a small run with a plugin that records its calls). Plugin failures at run time
become a PluginError naming the plugin and the hook or method it was in.
"""

from __future__ import annotations

import types
from pathlib import Path

import click
import pytest

import counterfeed
from counterfeed import hookimpl
from counterfeed.core.plugins import get_registry, reset_registry
from counterfeed.errors import PluginError
from tests.testing import broken_plugins as bp


@pytest.fixture
def registry(monkeypatch):
    """A fresh process-wide registry without third-party entry points; forgotten afterwards."""
    monkeypatch.delenv("COUNTERFEED_LOAD_PLUGINS", raising=False)
    monkeypatch.delenv("COUNTERFEED_TRACE_PLUGINS", raising=False)
    reset_registry()
    yield get_registry()
    reset_registry()


@pytest.fixture
def plugin(registry):
    """Register a plugin object for the test and unregister it afterwards."""
    names = []

    def add(obj, name):
        names.append(registry.register_plugin(obj, name=name))
        return obj

    yield add
    for name in names:
        registry.unregister_plugin(name)


# -- registration hooks -------------------------------------------------------------------------

REGISTRATION = [
    ("register_recommenders", "recommender", bp.GoodRecommender),
    ("register_user_models", "user-model", bp.DwellWithoutClickUser),
    ("register_catalogs", "catalog", bp.WrongDimCatalog),
    ("register_metrics", "metric", bp.LeakyMetric),
    ("register_estimators", "estimator", bp.WarningEstimator),
]


@pytest.mark.parametrize("hook, kind, cls", REGISTRATION, ids=[r[0] for r in REGISTRATION])
def test_registration_hook(registry, plugin, hook, kind, cls):
    module = types.ModuleType("cf_test_registration")
    setattr(module, hook, hookimpl(lambda register: register(cls)))
    plugin(module, "cf-test-registration")
    info = registry.info(kind, cls.name)
    assert info.cls is cls and info.plugin == "cf-test-registration" and info.source == "test"
    assert cls.name in registry.names(kind)
    created = registry.create(kind, cls.name, {})
    assert isinstance(created, cls)
    registry.unregister_plugin("cf-test-registration")
    assert cls.name not in registry.names(kind)
    registry.register_plugin(module, name="cf-test-registration")  # so the fixture can unregister it


def test_registration_hook_rejects_wrong_base_class(registry, plugin):
    module = types.ModuleType("cf_test_wrong_base")
    module.register_metrics = hookimpl(lambda register: register(bp.GoodRecommender))
    plugin(module, "cf-test-wrong-base")
    with pytest.raises(PluginError, match=r"plugin 'cf-test-wrong-base' in register_metrics: .*not a subclass of Metric"):
        registry.names("metric")


# -- register_commands ------------------------------------------------------------------------

def test_register_commands(monkeypatch, capsys):
    """A plugin's command appears in the real ``counterfeed`` CLI (only the test plugin is loaded)."""
    from counterfeed import cli as cli_module

    @click.command("hello-plugin")
    @click.argument("who")
    def hello(who):
        """Say hello from a plugin."""
        click.echo(f"hello {who} from a plugin")

    class Commands:
        @staticmethod
        @hookimpl
        def register_commands(cli):
            cli.add_command(hello)

    monkeypatch.setenv("COUNTERFEED_LOAD_PLUGINS", "cf-test-nothing-else")
    monkeypatch.setattr(cli_module, "_COMMANDS_REGISTERED", False)
    reset_registry()
    try:
        get_registry().register_plugin(Commands, name="cf-test-commands")
        cli_module.main(["hello-plugin", "world"])
        assert capsys.readouterr().out == "hello world from a plugin\n"
    finally:
        cli_module.cli.commands.pop("hello-plugin", None)
        reset_registry()


# -- lifecycle hooks and run-time errors ---------------------------------------------------------

class Recorder:
    """Records every lifecycle hook call."""

    def __init__(self):
        self.calls: list[tuple[str, object]] = []

    @hookimpl
    def counterfeed_run_start(self, scenario, run_dir):
        self.calls.append(("counterfeed_run_start", (scenario.name, run_dir, Path(run_dir).is_dir())))

    @hookimpl
    def counterfeed_world_end(self, scenario, world, events):
        self.calls.append(("counterfeed_world_end", (world, events.world, events.n_users)))

    @hookimpl
    def counterfeed_run_end(self, scenario, result):
        self.calls.append(("counterfeed_run_end", (result.run_dir, (result.run_dir / "manifest.json").is_file())))


def test_lifecycle_hooks(registry, plugin, small, tmp_path):
    rec = plugin(Recorder(), "cf-test-recorder")
    sc = small(**{"population.users": 60, "experiment.duration": "1d", "experiment.pre_period": "0d",
                  "analysis": [{"estimator": "diff-in-means", "metrics": ["clicks"]}]})
    result = counterfeed.run(sc, output_dir=tmp_path, workers=1)
    names = [c[0] for c in rec.calls]
    assert names[0] == "counterfeed_run_start" and names[-1] == "counterfeed_run_end"
    _, (scenario_name, run_dir, existed) = rec.calls[0]
    assert scenario_name == "small" and existed and Path(run_dir).parent == tmp_path
    worlds = sorted(args[0] for name, args in rec.calls if name == "counterfeed_world_end")
    assert worlds == ["ab", "all-control", "all-treatment"]
    assert all(args[0] == args[1] and args[2] == 60 for name, args in rec.calls if name == "counterfeed_world_end")
    assert rec.calls[-1][1] == (result.run_dir, True)


RUNTIME_BROKEN = [
    ("wrong-shape", "recommend", r"plugin 'wrong-shape' in recommend: .*shape"),
    ("bad-propensity", "recommend", r"plugin 'bad-propensity' in recommend: .*propensit"),
    ("raising-update", "update", r"plugin 'raising-update' in update: raised ValueError: update exploded"),
]


@pytest.mark.parametrize("name, hook, pattern", RUNTIME_BROKEN, ids=[r[0] for r in RUNTIME_BROKEN])
def test_broken_plugin_fails_at_run_time_with_plugin_error(registry, plugin, small, name, hook, pattern):
    plugin(bp, "cf-test-broken")
    sc = small(**{"population.users": 60, "experiment.duration": "1d", "experiment.pre_period": "0d",
                  "experiment.arms.treatment.recommender": name})
    with pytest.raises(PluginError, match=pattern) as info:
        counterfeed.run(sc, write=False, workers=1)
    assert (info.value.plugin, info.value.hook) == (name, hook), (
        "the PluginError lost its plugin/hook attributes (SimPy re-creates a failed process's exception "
        "from its args; SimWorld.run should re-raise exc.__cause__)")
