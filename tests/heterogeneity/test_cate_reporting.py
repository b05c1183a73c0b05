"""How CATE results read (tester17 L2, L7, L8, L1): plain numbers in messages, 4 significant digits in
the report's CATE table, the estimand of each per-user column named in cate_effects.parquet, the cate
row's average effect scored against the known truth, each warning once in the report."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from counterfeed.analysis.cate_scores import EFFECTS_FILE, SCORES_FILE, write_cate_scores
from counterfeed.errors import DataError, plain
from counterfeed.plugins.estimators._cate_report import cate_section


def test_numpy_scalars_read_plain_in_messages(tmp_path):
    assert plain(np.float64(-0.1)) == "-0.1" and plain(np.int64(7)) == "7" and plain("u7") == "'u7'"
    from counterfeed.twin.policy import table_from_file

    path = tmp_path / "t.csv"
    for col, row, expect in (("prob", "41,0,-0.1", "row 2: -0.1;"), ("position", "41,7,0.5", "row 2: 7;")):
        path.write_text("item,position,prob\n37,0,0.5\n" + row + "\n")
        with pytest.raises(DataError) as err:
            table_from_file(str(path), [37, 41], 5)
        assert expect in str(err.value) and "np." not in str(err.value)


class _Sec:
    def __init__(self):
        self.tables, self.paragraphs = [], []

    def paragraph(self, text, kind=""):
        self.paragraphs.append(text)

    def table(self, headers, rows):
        self.tables.append((headers, rows))

    def figure(self, *a, **k):
        pass


class _Report:
    def __init__(self, run_dir):
        self.run_dir, self.sec = run_dir, _Sec()

    def section(self, title):
        return self.sec


def test_the_report_cate_table_keeps_four_significant_digits(tmp_path):
    (tmp_path / SCORES_FILE).write_text(json.dumps([{
        "estimator": "linear-cate", "metric": "clicks", "arm": "b", "truth_estimand": "conditional",
        "pehe": 6.5432, "pehe_baseline": 6.3128, "pehe_ratio": 1.0365, "spearman": 0.1234, "coverage": 0.5,
        "calibration_slope": 1.19, "auuc_normalised": 0.0712}]))
    rep = _Report(tmp_path)
    cate_section(None, rep)
    headers, rows = rep.sec.tables[0]
    cell = dict(zip(headers, [c[0] if isinstance(c, tuple) else c for c in rows[0]]))
    assert cell["ratio"] in ("1.036", "1.037") and cell["calib. slope"] == "1.19" and cell["PEHE"] == "6.543"


def test_cate_effects_name_their_estimands(tmp_path):
    import pyarrow.parquet as pq

    effects = pd.DataFrame({"user": [0, 1], "point": [0.1, np.nan], "lower": [0.0, np.nan], "upper": [0.2, np.nan],
                            "ite_point": [0.1, np.nan], "ite_lower": [-1.0, np.nan], "ite_upper": [1.2, np.nan]})
    write_cate_scores(tmp_path, [], pd.DataFrame(), effects)
    meta = json.loads(pq.read_schema(tmp_path / EFFECTS_FILE).metadata[b"counterfeed.estimands"])
    assert "tau(X)" in meta["lower"] and "tau_i" in meta["ite_lower"] and set(meta) == set(effects.columns) - {"user"}
    assert pd.read_parquet(tmp_path / EFFECTS_FILE)["point"].isna().sum() == 1  # null where not identified


def test_the_cate_rows_average_effect_is_scored_against_the_known_truth():
    from counterfeed.core.scoring import score_estimates
    from counterfeed.plugins.estimators.cate import LinearInteractionCATE
    from counterfeed.testing.cate_data import make_cate_data

    world = make_cate_data(300, seed=2)
    out = LinearInteractionCATE({"modifiers": ["feature_0"]}).estimate(world.data)
    truth = pd.DataFrame({"metric": ["value"], "arm": ["treatment"], "control": ["control"],
                          "estimand": ["difference"], "segment": [None], "value": [0.5]})
    score_estimates(out, truth)
    cate, diff = (next(e for e in out if e.estimand == k) for k in ("cate", "difference"))
    assert cate.truth == 0.5 and cate.error == pytest.approx(diff.error) and cate.covered == diff.covered


def test_each_warning_appears_once_in_the_report():
    from types import SimpleNamespace

    from counterfeed.core._report_render import _Doc
    from counterfeed.core._report_sections import _diagnostics
    from counterfeed.core.estimation import Estimate
    from tests.conftest import small_scenario

    common = dict(estimator="e", metric="m", arm="b", control="a", point=0.1, lower=0.0, upper=0.2,
                  diagnostics={"warnings": ["SingularMatrixWarning: rank-deficient"]})
    doc = _Doc("t")
    _diagnostics(doc, SimpleNamespace(estimates=[Estimate(**common, estimand="cate"), Estimate(**common)],
                                      scenario=small_scenario(), label=lambda e: e.estimator))
    para = next(b for b in doc.blocks if getattr(b, "kind", "") == "caution")
    assert para.text.startswith("1 warning(s)") and para.items == ["e · m · b: SingularMatrixWarning: rank-deficient"]


def test_a_library_warning_of_the_individual_intervals_is_the_estimates_own(monkeypatch):
    """Before: a statsmodels warning raised while building the individual intervals reached stderr
    (tester17 L1); now it is listed once in the estimate's warnings."""
    import warnings

    import counterfeed.analysis.cate_individual as ci
    from counterfeed.plugins.estimators.cate import LinearInteractionCATE
    from tests.heterogeneity.test_cate_individual import _world

    real = ci.individual_intervals

    def noisy(*args, **kwargs):
        warnings.warn("the design matrix is rank-deficient", UserWarning)
        return real(*args, **kwargs)

    monkeypatch.setattr(ci, "individual_intervals", noisy)
    data, _ = _world(200, seed=1)
    with warnings.catch_warnings(record=True) as escaped:
        warnings.simplefilter("always")
        out = LinearInteractionCATE({"modifiers": ["segment"], "individual_intervals": "covariates"}).estimate(data)
    assert not [w for w in escaped if "rank-deficient" in str(w.message)]
    cate = next(e for e in out if e.estimand == "cate")
    assert cate.diagnostics["warnings"].count("UserWarning: the design matrix is rank-deficient") == 1


def test_a_not_identified_row_is_not_explained_as_an_unbounded_interval():
    from rich.console import Console

    from counterfeed.cli import _print_estimate_notes
    from counterfeed.core.estimation import Estimate

    nan = float("nan")
    e = Estimate("diff-in-means", "clicks", "b", "a", nan, nan, nan, segment="tiny",
                 diagnostics={"identified": False, "warnings": ["NOT IDENTIFIED: segment 'tiny' is too small"]})
    console = Console(record=True, width=400)
    _print_estimate_notes(console, [e])
    text = console.export_text()
    assert "NOT IDENTIFIED" in text and "Fieller" not in text and "interval [-, -]" not in text
