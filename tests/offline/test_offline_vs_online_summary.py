"""The offline-vs-online benchmark's verdict: no 'best predictor' from rho <= 0, ties named as ties."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "offline_vs_online.py"


@pytest.fixture(scope="module")
def best_predictors():
    spec = importlib.util.spec_from_file_location("offline_vs_online", PATH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.best_predictors


def test_no_positive_rho_predicts_nothing(best_predictors):
    # the tester's run: every rho <= 0, three tied at -0.14
    out = best_predictors({"recall@10 (ipw)": (-0.14, -0.8, 0.6), "ndcg@10 (ipw)": (-0.14, -0.8, 0.6),
                           "mrr (ipw)": (-0.14, -0.7, 0.5), "mrr (naive)": (-0.5, -0.9, 0.2),
                           "recall@10 (naive)": (float("nan"), float("nan"), float("nan"))})
    assert out.startswith("none predicts positively") and "recall@10" not in out


def test_ties_are_named_as_ties(best_predictors):
    out = best_predictors({"recall@10 (ipw)": (0.43, -0.2, 0.9), "ndcg@10 (naive)": (0.43, 0.1, 0.9),
                           "mrr (naive)": (0.2, -0.5, 0.8)})
    assert "a tie of 2: recall@10 (ipw), ndcg@10 (naive)" in out and "+0.43" in out
    assert "intervals above 0: ndcg@10 (naive)" in out


def test_a_single_best_says_whether_its_interval_excludes_zero(best_predictors):
    assert best_predictors({"mrr (naive)": (0.6, 0.1, 0.9), "mrr (ipw)": (0.3, -0.1, 0.8)}) == \
        "mrr (naive), rho +0.60 (its bootstrap interval lies above 0)"
    assert "includes 0" in best_predictors({"mrr (naive)": (0.6, -0.1, 0.9)})
