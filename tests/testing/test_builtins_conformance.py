"""Every built-in plugin passes the same conformance suite third-party plugins run.

Parametrized over the registry, so a new built-in is covered as soon as it is registered. Which rules
run for a plugin is selected by what it declares (its ``tags``, a recommender's ``stochastic``); a
built-in that needs options declares ``conformance_options`` (both documented in docs/plugins.md).
Every built-in runs at least one behaviour rule beyond the shared name/options/constructor rules.
"""

from __future__ import annotations

import pytest

from counterfeed.core.plugins import KINDS, get_registry
from counterfeed.testing import COMMON_RULES, checks_for, selected_rules

#: built-ins whose behaviour rules fit a model per rule (PyMC compile and sampling): run with -m slow
SLOW = {("estimator", "sem")}


def _builtins() -> list[tuple[str, type]]:
    reg = get_registry()
    return [(info.kind, info.cls) for info in reg.all_plugins() if info.source == "builtin"]


def _param(kind: str, cls: type, rule: str, check) -> object:
    slow = (kind, cls.name) in SLOW and rule not in COMMON_RULES
    return pytest.param(cls, check, id=f"{kind}:{cls.name}-{rule}", marks=[pytest.mark.slow] if slow else [])


PARAMS = [_param(kind, cls, rule, check) for kind, cls in _builtins() for rule, check in checks_for(kind)]


@pytest.mark.parametrize("plugin, check", PARAMS)
def test_builtin_conformance(plugin, check):
    check(plugin)


def test_every_kind_has_builtins():
    kinds = {kind for kind, _ in _builtins()}
    assert kinds == set(KINDS), f"kinds without a built-in plugin: {sorted(set(KINDS) - kinds)}"


def test_every_builtin_runs_behaviour_rules():
    """The suite counts the rules each built-in's declarations select; none runs zero."""
    counts = {f"{kind}:{cls.name}": len([r for r in selected_rules(cls, kind) if r not in COMMON_RULES])
              for kind, cls in _builtins()}
    assert counts and all(n > 0 for n in counts.values()), {k: n for k, n in counts.items() if n == 0}
    # the estimators that declare inputs run the rule checking that a missing input is a clear error
    needs = {f"estimator:{cls.name}" for kind, cls in _builtins()
             if kind == "estimator" and cls.tags.required_inputs()}
    assert needs >= {"estimator:ope", "estimator:sequential", "estimator:adaptive-ipw"}
    for key in needs:
        kind, name = key.split(":")
        cls = next(c for k, c in _builtins() if k == kind and c.name == name)
        assert "missing_input_is_clear" in selected_rules(cls, kind)
