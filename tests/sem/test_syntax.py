"""Parser and parameter-table tests (fast; no sampling)."""

import math
import re
from pathlib import Path

import pytest

from counterfeed.errors import ModelError
from counterfeed.sem import SEM, SEMModelError, SEMSyntaxError, parse_model, parse_prior

from counterfeed.sem.examples import HS39_MODEL as HS39
from counterfeed.sem.examples import MEDIATION_MODEL as MEDIATION


def test_statements_labels_fixed_and_comments():
    m = parse_model("f =~ 1*x1 + a*x2 + NA*x3 # comment\n y ~ -0.5*f; y ~~ x1\n! another\n")
    f, y, cov = m.statements
    assert (f.lhs, f.op) == ("f", "=~")
    assert [(t.name, t.label, t.fixed, t.free) for t in f.terms] == [
        ("x1", None, 1.0, False), ("x2", "a", None, False), ("x3", None, None, True)]
    assert y.terms[0].fixed == -0.5 and y.line == 2
    assert (cov.op, cov.terms[0].name) == ("~~", "x1")


def test_continuation_lines_and_transforms():
    m = parse_model("f =~ log1p(dwell) +\n   sqrt(x)\n   + z(y)\n  + log(w)")
    assert [t.name for t in m.statements[0].terms] == ["log1p(dwell)", "sqrt(x)", "z(y)",
                                                       "log(w)"]


def test_definitions_parse_arithmetic():
    m = parse_model("y ~ a*x + b*m\nm ~ c*x\nd := (a + b*c) / 2 - -1")
    d = m.definitions[0]
    assert d.name == "d" and d.text == "(a + b*c) / 2 - -1"
    from counterfeed.sem.syntax import eval_expr
    assert eval_expr(d.expr, {"a": 1.0, "b": 2.0, "c": 3.0}) == pytest.approx(4.5)


def test_multiple_lhs():
    m = parse_model("y1 + y2 ~ x")
    assert [s.lhs for s in m.statements] == ["y1", "y2"]


BAD_SYNTAX = [
    ("f =~ ", r"line 1, col 6: expected a variable name after '=~', found end of input"),
    ("f =~ x1 + + x2", r"line 1, col 11: expected a variable name after '\+', found '\+'"),
    ("y ~ a* + x", r"line 1, col 8: expected a variable name after '\*', found '\+'"),
    ("f == x1", r"line 1, col 3: unknown operator '=='"),
    ("x1 x2", r"line 1, col 4: expected an operator \(=~, ~, ~~, :=\) after 'x1', found 'x2'"),
    ("f =~ x1 + x2 x3", r"line 1, col 14: expected '\+' or end of statement, found 'x3'"),
    ("y ~ a*x\nd := a *", r"line 2, col 9: expected a label, number or '\(' after '\*'"),
    ("y ~ a*x\nd := (a", r"line 2, col 8: expected '\)' to close the '\(' at line 2, col 6"),
    ("f =~ x1 @ x2", r"line 1, col 9: unexpected character '@'"),
    ("f =~ foo(x1)", r"line 1, col 6: unknown transform 'foo'; expected one of log, log1p"),
    ("=~ x1", r"line 1, col 1: expected a variable name at the start of a statement, found '=~'"),
    ("f =~ 2", r"line 1, col 6: expected a variable name after '=~', found number '2'"),
    ("f =~ x1\n\ny ~ f + -x", r"line 3, col 10: expected a number after '-', found 'x'"),
    ("f =~ log(x1", r"line 1, col 12: expected '\)' after 'log\(x1'"),
    ("   ", r"the model is empty"),
]


@pytest.mark.parametrize("text,pattern", BAD_SYNTAX)
def test_bad_syntax(text, pattern):
    with pytest.raises(SEMSyntaxError, match=pattern) as exc:
        parse_model(text)
    assert isinstance(exc.value, ModelError)


