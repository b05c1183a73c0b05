"""The machinery shared by every conformance suite: rules, the subject under test, errors, skips."""

from __future__ import annotations

import re
import sys
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from pydantic import BaseModel, ValidationError

from counterfeed.core.contracts import Plugin

__all__ = ["ConformanceError", "Rule", "Subject", "Broken", "run_rule", "run_all", "skip_reason"]


class ConformanceError(AssertionError):
    """A plugin broke a conformance rule. The message names the plugin, its kind and the rule(s)."""

    def __init__(self, message: str, *, plugin: str, kind: str, rules: list[str]):
        super().__init__(message)
        self.plugin, self.kind, self.rules = plugin, kind, list(rules)


class Broken(Exception):
    """Raised inside a rule with the detail of what is wrong (turned into a ConformanceError)."""


@dataclass(frozen=True)
class Rule:
    """One conformance rule: a name, what it asserts, the check, and which classes it applies to."""

    name: str
    doc: str
    fn: Callable[["Subject"], None]
    applies: Callable[[type], str | None] = lambda cls: None  # a reason it does not apply, or None


class Subject:
    """The plugin under test: its class, its options (a dict), and helpers to make and call instances."""

    def __init__(self, kind: str, plugin: Any, options: dict[str, Any] | None):
        if isinstance(plugin, Plugin):
            cls = type(plugin)
            if options is None:
                options = plugin.options.model_dump()
        elif isinstance(plugin, type) and issubclass(plugin, Plugin):
            cls = plugin
        else:
            raise TypeError(f"expected a plugin class or instance, got {plugin!r}")
        if options is None:
            options = dict(getattr(cls, "conformance_options", None) or {})
        self.kind, self.cls, self.options = kind, cls, dict(options)
        self.name = str(getattr(cls, "name", "") or cls.__qualname__)

    def new(self) -> Any:
        """A fresh instance built from the options, as the engine builds it."""
        try:
            opts = self.cls.Options(**self.options)
        except ValidationError as exc:
            raise Broken(f"options {self.options!r} are invalid for {self.cls.__qualname__}.Options: "
                         f"{_first_error(exc)}") from exc
        return self.call(self.cls, "__init__", opts)

    def call(self, obj: Any, method: str, *args: Any) -> Any:
        """Call ``obj.method(*args)`` (or ``obj(*args)`` for ``__init__``); an exception becomes Broken."""
        fn = obj if method == "__init__" else getattr(obj, method)
        try:
            return fn(*args)
        except Broken:
            raise
        except Exception as exc:
            raise Broken(f"{method} raised {type(exc).__name__}: {exc}") from exc

    def fail(self, rule: str, detail: str) -> ConformanceError:
        return ConformanceError(f"{self.kind} '{self.name}' ({self.cls.__module__}.{self.cls.__qualname__}) "
                                f"broke rule '{rule}': {detail}", plugin=self.name, kind=self.kind, rules=[rule])


def _first_error(exc: ValidationError) -> str:
    e = exc.errors(include_url=False)[0]
    return f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}"


def skip_reason(cls: type, rule: Rule) -> str | None:
    """Why ``rule`` does not apply to ``cls`` (selected by what the class declares, e.g. its tags),
    or None when the rule runs. There is no opt-out: a rule that applies runs."""
    return rule.applies(cls)


def run_rule(kind: str, rule: Rule, plugin: Any, options: dict[str, Any] | None = None) -> str | None:
    """Run one rule; returns None when it passed, or the reason it was skipped.

    Raises :class:`ConformanceError` when the rule is broken. Warnings raised by the plugin are
    left to the rule (estimator rules turn them into failures).
    """
    __tracebackhide__ = True  # pytest shows the ConformanceError, not this frame
    subject = Subject(kind, plugin, options)
    if hasattr(subject.cls, "conformance_skip"):
        raise subject.fail(rule.name, "declares conformance_skip, which is not supported: declare what the "
                           "plugin needs or does instead (e.g. EstimatorTags), and the rules that apply run")
    reason = skip_reason(subject.cls, rule)
    if reason is not None:
        return reason
    try:
        rule.fn(subject)
    except Broken as exc:
        raise subject.fail(rule.name, str(exc)) from exc.__cause__
    except ConformanceError:
        raise
    except Exception as exc:  # the rule itself hit something the plugin returned (bad types, ...)
        raise subject.fail(rule.name, f"{type(exc).__name__}: {exc}") from exc
    return None


