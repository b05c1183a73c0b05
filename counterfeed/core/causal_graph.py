"""Causal graphs: the analyst's declared graph (``graph`` in a scenario) and the simulator's own.

A :class:`CausalGraph` is a DAG over *logged variables* -- the arm indicator ``treatment``, the
outcome metrics, the pre-treatment covariates of ``AnalysisData.covariates`` (``segment``,
``pre_sessions``, ``pre_impressions``, ``pre_clicks``, ``pre_dwell``, ``pre_ctr``, ``tenure``,
``feature_<k>``), ``pre_<metric>`` columns and, in an encouragement design, ``instrument`` -- plus
nodes marked ``unobserved``. A graph is validated like the rest of the scenario: a malformed edge,
a cycle, a node that is neither logged nor marked unobserved, or a treatment/outcome missing from
the graph is one located error (``file:line: graph.<field>: message``; exit 2, nothing written).

Identification (graph algorithms from networkx):

- :meth:`CausalGraph.backdoor_set`: a minimal set ``Z`` of observed variables satisfying Pearl's
  back-door criterion for (treatment, outcome): no element of ``Z`` descends from the treatment and
  ``Z`` d-separates treatment and outcome once the treatment's outgoing edges are removed (Pearl
  2009, *Causality*, Def. 3.3.1), found with ``networkx.find_minimal_d_separator`` restricted to the
  observed non-descendants; None when no such set exists. :func:`check_backdoor` turns None into a
  located scenario error for estimators that adjust on a back-door set.
- :meth:`CausalGraph.instruments`: observed nodes ``Z`` with an edge into the treatment that are
  d-separated from the outcome once the treatment's outgoing edges are removed (exclusion and
  independence; Pearl 2009, sec. 7.4.5).

The simulator's data-generating graph at the level of the logged variables (:func:`dgp_graph`) is
written to the run directory as ``dgp_graph.json`` and ``dgp_graph.gml`` for comparison.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from counterfeed.core.observational_spec import GraphSpec, LATENT_TRAITS
from counterfeed.errors import ScenarioError

__all__ = ["CausalGraph", "scenario_graph", "check_backdoor", "check_instrument", "logged_variables",
           "dgp_graph", "write_dgp_graph", "COVARIATE_NODES", "TREATMENT", "INSTRUMENT"]

TREATMENT = "treatment"
INSTRUMENT = "instrument"
#: the covariates an analyst has (``AnalysisData.covariates``; ``feature_<k>`` too)
COVARIATE_NODES = ("segment", "pre_sessions", "pre_impressions", "pre_clicks", "pre_dwell", "pre_ctr",
                   "tenure")
_EDGE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.()=-]*)\s*->\s*([A-Za-z_][A-Za-z0-9_.()=-]*)\s*$")


@dataclass
class CausalGraph:
    """A DAG: ``edges`` (parent, child), ``treatment`` and ``outcome`` nodes, ``unobserved`` nodes."""

    treatment: str
    outcome: str
    edges: list[tuple[str, str]]
    nodes: list[str] = field(default_factory=list)
    unobserved: list[str] = field(default_factory=list)

    def to_networkx(self) -> Any:
        """The graph as a ``networkx.DiGraph`` (node attribute ``observed``)."""
        import networkx as nx

        g = nx.DiGraph()
        for n in self.all_nodes:
            g.add_node(n, observed=n not in self.unobserved)
        g.add_edges_from(self.edges)
        return g

    @property
    def all_nodes(self) -> list[str]:
        out = list(dict.fromkeys([*self.nodes, *(v for e in self.edges for v in e), *self.unobserved]))
        return out

    @property
    def observed(self) -> list[str]:
        return [n for n in self.all_nodes if n not in self.unobserved]

    def _backdoor_graph(self) -> Any:
        g = self.to_networkx()
        g.remove_edges_from(list(g.out_edges(self.treatment)))
        return g

    def backdoor_set(self) -> list[str] | None:
        """A minimal observed back-door adjustment set for (treatment, outcome), or None (see module)."""
        import networkx as nx

        full = self.to_networkx()
        forbidden = nx.descendants(full, self.treatment) | {self.treatment, self.outcome}
        allowed = {n for n in self.observed if n not in forbidden}
        z = nx.find_minimal_d_separator(self._backdoor_graph(), {self.treatment}, {self.outcome},
                                        restricted=allowed)
        return None if z is None else sorted(z)

    def instruments(self) -> list[str]:
        """Observed valid instruments for the treatment (see module)."""
        import networkx as nx

        g = self._backdoor_graph()
        return sorted(z for z in self.to_networkx().predecessors(self.treatment)
                      if z not in self.unobserved and nx.is_d_separator(g, {z}, {self.outcome}, set()))

    def to_dict(self) -> dict[str, Any]:
        return {"treatment": self.treatment, "outcome": self.outcome, "nodes": self.all_nodes,
                "edges": [f"{a} -> {b}" for a, b in self.edges], "unobserved": list(self.unobserved)}

    def to_dot(self) -> str:
        """Graphviz DOT text (unobserved nodes dashed), e.g. for DoWhy's ``CausalModel(graph=...)``."""
        lines = ["digraph {"]
        lines += [f'  "{n}"' + (" [style=dashed]" if n in self.unobserved else "") + ";" for n in self.all_nodes]
        lines += [f'  "{a}" -> "{b}";' for a, b in self.edges]
        return "\n".join(lines + ["}"])


