"""Causal graphs: validation (located errors, exit 2, nothing written), identification, the DGP graph."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from counterfeed import hookimpl
from counterfeed.cli import main
from counterfeed.core.causal_graph import (CausalGraph, check_backdoor, check_instrument, dgp_graph,
                                           scenario_graph)
from counterfeed.core.estimation import Estimator
from counterfeed.core.plugins import get_registry
from counterfeed.core.scenario import load_scenario
from counterfeed.errors import ScenarioError

ROOT = Path(__file__).resolve().parents[2]
SELECTION = ROOT / "scenarios" / "observational_selection.yaml"
HIDDEN = ROOT / "scenarios" / "observational_hidden.yaml"


def _with_graph(tmp_path: Path, graph_yaml: str, source: Path = SELECTION) -> Path:
    """A copy of ``source`` with its ``graph:`` block replaced by ``graph_yaml`` (tiny and quick)."""
    text = source.read_text()
    head, _, rest = text.partition("graph:\n")
    tail = rest[rest.index("analysis:"):]
    out = tmp_path / "scenario.yaml"
    out.write_text(head + graph_yaml + tail.replace("dir: runs", f"dir: {tmp_path / 'runs'}")
                   .replace("report: true", "report: false"))
    return out


def _cli(args: list[str], capsys) -> tuple[int, str]:
    """Exit code and output of ``counterfeed ARGS`` in this process (test plugins stay registered)."""
    with pytest.raises(SystemExit) as done:
        main(args)
        raise SystemExit(0)
    out = capsys.readouterr()
    return int(done.value.code or 0), out.out + out.err


BAD_GRAPHS = [
    ("cycle", "graph:\n  outcome: clicks\n  edges: [pre_sessions -> treatment, treatment -> clicks,\n"
     "          clicks -> pre_sessions]\n",
     r"graph\.edges\[\d\]: the graph has a cycle: .*(pre_sessions|clicks|treatment) -> .* \(a causal graph must be acyclic\)"),
    ("unknown", "graph:\n  outcome: clicks\n  edges:\n    - pre_sesions -> treatment\n    - treatment -> clicks\n",
     r":\d+: graph\.edges\[0\]: unknown variable 'pre_sesions'.*did you mean 'pre_sessions'\?"),
    ("no-treatment", "graph:\n  outcome: clicks\n  edges: [pre_sessions -> clicks]\n",
     r"graph\.treatment: treatment 'treatment' is not in the graph"),
    ("outcome-not-metric", "graph:\n  outcome: retained\n  edges: [treatment -> clicks]\n",
     r"graph\.outcome: outcome 'retained' is not a metric of this scenario"),
    ("no-outcome", "graph:\n  edges: [treatment -> clicks]\n", r"graph\.outcome: missing"),
    ("malformed", "graph:\n  outcome: clicks\n  edges: [treatment => clicks]\n",
     r"graph\.edges\[0\]: expected an edge 'parent -> child'"),
    ("self-loop", "graph:\n  outcome: clicks\n  edges: [treatment -> treatment]\n",
     r"graph\.edges\[0\]: 'treatment' has an edge to itself"),
    ("unobserved-treatment", "graph:\n  outcome: clicks\n  edges: [treatment -> clicks]\n  unobserved: [treatment]\n",
     r"graph\.unobserved\[0\]: 'treatment' is the treatment or the outcome"),
    ("instrument-without-design", "graph:\n  outcome: clicks\n  edges: [instrument -> treatment, treatment -> clicks]\n",
     r"graph\.edges\[0\]: unknown variable 'instrument'"),
    ("typo-key", "graph:\n  outcome: clicks\n  edgez: [treatment -> clicks]\n", r"graph\.edgez"),
]


@pytest.mark.parametrize("graph_yaml, pattern", [(g, p) for _, g, p in BAD_GRAPHS],
                         ids=[i for i, _, _ in BAD_GRAPHS])
def test_a_bad_graph_is_one_located_error_exit_2_and_nothing_written(tmp_path, graph_yaml, pattern, capsys):
    path = _with_graph(tmp_path, graph_yaml)
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    message = str(err.value)
    assert message.startswith(f"{path}:"), message
    assert re.search(pattern, message), message
    assert len(message.splitlines()) == 1
    for command in (["validate", str(path)], ["run", str(path), "--quiet"]):
        code, output = _cli(command, capsys)
        assert code == 2, (command, output)
        assert re.search(pattern, output), output
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_graph_in_a_file_is_validated_with_lines_of_that_file(tmp_path):
    (tmp_path / "g.yaml").write_text("outcome: clicks\nedges:\n  - treatment -> clicks\n  - clicks -> treatment\n")
    path = _with_graph(tmp_path, "graph: {file: g.yaml}\n")
    with pytest.raises(ScenarioError, match=r"g\.yaml:\d+: edges\[\d\]: the graph has a cycle"):
        load_scenario(path)
    (tmp_path / "g.yaml").write_text(json.dumps({"outcome": "clicks", "edges": ["segment -> treatment",
                                                 "segment -> clicks", "treatment -> clicks"]}))
    graph = scenario_graph(load_scenario(path))
    assert graph.backdoor_set() == ["segment"]
    path = _with_graph(tmp_path, "graph: {file: missing.yaml}\n")
    with pytest.raises(ScenarioError, match=r":\d+: graph\.file: cannot read graph file"):
        load_scenario(path)


def test_backdoor_sets_and_instruments_follow_the_criteria():
    g = CausalGraph("treatment", "clicks", [("x", "treatment"), ("x", "clicks"), ("treatment", "m"),
                                             ("m", "clicks"), ("u", "x"), ("u", "clicks")], unobserved=["u"])
    assert g.backdoor_set() == ["x"]  # x blocks x <- u -> clicks too
    hidden = CausalGraph("treatment", "clicks", [("u", "treatment"), ("u", "clicks"), ("z", "treatment"),
                                                  ("treatment", "clicks")], unobserved=["u"])
    assert hidden.backdoor_set() is None
    assert hidden.instruments() == ["z"]
    # a "instrument" with a direct path to the outcome is no instrument
    leaky = CausalGraph("treatment", "clicks", hidden.edges + [("z", "clicks")], unobserved=["u"])
    assert leaky.instruments() == []
    # adjusting on a descendant of the treatment (a mediator) is never allowed
    med = CausalGraph("treatment", "clicks", [("treatment", "m"), ("m", "clicks"), ("m", "y2")])
    assert med.backdoor_set() == []


def test_the_scenarios_graphs_identify_what_their_headers_say():
    sel = load_scenario(SELECTION)
    assert set(check_backdoor(sel)) <= {"segment", "pre_sessions", "pre_clicks"}
    hidden = load_scenario(HIDDEN)
    with pytest.raises(ScenarioError, match=r"observational_hidden\.yaml:\d+: graph: no valid adjustment set "
                       r"for a back-door estimator: .* \(through unobserved taste\)"):
        check_backdoor(hidden)
    assert check_instrument(hidden) == ["instrument"]
    # the simulator's own graph agrees: taste (preference_strength) is a hidden confounder there
    dgp = dgp_graph(hidden, "clicks")
    assert dgp.backdoor_set() is None and dgp.instruments() == ["instrument"]
    assert dgp_graph(sel, "clicks").backdoor_set() is not None


class _NeedsBackdoor(Estimator):
    """Test only: an estimator that adjusts on a back-door set (checks the graph before running)."""

    name = "test-needs-backdoor"

    def check_scenario(self, scenario):
        check_backdoor(scenario, f"'{self.name}'")

    def estimate(self, data):  # pragma: no cover - never reached in these tests
        return []


class _Plugin:
    @hookimpl
    def register_estimators(self, register):
        register(_NeedsBackdoor)


def test_no_valid_adjustment_set_for_a_backdoor_estimator_is_exit_2_and_nothing_written(tmp_path, capsys):
    text = HIDDEN.read_text().replace("- estimator: diff-in-means", "- estimator: test-needs-backdoor")
    path = tmp_path / "hidden.yaml"
    path.write_text(text.replace("dir: runs", f"dir: {tmp_path / 'runs'}"))
    reg = get_registry()
    name = reg.register_plugin(_Plugin(), name="test-needs-backdoor-plugin")
    try:
        for command in (["validate", str(path)], ["run", str(path), "--quiet"]):
            code, output = _cli(command, capsys)
            assert code == 2, output
            assert re.search(rf"{re.escape(str(path))}:\d+: graph: no valid adjustment set for "
                             r"'test-needs-backdoor'", output), output
        assert not (tmp_path / "runs").exists()
    finally:
        reg.unregister_plugin(name)


@pytest.mark.parametrize("options, ok", [("", False), ("\n    proceed_when_unidentifiable: true", True)])
def test_the_builtin_backdoor_estimators_are_rejected_before_simulating_without_a_backdoor_set(
        tmp_path, capsys, options, ok):
    text = HIDDEN.read_text().replace("- estimator: diff-in-means", "- estimator: aipw" + options)
    path = tmp_path / "hidden.yaml"
    path.write_text(text)
    code, output = _cli(["validate", str(path)], capsys)
    if ok:
        assert code == 0, output
    else:
        assert code == 2 and re.search(r"hidden\.yaml:\d+: graph: no valid adjustment set for estimator 'aipw'", output), output
