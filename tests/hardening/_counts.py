"""Shared counters (imported under one module name by the tests and the conftest)."""

from collections import Counter

FUZZ_COUNTS: Counter = Counter()
