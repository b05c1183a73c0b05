"""Counts of fuzz examples, printed in the terminal summary (for the hardening report)."""

from __future__ import annotations

from tests.hardening._counts import FUZZ_COUNTS


def pytest_terminal_summary(terminalreporter):
    if FUZZ_COUNTS:
        terminalreporter.write_line("fuzz examples run: " + ", ".join(f"{k}: {v}" for k, v in FUZZ_COUNTS.items())
                                    + f" (total {sum(FUZZ_COUNTS.values())})")
