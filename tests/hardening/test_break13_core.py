"""Break test 13's findings on catalogs and the ``ope`` estimator: each now fails in ``validate``, located,
as ``run`` fails (exit 2, nothing written), before any world is simulated.

- A table catalog where no row arrives at day 0 passed validate and failed the run with NumPy's
  "zero-size array to reduction operation minimum" from the first slate.
- ``catalog: {plugin: twin, path: ...}`` with a missing twin or a replicate the twin lacks named neither
  ``catalog.path`` nor ``catalog.replicate``.
- ``ope`` with ``estimators: []`` ran and wrote no estimate at all.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import SMALL, cli, scenario_file

EXAMPLE_TWIN = Path(__file__).resolve().parents[2] / "counterfeed" / "twin" / "example"


def _write(tmp_path: Path, **changes) -> Path:
    base = {**SMALL, "output": {"report": False, "dir": str(tmp_path / "runs")}, "metrics": ["clicks"],
            "analysis": [{"estimator": "diff-in-means"}]}
    return scenario_file(tmp_path / "s.yaml", base, **changes)


def _both_refuse(capsys, tmp_path: Path, path: Path, message: str) -> None:
    for verb in ("validate", "run"):
        code, out, err = cli(capsys, verb, path, "--quiet") if verb == "run" else cli(capsys, verb, path)
        assert code == 2 and message in err, (verb, err)
        assert "ok:" not in out and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def test_a_table_catalog_with_nothing_at_day_0_is_refused_first(tmp_path, capsys):
    rows = "".join(f"i{i},item {i},{100 + i}\n" for i in range(6))
    (tmp_path / "late.csv").write_text("id,title,arrival\n" + rows, encoding="utf-8")
    catalog = {"plugin": "table", "path": "late.csv", "text_columns": ["title"], "arrival_column": "arrival",
               "embedder": "hashing"}
    path = _write(tmp_path, catalog=catalog)
    _both_refuse(capsys, tmp_path, path, "late.csv: column 'arrival': no item arrives at day 0 (the earliest "
                                         "arrives at day 100)")
    # one row at day 0 is a catalog at the start: it runs
    (tmp_path / "late.csv").write_text("id,title,arrival\nfirst,item at the start,0\n" + rows, encoding="utf-8")
    code, _, err = cli(capsys, "validate", path)
    assert code == 0, err


@pytest.mark.parametrize("change, message", [
    ({"path": "/nonexistent/twin"}, ":8: catalog.path: /nonexistent/twin: not a twin directory (no twin.json"),
    ({"replicate": 3}, ":9: catalog.replicate: the twin at "),
])
def test_a_twin_catalog_names_its_field(tmp_path, capsys, change, message):
    catalog = {"plugin": "twin", "path": str(EXAMPLE_TWIN), "replicate": 0, **change}
    path = _write(tmp_path, catalog=catalog, **{"population.dimensions": 8})
    _both_refuse(capsys, tmp_path, path, f"{path}{message}")


def test_ope_needs_at_least_one_estimator(tmp_path, capsys):
    path = _write(tmp_path, analysis=[{"estimator": "ope", "estimators": []}])
    _both_refuse(capsys, tmp_path, path, "analysis[0].estimators: List should have at least 1 item")


def test_an_extreme_quality_gives_no_overflow_warning(tmp_path, capsys):
    """A finite but huge utility (a table quality of 1e300) made the dwell's exp overflow (a raw NumPy
    RuntimeWarning on the console); the exponent is capped just above where the 600-minute cap binds."""
    import warnings

    rows = "".join(f"i{i},item {i},{1e300 if i == 0 else 0.1 * i}\n" for i in range(8))
    (tmp_path / "q.csv").write_text("id,title,quality\n" + rows, encoding="utf-8")
    catalog = {"plugin": "table", "path": "q.csv", "text_columns": ["title"], "quality_column": "quality",
               "embedder": "hashing"}
    path = _write(tmp_path, catalog=catalog, metrics=["clicks", "dwell"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        code, _, err = cli(capsys, "run", path, "--quiet")
    assert code == 0 and "overflow" not in err, err


@pytest.mark.parametrize("population, field, message", [
    ({"twin": "/nonexistent/twin"}, "population.twin", "/nonexistent/twin: not a twin directory (no twin.json"),
    ({"twin": str(EXAMPLE_TWIN), "replicate": 4}, "population.replicate",
     "replicate 4 is out of range: the twin has replicates 0..0"),
])
def test_a_twin_population_names_its_field(tmp_path, capsys, population, field, message):
    path = _write(tmp_path, population=population)
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1)
                if text.strip().startswith(field.split(".")[1] + ":"))
    _both_refuse(capsys, tmp_path, path, f"{path}:{line}: {field}: {message}")
    code, _, err = cli(capsys, "validate", _write(tmp_path, population={"twin": str(EXAMPLE_TWIN)}),
                       "--set", f"{field}={population.get('replicate', population['twin'])}")
    assert code == 2 and f"Error: --set: {field}: {message}" in err, err


def test_text_interests_on_a_twin_with_texts_are_refused_first(tmp_path, capsys):
    """A twin fitted with item texts has text but no topic descriptions (its topics are fitted clusters):
    ``interests: text`` passed validate and failed in the run's init_state."""
    import json
    import shutil

    twin = tmp_path / "twin"
    shutil.copytree(EXAMPLE_TWIN, twin)
    n_items = len(__import__("numpy").load(twin / "rep-0.npz")["bias"])
    (twin / "texts.json").write_text(json.dumps([f"item {i} about things" for i in range(n_items)]))
    path = _write(tmp_path, catalog={"plugin": "twin", "path": str(twin)}, **{"population.dimensions": 8},
                  user_model={"plugin": "choice", "interests": "text"})
    _both_refuse(capsys, tmp_path, path, "user_model.interests: 'text' needs a catalog with text embeddings and "
                                         "topic descriptions (e.g. catalog plugin 'synthetic-text'); catalog "
                                         "'twin' has no topic descriptions")