def run_all(kind: str, rules: list[Rule], plugin: Any, options: dict[str, Any] | None) -> dict[str, str]:
    """Run every rule; return {rule: "passed" | "skipped: reason"} or raise one ConformanceError
    listing every broken rule."""
    status: dict[str, str] = {}
    broken: list[tuple[str, str]] = []
    for rule in rules:
        try:
            reason = run_rule(kind, rule, plugin, options)
        except ConformanceError as exc:
            broken.append((rule.name, str(exc)))
            continue
        status[rule.name] = "passed" if reason is None else f"skipped: {reason}"
    if broken:
        subject = Subject(kind, plugin, options)
        if len(broken) == 1:
            msg = broken[0][1]
        else:
            msg = (f"{kind} '{subject.name}' broke {len(broken)} rules: "
                   + "; ".join(f"'{r}'" for r, _ in broken) + "\n" + "\n".join(f"  - {m}" for _, m in broken))
        raise ConformanceError(msg, plugin=subject.name, kind=kind, rules=[r for r, _ in broken])
    return status


def maybe_pytest_skip(reason: str) -> None:
    """Inside pytest, mark the current test skipped; elsewhere do nothing."""
    pytest = sys.modules.get("pytest")
    if pytest is not None:
        pytest.skip(reason)


# ---------------------------------------------------------------------------------------------
# Rules every kind shares
# ---------------------------------------------------------------------------------------------

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _rule_name_and_kind(expected_kind: str) -> Callable[[Subject], None]:
    def check(s: Subject) -> None:
        name = getattr(s.cls, "name", "")
        if not isinstance(name, str) or not _NAME.match(name):
            raise Broken(f"class attribute 'name' must be a short registry name like 'my-plugin', got {name!r}")
        if getattr(s.cls, "kind", None) != expected_kind:
            raise Broken(f"kind is {getattr(s.cls, 'kind', None)!r}, expected {expected_kind!r} "
                         "(subclass the counterfeed base class of that kind)")
    return check


def _rule_options_forbid_unknown(s: Subject) -> None:
    opts = getattr(s.cls, "Options", None)
    if not (isinstance(opts, type) and issubclass(opts, BaseModel)):
        raise Broken("Options must be a pydantic model (subclass counterfeed.Options)")
    if opts.model_config.get("extra") != "forbid":
        raise Broken("Options must forbid unknown fields (model_config extra='forbid'; subclass counterfeed.Options)")
    try:
        opts(**{**s.options, "conformance_unknown_option": 1})
    except ValidationError:
        return
    raise Broken("Options accepted an unknown field 'conformance_unknown_option'")


def _rule_constructor_stores_options(s: Subject) -> None:
    inst = s.new()
    if not isinstance(getattr(inst, "options", None), s.cls.Options):
        raise Broken(f"the constructor must store the validated options as self.options "
                     f"(got {type(getattr(inst, 'options', None)).__name__})")
    if inst.options.model_dump() != s.cls.Options(**s.options).model_dump():
        raise Broken("self.options differs from the options passed to the constructor")
    learned = sorted(k for k in vars(inst) if k.endswith("_") and not k.startswith("__"))
    if learned:
        raise Broken(f"the constructor set learned state {learned}; constructors store options only, "
                     "state is created in setup/fit/build/init_state")
    big = sorted(k for k, v in vars(inst).items() if isinstance(v, np.ndarray) and v.size > 1000)
    if big:
        raise Broken(f"the constructor built large arrays {big}; do that work in setup/fit")
    again = s.call(s.cls, "__init__", s.cls.Options(**s.options).model_dump())
    if again.options.model_dump() != inst.options.model_dump():
        raise Broken("constructing from a dict of options gives different options than from an Options instance")


def common_rules(kind: str) -> list[Rule]:
    return [
        Rule("name_and_kind", "The class has a short registry `name` and the right `kind`.", _rule_name_and_kind(kind)),
        Rule("options_forbid_unknown", "`Options` is a pydantic model that rejects unknown fields.",
             _rule_options_forbid_unknown),
        Rule("constructor_stores_options", "The constructor stores the options and does no other work.",
             _rule_constructor_stores_options),
    ]


# ---------------------------------------------------------------------------------------------
# Small helpers for rules
# ---------------------------------------------------------------------------------------------


class record_warnings:
    """Context manager collecting every warning (numpy RuntimeWarnings included) except deprecation
    warnings, which are addressed to developers rather than to the person running a scenario."""

    def __enter__(self) -> list[warnings.WarningMessage]:
        self._cm = warnings.catch_warnings(record=True)
        records = self._cm.__enter__()
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=PendingDeprecationWarning)
        self._err = np.seterr(all="warn")
        return records

    def __exit__(self, *exc: Any) -> None:
        np.seterr(**self._err)
        self._cm.__exit__(*exc)


def warning_text(records: list[warnings.WarningMessage]) -> str:
    w = records[0]
    return f"{w.category.__name__}: {w.message} ({w.filename}:{w.lineno})"

