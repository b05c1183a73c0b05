"""Conformance checks for counterfeed plugins, usable from pytest in a plugin's own repository.

Three ways to run the same rules (scikit-learn's ``parametrize_with_checks``, Optuna's test classes)::

    from counterfeed.testing import check_recommender, RecommenderConformance, parametrize_with_checks

    def test_my_recommender():                       # 1. one call, raises ConformanceError
        check_recommender(MyRecommender, {"alpha": 0.5})

    class TestMyRecommender(RecommenderConformance):  # 2. one pytest test per rule
        plugin_class = MyRecommender
        options = {"alpha": 0.5}

    @parametrize_with_checks([MyRecommender])        # 3. parametrize over (plugin, rule)
    def test_conformance(plugin, check):
        check(plugin)

A broken rule raises :class:`ConformanceError` (an ``AssertionError``) whose message names the
plugin's registry name and the rule. Which rules apply is selected by what the plugin class declares
-- its ``tags`` (:class:`~counterfeed.core.estimation.EstimatorTags`,
:class:`~counterfeed.core.contracts.MetricTags`, :class:`~counterfeed.core.contracts.CatalogTags`)
or a recommender's ``stochastic`` -- never by an opt-out; rules that do not apply show as skipped in
pytest, and :func:`selected_rules` lists those that run. A plugin class may also declare
``conformance_options: ClassVar[dict]``, options to test it with when none are given.

Synthetic inputs (catalog, contexts, logs, events, analysis data) live in
:mod:`counterfeed.testing.fixtures`.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar, Iterable

from counterfeed.core.contracts import Catalog, Estimator, Metric, Plugin, Recommender, UserModel
from counterfeed.testing._core import (ConformanceError, Rule, maybe_pytest_skip, run_all, run_rule,
                                      skip_reason)
from counterfeed.testing.estimators import ESTIMATOR_RULES
from counterfeed.testing.recommenders import RECOMMENDER_RULES
from counterfeed.testing.simulation import CATALOG_RULES, METRIC_RULES, USER_MODEL_RULES

__all__ = [
    "ConformanceError", "Rule", "RULES", "checks_for", "check_plugin", "parametrize_with_checks",
    "selected_rules", "COMMON_RULES",
    "check_recommender", "check_user_model", "check_catalog", "check_metric", "check_estimator",
    "recommender_checks", "user_model_checks", "catalog_checks", "metric_checks", "estimator_checks",
    "RecommenderConformance", "UserModelConformance", "CatalogConformance", "MetricConformance",
    "EstimatorConformance",
]

#: kind -> its rules, in the order they run
RULES: dict[str, list[Rule]] = {
    "recommender": RECOMMENDER_RULES,
    "user-model": USER_MODEL_RULES,
    "catalog": CATALOG_RULES,
    "metric": METRIC_RULES,
    "estimator": ESTIMATOR_RULES,
}

_BASES: dict[str, type] = {"recommender": Recommender, "user-model": UserModel, "catalog": Catalog,
                           "metric": Metric, "estimator": Estimator}

Check = Callable[..., None]

#: the rules every kind shares (registry name, options, constructor), before the behaviour rules
COMMON_RULES = ("name_and_kind", "options_forbid_unknown", "constructor_stores_options")


def _kind_of(plugin: Any) -> str:
    cls = plugin if isinstance(plugin, type) else type(plugin)
    for kind, base in _BASES.items():
        if isinstance(cls, type) and issubclass(cls, base):
            return kind
    raise TypeError(f"{plugin!r} is not a counterfeed plugin (subclass Recommender, UserModel, Catalog, "
                    "Metric or Estimator)")


def _run_one(kind: str, rule: Rule, plugin: Any, options: dict[str, Any] | None = None) -> None:
    __tracebackhide__ = True
    reason = run_rule(kind, rule, plugin, options)
    if reason is not None:
        maybe_pytest_skip(reason)


def checks_for(kind: str) -> list[tuple[str, Check]]:
    """The ``(rule_name, check)`` pairs of a kind; ``check(plugin, options=None)`` raises
    :class:`ConformanceError` when the rule is broken (and skips in pytest when it does not apply)."""
    if kind not in RULES:
        raise ValueError(f"unknown plugin kind {kind!r}; expected one of {', '.join(RULES)}")
    return [(rule.name, _make_check(kind, rule)) for rule in RULES[kind]]


def _make_check(kind: str, rule: Rule) -> Check:
    def check(plugin: Any, options: dict[str, Any] | None = None) -> None:
        __tracebackhide__ = True
        _run_one(kind, rule, plugin, options)

    check.__name__ = check.__qualname__ = f"check_{rule.name.replace('-', '_')}"
    check.__doc__ = rule.doc
    return check


def selected_rules(plugin: Any, kind: str | None = None) -> list[str]:
    """The names of the rules that run for a plugin class (or instance), as its declarations select
    them (no rule is run here)."""
    kind = kind or _kind_of(plugin)
    cls = plugin if isinstance(plugin, type) else type(plugin)
    return [rule.name for rule in RULES[kind] if skip_reason(cls, rule) is None]


def recommender_checks() -> list[tuple[str, Check]]:
    """``(rule_name, check)`` pairs for recommenders (for ``pytest.mark.parametrize``)."""
    return checks_for("recommender")


def user_model_checks() -> list[tuple[str, Check]]:
    """``(rule_name, check)`` pairs for user models."""
    return checks_for("user-model")


def catalog_checks() -> list[tuple[str, Check]]:
    """``(rule_name, check)`` pairs for catalogs."""
    return checks_for("catalog")


def metric_checks() -> list[tuple[str, Check]]:
    """``(rule_name, check)`` pairs for metrics."""
    return checks_for("metric")


def estimator_checks() -> list[tuple[str, Check]]:
    """``(rule_name, check)`` pairs for estimators."""
    return checks_for("estimator")


def check_plugin(plugin: Any, options: dict[str, Any] | None = None, *, kind: str | None = None) -> dict[str, str]:
    """Run every rule of the plugin's kind on a plugin class (or instance).

    Returns ``{rule: "passed" | "skipped: reason"}`` (the rules that ran are those ``"passed"``,
    :func:`selected_rules`); raises one :class:`ConformanceError` naming the
    plugin and every broken rule. ``options`` default to the class's ``conformance_options``
    (for an instance: its own options).
    """
    kind = kind or _kind_of(plugin)
    return run_all(kind, RULES[kind], plugin, options)


def check_recommender(plugin: type[Recommender] | Recommender, options: dict[str, Any] | None = None) -> dict[str, str]:
    """Run the recommender rules (see :func:`check_plugin`)."""
    return check_plugin(plugin, options, kind="recommender")


def check_user_model(plugin: type[UserModel] | UserModel, options: dict[str, Any] | None = None) -> dict[str, str]:
    """Run the user-model rules (see :func:`check_plugin`)."""
    return check_plugin(plugin, options, kind="user-model")


def check_catalog(plugin: type[Catalog] | Catalog, options: dict[str, Any] | None = None) -> dict[str, str]:
    """Run the catalog rules (see :func:`check_plugin`)."""
    return check_plugin(plugin, options, kind="catalog")


def check_metric(plugin: type[Metric] | Metric, options: dict[str, Any] | None = None) -> dict[str, str]:
    """Run the metric rules (see :func:`check_plugin`)."""
    return check_plugin(plugin, options, kind="metric")


def check_estimator(plugin: type[Estimator] | Estimator, options: dict[str, Any] | None = None) -> dict[str, str]:
    """Run the estimator rules (see :func:`check_plugin`)."""
    return check_plugin(plugin, options, kind="estimator")


def parametrize_with_checks(plugins: Iterable[type[Plugin] | Plugin]) -> Any:
    """A ``pytest.mark.parametrize("plugin, check", ...)`` over every (plugin, rule) pair.

    Test ids are ``<kind>:<name>-<rule>``. Each ``check(plugin)`` runs one rule with the plugin's
    ``conformance_options``.
    """
    import pytest

    params, ids = [], []
    for plugin in plugins:
        kind = _kind_of(plugin)
        cls = plugin if isinstance(plugin, type) else type(plugin)
        for rule_name, check in checks_for(kind):
            params.append((plugin, check))
            ids.append(f"{kind}:{getattr(cls, 'name', '') or cls.__qualname__}-{rule_name}")
    return pytest.mark.parametrize("plugin, check", params, ids=ids)


# ---------------------------------------------------------------------------------------------
# Test classes: subclass, set plugin_class (and options), get one test per rule
# ---------------------------------------------------------------------------------------------


class _Conformance:
    kind: ClassVar[str] = ""
    plugin_class: ClassVar[type | None] = None
    options: ClassVar[dict[str, Any] | None] = None


def _make_test(kind: str, rule: Rule) -> Callable[[Any], None]:
    def test(self: _Conformance) -> None:
        __tracebackhide__ = True
        if self.plugin_class is None:
            raise ConformanceError(f"{type(self).__name__}: set the class attribute plugin_class to the "
                                   f"{kind} class under test", plugin="?", kind=kind, rules=[rule.name])
        _run_one(kind, rule, self.plugin_class, self.options)

    test.__name__ = test.__qualname__ = f"test_{rule.name}"
    test.__doc__ = rule.doc
    return test


def _conformance_class(kind: str, class_name: str) -> type:
    body: dict[str, Any] = {"kind": kind, "__doc__": (
        f"Subclass in a ``Test*`` class and set ``plugin_class`` (and ``options``) to get one test per "
        f"{kind} rule: {', '.join(r.name for r in RULES[kind])}."), "__module__": __name__}
    for rule in RULES[kind]:
        body[f"test_{rule.name}"] = _make_test(kind, rule)
    return type(class_name, (_Conformance,), body)


RecommenderConformance = _conformance_class("recommender", "RecommenderConformance")
UserModelConformance = _conformance_class("user-model", "UserModelConformance")
CatalogConformance = _conformance_class("catalog", "CatalogConformance")
MetricConformance = _conformance_class("metric", "MetricConformance")
EstimatorConformance = _conformance_class("estimator", "EstimatorConformance")
