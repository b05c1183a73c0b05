"""Plugin faults: every broken hook fails the run through the CLI with exit code 2, one line naming
the plugin, the hook and the rule it broke, and nothing published in the output directory."""

from __future__ import annotations

import copy
import re

import pytest
import yaml

from counterfeed.cli import main
from counterfeed.core.plugins import get_registry
from tests.hardening import fault_plugins as fp

BASE = {
    "name": "faults", "seed": 5,
    "population": {"users": 60, "dimensions": 4},
    "catalog": {"plugin": "synthetic", "items": 30, "topics": 3},
    "experiment": {"arms": {"control": {"recommender": "random"}, "treatment": {"recommender": "random"}},
                   "duration": "1d", "pre_period": "0d", "batch_window": "6h", "slate_size": 3},
    "metrics": ["clicks", "sessions"],
    "analysis": [{"estimator": "diff-in-means", "metrics": ["clicks"]}],
    "output": {"report": False},
}


def _with(path: str, value):
    doc = copy.deepcopy(BASE)
    cur = doc
    *parents, last = path.split(".")
    for p in parents:
        cur = cur[p]
    cur[last] = value
    return doc


REC = "experiment.arms.treatment"
# (id, scenario, expected one-line message)
RUNTIME = [
    ("recommend-raises", _with(REC, {"recommender": "fault-recommend"}),
     r"plugin 'fault-recommend' in recommend: raised RuntimeError: recommend exploded"),
    ("fit-raises", {**_with(REC, {"recommender": "fault-fit"}),  # fit runs at the end of a pre-period
                    "experiment": {**_with(REC, {"recommender": "fault-fit"})["experiment"], "pre_period": "12h"}},
     r"plugin 'fault-fit' in fit: raised RuntimeError"),
    ("update-raises", _with(REC, {"recommender": "fault-update"}), r"plugin 'fault-update' in update: raised RuntimeError"),
    ("setup-raises", _with(REC, {"recommender": "fault-setup"}), r"plugin 'fault-setup' in setup: raised RuntimeError"),
    ("constructor-raises", _with(REC, {"recommender": "fault-init"}),
     r"plugin 'fault-init' in __init__: constructor raised RuntimeError"),
    ("slate-wrong-shape", _with(REC, {"recommender": "fault-slate-shape"}), r"plugin 'fault-slate-shape' in recommend: .*shape"),
    ("slates-wrong-type", _with(REC, {"recommender": "fault-not-slates"}), r"plugin 'fault-not-slates' in recommend: .*Slates"),
    ("propensity-above-one", _with(REC, {"recommender": "fault-propensity"}),
     r"plugin 'fault-propensity' in recommend: .*propensit"),
    ("respond-raises", _with("user_model", {"plugin": "fault-respond"}), r"plugin 'fault-respond' in respond: raised RuntimeError"),
    ("respond-wrong-shape", _with("user_model", {"plugin": "fault-respond-shape"}),
     r"plugin 'fault-respond-shape' in respond: clicks and dwell must have shape"),
    ("respond-wrong-type", _with("user_model", {"plugin": "fault-respond-type"}),
     r"plugin 'fault-respond-type' in respond: must return Response, got tuple"),
    ("first-visit-negative", _with("user_model", {"plugin": "fault-first-visit"}),
     r"plugin 'fault-first-visit' in first_visit: first_visit must return one positive gap per user"),
    ("init-state-raises", _with("user_model", {"plugin": "fault-init-state"}), r"plugin 'fault-init-state' in init_state: raised"),
    ("catalog-raises", _with("catalog", {"plugin": "fault-catalog"}), r"plugin 'fault-catalog' in build: raised OSError"),
    ("metric-wrong-shape", _with("metrics", ["clicks", "fault-shape"]),
     r"plugin 'fault-shape' in compute: compute must return one value per user \(60,\)"),
    ("metric-text", _with("metrics", ["clicks", "fault-text"]), r"plugin 'fault-text' in compute: "),
    ("metric-raises", _with("metrics", ["clicks", "fault-raise"]), r"plugin 'fault-raise' in compute: raised ZeroDivisionError"),
    ("metric-infinite", _with("metrics", ["clicks", "fault-inf"]), r"plugin 'fault-inf' in compute: "),
    ("estimator-not-estimate", _with("analysis", [{"estimator": "fault-not-estimate"}]),
     r"plugin 'fault-not-estimate' in estimate: estimate must return a list of Estimate objects"),
    ("estimator-not-list", _with("analysis", [{"estimator": "fault-not-list"}]),
     r"plugin 'fault-not-list' in estimate: estimate must return a list of Estimate objects"),
    ("estimator-interval", _with("analysis", [{"estimator": "fault-interval"}]),
     r"plugin 'fault-interval' in estimate: interval \[-1, 1\] does not contain the point 2"),
    ("estimator-none-point", _with("analysis", [{"estimator": "fault-none-point"}]), r"plugin 'fault-none-point' in estimate: "),
    ("estimator-raises", _with("analysis", [{"estimator": "fault-raise-estimator"}]),
     r"plugin 'fault-raise-estimator' in estimate: raised LinAlgError: singular matrix"),
]

