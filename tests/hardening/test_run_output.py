"""Tester report s4 items 12, 13 and 19 (run --json population_metrics): what `run` prints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from counterfeed.cli import main

SCENARIO = {
    "name": "out", "seed": 11,
    "population": {"users": 150, "dimensions": 8},
    "catalog": {"plugin": "synthetic", "items": 40, "topics": 4},
    "user_model": {"plugin": "choice"},
    "experiment": {"arms": {"control": {"recommender": "random"}, "treatment": {"recommender": "popularity"}},
                   "duration": "2d", "batch_window": "6h", "slate_size": 3},
    "metrics": ["clicks", "coverage"],
    # fit_on: logs -> the target learns from the log it is evaluated on: a winner's-curse warning every time
    "analysis": [{"estimator": "diff-in-means"}, {"estimator": "ope", "estimators": ["ips", "snips"]}],
    "output": {"report": False},
}


def _run(capsys, tmp_path: Path, *args) -> tuple[str, Path]:
    sc = tmp_path / "sc.yaml"
    sc.write_text(yaml.safe_dump(SCENARIO))
    out = tmp_path / f"runs{len(list(tmp_path.iterdir()))}"
    try:
        main(["run", str(sc), "--out", str(out), "-q", *args])
    except SystemExit as exc:
        assert exc.code == 0, capsys.readouterr().err
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    return capsys.readouterr().out, run_dir


def test_run_csv_stdout_is_the_run_directorys_estimates_csv(capsys, tmp_path):
    """Item 12: one writer: stdout CSV == estimates.csv (diagnostics as JSON objects)."""
    out, run_dir = _run(capsys, tmp_path, "--format", "csv")
    assert out == (run_dir / "estimates.csv").read_text()
    import csv
    import io

    rows = list(csv.DictReader(io.StringIO(out)))
    assert rows and all(isinstance(json.loads(r["diagnostics"]), dict) for r in rows)


def test_run_console_shows_estimator_warnings_and_json_population_metrics(capsys, tmp_path):
    """Item 13: the estimators' warnings under the console table; item 19: run --json population_metrics."""
    out, run_dir = _run(capsys, tmp_path)
    est = json.loads((run_dir / "estimates.json").read_text())["estimates"]
    warned = [(e["estimator"], w) for e in est for w in (e["diagnostics"].get("warnings") or [])]
    assert any("winner's curse" in w for _, w in warned)
    flat = " ".join(out.split())
    for name, w in warned:
        assert f"warning ({name} · " in out and " ".join(w.split())[:60] in flat
    out, _ = _run(capsys, tmp_path, "--json")
    doc = json.loads(out)
    assert doc["population_metrics"], doc.keys()
    assert "coverage" in json.dumps(doc["population_metrics"])


def test_unbounded_interval_is_explained():
    """Item 13: an estimate whose interval is not finite gets a line saying what [-, -] means."""
    from rich.console import Console

    from counterfeed.cli import _print_estimate_notes
    from counterfeed.core.estimation import Estimate

    e = Estimate(estimator="diff-in-means", metric="churned", arm="t", control="c", point=0.5, lower=None,
                 upper=None, level=0.95, estimand="relative", diagnostics={"warnings": ["Fieller: unbounded"]})
    console = Console(record=True, width=200)
    _print_estimate_notes(console, [e])
    text = console.export_text()
    assert "interval [-, -]: no finite interval" in text and "warning (diff-in-means · churned · t): Fieller" in text


@pytest.mark.parametrize("x, shown", [(1.6666e299, "1.667e+299"), (12345.0, "12,345"), (0.5, "0.5")])
def test_display_fmt_never_prints_hundreds_of_digits(x, shown):
    """Item 18: huge numbers in tables in scientific notation."""
    from counterfeed.core.display import fmt

    assert fmt(x) == shown
