"""Inputs of the observational estimators: one comparison's frame, its covariates and its graph.

An observational estimate compares one treatment arm with the control on one per-user metric. Its
frame has one row per user of those two arms (in ``outcomes`` order) with the treatment indicator
``T`` (1 = the arm, 0 = the control), the outcome ``Y`` and the numeric covariates: the columns of
``data.covariates`` (a categorical column such as ``segment`` becomes one 0/1 column per level but
the first, named ``segment[level]``), the outcomes' ``pre_<metric>`` columns the covariates lack, and
``instrument`` when ``data.instrument`` is given. The analyst's declared graph (``data.graph``: a
:class:`counterfeed.core.causal_graph.CausalGraph`, or a ``networkx.DiGraph``) is read as a
``networkx.DiGraph``: its treatment node is the graph's ``treatment`` (default ``treatment``); its
outcome node is the metric's own node when the graph has one, else the graph's declared ``outcome``
(default ``outcome``), whose causes then stand for every analysed metric's; unobserved nodes carry
``observed`` False (or "no"). Categorical nodes are expanded to their indicator columns with the same
parents and children. Other metrics' nodes (post-treatment outcomes) need no column.

Ratio metrics (``MetricInfo.kind == "ratio"``) are not analysed: their estimand is a ratio of
means, not a mean of per-user values; a metric named explicitly that is a ratio is a ModelError.
"""

from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
import pandas as pd

from counterfeed.core.estimation import AnalysisData
from counterfeed.errors import DataError, ModelError
from counterfeed.plugins.estimators._obs_metrics import per_user_metrics
from counterfeed.plugins.estimators._stats import require_comparison, select_metrics

__all__ = ["Comparison", "comparisons", "covariate_matrix", "graph_networkx", "adjustment_set", "in_column_order",
           "quiet", "analysable_metrics", "require"]

TREATMENT, OUTCOME = "treatment", "outcome"


