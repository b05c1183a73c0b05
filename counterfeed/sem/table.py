"""The parameter table: every parameter of the model, free or fixed, as lavaan lists them."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, asdict
from itertools import combinations

from counterfeed.sem.errors import SEMModelError
from counterfeed.sem.priors import Prior, parse_prior
from counterfeed.sem.syntax import ParsedModel, expr_names

__all__ = ["ParamRow", "ParameterTable", "build_table", "observed_variables", "DEFAULT_PRIORS"]

#: Default priors, on the standardized scale (each observed variable divided by its SD, each latent
#: on its marker indicator's scale, or unit variance with std_lv). See docs/sem.md.
DEFAULT_PRIORS = {
    "loading": Prior("normal", (0.0, 1.0)),
    "loading_first_std_lv": Prior("halfnormal", (1.0,)),
    "regression": Prior("normal", (0.0, 1.0)),
    "exog": Prior("normal", (0.0, 1.0)),
    "variance": Prior("halfnormal", (1.0,)),
    "covariance": Prior("beta", (2.0, 2.0)),
    "intercept": Prior("normal", (0.0, 1.0)),
}


@dataclass
class ParamRow:
    lhs: str
    op: str  # =~  ~  ~~  ~1  :=
    rhs: str
    kind: str  # loading regression exog variance covariance intercept defined
    label: str = ""
    free: bool = True
    value: float = math.nan  # fixed value (original units) when not free
    start: float = math.nan  # start value on the standardized scale
    id: int = 0  # free parameter number (shared by rows with the same label); 0 = fixed
    prior: str = ""
    user: bool = False
    line: int = 0

    @property
    def name(self) -> str:
        """Label if any, else ``lhs op rhs`` without spaces (``visual=~x2``, ``y~1``)."""
        return self.label or self.key

    @property
    def key(self) -> str:
        return f"{self.lhs}{self.op}{self.rhs}"


@dataclass
class ParameterTable:
    rows: list[ParamRow]
    observed: list[str]  # endogenous (modelled) observed variables, in v order
    latents: list[str]
    exogenous: list[str]  # conditioned-on observed regressors (e.g. treatment arms)
    std_lv: bool = False
    definitions: list = field(default_factory=list)

    def free_rows(self) -> list[ParamRow]:
        return [r for r in self.rows if r.free and r.kind != "defined"]

    def param_rows(self) -> list[ParamRow]:
        return [r for r in self.rows if r.kind != "defined"]

    @property
    def n_free(self) -> int:
        return len({r.id for r in self.free_rows()})

    @property
    def n_moments(self) -> int:
        p, q = len(self.observed), len(self.exogenous)
        return p * (p + 1) // 2 + p * (1 + q)

    def to_frame(self):
        import pandas as pd

        cols = ["id", "lhs", "op", "rhs", "label", "free", "value", "start", "kind", "prior"]
        return pd.DataFrame([{c: asdict(r)[c] for c in cols} for r in self.rows], columns=cols)

    def signature(self) -> tuple:
        """Hashable description of the structure (for the compiled-model cache)."""
        return (tuple((r.lhs, r.op, r.rhs, r.kind, r.label, r.free,
                       None if math.isnan(r.value) else r.value, r.id, r.prior) for r in self.rows),
                tuple(self.observed), tuple(self.latents), tuple(self.exogenous), self.std_lv)

    def __str__(self) -> str:
        head = (f"SEM parameter table: {len(self.observed)} observed, {len(self.latents)} latent, "
                f"{len(self.exogenous)} exogenous; {self.n_free} free parameters, "
                f"{self.n_moments} moments, df = {self.n_moments - self.n_free}")
        lines = [head, f"{'id':>3} {'lhs':<14}{'op':<4}{'rhs':<16}{'label':<8}{'free':<6}"
                       f"{'value':>7} {'start':>6}  {'prior'}"]
        for r in self.rows:
            val = "" if math.isnan(r.value) else f"{r.value:g}"
            start = "" if math.isnan(r.start) else f"{r.start:g}"
            free = "free" if r.free else ("" if r.kind == "defined" else "fixed")
            rid = str(r.id) if r.id else ""
            lines.append(f"{rid:>3} {r.lhs:<14}{r.op:<4}{r.rhs:<16}{r.label:<8}{free:<6}"
                         f"{val:>7} {start:>6}  {r.prior}")
        return "\n".join(lines)


def _variable_names(parsed: ParsedModel) -> list[str]:
    """Every variable the statements name (latent or observed), in order of first appearance."""
    names: list[str] = []
    for s in parsed.statements:
        for n in [s.lhs] + [t.name for t in s.terms]:
            if n != "1" and n not in names:
                names.append(n)
    return names


def _latents(parsed: ParsedModel) -> list[str]:
    return list(dict.fromkeys(s.lhs for s in parsed.statements if s.op == "=~"))


def observed_variables(parsed: ParsedModel) -> list[str]:
    """The model's variables that are not latent (``=~`` left-hand sides), in order of appearance:
    the data columns (possibly transformed, ``log(x)``) the model reads."""
    latents = set(_latents(parsed))
    return [n for n in _variable_names(parsed) if n not in latents]


def build_table(parsed: ParsedModel, *, exogenous=(), std_lv: bool = False,
                priors: dict | None = None) -> ParameterTable:
    """Build and check the parameter table (lavaan defaults; see docs/sem.md)."""
    exogenous = list(dict.fromkeys(exogenous or ()))
    latents = _latents(parsed)
    names_in_order = _variable_names(parsed)
    for lv in latents:
        if "(" in lv:
            raise SEMModelError(f"latent '{lv}' cannot have a transform; transforms apply to data "
                                f"columns")
    dvs = {s.lhs for s in parsed.statements if s.op == "~"}
    indicators = {t.name for s in parsed.statements if s.op == "=~" for t in s.terms}
    for x in exogenous:
        if x in latents:
            raise SEMModelError(f"exogenous variable '{x}' is also a latent variable")
        if x in dvs or x in indicators:
            raise SEMModelError(f"exogenous variable '{x}' is conditioned on, so it cannot be a "
                                f"dependent variable or an indicator")
        for s in parsed.statements:
            if s.op == "~~" and (s.lhs == x or any(t.name == x for t in s.terms)):
                raise SEMModelError(f"exogenous variable '{x}' is conditioned on, so it cannot "
                                    f"appear in a '~~' statement (line {s.line})")
    exogenous = [x for x in exogenous if x in names_in_order] if names_in_order else exogenous
    observed = [n for n in names_in_order if n not in latents and n not in exogenous]
    rows: list[ParamRow] = []
    seen: dict[tuple, int] = {}

    def add(row: ParamRow) -> None:
        key = (row.lhs, row.op, row.rhs)
        if row.op == "~~":
            key = (min(row.lhs, row.rhs), "~~", max(row.lhs, row.rhs))
        if key in seen:
            raise SEMModelError(f"parameter '{row.key}' is specified twice (lines {seen[key]} and "
                                f"{row.line})")
        seen[key] = row.line
        rows.append(row)

    first_indicator: dict[str, str] = {}
    for s in parsed.statements:
        for t in s.terms:
            if s.op == "=~":
                if t.name == "1":
                    raise SEMModelError(f"line {s.line}: '=~' needs indicator names, not '1'")
                first = s.lhs not in first_indicator
                first_indicator.setdefault(s.lhs, t.name)
                row = ParamRow(s.lhs, "=~", t.name, "loading", label=t.label or "", user=True,
                               line=s.line)
                if t.fixed is not None:
                    row.free, row.value = False, t.fixed
                elif first and not std_lv and not t.free:
                    row.free, row.value = False, 1.0
                add(row)
            elif s.op == "~":
                if t.name == "1":
                    if s.lhs in latents:
                        raise SEMModelError(f"line {s.line}: latent intercepts are fixed to 0; "
                                            f"'{s.lhs} ~ 1' is not supported")
                    row = ParamRow(s.lhs, "~1", "", "intercept", label=t.label or "",
                                   user=True, line=s.line)
                    if t.fixed is not None:
                        row.free, row.value = False, t.fixed
                    add(row)
                    continue
                kind = "exog" if t.name in exogenous else "regression"
                row = ParamRow(s.lhs, "~", t.name, kind, label=t.label or "", user=True,
                               line=s.line)
                if t.fixed is not None:
                    row.free, row.value = False, t.fixed
                add(row)
            else:  # ~~
                if t.name == "1":
                    raise SEMModelError(f"line {s.line}: '~~' needs variable names, not '1'")
                kind = "variance" if t.name == s.lhs else "covariance"
                row = ParamRow(s.lhs, "~~", t.name, kind, label=t.label or "", user=True,
                               line=s.line)
                if t.fixed is not None:
                    row.free, row.value = False, t.fixed
                    if kind == "variance" and t.fixed < 0:
                        raise SEMModelError(f"line {s.line}: variance of '{s.lhs}' fixed to a "
                                            f"negative value")
                add(row)
    # defaults: variances, covariances of exogenous latents, intercepts
    endo_lv = {lv for lv in latents if lv in dvs}
    for v in observed + latents:
        key = (v, "~~", v)
        if key not in seen:
            row = ParamRow(v, "~~", v, "variance")
            if v in latents and std_lv:
                row.free, row.value = False, 1.0
            add(row)
    exo_lv = [lv for lv in latents if lv not in endo_lv]
    # observed variables that only ever predict: modelled as random covariates (free covariances)
    predictors = {t.name for s in parsed.statements if s.op == "~" for t in s.terms}
    exo_ov = [v for v in observed if v in predictors and v not in dvs and v not in indicators]
    for group in (exo_lv, exo_ov):
        for a, b in combinations(group, 2):
            if (min(a, b), "~~", max(a, b)) not in seen:
                add(ParamRow(a, "~~", b, "covariance"))
    for v in observed:
        if (v, "~1", "") not in seen:
            add(ParamRow(v, "~1", "", "intercept"))
    _order(rows)
    _assign_ids_and_starts(rows, std_lv, latents, first_indicator)
    table = ParameterTable(rows, observed, latents, exogenous, std_lv)
    _add_definitions(table, parsed, names_in_order)
    _apply_priors(table, priors or {}, first_indicator)
    _check_identification(table, first_indicator)
    return table


_KIND_ORDER = {"loading": 0, "regression": 1, "exog": 1, "covariance": 2, "variance": 3,
               "intercept": 4}


def _order(rows: list[ParamRow]) -> None:
    rows.sort(key=lambda r: _KIND_ORDER[r.kind])


def _assign_ids_and_starts(rows, std_lv, latents, first_indicator) -> None:
    by_label: dict[str, ParamRow] = {}
    next_id = 1
    for r in rows:
        if r.label:
            if r.label in by_label:
                other = by_label[r.label]
                if other.free != r.free:
                    raise SEMModelError(f"label '{r.label}' is used for both a fixed and a free "
                                        f"parameter ({other.key} and {r.key})")
                if "covariance" in (other.kind, r.kind):
                    raise SEMModelError(f"label '{r.label}' is shared by {other.key} and {r.key}: "
                                        f"equality constraints on covariances are not supported")
                if not r.free and other.value != r.value:
                    raise SEMModelError(f"label '{r.label}' has two different fixed values")
                r.id = other.id
                r.start = other.start
                continue
            by_label[r.label] = r
        if r.free:
            r.id = next_id
            next_id += 1
            r.start = {"loading": 0.7 if std_lv else 1.0, "regression": 0.0, "exog": 0.0,
                       "variance": 0.5, "covariance": 0.0, "intercept": 0.01}[r.kind]


def _add_definitions(table: ParameterTable, parsed: ParsedModel, names: list[str]) -> None:
    labels = {r.label for r in table.rows if r.label}
    for lab in labels:
        if lab in names:
            raise SEMModelError(f"label '{lab}' is also a variable name; use a different label")
    known = set(labels)
    for d in parsed.definitions:
        if d.name in known or d.name in names:
            raise SEMModelError(f"line {d.line}: '{d.name} :=' redefines an existing label or "
                                f"variable")
        for ref, line, col in expr_names(d.expr):
            if ref not in known:
                hint = ", ".join(sorted(known)) or "none (write e.g. 'y ~ a*x' to label a path)"
                raise SEMModelError(f"line {line}, col {col}: undefined label '{ref}' in "
                                    f"'{d.name} := {d.text}'; known labels: {hint}")
        known.add(d.name)
        table.definitions.append(d)
        table.rows.append(ParamRow(d.name, ":=", d.text, "defined", label=d.name, free=False,
                                   user=True, line=d.line))


def _apply_priors(table: ParameterTable, priors: dict, first_indicator) -> None:
    rows = table.param_rows()
    by_name: dict[str, list[ParamRow]] = {}
    for r in rows:
        by_name.setdefault(r.key, []).append(r)
        if r.label:
            by_name.setdefault(r.label, []).append(r)
    overrides: dict[int, Prior] = {}
    for key, spec in priors.items():
        k = str(key).replace(" ", "")
        if k not in by_name:
            raise SEMModelError(f"prior for unknown parameter '{key}'; parameters are: "
                                + ", ".join(dict.fromkeys(r.name for r in rows if r.free)))
        prior = parse_prior(spec, where=f"prior for '{key}'")
        for r in by_name[k]:
            if not r.free:
                raise SEMModelError(f"prior for '{key}': parameter {r.key} is fixed, not free")
            if r.kind == "covariance" and prior.family not in ("beta", "uniform"):
                raise SEMModelError(f"prior for '{key}': covariances take a prior on the "
                                    f"correlation: beta(a, b) on (r+1)/2 or uniform(lo, hi) within "
                                    f"[-1, 1]")
            if r.kind == "covariance" and prior.family == "uniform" and (
                    prior.args[0] < -1 or prior.args[1] > 1):
                raise SEMModelError(f"prior for '{key}': a correlation prior must lie in [-1, 1]")
            if r.kind == "variance" and not prior.positive:
                raise SEMModelError(f"prior for '{key}': a variance needs a positive prior "
                                    f"(halfnormal, lognormal, exponential, uniform(0+, b))")
            if r.kind != "covariance" and prior.family == "beta":
                raise SEMModelError(f"prior for '{key}': beta priors are only for covariances")
            overrides[r.id] = prior
    for r in rows:
        if not r.free:
            continue
        if r.id in overrides:
            p = overrides[r.id]
            unit = "" if r.kind in ("intercept", "covariance") else " [orig]"
            r.prior = f"{p}{unit}"
            continue
        if r.kind == "loading" and table.std_lv and first_indicator.get(r.lhs) == r.rhs:
            r.prior = str(DEFAULT_PRIORS["loading_first_std_lv"])
        else:
            r.prior = str(DEFAULT_PRIORS[r.kind])
    table.prior_overrides = overrides  # type: ignore[attr-defined]


def _check_identification(table: ParameterTable, first_indicator) -> None:
    rows = table.param_rows()
    for lv in table.latents:
        loads = [r for r in rows if r.kind == "loading" and r.lhs == lv]
        var = next(r for r in rows if r.kind == "variance" and r.lhs == lv)
        if all(r.free for r in loads) and var.free:
            raise SEMModelError(f"latent '{lv}' has no scale: fix one loading (1*x) or its "
                                f"variance ({lv} ~~ 1*{lv}), or use std_lv=True")
        if len(loads) == 1 and loads[0].rhs in table.observed:
            ind = loads[0].rhs
            res = next(r for r in rows if r.kind == "variance" and r.lhs == ind)
            if res.free:
                raise SEMModelError(f"latent '{lv}' has a single indicator '{ind}' and is not "
                                    f"identified; fix the residual variance ({ind} ~~ 0*{ind}) "
                                    f"or add indicators")
    if table.n_free > table.n_moments:
        raise SEMModelError(f"model is not identified: {table.n_free} free parameters but only "
                            f"{table.n_moments} sample moments ({len(table.observed)} observed "
                            f"variables, {len(table.exogenous)} exogenous)")
    if not table.observed:
        raise SEMModelError("model has no observed variables to fit")
