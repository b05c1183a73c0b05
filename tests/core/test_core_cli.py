import json
import subprocess
import sys

import pytest
import yaml

from tests.conftest import SMALL


def cf(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "counterfeed", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


@pytest.fixture
def scenario_file(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump({**SMALL, "output": {"dir": str(tmp_path / "runs"), "report": False}}))
    return p


def test_run_prints_means_and_truth_and_writes_a_run_directory(scenario_file, tmp_path):
    r = cf("run", str(scenario_file), "--quiet")
    assert r.returncode == 0, r.stderr
    assert "true effect" in r.stdout and "Estimates vs truth" in r.stdout
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1 and (runs[0] / "manifest.json").is_file()


def test_validate_and_plugins_json(scenario_file):
    r = cf("validate", str(scenario_file))
    assert r.returncode == 0 and r.stdout.startswith("ok: small")
    r = cf("plugins", "--json")
    assert r.returncode == 0
    plugins = json.loads(r.stdout)
    names = {(p["kind"], p["name"]) for p in plugins}
    assert ("recommender", "popularity") in names and ("metric", "ctr") in names
    assert all({"name", "kind", "source", "version"} <= set(p) for p in plugins)


@pytest.mark.parametrize("edit,pattern", [
    (lambda d: d["population"].update(users=-5), r"s\.yaml:\d+: population\.users: "),
    (lambda d: d["experiment"]["arms"]["control"].update(recommender="popularr"),
     r"unknown recommender 'popularr'; did you mean 'popularity'\?"),
    (lambda d: d.update(bogus=1), r"unknown field 'bogus'"),
])
def test_user_errors_exit_2_with_one_line_and_write_nothing(tmp_path, edit, pattern):
    doc = yaml.safe_load(yaml.safe_dump(SMALL))
    doc["output"] = {"dir": str(tmp_path / "runs")}
    edit(doc)
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(doc, sort_keys=False))
    for cmd in ("run", "validate"):
        r = cf(cmd, str(p))
        assert r.returncode == 2, (cmd, r.stderr)
        import re

        assert re.search(pattern, r.stderr), r.stderr
        assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_missing_file_exits_2(tmp_path):
    r = cf("run", str(tmp_path / "missing.yaml"))
    assert r.returncode == 2 and "file not found" in r.stderr


HEAVY = ("scipy", "numba", "torch", "pandas", "pyarrow", "transformers", "pymc", "sklearn")
_IMPORTS = """
import sys
from counterfeed.cli import main
try:
    main({argv!r})
except SystemExit:
    pass
print("HEAVY=" + ",".join(m for m in {heavy!r} if m in sys.modules), file=sys.stderr)
"""


@pytest.mark.parametrize("argv", [["--help"], ["validate", "scenarios/quickstart.yaml"], ["run", "--help"],
                                  ["plugins", "--json"]])
def test_start_up_commands_import_no_heavy_library(argv):
    """Issue 13, fast start: --help and validate build the registry from metadata and the plugins'
    Options; scipy/numba/torch/pandas/pyarrow load only when a plugin method needs them."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    r = subprocess.run([sys.executable, "-c", _IMPORTS.format(argv=argv, heavy=HEAVY)], capture_output=True,
                       text=True, cwd=root, timeout=120)
    loaded = [line for line in r.stderr.splitlines() if line.startswith("HEAVY=")]
    assert loaded == ["HEAVY="], (argv, r.stderr)


def test_set_errors_name_set_not_a_line_of_the_file(scenario_file):
    r = cf("run", str(scenario_file), "--set", "population.users=0", "--set", "seed=-1", "--quiet")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert lines[0].startswith("Error: --set: ") and lines[1].startswith("--set: "), r.stderr
    assert str(scenario_file) not in r.stderr