REGISTRATION = [
    ("register-raises", fp.RaisingRegistration(),
     r"plugin 'fault-registration' in register_recommenders: raised RuntimeError: registry exploded"),
    ("register-not-a-class", fp.NotAClassRegistration(),
     r"plugin 'fault-registration' in register_metrics: registered 42, which is not a subclass of Metric"),
    ("register-duplicate-name", fp.DuplicateRegistration(),
     r"plugin 'fault-registration' in register_recommenders: recommender name 'random' is registered twice"),
    ("register-loose-options", fp.NoOptionsRegistration(),
     r"plugin 'fault-registration' in register_estimators: .*Options must be a pydantic model with extra='forbid'"),
]

LIFECYCLE = ["counterfeed_run_start", "counterfeed_world_end"]

COUNTS = {"runtime": len(RUNTIME), "registration": len(REGISTRATION), "lifecycle": len(LIFECYCLE) + 1}


@pytest.fixture
def faults():
    reg = get_registry()
    name = reg.register_plugin(fp.FaultPlugin(), name="fault-plugins")
    yield reg
    reg.unregister_plugin(name)


def _cli(tmp_path, doc, capsys, *commands, workers=1):
    """Run each command on ``doc`` through the CLI; return [(exit code, stderr)]."""
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    results = []
    for command in commands:
        argv = [command, str(path)] + (["--out", str(out), "--quiet", "--workers", str(workers)] if command == "run" else [])
        capsys.readouterr()
        with pytest.raises(SystemExit) as info:
            main(argv)
        results.append((info.value.code, capsys.readouterr().err.strip()))
    return results, out


def _check(results, out, pattern):
    for code, err in results:
        assert code == 2, err
        assert len(err.splitlines()) == 1 and "Traceback" not in err, err
        assert re.search(pattern, err), err
    assert list(out.iterdir()) == [], "a failed run left files in the output directory"


# Known defects in files this suite may not edit (fixes proposed in the report). Strict: when fixed,
# these XPASS and fail, and the entry must go.
KNOWN_DEFECTS: dict[str, str] = {}
RUNTIME = [pytest.param(*r[1:], id=r[0], marks=[pytest.mark.xfail(strict=True, reason=KNOWN_DEFECTS[r[0]])]
                        if r[0] in KNOWN_DEFECTS else []) for r in RUNTIME]


@pytest.mark.parametrize("doc,pattern", RUNTIME)
def test_runtime_fault_fails_the_run_and_publishes_nothing(faults, tmp_path, capsys, doc, pattern):
    results, out = _cli(tmp_path, doc, capsys, "run")
    _check(results, out, pattern)


@pytest.mark.parametrize("plugin,pattern", [r[1:] for r in REGISTRATION], ids=[r[0] for r in REGISTRATION])
def test_registration_fault_is_reported_with_plugin_and_hook(tmp_path, capsys, plugin, pattern):
    reg = get_registry()
    name = reg.register_plugin(plugin, name="fault-registration")
    try:
        results, out = _cli(tmp_path, BASE, capsys, "validate", "run")
    finally:
        reg.unregister_plugin(name)
    _check(results, out, pattern)


@pytest.mark.parametrize("hook", LIFECYCLE)
def test_lifecycle_hook_fault_names_plugin_and_hook(tmp_path, capsys, hook):
    reg = get_registry()
    name = reg.register_plugin(fp.RaisingLifecycle(hook), name="fault-lifecycle")
    try:
        results, out = _cli(tmp_path, BASE, capsys, "run")
    finally:
        reg.unregister_plugin(name)
    _check(results, out, rf"plugin 'fault-lifecycle' in {hook}: raised RuntimeError: export service down")


def test_run_end_fault_is_reported_after_the_run_is_published(tmp_path, capsys):
    """``counterfeed_run_end`` runs after the rename: the run is complete and stays published (its
    manifest says so), and the exporter's failure is still one clear exit-2 message."""
    reg = get_registry()
    name = reg.register_plugin(fp.RaisingLifecycle("counterfeed_run_end"), name="fault-lifecycle")
    try:
        results, out = _cli(tmp_path, BASE, capsys, "run")
    finally:
        reg.unregister_plugin(name)
    (code, err), = results
    assert code == 2 and len(err.splitlines()) == 1
    assert re.search(r"plugin 'fault-lifecycle' in counterfeed_run_end: raised RuntimeError", err), err
    runs = list(out.iterdir())
    assert len(runs) == 1 and not runs[0].name.startswith(".") and (runs[0] / "manifest.json").is_file()


@pytest.mark.parametrize("case", ["recommend-raises", "metric-wrong-shape", "respond-wrong-type"])
def test_fault_inside_a_worker_process_keeps_its_message(faults, tmp_path, capsys, case):
    """With a process pool the PluginError crosses a process boundary and must keep its one line."""
    (doc, pattern), = [p.values for p in RUNTIME if p.id == case]
    results, out = _cli(tmp_path, doc, capsys, "run", workers=2)
    _check(results, out, pattern)
