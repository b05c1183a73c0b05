"""Every built-in plugin passes the same conformance suite third-party plugins run.

Parametrized over the registry, so a new built-in is covered as soon as it is registered. A
built-in that needs options declares ``conformance_options``; one that cannot run a rule here
declares ``conformance_skip`` with the reason (both documented in docs/plugins.md).
"""

from __future__ import annotations

import pytest

from counterfeed.core.plugins import KINDS, get_registry
from counterfeed.testing import checks_for


def _builtins() -> list[tuple[str, type]]:
    reg = get_registry()
    return [(info.kind, info.cls) for info in reg.all_plugins() if info.source == "builtin"]


PARAMS = [pytest.param(cls, check, id=f"{kind}:{cls.name}-{rule}")
          for kind, cls in _builtins() for rule, check in checks_for(kind)]


@pytest.mark.parametrize("plugin, check", PARAMS)
def test_builtin_conformance(plugin, check):
    check(plugin)


def test_every_kind_has_builtins():
    kinds = {kind for kind, _ in _builtins()}
    assert kinds == set(KINDS), f"kinds without a built-in plugin: {sorted(set(KINDS) - kinds)}"