def logged_variables(sc: Any) -> set[str]:
    """Names a graph's observed nodes may use in scenario ``sc`` (see the module docstring)."""
    names = {TREATMENT, *COVARIATE_NODES}
    if len(sc.population.segments) < 2:  # one segment: a constant, not a covariate of the data
        names.discard("segment")
    for name, _ in sc.metric_specs:
        names |= {name, f"pre_{name}"}
    if getattr(sc.experiment.assignment, "mechanism", None) == "encouragement":
        names.add(INSTRUMENT)
    features = sc.population.features
    names |= {f"feature_{k}" for k in range(features.dimensions if features else 0)}
    return names


def _load(sc: Any, spec: GraphSpec) -> tuple[GraphSpec, str | None, dict[str, int], str]:
    """The graph spec (inline, or read from ``spec.file``), its file, line map and field prefix."""
    if spec.file is None:
        return spec, sc.file, {}, "graph"  # located through sc.error
    default = GraphSpec()
    inline = sorted(k for k in GraphSpec.model_fields if k != "file" and getattr(spec, k) != getattr(default, k))
    if inline:
        raise sc.error(f"give either graph.file or the inline graph ({', '.join(inline)}), not both: the "
                       "two could disagree", "graph.file")
    from counterfeed.core._yaml import YamlProblem, load_yaml
    from counterfeed.core.scenario_messages import validation_message

    base = Path(sc.file).parent if sc.file else Path(".")
    path = base / spec.file
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise sc.error(f"cannot read graph file '{path}': {getattr(exc, 'strerror', None) or exc}",
                       "graph.file") from None
    try:
        data, lines = load_yaml(text)  # JSON is YAML
    except YamlProblem as exc:
        raise ScenarioError(exc.message, file=str(path), line=exc.line) from None
    if not isinstance(data, dict) or "file" in data:
        raise ScenarioError("expected a mapping with treatment, outcome, edges, unobserved", file=str(path),
                            line=1)
    from pydantic import ValidationError

    try:
        loaded = GraphSpec.model_validate(data)
    except ValidationError as exc:
        raise validation_message(exc, file=str(path), lines=lines, root=GraphSpec) from None
    return loaded, str(path), lines, ""


