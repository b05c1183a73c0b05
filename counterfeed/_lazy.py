"""A module imported on first attribute access, for the few heavy libraries (scipy) that plugin
modules use inside methods: ``counterfeed --help`` and ``counterfeed validate`` import the plugin
modules (their ``Options`` validate the scenario) but must not pay for scipy (issue 13, fast start).

    stats = lazy_module("scipy.stats")   # at module top, instead of ``from scipy import stats``
    stats.norm.ppf(0.975)                # scipy.stats is imported here, once
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

__all__ = ["lazy_module"]


class _LazyModule:
    __slots__ = ("_name", "_module")

    def __init__(self, name: str):
        self._name = name
        self._module: ModuleType | None = None

    def _load(self) -> ModuleType:
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return self._module

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._load(), attr)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}>"


def lazy_module(name: str) -> Any:
    """A stand-in for module ``name`` that imports it when one of its attributes is first read."""
    return _LazyModule(name)
