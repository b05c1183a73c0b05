"""The plugin manager: built-ins and entry points, registered through the same hooks.

Discovery is visible and controllable:

- ``COUNTERFEED_LOAD_PLUGINS=name1,name2`` loads only the named plugins: entry-point names, or
  built-in modules by full or last dotted name (``counterfeed.plugins.recommenders.basic`` or
  ``basic``). Unset, everything installed is loaded.
- ``COUNTERFEED_TRACE_PLUGINS=1`` prints every hook call and its result to stderr.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata as md
import os
import sys
from dataclasses import dataclass
from typing import Any, Iterable

import pluggy
from pydantic import ValidationError

from counterfeed.core import hookspecs
from counterfeed.core.contracts import (Catalog, Estimator, Metric, Plugin, Recommender,
                                        UserModel)
from counterfeed.errors import PluginError

__all__ = ["BUILTIN_PLUGINS", "KINDS", "Registry", "PluginInfo", "get_registry", "reset_registry",
           "ENTRY_POINT_GROUP"]

ENTRY_POINT_GROUP = "counterfeed"

BUILTIN_PLUGINS: tuple[str, ...] = (
    "counterfeed.plugins.catalogs.synthetic",
    "counterfeed.plugins.catalogs.text",
    "counterfeed.plugins.users.choice",
    "counterfeed.plugins.recommenders.basic",
    "counterfeed.plugins.recommenders.matrix_factorization",
    "counterfeed.plugins.recommenders.text_embedding",
    "counterfeed.plugins.recommenders.bandits",
    "counterfeed.plugins.recommenders.rerank",
    "counterfeed.plugins.metrics.engagement",
    "counterfeed.plugins.metrics.beyond_accuracy",
    "counterfeed.plugins.metrics.exposure",
    "counterfeed.plugins.metrics.long_term_report",
    "counterfeed.plugins.estimators.classical",
    "counterfeed.plugins.estimators.bayesian_ab",
    "counterfeed.plugins.estimators.sem",
    "counterfeed.plugins.estimators.ope",
    "counterfeed.plugins.estimators.sequential",
    "counterfeed.plugins.estimators.adaptive",
    "counterfeed.plugins.commands",
)

#: kind name -> (registration hook, required base class)
KINDS: dict[str, tuple[str, type]] = {
    "recommender": ("register_recommenders", Recommender),
    "user-model": ("register_user_models", UserModel),
    "catalog": ("register_catalogs", Catalog),
    "metric": ("register_metrics", Metric),
    "estimator": ("register_estimators", Estimator),
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

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "kind": self.kind, "class": f"{self.cls.__module__}.{self.cls.__qualname__}",
                "plugin": self.plugin, "source": self.source, "version": self.version}


def _counterfeed_version() -> str:
    try:
        return md.version("counterfeed")
    except md.PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0+unknown"


class Registry:
    """Plugin manager plus the registered classes of every kind."""

    def __init__(self, *, load_entry_points: bool = True, builtins: Iterable[str] = BUILTIN_PLUGINS):
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self._sources: dict[str, tuple[str, str]] = {}  # pluggy plugin name -> (source, version)
        self.classes: dict[str, dict[str, PluginInfo]] = {k: {} for k in KINDS}
        only = os.environ.get("COUNTERFEED_LOAD_PLUGINS")
        allowed = None if only is None else {s.strip() for s in only.split(",") if s.strip()}
        version = _counterfeed_version()
        for modname in builtins:
            if allowed is not None and modname not in allowed and modname.rsplit(".", 1)[-1] not in allowed:
                continue
            self.pm.register(importlib.import_module(modname), name=modname)
            self._sources[modname] = ("builtin", version)
        if load_entry_points:
            self._load_entry_points(allowed)
        if os.environ.get("COUNTERFEED_TRACE_PLUGINS"):
            self._trace()
        self._collected = False

    # -- loading -----------------------------------------------------------------------------
    def _load_entry_points(self, allowed: set[str] | None) -> None:
        for ep in md.entry_points(group=ENTRY_POINT_GROUP):
            if allowed is not None and ep.name not in allowed:
                continue
            if self.pm.has_plugin(ep.name):
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
        self._collected = False
        for kind in self.classes:
            self.classes[kind].clear()
        return name

    def unregister_plugin(self, name: str) -> None:
        self.pm.unregister(name=name)
        self._sources.pop(name, None)
        self._collected = False
        for kind in self.classes:
            self.classes[kind].clear()

    # -- collecting classes ----------------------------------------------------------------
    def _collect(self) -> None:
        if self._collected:
            return
        for kind, (hook_name, base) in KINDS.items():
            hook = getattr(self.pm.hook, hook_name)
            for impl in hook.get_hookimpls():
                plugin_name = impl.plugin_name
                source, version = self._sources.get(plugin_name, ("unknown", ""))

                def register(cls, _kind=kind, _base=base, _plugin=plugin_name, _src=source, _ver=version):
                    self._add(_kind, _base, cls, _plugin, _src, _ver)

                try:
                    impl.function(register)
                except PluginError:
                    raise
                except Exception as exc:
                    raise PluginError(f"raised {type(exc).__name__}: {exc}", plugin=plugin_name,
                                      hook=hook_name) from exc
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
            from counterfeed.errors import ScenarioError
            raise ScenarioError(f"unknown {kind} '{name}'; {hint}", field=field)
        return found

    def create(self, kind: str, name: str, options: dict[str, Any] | None = None, *,
               field: str | None = None) -> Plugin:
        """Instantiate a plugin with validated options (errors name the field path)."""
        info = self.info(kind, name, field=field)
        try:
            opts = info.cls.Options(**(options or {}))
        except ValidationError as exc:
            from counterfeed.core.scenario import validation_message
            top = len(exc.errors()[0].get("loc", ())) <= 1  # hints from Options only for its own fields
            raise validation_message(exc, prefix=field, model=info.cls.Options if top else None) from None
        except (ValueError, TypeError) as exc:  # an Options.__init__ that checks values by hand
            from counterfeed.errors import ScenarioError
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
        """The hook relay; an exception raised inside a hook implementation becomes a PluginError
        naming the plugin that raised it and the hook."""
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
        from counterfeed.errors import CounterfeedError

        try:
            return self._caller(**kwargs)
        except CounterfeedError:
            raise
        except Exception as exc:
            raise PluginError(f"raised {type(exc).__name__}: {exc}", plugin=_culprit(self._caller, exc),
                              hook=self._caller.name) from exc


def _culprit(caller: pluggy.HookCaller, exc: BaseException) -> str:
    """The name of the plugin whose hook implementation raised ``exc`` (from the traceback)."""
    codes = {}
    for impl in caller.get_hookimpls():
        fn = getattr(impl.function, "__func__", impl.function)
        code = getattr(fn, "__code__", None)
        if code is not None:
            codes[code] = impl.plugin_name
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
