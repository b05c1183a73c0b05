"""The plugin guard: anything a plugin raises becomes a :class:`PluginError` naming the plugin and
the hook or method it was in. Every call into plugin code goes through :func:`guarded` (the engine's
method calls, the OPE target, the registry's hook calls and registrations)."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator

from counterfeed.errors import CounterfeedError, PluginError

__all__ = ["guarded", "call_plugin", "plugin_name"]


def plugin_name(plugin: Any) -> str:
    """The registry name of a plugin instance (its class's ``name``), else its class name."""
    return str(getattr(plugin, "name", None) or type(plugin).__name__)


@contextmanager
def guarded(plugin: str | Callable[[BaseException], str], hook: str) -> Iterator[None]:
    """Run the block as plugin code: a :class:`CounterfeedError` passes through unchanged (the
    plugin said what is wrong), any other exception becomes ``PluginError`` naming ``plugin`` (a
    name, or a function of the exception that finds it) and ``hook``."""
    try:
        yield
    except CounterfeedError:
        raise
    except Exception as exc:
        name = plugin(exc) if callable(plugin) else plugin
        raise PluginError(f"raised {type(exc).__name__}: {exc}", plugin=name, hook=hook) from exc


def call_plugin(plugin: Any, hook: str, fn: Callable, *args: Any, **kwargs: Any) -> Any:
    """Call ``fn(*args, **kwargs)``, a method of ``plugin``, under :func:`guarded`."""
    with guarded(plugin_name(plugin), hook):
        return fn(*args, **kwargs)