BAD_MODELS = [
    ("y ~ a*x\nd := a*q", {}, r"line 2, col 8: undefined label 'q' in 'd := a\*q'; known labels: a"),
    ("f =~ x1\ny ~ f", {}, r"latent 'f' has a single indicator 'x1'"),
    ("f =~ x1 + x2", {}, r"not identified: 5 free parameters but only 5 sample moments"
                         r"|not identified"),
    ("f =~ NA*x1 + x2 + x3", {}, r"latent 'f' has no scale"),
    ("y ~ x\ny ~ x", {}, r"parameter 'y~x' is specified twice \(lines 1 and 2\)"),
    ("treatment ~ x", {"exogenous": ["treatment"]}, r"exogenous variable 'treatment' is "
                                                     r"conditioned on"),
    ("y ~ x1 + x2\nx1 ~~ a*x2\nx1 ~~ a*x1", {}, r"equality constraints on covariances"),
    ("y ~ x1 + x2\nz ~ x1*x2", {}, r"label 'x1' is also a variable name"),
    ("y ~ a*x\na := 2*a", {}, r"'a :=' redefines an existing label"),
    ("y ~ a*x", {"priors": {"zz": "normal(0,1)"}}, r"prior for unknown parameter 'zz'"),
    ("y ~ a*x", {"priors": {"a": "normal(0)"}}, r"normal takes 2 argument"),
    ("y ~ a*x", {"priors": {"a": "cauchy(0, 1)"}}, r"unknown prior family 'cauchy'"),
    ("y ~ a*x", {"priors": {"y~~y": "normal(0, 1)"}}, r"a variance needs a positive prior"),
    ("y ~ a*x", {"priors": {"a": "__import__('os')"}}, r"cannot parse prior"),
    ("f =~ x1 + x2 + x3\nf ~ 1", {}, r"latent intercepts are fixed to 0"),
]


@pytest.mark.parametrize("text,kw,pattern", BAD_MODELS)
def test_bad_models(text, kw, pattern):
    with pytest.raises(SEMModelError, match=pattern):
        SEM(text, **kw)


def test_unknown_column_is_reported():
    import pandas as pd

    df = pd.DataFrame({"x1": [1.0, 2, 3, 4, 5], "x2": [2.0, 1, 4, 3, 5], "x3": [1.0, 3, 2, 5, 4]})
    with pytest.raises(SEMModelError, match=r"'x4' is neither a latent variable .* nor a data "
                                            r"column"):
        SEM("f =~ x1 + x2 + x4").stats(df)


def test_mediation_table():
    sem = SEM(MEDIATION, exogenous=["treatment"])
    t = sem.table
    assert t.observed == ["clicks", "dwell", "sessions", "retained"]
    assert t.latents == ["engagement"] and t.exogenous == ["treatment"]
    df = t.to_frame()
    assert list(df.columns) == ["id", "lhs", "op", "rhs", "label", "free", "value", "start",
                                "kind", "prior"]
    first = df[(df.op == "=~") & (df.rhs == "clicks")].iloc[0]
    assert not first.free and first.value == 1.0
    a = df[df.label == "a"].iloc[0]
    assert (a.lhs, a.op, a.rhs, a.kind, bool(a.free)) == ("engagement", "~", "treatment", "exog",
                                                          True)
    assert t.n_free == 14 and t.n_moments == 18
    assert set(df[df.op == ":="].lhs) == {"indirect", "total"}
    # every observed variable has an intercept, every variable a variance
    assert set(df[df.op == "~1"].lhs) == set(t.observed)
    assert set(df[(df.op == "~~") & (df.lhs == df.rhs)].lhs) == set(t.observed + t.latents)
    text = str(t)
    assert "14 free parameters, 18 moments, df = 4" in text and "indirect" in text


def test_hs39_table_defaults_and_std_lv():
    t = SEM(HS39).table
    df = t.to_frame()
    assert t.n_free == 30  # 21 + 9 intercepts
    covs = df[df.kind == "covariance"]
    assert set(zip(covs.lhs, covs.rhs)) == {("visual", "textual"), ("visual", "speed"),
                                            ("textual", "speed")}
    t2 = SEM(HS39, std_lv=True).table
    df2 = t2.to_frame()
    assert df2[df2.op == "=~"].free.all()
    lv_var = df2[(df2.kind == "variance") & df2.lhs.isin(t2.latents)]
    assert (~lv_var.free).all() and (lv_var.value == 1).all()
    first = df2[(df2.lhs == "visual") & (df2.rhs == "x1")].iloc[0]
    assert first.prior == "halfnormal(1)"


