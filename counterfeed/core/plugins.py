"""The plugin manager: built-ins and entry points, registered through the same hooks.

Discovery is visible and controllable:

- ``COUNTERFEED_LOAD_PLUGINS=name1,name2`` loads only the named plugins: entry-point names, or
  built-in modules by full or last dotted name (``counterfeed.plugins.recommenders.basic`` or
  ``basic``). Unset, everything installed is loaded.
  A name that is neither warns (:class:`~counterfeed.errors.PluginWarning`).
- ``COUNTERFEED_TRACE_PLUGINS=1`` prints every hook call and its result to stderr, the registration
  hooks included.

This module imports no plugin and no numerical library at import time (``counterfeed --help`` builds
a registry): plugin modules load on first use, and :mod:`counterfeed.core.contracts` (numpy) with them.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import importlib.metadata as md
import os
import sys
import threading
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable

import pluggy

from counterfeed import __version__
from counterfeed.core import hookspecs
from counterfeed.core._guard import guarded
from counterfeed.errors import PluginError, PluginWarning, ScenarioError

if TYPE_CHECKING:  # pragma: no cover
    from counterfeed.core.contracts import Plugin

__all__ = ["BUILTIN_PLUGINS", "KINDS", "Registry", "PluginInfo", "get_registry", "reset_registry",
           "ENTRY_POINT_GROUP"]

ENTRY_POINT_GROUP = "counterfeed"

BUILTIN_PLUGINS: tuple[str, ...] = (
    "counterfeed.plugins.catalogs.synthetic",
    "counterfeed.plugins.catalogs.text",
    "counterfeed.plugins.users.choice",
    "counterfeed.plugins.recommenders.basic",
    "counterfeed.plugins.recommenders.matrix_factorization",
    "counterfeed.plugins.recommenders.als",
    "counterfeed.plugins.recommenders.text_embedding",
    "counterfeed.plugins.recommenders.text_two_tower",
    "counterfeed.plugins.recommenders.bandits",
    "counterfeed.plugins.recommenders.rerank",
    "counterfeed.plugins.metrics.engagement",
    "counterfeed.plugins.metrics.beyond_accuracy",
    "counterfeed.plugins.metrics.exposure",
    "counterfeed.plugins.metrics.long_term_report",
    "counterfeed.plugins.targeting_report",
    "counterfeed.plugins.estimators.classical",
    "counterfeed.plugins.estimators.bayesian_ab",
    "counterfeed.plugins.estimators.sem",
    "counterfeed.plugins.estimators.ope",
    "counterfeed.plugins.estimators.sequential",
    "counterfeed.plugins.estimators.adaptive",
    "counterfeed.plugins.estimators.cate",
    "counterfeed.plugins.estimators.observational",
    "counterfeed.offline.estimator",
    "counterfeed.plugins.commands",
    "counterfeed.twin.model",
    "counterfeed.twin.policy",
)

#: the built-in module that adds the built-in subcommands (the only built-in with register_commands)
COMMANDS_MODULE = "counterfeed.plugins.commands"

#: kind name -> (registration hook, name of the required base class in counterfeed.core.contracts)
KINDS: dict[str, tuple[str, str]] = {
    "recommender": ("register_recommenders", "Recommender"),
    "user-model": ("register_user_models", "UserModel"),
    "catalog": ("register_catalogs", "Catalog"),
    "metric": ("register_metrics", "Metric"),
    "estimator": ("register_estimators", "Estimator"),
}


@dataclass(frozen=True)
class PluginInfo:
    """Where a registered class came from."""

    name: str
    kind: str
    cls: type
    plugin: str  # the pluggy plugin (module or entry point) that registered it
    source: str  # "builtin" or the distribution name
    version: str

    @property
    def module(self) -> str:
        """The module that defines the class (``plugin`` is the one that registered it)."""
        return self.cls.__module__

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "kind": self.kind, "class": f"{self.cls.__module__}.{self.cls.__qualname__}",
                "module": self.module, "plugin": self.plugin, "source": self.source,
                "version": self.version}


class Registry:
    """Plugin manager plus the registered classes of every kind.

    Loading is lazy: building a registry reads only the environment and entry-point metadata. The
    plugin modules are imported (and registered with pluggy) on first use of the classes or the hook
    relay; :meth:`load_commands` imports only the plugins that can add commands (counterfeed's own
    ``counterfeed.plugins.commands`` and every entry point), so ``counterfeed --help`` imports no
    built-in plugin module. Classes are collected by calling each registration hook once through
    pluggy's hook caller, so ``COUNTERFEED_TRACE_PLUGINS`` shows the registrations too.
    """

    def __init__(self, *, load_entry_points: bool = True, builtins: Iterable[str] = BUILTIN_PLUGINS):
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self._sources: dict[str, tuple[str, str]] = {}  # pluggy plugin name -> (source, version)
        self.classes: dict[str, dict[str, PluginInfo]] = {k: {} for k in KINDS}
        only = os.environ.get("COUNTERFEED_LOAD_PLUGINS")
        self._allowed = None if only is None else {s.strip() for s in only.split(",") if s.strip()}
        self._builtins = [m for m in builtins if self._allows(m, m.rsplit(".", 1)[-1])]
        self._entry_points = list(md.entry_points(group=ENTRY_POINT_GROUP)) if load_entry_points else []
        self._warn_unknown(builtins)
        if os.environ.get("COUNTERFEED_TRACE_PLUGINS"):
            self._trace()
        self._loaded = False
        self._collected = False
        self._lock = threading.RLock()  # loading and collecting from several threads (run() in threads)

    # -- loading -----------------------------------------------------------------------------
    def _allows(self, *names: str) -> bool:
        return self._allowed is None or any(n in self._allowed for n in names)

    def _warn_unknown(self, builtins: Iterable[str]) -> None:
        if not self._allowed:
            return
        known = {ep.name for ep in self._entry_points}
        for m in builtins:
            known |= {m, m.rsplit(".", 1)[-1]}
        unknown = sorted(self._allowed - known)
        if unknown:
            close = [c for u in unknown for c in difflib.get_close_matches(u, sorted(known), n=1, cutoff=0.6)]
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            warnings.warn(f"COUNTERFEED_LOAD_PLUGINS names unknown plugin(s) {', '.join(map(repr, unknown))}"
                          f" (neither a built-in module nor an installed entry point){hint}",
                          PluginWarning, stacklevel=3)

    def load(self) -> None:
        """Import and register every allowed plugin (built-ins first, then entry points)."""
        with self._lock:  # another thread waits until loading is done, not only begun
            if self._loaded:
                return
            self._loaded = True
            for modname in self._builtins:
                if not self.pm.has_plugin(modname):
                    self.pm.register(importlib.import_module(modname), name=modname)
                    self._sources[modname] = ("builtin", __version__)
            self._load_entry_points()

    def load_commands(self, cli: Any) -> None:
        """Call ``register_commands`` on the plugins that add commands: counterfeed's commands module
        and every entry point. counterfeed's other built-in modules register only classes
        (``tests/testing/test_discovery.py`` checks it), so they are not imported here."""
        if COMMANDS_MODULE in self._builtins and not self.pm.has_plugin(COMMANDS_MODULE):
            self.pm.register(importlib.import_module(COMMANDS_MODULE), name=COMMANDS_MODULE)
            self._sources[COMMANDS_MODULE] = ("builtin", __version__)
        self._load_entry_points()
        _GuardedHooks(self.pm.hook).register_commands(cli=cli)

    def _load_entry_points(self) -> None:
        for ep in self._entry_points:
            if not self._allows(ep.name) or self.pm.has_plugin(ep.name):
                continue
            try:
                obj = ep.load()
            except Exception as exc:  # a broken third-party package must not hide behind a traceback
                raise PluginError(f"could not import entry point '{ep.value}': {type(exc).__name__}: {exc}",
                                  plugin=ep.name, hook="load") from exc
            self.pm.register(obj, name=ep.name)
            dist = getattr(ep, "dist", None)
            self._sources[ep.name] = ((dist.name if dist else "unknown"), (dist.version if dist else "?"))

    def _trace(self) -> None:
        def before(hook_name, hook_impls, kwargs):
            print(f"[counterfeed trace] {hook_name}({', '.join(kwargs)}) -> "
                  f"{[i.plugin_name for i in hook_impls]}", file=sys.stderr)

        def after(outcome, hook_name, hook_impls, kwargs):
            exc = outcome.exception
            print(f"[counterfeed trace] {hook_name} {'raised ' + repr(exc) if exc else 'done'}",
                  file=sys.stderr)

        self.pm.add_hookcall_monitoring(before, after)

    def register_plugin(self, obj: Any, name: str | None = None, source: str = "test") -> str:
        """Register a plugin object (a module or class with hookimpls) at run time, e.g. in tests."""
        name = self.pm.register(obj, name=name)
        self._sources[name] = (source, "")
        self._forget_classes()
        return name

    def unregister_plugin(self, name: str) -> None:
        self.pm.unregister(name=name)
        self._sources.pop(name, None)
        self._forget_classes()

    def _forget_classes(self) -> None:
        self._collected = False
        for kind in self.classes:
            self.classes[kind].clear()

    # -- collecting classes ----------------------------------------------------------------
    def _collect(self) -> None:
        if self._collected:
            return
        with self._lock:
            if not self._collected:
                self._collect_now()

    def _collect_now(self) -> None:
        self.load()
        from counterfeed.core import contracts  # numpy: imported with the plugins, not with --help

        order = {name: i for i, (name, _) in enumerate(self.pm.list_name_plugin())}
        for kind, (hook_name, base_name) in KINDS.items():
            caller = getattr(self.pm.hook, hook_name)
            base = getattr(contracts, base_name)
            calls: list[tuple[str, Any]] = []

            def register(cls, _caller=caller, _calls=calls):
                _calls.append((_registering_plugin(_caller), cls))

            with guarded(lambda exc, _caller=caller: _culprit(_caller, exc), hook_name):
                caller(register=register)
            # pluggy calls the newest plugin first; add in registration order, so a duplicate
            # name is blamed on the plugin that came later
            for plugin, cls in sorted(calls, key=lambda c: order.get(c[0], len(order))):
                source, version = self._sources.get(plugin, ("unknown", ""))
                self._add(kind, base, cls, plugin, source, version)
        self._collected = True

    def _add(self, kind: str, base: type, cls: Any, plugin: str, source: str, version: str) -> None:
        hook = KINDS[kind][0]
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise PluginError(f"registered {cls!r}, which is not a subclass of {base.__name__}",
                              plugin=plugin, hook=hook)
        name = getattr(cls, "name", "")
        if not isinstance(name, str) or not name:
            raise PluginError(f"{cls.__qualname__} has no 'name'", plugin=plugin, hook=hook)
        opts = getattr(cls, "Options", None)
        if opts is None or opts.model_config.get("extra") != "forbid":
            raise PluginError(f"{cls.__qualname__}.Options must be a pydantic model with extra='forbid' "
                              "(subclass counterfeed.Options)", plugin=plugin, hook=hook)
        existing = self.classes[kind].get(name)
        if existing is not None and existing.cls is not cls:
            raise PluginError(f"{kind} name '{name}' is registered twice: by '{existing.plugin}' and by "
                              f"'{plugin}'", plugin=plugin, hook=hook)
        self.classes[kind][name] = PluginInfo(name, kind, cls, plugin, source, version)

    # -- lookup --------------------------------------------------------------------------------
    def names(self, kind: str) -> list[str]:
        self._collect()
        return sorted(self.classes[kind])

    def info(self, kind: str, name: str, *, field: str | None = None) -> PluginInfo:
        """The class registered under ``name``; unknown names list the close matches."""
        self._collect()
        found = self.classes[kind].get(name)
        if found is None:
            known = sorted(self.classes[kind])
            close = difflib.get_close_matches(str(name), known, n=3, cutoff=0.6)
            hint = (f"did you mean {' or '.join(repr(c) for c in close)}?" if close
                    else f"known {kind}s: {', '.join(known) or '(none)'}")
            raise ScenarioError(f"unknown {kind} '{name}'; {hint}", field=field)
        return found

    def create(self, kind: str, name: str, options: dict[str, Any] | None = None, *,
               field: str | None = None) -> "Plugin":
        """Instantiate a plugin with validated options (errors name the field path)."""
        from pydantic import ValidationError  # with the plugins, not with --help

        from counterfeed.core.scenario_messages import validation_message

        info = self.info(kind, name, field=field)
        try:
            opts = info.cls.Options(**(options or {}))
        except ValidationError as exc:
            raise validation_message(exc, prefix=field, model=info.cls.Options, root=info.cls.Options) from None
        except ScenarioError as exc:  # a nested plugin's options (a re-ranker's base_options): its full path
            if exc.file or not field or not exc.field:
                raise
            raise ScenarioError(exc.bare_message, field=f"{field}.{exc.field}") from None
        except (ValueError, TypeError) as exc:  # an Options.__init__ that checks values by hand
            raise ScenarioError(f"invalid {kind} options: {exc}", field=field) from None
        try:
            return info.cls(opts)
        except Exception as exc:
            raise PluginError(f"constructor raised {type(exc).__name__}: {exc}", plugin=name,
                              hook="__init__") from exc

    def all_plugins(self) -> list[PluginInfo]:
        self._collect()
        return [info for kind in KINDS for info in sorted(self.classes[kind].values(), key=lambda i: i.name)]

    @property
    def hook(self) -> "_GuardedHooks":
        """The hook relay (every plugin loaded); an exception raised inside a hook implementation
        becomes a PluginError naming the plugin that raised it and the hook."""
        self.load()
        return _GuardedHooks(self.pm.hook)


class _GuardedHooks:
    """``pm.hook`` with every hook call guarded (attribute access is otherwise passed through)."""

    def __init__(self, relay: Any):
        self._relay = relay

    def __getattr__(self, name: str) -> Any:
        caller = getattr(self._relay, name)
        return _GuardedHook(caller) if isinstance(caller, pluggy.HookCaller) else caller


class _GuardedHook:
    def __init__(self, caller: pluggy.HookCaller):
        self._caller = caller

    def __getattr__(self, name: str) -> Any:
        return getattr(self._caller, name)

    def __call__(self, **kwargs: Any) -> Any:
        with guarded(lambda exc: _culprit(self._caller, exc), self._caller.name):
            return self._caller(**kwargs)


def _impl_codes(caller: pluggy.HookCaller) -> dict[Any, str]:
    """Code object of each implementation of the hook -> the name of the plugin that provides it."""
    codes = {}
    for impl in caller.get_hookimpls():
        fn = getattr(impl.function, "__func__", impl.function)
        code = getattr(fn, "__code__", None)
        if code is not None:
            codes[code] = impl.plugin_name
    return codes


def _registering_plugin(caller: pluggy.HookCaller) -> str:
    """The plugin whose implementation of ``caller``'s hook is on the stack (it called ``register``)."""
    codes = _impl_codes(caller)
    frame = inspect.currentframe()
    while frame is not None:
        if frame.f_code in codes:
            return codes[frame.f_code]
        frame = frame.f_back
    return "unknown"


def _culprit(caller: pluggy.HookCaller, exc: BaseException) -> str:
    """The name of the plugin whose hook implementation raised ``exc`` (from the traceback)."""
    codes = _impl_codes(caller)
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code in codes:
            return codes[tb.tb_frame.f_code]
        tb = tb.tb_next
    return "unknown"


_REGISTRY: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry (built on first use)."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = Registry()
    return _REGISTRY


def reset_registry() -> None:
    """Forget the process-wide registry (tests, or after changing environment variables)."""
    global _REGISTRY
    _REGISTRY = None