@contextmanager
def quiet() -> Iterator[None]:
    """Silence the wrapped libraries' warnings and log lines (DoWhy, EconML, differences), which
    warn about pandas deprecations and their own defaults, never about the caller's data."""
    loggers = [logging.getLogger(n) for n in ("dowhy", "econml", "differences")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with np.errstate(all="ignore"):
                yield
    finally:
        for lg, lv in zip(loggers, levels):
            lg.setLevel(lv)


def require(data: AnalysisData, name: str, estimator: str, what: str) -> Any:
    """``getattr(data, name)``, or a DataError naming the missing input."""
    value = getattr(data, name)
    if value is None or (isinstance(value, pd.DataFrame) and value.empty):
        raise DataError(f"{estimator}: needs data.{name} ({what}); the run provided none")
    return value


def analysable_metrics(data: AnalysisData, chosen: list[str] | None, estimator: str) -> list[str]:
    """The per-user (non-ratio) metrics to analyse; a ratio metric named in ``chosen`` is an error
    (:func:`counterfeed.plugins.estimators._obs_metrics.per_user_metrics`, which ``check_metrics``
    also runs before simulating)."""
    require_comparison(data, estimator)
    names = select_metrics(data, chosen, estimator)
    return per_user_metrics({m: data.metrics[m] for m in names}, chosen, estimator)


def covariate_matrix(covariates: pd.DataFrame, estimator: str, *, drop_constant: bool = True) -> pd.DataFrame:
    """The numeric covariates (``user`` dropped; categoricals as ``name[level]`` 0/1 columns, first
    level dropped; booleans as 0/1); constant columns are dropped unless ``drop_constant`` is False,
    when a categorical of a single level is kept as one all-zero column under its own name.
    Raises DataError on NaN/inf."""
    cols: dict[str, np.ndarray] = {}
    for name in covariates.columns:
        if name == "user":
            continue
        col = covariates[name]
        if pd.api.types.is_bool_dtype(col) or pd.api.types.is_numeric_dtype(col):
            v = col.to_numpy(dtype=np.float64, na_value=np.nan)
            if not np.all(np.isfinite(v)):
                raise DataError(f"{estimator}: covariate '{name}' has missing or infinite values")
            cols[str(name)] = v
        else:
            levels = sorted(col.astype(str).unique())
            if len(levels) == 1 and not drop_constant:
                cols[str(name)] = np.zeros(len(col))
            for lv in levels[1:]:
                cols[f"{name}[{lv}]"] = (col.astype(str) == lv).to_numpy(dtype=np.float64)
    frame = pd.DataFrame(cols, index=covariates.index)
    if not drop_constant:
        return frame.reset_index(drop=True)
    keep = [c for c in frame.columns if frame[c].nunique() > 1]
    return frame[keep].reset_index(drop=True)


@dataclass
class Comparison:
    """One treatment arm vs the control on one metric: ``frame`` has ``T``, ``Y`` and the covariate
    columns ``covariates`` (rows: the two arms' users with a finite outcome, in ``outcomes`` order);
    ``rows`` are their positions in ``data.outcomes``. ``constant`` names the covariates (and
    ``instrument``) that the data has but that take one value among these rows, with that value: a
    graph node among them is observed, and adjusting for it changes nothing."""

    metric: str
    arm: str
    frame: pd.DataFrame
    covariates: list[str]
    rows: np.ndarray
    constant: dict[str, float] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(len(self.frame))


def comparisons(data: AnalysisData, metrics: list[str], estimator: str, *, with_covariates: bool = True,
                arm_column: str = "arm") -> Iterator[Comparison]:
    """Each (metric, treatment arm) comparison; at least two users in each arm, or a ModelError."""
    arm = data.outcomes[arm_column].astype(str).to_numpy()
    cov = None
    if with_covariates:
        raw = require(data, "covariates", estimator, "pre-treatment covariates")
        if len(raw) != data.n_users:
            raise DataError(f"{estimator}: data.covariates has {len(raw)} rows for {data.n_users} users")
        if "user" in raw.columns and not np.array_equal(raw["user"].to_numpy(), data.outcomes["user"].to_numpy()):
            raise DataError(f"{estimator}: data.covariates rows are not in the outcomes' user order")
        cov = covariate_matrix(raw, estimator, drop_constant=False)
        extra = {c: data.outcomes[c].to_numpy(dtype=np.float64, na_value=np.nan) for c in data.outcomes.columns
                 if str(c).startswith("pre_") and c not in cov.columns and pd.api.types.is_numeric_dtype(data.outcomes[c])}
        if data.instrument is not None:
            if "instrument" in cov.columns:
                raise DataError(f"{estimator}: a covariate is named 'instrument', the name of data.instrument "
                                "(the encouragement design's nudge) among the covariates: rename the covariate")
            extra["instrument"] = np.asarray(data.instrument, dtype=np.float64)
        extra = {c: np.nan_to_num(v) for c, v in extra.items()}
        cov = pd.concat([cov, pd.DataFrame(extra)], axis=1) if extra else cov
    for metric in metrics:
        y = data.outcomes[metric].to_numpy(dtype=np.float64, na_value=np.nan)
        for a in data.treatments:
            rows = np.flatnonzero(((arm == a) | (arm == data.control)) & np.isfinite(y))
            t = (arm[rows] == a).astype(np.float64)
            if t.sum() < 2 or (1 - t).sum() < 2:
                raise ModelError(f"{estimator}: metric '{metric}', arm '{a}': needs at least two users in the "
                                 f"arm and in the control '{data.control}' (got {int(t.sum())} and {int((1 - t).sum())})")
            frame = pd.DataFrame({"T": t, "Y": y[rows]})
            names: list[str] = []
            constant: dict[str, float] = {}
            if cov is not None:
                sub = cov.iloc[rows].reset_index(drop=True)
                names = [c for c in sub.columns if sub[c].nunique() > 1]
                constant = {str(c): float(sub[c].iloc[0]) for c in sub.columns if c not in names}
                frame = pd.concat([frame, sub[names]], axis=1)
            yield Comparison(metric, a, frame, names, rows, constant)


# -- the declared graph -------------------------------------------------------------------------------
def graph_networkx(graph: Any, estimator: str) -> Any:
    """The declared graph as a ``networkx.DiGraph`` (a CausalGraph's ``to_networkx()``, or as given)."""
    import networkx as nx

    if isinstance(graph, nx.DiGraph):
        return graph
    to_nx = getattr(graph, "to_networkx", None)
    if callable(to_nx):
        g = to_nx()
        if isinstance(g, nx.DiGraph):
            return g
    raise DataError(f"{estimator}: data.graph must be a CausalGraph or a networkx.DiGraph, got {type(graph).__name__}")


def _observed(attrs: dict[str, Any]) -> bool:
    return str(attrs.get("observed", True)).lower() not in ("no", "false", "0")


def _expanded(g: Any, columns: list[str]) -> Any:
    """``g`` with every categorical node ``name`` replaced by its indicator columns ``name[level]``."""
    g = g.copy()
    for node in list(g.nodes):
        dummies = [c for c in columns if c.startswith(f"{node}[")]
        if dummies and node not in columns:
            for d in dummies:
                g.add_node(d, **g.nodes[node])
                g.add_edges_from((p, d) for p in g.predecessors(node))
                g.add_edges_from((d, s) for s in g.successors(node))
            g.remove_node(node)
    return g


def adjustment_set(graph: Any, comp: Comparison, estimator: str, *, metrics: Any = (),
                   proceed_when_unidentifiable: bool = False) -> tuple[list[str], list[str]]:
    """The backdoor adjustment set DoWhy identifies from the declared graph (as frame columns, in
    the frame's column order whatever the process's hash seed), and the warnings to report with the
    estimate.

    Raises DataError when the graph lacks the treatment or outcome node, names an observed variable
    that is neither a covariate nor a metric (``metrics``), or when no backdoor set exists (an
    unobserved confounder is declared). With ``proceed_when_unidentifiable`` (DoWhy's option of that
    name) the unobserved nodes are dropped from the graph instead, the set found among the observed
    variables is used, and a warning says the estimate is not identified.
    """
    from dowhy import CausalModel

    columns = [*comp.covariates, *comp.constant]
    g = _expanded(graph_networkx(graph, estimator), columns)
    t = str(getattr(graph, "treatment", TREATMENT))
    y = comp.metric if comp.metric in g.nodes else str(getattr(graph, "outcome", OUTCOME))
    for node in (t, y):
        if node not in g.nodes:
            raise DataError(f"{estimator}: the declared graph has no node '{node}' "
                            f"(nodes: {', '.join(map(str, g.nodes))})")
    observed = {str(n) for n, d in g.nodes(data=True) if _observed(d)}
    missing = sorted(observed - set(columns) - set(map(str, metrics)) - {t, y})
    if missing:
        raise DataError(f"{estimator}: the declared graph's observed node(s) {', '.join(missing)} are not "
                        f"covariates of the data (covariates: {', '.join(comp.covariates) or 'none'})")
    warnings_: list[str] = []
    hidden = sorted(str(n) for n, d in g.nodes(data=True) if not _observed(d))
    if proceed_when_unidentifiable and hidden:
        g = g.copy()
        g.remove_nodes_from(hidden)
    frame = comp.frame.rename(columns={"T": t, "Y": y})
    fixed = {c: v for c, v in comp.constant.items() if c in g.nodes and c not in frame.columns}
    if fixed:  # constant here: observed, so identification may use it; adjusting for it is a no-op
        frame = frame.assign(**fixed)
    keep = [c for c in frame.columns if c in g.nodes]
    with quiet():
        model = CausalModel(frame[keep], t, y, graph=g)
        ident = model.identify_effect(proceed_when_unidentifiable=True)
    if ident.estimands.get("backdoor") is None:
        raise DataError(f"{estimator}: the declared graph gives no valid backdoor adjustment set for the effect "
                        f"of '{t}' on '{y}'" + (f" (unobserved: {', '.join(hidden)})" if hidden else ""))
    if proceed_when_unidentifiable and hidden:
        # DoWhy's identification with those nodes present decides whether they matter
        with quiet():
            full = CausalModel(frame[keep], t, y, graph=_expanded(graph_networkx(graph, estimator), columns))
            if full.identify_effect(proceed_when_unidentifiable=True).estimands.get("backdoor") is None:
                warnings_.append(f"not identified: the declared graph has unobserved confounding through "
                                 f"{', '.join(hidden)}; adjusted for the observed variables anyway "
                                 "(proceed_when_unidentifiable); see the sensitivity analysis")
    chosen = [str(v) for v in in_column_order(ident, keep).get_backdoor_variables()]
    dropped = [v for v in chosen if v in fixed]
    if dropped:
        warnings_.append(f"{', '.join(dropped)} took a single value among this comparison's users, so it "
                         "cannot confound here; the adjustment leaves it out (conditioning on a constant "
                         "changes nothing)")
    return [v for v in chosen if v not in fixed], warnings_


def in_column_order(ident: Any, columns: list[str]) -> Any:
    """DoWhy's identified estimand ``ident`` with its adjustment sets (``backdoor_variables``,
    ``general_adjustment_variables``) listed in the order of ``columns`` (others after, by name);
    returns ``ident``. DoWhy builds them as Python sets, whose order follows ``PYTHONHASHSEED``, and
    its estimators take their regressors in that order, which moved an estimate in its last digits
    from one process to the next."""
    rank = {c: i for i, c in enumerate(columns)}

    def key(v: Any) -> tuple[int, str]:
        return rank.get(str(v), len(rank)), str(v)

    for attr in ("backdoor_variables", "general_adjustment_variables"):
        sets = getattr(ident, attr, None)
        if isinstance(sets, dict):
            for name, variables in sets.items():
                if variables is not None:
                    sets[name] = sorted(variables, key=key)
    return ident
