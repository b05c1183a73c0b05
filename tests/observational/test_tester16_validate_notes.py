"""Tester16 LOW 6 and LOW 7: the observational table labels the naive column's unit and estimand
where they differ from the estimate's; an unbounded IV interval is explained by the Anderson-Rubin
set, not by Fieller's interval."""

from __future__ import annotations

from rich.console import Console

from counterfeed.cli import _print_estimate_notes
from counterfeed.core.contracts import Estimate
from counterfeed.plugins.estimators._obs_report import _naive

NAIVE = {"point": 7.525, "lower": 5.0, "upper": 10.0}


def test_the_naive_column_names_its_unit_and_estimand():
    att = Estimate("did-staggered", "clicks", "treatment", "control", 0.58, 0.3, 0.8, estimand="att",
                   diagnostics={"naive_whole_period": NAIVE})
    assert _naive(att) == "7.525 [5, 10] (whole period per user, not per period)"
    late = Estimate("iv-2sls", "clicks", "treatment", "control", 1.0, 0.1, 2.0, estimand="late",
                    diagnostics={"naive": NAIVE})
    assert _naive(late) == "7.525 [5, 10] (all users: an ATE-style difference, not a LATE)"
    ate = Estimate("aipw", "clicks", "treatment", "control", 1.0, 0.1, 2.0, diagnostics={"naive": NAIVE})
    assert _naive(ate) == "7.525 [5, 10]"


def test_an_unbounded_iv_interval_is_explained_by_the_anderson_rubin_set():
    iv = Estimate("iv-2sls", "clicks", "treatment", "control", -1.3, None, None, estimand="late",
                  diagnostics={"ar_set": "whole line"})
    lift = Estimate("diff-in-means", "clicks", "treatment", "control", 0.2, None, None, estimand="relative")
    console = Console(record=True, width=400)
    _print_estimate_notes(console, [iv, lift])
    text = console.export_text()
    iv_line, lift_line = [line for line in text.splitlines() if "interval [-, -]" in line]
    assert "Anderson-Rubin set is whole line" in iv_line and "Fieller" not in iv_line
    assert "Fieller" in lift_line