def scenario_graph(sc: Any) -> CausalGraph | None:
    """The validated :class:`CausalGraph` of scenario ``sc`` (None without ``graph``).

    Raises
    ------
    ScenarioError
        One located error for the first problem (see the module docstring).
    """
    if sc.graph is None:
        return None
    spec, file, lines, prefix = _load(sc, sc.graph)
    from counterfeed.core.scenario_messages import line_of

    def fail(message: str, where: str) -> ScenarioError:
        path = f"{prefix}.{where}" if prefix else where
        if file == sc.file:
            return sc.error(message, path)
        return ScenarioError(message, file=file, line=line_of(lines, where), field=where)

    edges = []
    for i, text in enumerate(spec.edges):
        m = _EDGE.match(str(text))
        if not m:
            raise fail(f"expected an edge 'parent -> child', got {text!r}", f"edges[{i}]")
        if m.group(1) == m.group(2):
            raise fail(f"'{m.group(1)}' has an edge to itself (a cycle)", f"edges[{i}]")
        if (m.group(1), m.group(2)) in edges:
            first = edges.index((m.group(1), m.group(2)))
            raise fail(f"the edge '{m.group(1)} -> {m.group(2)}' is listed twice (also edges[{first}])", f"edges[{i}]")
        edges.append((m.group(1), m.group(2)))
    if spec.outcome is None:
        raise fail("missing: the outcome node (an analysed metric, e.g. clicks)", "outcome")
    graph = CausalGraph(spec.treatment, spec.outcome, edges, list(spec.nodes), list(spec.unobserved))
    import networkx as nx

    g = graph.to_networkx()
    try:
        cycle = nx.find_cycle(g)
    except nx.NetworkXNoCycle:
        cycle = None
    if cycle:
        where = next(i for i, e in enumerate(edges) if e == tuple(cycle[0][:2]))
        path = " -> ".join([a for a, _ in cycle] + [cycle[0][0]])
        raise fail(f"the graph has a cycle: {path} (a causal graph must be acyclic)", f"edges[{where}]")
    known = logged_variables(sc)
    for i, (a, b) in enumerate(edges):
        for n in (a, b):
            if n not in known and n not in spec.unobserved:
                raise fail(_unknown(n, known), f"edges[{i}]")
    for key in ("nodes", "unobserved"):
        for i, n in enumerate(getattr(spec, key)):
            if key == "nodes" and n not in known and n not in spec.unobserved:
                raise fail(_unknown(n, known), f"nodes[{i}]")
            if key == "unobserved" and n in (spec.treatment, spec.outcome):
                raise fail(f"'{n}' is the treatment or the outcome; it cannot be unobserved", f"unobserved[{i}]")
            if key == "unobserved" and not any(n in e for e in edges):
                raise fail(f"unobserved node '{n}' is in no edge (a typo?); an unobserved variable matters only "
                           "through the edges that name it", f"unobserved[{i}]")
    if spec.treatment != TREATMENT:
        raise fail(f"the treatment node must be '{TREATMENT}' (the arm indicator), got '{spec.treatment}'",
                   "treatment")
    per_user = {name for name, _ in sc.metric_specs}
    if spec.outcome not in per_user:
        raise fail(f"outcome '{spec.outcome}' is not a metric of this scenario (metrics: "
                   f"{', '.join(sorted(per_user))})", "outcome")
    if _population_level(spec.outcome):
        raise fail(f"outcome '{spec.outcome}' is a population-level metric (one value per world, not per "
                   "user); a causal graph's outcome must be a per-user metric (e.g. clicks)", "outcome")
    if _metric_class_attr(spec.outcome, "aggregation") == "ratio":
        raise fail(f"outcome '{spec.outcome}' is a ratio metric (a ratio of means, not a mean of per-user "
                   "values); a causal graph's outcome must be a per-user metric: use its numerator "
                   "(e.g. clicks)", "outcome")
    for key, node in (("treatment", spec.treatment), ("outcome", spec.outcome)):
        if node not in graph.all_nodes:
            raise fail(f"{key} '{node}' is not in the graph (no edge or node names it)", key)
    _check_time_order(graph, per_user, fail)
    if not nx.has_path(g, graph.treatment, graph.outcome):
        raise fail(f"no directed path from '{graph.treatment}' to '{graph.outcome}': the graph says the "
                   f"treatment has no effect on {graph.outcome}, so there is nothing to estimate; add the "
                   f"edge '{graph.treatment} -> {graph.outcome}' (or a path through a mediator)", "edges")
    return graph


def _check_time_order(graph: CausalGraph, metrics: set[str], fail: Any) -> None:
    """Nothing measured during the experiment (the treatment, a metric) causes what is fixed before
    assignment (the treatment itself, a pre-period or population covariate, the instrument)."""
    import networkx as nx

    g = graph.to_networkx()
    before = {n for n in graph.observed if n not in metrics} | {graph.treatment}
    for src in [graph.treatment, *sorted(m for m in metrics if m in g)]:
        for dst in sorted(before & nx.descendants(g, src)):
            path = nx.shortest_path(g, src, dst)
            where = graph.edges.index((path[0], path[1]))
            what = "the treatment" if src == graph.treatment else f"metric '{src}' (measured during the experiment)"
            fixed = "the treatment" if dst == graph.treatment else f"'{dst}' (fixed before assignment)"
            raise fail(f"{what} cannot cause {fixed}: {' -> '.join(path)} runs backwards in time; "
                       "a variable measured after assignment is an outcome, not a cause", f"edges[{where}]")


def _population_level(metric: str) -> bool:
    return _metric_class_attr(metric, "level") == "population"


