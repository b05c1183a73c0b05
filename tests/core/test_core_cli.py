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


@pytest.mark.parametrize("argv", [["--help"], ["validate", "scenarios/quickstart.yaml"], ["run", "--help"],
                                  ["plugins", "--json"]])
def test_start_up_commands_import_no_heavy_library(argv):
    """Issue 13, fast start: --help and validate build the registry from metadata and the plugins'
    Options; scipy/numba/torch/pandas/pyarrow load only when a plugin method needs them."""
    from pathlib import Path

    from counterfeed.testing.startup import heavy_imports

    assert heavy_imports(argv, cwd=Path(__file__).resolve().parents[2]) == []


def test_set_errors_name_set_not_a_line_of_the_file(scenario_file):
    r = cf("run", str(scenario_file), "--set", "population.users=0", "--set", "seed=-1", "--quiet")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert lines[0].startswith("Error: --set: ") and lines[1].startswith("--set: "), r.stderr
    assert str(scenario_file) not in r.stderr


def test_plugins_show_lists_options_with_types_defaults_and_descriptions():
    r = cf("plugins", "show", "popularity", "--format", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["kind"] == "recommender" and doc["module"] == "counterfeed.plugins.recommenders.basic"
    opts = {o["option"]: o for o in doc["options"]}
    assert opts["halflife"] == {"option": "halflife", "type": "float | None", "required": False, "default": None,
                                "bounds": "> 0", "description": "days; decay of old counts"}
    assert opts["exploration"]["type"] == "'none' | 'epsilon' | 'softmax'" and opts["exploration"]["default"] == "none"
    r = cf("plugins", "show", "popularity")
    assert r.returncode == 0 and "halflife" in r.stdout and "days; decay of old counts" in r.stdout
    r = cf("plugins", "show", "popularty")
    assert r.returncode == 2 and "no plugin named 'popularty'; did you mean 'popularity'" in r.stderr


def test_docs_list_every_builtin_recommenders_options():
    """docs/scenarios.md's option tables are generated from the Options models; regenerate them with
    ``python -m counterfeed.core.plugin_docs --write`` when an option changes."""
    from pathlib import Path

    from counterfeed.core.plugin_docs import docs_section, options_markdown
    from counterfeed.core.plugins import get_registry

    text = (Path(__file__).resolve().parents[2] / "docs" / "scenarios.md").read_text()
    assert docs_section(text) == options_markdown().strip("\n"), \
        "docs/scenarios.md is stale: run python -m counterfeed.core.plugin_docs --write"
    for name in get_registry().names("recommender"):
        assert f"### `{name}`" in text


def test_plugins_table_formats_agree():
    as_json = json.loads(cf("plugins", "--format", "json").stdout)
    csv_lines = cf("plugins", "--format", "csv").stdout.strip().splitlines()
    assert csv_lines[0] == "kind,name,source,version,module,plugin"
    assert len(csv_lines) == len(as_json) + 1
    table = cf("plugins").stdout  # piped: no width limit, nothing cut
    assert "…" not in table and all(p["module"] in table for p in as_json)


def test_narrow_terminal_gets_one_block_per_row_and_no_value_is_cut():
    from rich.console import Console

    from counterfeed._tables import Column, print_rich_table

    console = Console(width=40, record=True, force_terminal=False)
    rows = [{"estimator": "diff-in-means", "interval": "[-0.0123456, 0.0234567]", "p": 0.0456}]
    print_rich_table(rows, [Column("estimator"), Column("interval"), Column("p", show=str)], title="Estimates",
                     console=console)
    out = console.export_text()
    assert "…" not in out and "[-0.0123456, 0.0234567]" in out and "diff-in-means" in out
    wide = Console(width=200, record=True)
    print_rich_table(rows, [Column("estimator"), Column("interval"), Column("p", show=str)], console=wide)
    assert "┃ estimator" in wide.export_text()


def test_readme_tour_inputs_exist_and_ope_on_the_example_log_runs():
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    readme = (root / "README.md").read_text()
    tour = readme[readme.index("## A tour"):readme.index("A run directory")]
    files = set(re.findall(r"\b((?:scenarios|examples)/[\w./-]+\.(?:ya?ml|csv))", tour))
    assert {"examples/hs39.csv", "examples/ope_log.csv"} <= files
    assert all((root / f).is_file() for f in files), [f for f in files if not (root / f).is_file()]
    r = cf("ope", "examples/ope_log.csv", "--policy", "popularity", "--estimators", "ips,snips", "--format", "csv",
           cwd=root)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0].startswith("estimator,") and len(r.stdout.splitlines()) == 3


@pytest.mark.slow
def test_readme_tour_sem_fit_on_the_example_csv():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    r = cf("sem", "fit", "visual =~ x1 + x2 + x3", "examples/hs39.csv", "--draws", "300", "--tune", "300",
           "--chains", "2", "--format", "csv", cwd=root)
    assert r.returncode == 0, r.stderr
    assert "visual=~x2" in r.stdout.replace(" ", "") or "x2" in r.stdout


def test_plugin_template_install_instructions_agree(tmp_path):
    r = cf("plugin", "new", "demo-rec", "--kind", "recommender", "--dir", str(tmp_path))
    assert r.returncode == 0, r.stderr
    install = 'python -m pip install -e ".[test]"'
    assert install in r.stdout and "python -m pytest" in r.stdout
    readme = (tmp_path / "counterfeed-demo-rec" / "README.md").read_text()
    pyproject = (tmp_path / "counterfeed-demo-rec" / "pyproject.toml").read_text()
    assert install in readme and "counterfeed plugins show demo-rec" in readme
    assert 'test = ["pytest' in pyproject  # the extra the instructions install


def test_version_is_written_once():
    import importlib.metadata as md
    from pathlib import Path

    import counterfeed

    root = Path(__file__).resolve().parents[2]
    assert 'dynamic = ["version"]' in (root / "pyproject.toml").read_text()
    assert md.version("counterfeed") == counterfeed.__version__
    assert cf("--version").stdout.strip() == f"counterfeed, version {counterfeed.__version__}"
