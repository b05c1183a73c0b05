"""``counterfeed plugin new``: names, generated files, and the full install -> discover -> run -> test
-> uninstall cycle of a generated plugin (in a throwaway virtual environment layered on this one,
so the shared environment never sees the test plugin)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

import counterfeed
from counterfeed.plugin_template import KIND_CHOICES, generate, plugin_names
from counterfeed.plugin_template.cli import plugin as plugin_group

REPO = Path(counterfeed.__file__).resolve().parent.parent


@pytest.mark.parametrize("raw, kind, name, module, cls", [
    ("my-rec", "recommender", "my-rec", "counterfeed_my_rec", "MyRecRecommender"),
    ("My Rec!", "recommender", "my-rec", "counterfeed_my_rec", "MyRecRecommender"),
    ("counterfeed-my_rec", "recommender", "my-rec", "counterfeed_my_rec", "MyRecRecommender"),
    ("dwell2", "metric", "dwell2", "counterfeed_dwell2", "Dwell2Metric"),
    ("fancy-estimator", "estimator", "fancy-estimator", "counterfeed_fancy_estimator", "FancyEstimator"),
    ("patience", "user-model", "patience", "counterfeed_patience", "PatienceUserModel"),
])
def test_plugin_names(raw, kind, name, module, cls):
    names = plugin_names(raw, kind)
    assert (names.name, names.module, names.class_name, names.dist) == (name, module, cls, f"counterfeed-{name}")


@pytest.mark.parametrize("raw, kind, pattern", [
    ("", "recommender", "must start with a letter"),
    ("42rec", "recommender", "must start with a letter"),
    ("!!!", "metric", "must start with a letter"),
    ("x" * 61, "metric", "longer than 60"),
    ("ok", "policy", "unknown kind 'policy'"),
])
def test_bad_plugin_names(raw, kind, pattern):
    with pytest.raises(ValueError, match=pattern):
        plugin_names(raw, kind)


@pytest.mark.parametrize("kind", KIND_CHOICES)
def test_generated_files(tmp_path, kind):
    root = generate("demo thing", kind, tmp_path)
    assert root == tmp_path / "counterfeed-demo-thing"
    meta = tomllib.loads((root / "pyproject.toml").read_text())
    assert meta["project"]["name"] == "counterfeed-demo-thing"
    assert meta["project"]["entry-points"]["counterfeed"] == {"demo-thing": "counterfeed_demo_thing.plugin"}
    code = (root / "counterfeed_demo_thing" / "plugin.py").read_text()
    hook = {"recommender": "register_recommenders", "user-model": "register_user_models", "metric": "register_metrics",
            "estimator": "register_estimators", "catalog": "register_catalogs"}[kind]
    assert f"def {hook}(register):" in code and 'name = "demo-thing"' in code
    compile(code, "plugin.py", "exec")
    tests = (root / "tests" / "test_conformance.py").read_text()
    assert "from counterfeed.testing import" in tests and "Conformance" in tests
    readme = (root / "README.md").read_text()
    for step in ("pip install -e .", "python -m pytest", "twine upload", "demo-thing"):
        assert step in readme
    assert "$" not in code + tests + readme  # every template variable was substituted


def test_generated_plugin_passes_conformance_without_installing(tmp_path, monkeypatch):
    from counterfeed.testing import check_plugin

    root = generate("inline-check", "user-model", tmp_path)
    monkeypatch.syspath_prepend(str(root))
    from counterfeed_inline_check.plugin import InlineCheckUserModel

    assert set(check_plugin(InlineCheckUserModel).values()) == {"passed"}


def test_cli_new(tmp_path):
    runner = CliRunner()
    result = runner.invoke(plugin_group, ["new", "cli-demo", "--kind", "metric", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert f"created {tmp_path / 'counterfeed-cli-demo'}" in result.output
    assert (tmp_path / "counterfeed-cli-demo" / "counterfeed_cli_demo" / "plugin.py").is_file()
    again = runner.invoke(plugin_group, ["new", "cli-demo", "--kind", "metric", "--dir", str(tmp_path)])
    assert again.exit_code == 1 and "already exists" in again.output
    bad = runner.invoke(plugin_group, ["new", "9lives", "--kind", "metric", "--dir", str(tmp_path)])
    assert bad.exit_code == 1 and "must start with a letter" in bad.output
    wrong_kind = runner.invoke(plugin_group, ["new", "x", "--kind", "policy"])
    assert wrong_kind.exit_code == 2 and "'policy' is not one of" in wrong_kind.output


def _layered_venv(path: Path) -> Path:
    """A venv without pip whose site-packages chain to this interpreter's (so it sees numpy, pip, ...)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    python = path / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    parent = sysconfig.get_paths()["purelib"]
    Path(site, "_counterfeed_parent_env.pth").write_text(f"import site; site.addsitedir({parent!r})\n")
    return python


