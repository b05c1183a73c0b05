"""Every hook is documented with its exact signature in docs/plugins.md, and exercised by a test."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from counterfeed.core import hookspecs

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "plugins.md"
TESTS = Path(__file__).resolve().parent

HOOKS = {name: f"{name}{inspect.signature(fn)}" for name, fn in vars(hookspecs).items()
         if callable(fn) and hasattr(fn, f"{hookspecs.PROJECT}_spec")}
HEADING = re.compile(r"^###\s+`([A-Za-z_][A-Za-z0-9_]*)\(([^)]*)\)`\s*$", re.M)


def _documented() -> dict[str, str]:
    return {m.group(1): f"{m.group(1)}({m.group(2)})" for m in HEADING.finditer(DOC.read_text(encoding="utf-8"))}


def _test_sources() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in TESTS.rglob("*.py")
                     if p.resolve() != Path(__file__).resolve())


def test_hookspecs_found():
    assert len(HOOKS) >= 9 and "register_recommenders" in HOOKS


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_hook_documented_with_exact_signature(name):
    documented = _documented()
    assert name in documented, f"docs/plugins.md has no '### `{HOOKS[name]}`' entry"
    assert documented[name] == HOOKS[name], f"docs/plugins.md documents {documented[name]}, the spec is {HOOKS[name]}"


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_hook_has_an_example(name):
    text = DOC.read_text(encoding="utf-8")
    section = text.split(f"### `{HOOKS[name]}`", 1)[1].split("\n### ", 1)[0]
    assert f"def {name}(" in section, f"the docs entry of {name} has no example implementation"


def test_no_documented_hook_is_stale():
    hook_like = {n for n in _documented() if n.startswith(("register_", "counterfeed_"))}
    assert hook_like <= set(HOOKS), f"documented hooks that no longer exist: {sorted(hook_like - set(HOOKS))}"


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_hook_is_tested(name):
    assert re.search(rf"\b{name}\b", _test_sources()), f"no test under tests/ mentions the hook {name}"


def test_test_module_basenames_are_unique():
    # pytest imports test modules of directories without __init__.py by basename: two test_x.py files
    # in different directories break collection of the whole suite.
    from collections import Counter
    from pathlib import Path

    names = Counter(p.name for p in Path(__file__).parent.rglob("test_*.py"))
    assert [n for n, c in names.items() if c > 1] == []
