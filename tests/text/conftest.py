"""Fixtures for the text tests: catalog contexts; every test gets its own embedding cache."""

from __future__ import annotations

import pytest

from counterfeed.core.contracts import CatalogContext
from counterfeed.core.randomness import Keys


def _make_ctx(seed: int = 0, dimensions: int = 8, **kw) -> CatalogContext:
    keys = Keys(seed)
    return CatalogContext(keys=keys, stream=keys.stream("catalog"), dimensions=dimensions, **kw)


@pytest.fixture
def make_ctx():
    return _make_ctx


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """No test reads or writes the user's real embedding cache, and nothing goes online."""
    monkeypatch.setenv("COUNTERFEED_CACHE_DIR", str(tmp_path / "cfcache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