def _metric_class_attr(metric: str, name: str) -> Any:
    """Class attribute ``name`` of metric plugin ``metric`` (None when unknown)."""
    from counterfeed.core.plugins import get_registry

    try:
        return getattr(get_registry().info("metric", metric).cls, name, None)
    except Exception:  # noqa: BLE001 - an unknown metric is reported by resolve
        return None


def _unknown(node: str, known: set[str]) -> str:
    import difflib

    if node == "segment":  # logged_variables drops it for a single segment
        return ("'segment' is not a covariate of this scenario: the population has a single segment (a "
                "constant); declare population.segments, or remove the node")

    close = difflib.get_close_matches(node, sorted(known), n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return (f"unknown variable '{node}': not a logged variable (treatment, metrics, pre_<metric>, "
            f"covariates, instrument) and not listed in unobserved{hint}")


def check_backdoor(sc: Any, who: str = "a back-door estimator") -> list[str]:
    """The back-door adjustment set of ``sc``'s graph; a located ScenarioError when the scenario has
    no graph or no observed set satisfies the back-door criterion (for estimators' ``check_scenario``).
    An empty set is valid: it identifies the effect by the difference in means."""
    graph = scenario_graph(sc)
    if graph is None:
        raise sc.error(f"{who} needs a causal graph (graph: treatment, outcome, edges)", "graph")
    z = graph.backdoor_set()
    if z is None:
        hidden = [u for u in graph.unobserved if u in graph.all_nodes]
        raise sc.error(f"no valid adjustment set for {who}: every set of observed variables leaves a "
                       f"back-door path from '{graph.treatment}' to '{graph.outcome}' open"
                       + (f" (through unobserved {', '.join(hidden)})" if hidden else ""), "graph")
    return z


def check_instrument(sc: Any, who: str = "an instrumental-variable estimator") -> list[str]:
    """The graph's valid instruments; a located ScenarioError when there are none."""
    graph = scenario_graph(sc)
    if graph is None:
        raise sc.error(f"{who} needs a causal graph (graph: treatment, outcome, edges)", "graph")
    found = graph.instruments()
    if not found:
        raise sc.error(f"no valid instrument for {who}: no observed parent of '{graph.treatment}' is "
                       f"d-separated from '{graph.outcome}' once the treatment's effects are removed", "graph")
    return found


def dgp_graph(sc: Any, outcome: str) -> CausalGraph:
    """The simulator's data-generating graph over logged variables and its latent traits.

    Latent traits (``preference_strength``, ``novelty``, unobserved) and the segment drive pre-period
    activity and outcomes (``novelty`` only where the mechanism reads it: the built-in user model
    does not); pre-period activity carries user state (satisfaction, satiation, churn) into the
    experiment; the mechanism's inputs with a nonzero coefficient point into ``treatment``.
    """
    spec = sc.experiment.assignment
    activity = ["pre_sessions", "pre_impressions", "pre_clicks", "pre_dwell", "pre_ctr"]
    metrics = [name for name, _ in sc.metric_specs]
    edges = [("segment", a) for a in activity] + [("preference_strength", a) for a in activity[2:]]
    edges += [(src, m) for m in metrics for src in ("segment", "preference_strength", *activity)]
    edges += [(TREATMENT, m) for m in metrics]
    mech = getattr(spec, "mechanism", "randomized")
    if mech in ("selection", "encouragement"):
        edges += [(k, TREATMENT) for k, v in spec.coefficients.items() if v]
        if any(spec.segments.values()):
            edges.append(("segment", TREATMENT))
        if mech == "encouragement":
            edges.append((INSTRUMENT, TREATMENT))
    elif mech == "staggered":
        edges.append(("segment", TREATMENT) if spec.cohorts[0].segments else ("cohort", TREATMENT))
    unobserved = [t for t in LATENT_TRAITS if any(t in e for e in edges)] + (["cohort"] if any(
        "cohort" in e for e in edges) else [])
    return CausalGraph(TREATMENT, outcome, list(dict.fromkeys(edges)), [], unobserved)


def write_dgp_graph(directory: Path, graph: CausalGraph) -> None:
    """``dgp_graph.json`` and ``dgp_graph.gml`` (networkx GML) in ``directory``."""
    import networkx as nx

    directory = Path(directory)
    (directory / "dgp_graph.json").write_text(json.dumps(graph.to_dict(), indent=2) + "\n")
    nx.write_gml(graph.to_networkx(), directory / "dgp_graph.gml")