SCENARIO = """\
name: e2e-plugin
seed: 3
population: {users: 80, dimensions: 8}
catalog: {plugin: synthetic, items: 60, topics: 4}
experiment:
  arms:
    control: {recommender: random}
    treatment: {recommender: e2e-rec, prior: 2.0}
  duration: 2d
  batch_window: 6h
  slate_size: 5
metrics: [clicks, impressions]
analysis:
  - estimator: diff-in-means
output: {report: false}
"""


@pytest.mark.slow  # builds a virtual environment and installs the plugin, 14 s (the fast suite runs the
# generated plugin's conformance without installing it)
def test_generate_install_discover_run_test_uninstall(tmp_path):
    root = generate("e2e-rec", "recommender", tmp_path)
    python = _layered_venv(tmp_path / "venv")
    env = {k: v for k, v in os.environ.items() if not k.startswith("COUNTERFEED_")}
    env.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", PIP_DISABLE_PIP_VERSION_CHECK="1")

    def sh(*args: str, cwd: Path = tmp_path) -> subprocess.CompletedProcess:
        return subprocess.run([str(python), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=240)

    installed = sh("-m", "pip", "install", "--no-build-isolation", "--no-deps", "--no-index", "-e", str(root))
    assert installed.returncode == 0, installed.stdout + installed.stderr
    try:
        listed = sh("-m", "counterfeed", "plugins", "--json")
        assert listed.returncode == 0, listed.stderr
        mine = [p for p in json.loads(listed.stdout) if p["name"] == "e2e-rec"]
        assert len(mine) == 1
        assert (mine[0]["kind"], mine[0]["source"], mine[0]["version"]) == ("recommender", "counterfeed-e2e-rec", "0.1.0")

        (tmp_path / "scenario.yaml").write_text(SCENARIO)
        ran = sh("-m", "counterfeed", "run", "scenario.yaml", "--out", str(tmp_path / "runs"), "--workers", "1", "-q")
        assert ran.returncode == 0, ran.stdout + ran.stderr
        (run_dir,) = [p for p in (tmp_path / "runs").iterdir() if not p.name.startswith(".")]
        manifest = json.loads((run_dir / "manifest.json").read_text())
        assert {"name": "e2e-rec", "source": "counterfeed-e2e-rec"}.items() <= next(
            p for p in manifest["plugins"] if p["name"] == "e2e-rec").items()

        tested = sh("-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=root)
        assert tested.returncode == 0, tested.stdout + tested.stderr
        assert " passed" in tested.stdout and "failed" not in tested.stdout
    finally:
        removed = sh("-m", "pip", "uninstall", "-y", "counterfeed-e2e-rec")
    assert removed.returncode == 0, removed.stdout + removed.stderr
    after = sh("-m", "counterfeed", "plugins", "--json")
    assert "e2e-rec" not in {p["name"] for p in json.loads(after.stdout)}
