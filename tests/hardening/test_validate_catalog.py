"""``validate`` rejects the catalog inputs that ``run`` rejects (``Catalog.check``).

``validate`` accepted a table catalog whose file was missing or malformed (``ok``, exit 0) and ``run``
then refused it (exit 2): whatever ``run`` would reject, ``validate`` must reject first. It now reads and
checks the table as building the catalog does, without embedding the text, and with the catalog's size
known it prints the same slate-longer-than-the-catalog note as ``run``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from counterfeed.core.contracts import Catalog
from counterfeed.core.plan import resolve
from counterfeed.core.scenario import Scenario
from counterfeed.testing import check_catalog
from tests.conftest import SMALL, cli, scenario_file

TABLE = {"plugin": "table", "path": "items.csv", "text_columns": ["title"], "quality_column": "quality",
         "embedder": "hashing"}


def _scenario(tmp_path: Path, table: str | None, **changes) -> Path:
    if table is not None:
        (tmp_path / "items.csv").write_text(table, encoding="utf-8")
    base = {**SMALL, "catalog": TABLE, "output": {"report": False, "dir": str(tmp_path / "runs")},
            "metrics": ["clicks"], "analysis": [{"estimator": "diff-in-means"}]}
    return scenario_file(tmp_path / "s.yaml", base, **changes)


GOOD = "id,title,quality\n" + "".join(f"i{i},item {i} about things,0.{i}\n" for i in range(8))


@pytest.mark.parametrize("table, message", [
    (None, "items.csv: catalog file not found"),
    ("id,name,quality\na,x,1\n", "items.csv: missing column 'title'"),
    ("id,title,quality\n", "items.csv: the catalog has no rows"),
    ("id,title,quality\na,x,1\na,y,2\n", "items.csv: column 'id' has duplicate id 'a' (rows 1 and 2)"),
    ("id,title,quality\na,x,1\nb,,2\n", "items.csv: row 2 (id 'b') has empty text in column title"),
    ("id,title,quality\na,x,1\nb,y,high\n", "items.csv: column 'quality' row 2 (id 'b'): expected a number, got 'high'"),
])
def test_validate_rejects_the_table_run_rejects_with_the_same_message(tmp_path, capsys, table, message):
    path = _scenario(tmp_path, table)
    for verb in ("validate", "run"):
        code, out, err = cli(capsys, verb, path, "--quiet") if verb == "run" else cli(capsys, verb, path)
        assert code == 2 and message in err, (verb, err)
        assert "ok:" not in out
    assert not (tmp_path / "runs").exists()  # nothing written


@pytest.mark.parametrize("command", [["calibrate", "-n", "2"], ["sweep", "--vary", "population.users=100,200", "-n", "2"]])
def test_calibrate_and_sweep_reject_the_table_before_any_replication(tmp_path, capsys, command):
    path = _scenario(tmp_path, "id,title,quality\na,x,1\na,y,2\n")
    code, out, err = cli(capsys, command[0], path, *command[1:], "--workers", "1", "--out", tmp_path / "cal")
    assert code == 2 and "items.csv: column 'id' has duplicate id 'a' (rows 1 and 2)" in err, err
    assert "Traceback" not in err and not (tmp_path / "cal").exists() and not (tmp_path / "runs").exists()


def test_validate_prints_the_slate_note_run_prints(tmp_path, capsys):
    path = _scenario(tmp_path, GOOD, **{"experiment.slate_size": 10, "experiment.duration": "2d",
                                        "experiment.pre_period": "1d"})
    code, out, validate_err = cli(capsys, "validate", path)
    assert code == 0 and out.startswith("ok:"), validate_err
    note = f"note: {path}:"
    want = "experiment.slate_size: slates of 10 items from a catalog of 8: every slate shows at most 8"
    notes = [line for line in validate_err.splitlines() if line.startswith(note) and want in line]
    assert len(notes) == 1, validate_err
    code, _, run_err = cli(capsys, "run", path, "--quiet")
    assert code == 0, run_err
    assert notes[0] in run_err.splitlines()  # the same located line
    # the synthetic catalog's size is known from its options: the same note, without a file to read
    path = scenario_file(tmp_path / "syn.yaml", {**SMALL, "catalog": {"plugin": "synthetic", "items": 3,
                                                                     "new_items_per_day": 1, "arrival_days": 1.5}})
    code, _, err = cli(capsys, "validate", path)
    assert code == 0 and "slates of 5 items from a catalog of 4: every slate shows at most 4" in err, err


def test_every_built_in_catalog_counts_what_it_builds(tmp_path):
    sc = Scenario.from_dict({**SMALL, "catalog": {**TABLE, "path": str(tmp_path / "items.csv")}})
    (tmp_path / "items.csv").write_text(GOOD, encoding="utf-8")
    from counterfeed.core.randomness import Keys

    plan = resolve(sc)
    assert plan.check_items() == plan.build_items(Keys(sc.seed)).n == 8
    for catalog in ({"plugin": "synthetic", "items": 50, "new_items_per_day": 3, "arrival_days": 4.7},
                    {"plugin": "synthetic-text", "items": 20, "new_items_per_day": 2, "arrival_days": 3,
                     "embedder": "hashing"}):
        plan = resolve(Scenario.from_dict({**SMALL, "catalog": catalog}))
        assert plan.check_items() == plan.build_items(Keys(1)).n > catalog["items"]


class _Miscounting(Catalog):
    """A catalog whose ``check`` disagrees with ``build``: the conformance suite says so."""

    name = "miscounting"

    def check(self, ctx):
        return 7

    def build(self, ctx):
        from counterfeed.testing.fixtures import make_items

        return make_items(6, ctx.dimensions, seed=1)


def test_conformance_holds_check_to_build():
    from counterfeed.testing import ConformanceError

    with pytest.raises(ConformanceError, match="check returned 7 items but build made 6"):
        check_catalog(_Miscounting)
