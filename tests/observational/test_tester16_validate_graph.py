"""Tester16's graph defects (HIGH 5, HIGH 6, MEDIUM 10): whatever `run` would reject, `validate`
rejects first, with one located message (file:line: graph.<field>), exit 2 from both commands and
nothing written. Each case failed on the old code (validate passed; run crashed or failed unlocated)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from counterfeed.cli import main
from counterfeed.core.plan import resolve
from counterfeed.core.scenario import load_scenario
from counterfeed.errors import ScenarioError

ROOT = Path(__file__).resolve().parents[2]
SELECTION = ROOT / "scenarios" / "observational_selection.yaml"


def small_selection(tmp_path: Path, graph: dict, **changes) -> Path:
    """observational_selection shrunk (40 users, 1 + 1 days), with ``graph`` and aipw."""
    data = yaml.safe_load(SELECTION.read_text())
    data["population"]["users"] = 40
    data["experiment"].update(pre_period="1d", duration="1d")
    data["graph"] = graph
    data["analysis"] = [{"estimator": "diff-in-means"}, {"estimator": "aipw", "refute": False}]
    data["output"] = {"dir": str(tmp_path / "runs"), "report": False}
    for key, value in changes.items():
        data[key] = value
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def assert_rejected_everywhere(path: Path, pattern: str, capsys) -> None:
    """validate and run: exit 2, one located line matching ``pattern``, nothing written."""
    with pytest.raises(ScenarioError) as err:
        resolve(load_scenario(path))
    message = str(err.value)
    assert message.startswith(f"{path}:"), message
    assert re.search(pattern, message), message
    assert len(message.splitlines()) == 1, message
    for command in (["validate", str(path)], ["run", str(path), "--quiet"]):
        with pytest.raises(SystemExit) as done:
            main(command)
        out = capsys.readouterr()
        assert done.value.code == 2, (command, out)
        assert re.search(pattern, out.err), out.err
        assert "Traceback" not in out.err and "AttributeError" not in out.err
    runs = path.parent / "runs"
    assert not runs.exists() or not any(runs.iterdir())


BASE_EDGES = ["segment -> treatment", "segment -> clicks", "pre_sessions -> treatment", "pre_sessions -> clicks"]

CASES = [
    # HIGH 5 (g15): no directed path from the treatment to the outcome
    ("no-path", {"outcome": "clicks", "edges": [*BASE_EDGES, "treatment -> sessions"]},
     r":\d+: graph\.edges: no directed path from 'treatment' to 'clicks'.*nothing to estimate"),
    # HIGH 5 (g16): an isolated treatment node
    ("isolated-treatment", {"outcome": "clicks", "nodes": ["treatment"], "edges": ["segment -> clicks"]},
     r":\d+: graph\.edges: no directed path from 'treatment' to 'clicks'"),
    # HIGH 6 (g25): a metric drawn as a cause of assignment
    ("metric-causes-treatment", {"outcome": "clicks", "edges": [*BASE_EDGES, "sessions -> treatment",
                                                                 "sessions -> clicks", "treatment -> clicks"]},
     r":\d+: graph\.edges\[4\]: metric 'sessions' \(measured during the experiment\) cannot cause the treatment"),
    # HIGH 6 (g24): the treatment causing a pre-period variable
    ("treatment-causes-pre-period", {"outcome": "clicks", "edges": ["treatment -> pre_sessions",
                                                                     "clicks -> pre_sessions", "treatment -> clicks"]},
     r":\d+: graph\.edges\[0\]: the treatment cannot cause 'pre_sessions' \(fixed before assignment\)"),
    # ... and a metric causing one through an unobserved node
    ("metric-causes-pre-via-hidden", {"outcome": "clicks", "unobserved": ["u"],
                                      "edges": [*BASE_EDGES, "treatment -> clicks", "sessions -> u", "u -> pre_clicks"]},
     r":\d+: graph\.edges\[5\]: metric 'sessions' .*cannot cause 'pre_clicks'.*sessions -> u -> pre_clicks"),
    # (g24's other half, AIPW with an empty adjustment set, is now accepted like backdoor-ipw and -matching:
    # the empty set identifies the ATE by the difference in means; tests/hardening/test_break10_estimators.py)
    # LOW 4 (g08): an edge listed twice
    ("duplicate-edge", {"outcome": "clicks", "edges": [*BASE_EDGES, "treatment -> clicks", "segment -> clicks"]},
     r":\d+: graph\.edges\[5\]: the edge 'segment -> clicks' is listed twice \(also edges\[1\]\)"),
    # LOW 4 (g09): an unobserved node no edge names (a typo)
    ("unused-unobserved", {"outcome": "clicks", "unobserved": ["ghost"], "edges": [*BASE_EDGES, "treatment -> clicks"]},
     r":\d+: graph\.unobserved\[0\]: unobserved node 'ghost' is in no edge"),
    # HIGH 6 (g11): a ratio metric as the outcome
    ("ratio-outcome", {"outcome": "ctr", "edges": [*BASE_EDGES[2:], "pre_sessions -> ctr", "treatment -> ctr"]},
     r":\d+: graph\.outcome: outcome 'ctr' is a ratio metric"),
]


@pytest.mark.parametrize("graph, pattern", [(g, p) for _, g, p in CASES], ids=[i for i, _, _ in CASES])
def test_validate_rejects_what_run_would_reject_in_a_graph(tmp_path, graph, pattern, capsys):
    assert_rejected_everywhere(small_selection(tmp_path, graph), pattern, capsys)


def test_a_segment_node_needs_two_segments(tmp_path, capsys):
    """HIGH 6 (g30): with a single segment, ``segment`` is a constant, not a covariate."""
    graph = {"outcome": "clicks", "edges": [*BASE_EDGES, "treatment -> clicks"]}
    path = small_selection(tmp_path, graph)
    data = yaml.safe_load(path.read_text())
    del data["population"]["segments"]
    data["experiment"]["assignment"].pop("segments")
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    assert_rejected_everywhere(path, r":\d+: graph\.edges\[0\]: 'segment' is not a covariate of this scenario: "
                                     r"the population has a single segment", capsys)


def test_a_graph_file_and_an_inline_graph_together_are_ambiguous(tmp_path, capsys):
    """MEDIUM 10 (g26): graph.file with inline keys used to drop the inline graph silently."""
    (tmp_path / "g.yaml").write_text("outcome: clicks\nedges: [pre_sessions -> treatment, pre_sessions -> clicks,"
                                     " treatment -> clicks]\n")
    path = small_selection(tmp_path, {"file": "g.yaml", "outcome": "clicks", "edges": ["treatment -> clicks"]})
    assert_rejected_everywhere(path, r":\d+: graph\.file: give either graph\.file or the inline graph "
                                     r"\(edges, outcome\), not both", capsys)
    path = small_selection(tmp_path, {"file": "g.yaml"})
    resolve(load_scenario(path))  # the file alone is fine


def test_a_graph_with_a_mediator_and_post_treatment_metrics_is_still_accepted(tmp_path):
    graph = {"outcome": "clicks", "edges": [*BASE_EDGES, "treatment -> sessions", "sessions -> clicks",
                                            "treatment -> clicks", "clicks -> dwell"]}
    resolve(load_scenario(small_selection(tmp_path, graph)))


def test_a_resolved_scenario_round_trips_with_a_graph_file_and_a_mechanism(tmp_path):
    """The run directory's scenario.yaml (to_dict: defaults filled in) is read again: neither the
    default graph keys beside graph.file nor the default split under a mechanism may be taken for
    what the user wrote."""
    (tmp_path / "g.yaml").write_text("outcome: clicks\nedges: [pre_sessions -> treatment, pre_sessions -> clicks,"
                                     " treatment -> clicks]\n")
    sc = load_scenario(small_selection(tmp_path, {"file": "g.yaml"}))
    again = sc.with_overrides({"population.users": 30})
    assert again.population.users == 30 and again.graph.file == "g.yaml"
    assert "split" not in sc.to_dict()["experiment"]
    copy = tmp_path / "copy.yaml"
    copy.write_text(sc.to_yaml())
    assert load_scenario(copy).experiment.split == {"control": 0.5, "treatment": 0.5}