def test_shared_labels_share_an_id_and_prior_overrides():
    sem = SEM("y ~ a*x1 + a*x2", priors={"a": "normal(0, 2)", "y ~~ y": "exponential(1)"})
    df = sem.table.to_frame()
    ids = df[df.label == "a"].id.unique()
    assert len(ids) == 1
    assert (df[df.label == "a"].prior == "normal(0, 2) [orig]").all()
    assert df[(df.lhs == "y") & (df.op == "~~")].prior.iloc[0] == "exponential(1) [orig]"


@pytest.mark.parametrize("text,family,args", [
    ("normal(0, 1)", "normal", (0.0, 1.0)), ("halfnormal(2.5)", "halfnormal", (2.5,)),
    ("lognormal(-1, .5)", "lognormal", (-1.0, 0.5)), ("exponential(1e-1)", "exponential", (0.1,)),
    ("uniform(-1, 1)", "uniform", (-1.0, 1.0)), (" beta( 2 ,2 ) ", "beta", (2.0, 2.0)),
])
def test_prior_grammar(text, family, args):
    p = parse_prior(text)
    assert (p.family, p.args) == (family, args)


def test_prior_scaling_is_the_prior_of_theta_over_f():
    p = parse_prior("lognormal(0, 1)")
    fam, (mu, s) = p.scaled(math.e)
    assert fam == "lognormal" and mu == pytest.approx(-1.0) and s == 1.0
    assert parse_prior("normal(2, 4)").scaled(2.0) == ("normal", (1.0, 2.0))
    assert re.match(r"uniform", str(parse_prior("uniform(0, 3)")))


CASE_DIR = Path(__file__).parent / "data"


def test_sem_define_continuation():
    """A ':=' continued on a line that starts with '+' (handed case) parses to c + a*b."""
    from counterfeed.sem.syntax import eval_expr

    text = (CASE_DIR / "sem-define-continuation" / "model.sem").read_text()
    sem = SEM(text)
    total = sem.parsed.definitions[1]
    assert total.name == "total" and total.text == "c + a*b"
    assert eval_expr(total.expr, {"a": 2.0, "b": 3.0, "c": 5.0}) == 11.0
    assert [r.kind for r in sem.table.rows if r.op == ":="] == ["defined", "defined"]


@pytest.mark.parametrize("text, expected", [
    ("d := a\n  - b", ("-", "a", "b")),
    ("d := a\n  * b", ("*", "a", "b")),
    ("d := a\n\n  / b", ("/", "a", "b")),
    ("d := (a\n  + b)", ("+", "a", "b")),
    ("d :=\n  a + b", ("+", "a", "b")),
])
def test_definition_continues_on_any_operator(text, expected):
    d = parse_model("y ~ a*x + b*m\n" + text).definitions[0]
    assert (d.expr[0], d.expr[1][1], d.expr[2][1]) == expected


@pytest.mark.parametrize("text, lhs, op, names", [
    ("y1\n  + y2 ~ x", ["y1", "y2"], "~", ["x"]),
    ("y\n  ~ x1\n  + x2", ["y"], "~", ["x1", "x2"]),
    ("f =~\n x1 +\n x2\n\n + x3", ["f"], "=~", ["x1", "x2", "x3"]),
    ("x1 ~~ x2\n  + x3", ["x1"], "~~", ["x2", "x3"]),
    ("y ~ 0*1\n + x", ["y"], "~", ["1", "x"]),
])
def test_every_statement_kind_continues(text, lhs, op, names):
    st = parse_model(text).statements
    assert [s.lhs for s in st] == lhs and {s.op for s in st} == {op}
    assert [t.name for t in st[0].terms] == names
