"""Parser for the lavaan-like SEM model syntax.

Statements (one per line, or several separated by ``;``)::

    f =~ x1 + 0.8*x2 + NA*x3     # measurement: latent f measured by x1..x3
    y ~ a*f + c*treatment        # regression, labels a and c
    y ~ 1                        # intercept (free; write it to label it, or fix it: y ~ 0*1)
    x1 ~~ x2                     # residual covariance; x1 ~~ x1 is a variance
    ind := a*b                   # defined quantity (arithmetic over labels and numbers)

Modifiers before ``*``: a label (``a*x``), a fixed value (``1*x``, ``-0.5*x``) or ``NA`` (free).
Any statement (``=~``, ``~``, ``~~``, ``:=``) continues on the next line when the line ends with an
operator or the next line starts with one (``+``; in a ``:=`` also ``-``, ``*``, ``/``; the
statement's own operator). Variable names may be wrapped in a data transform: ``log(x)``, ``log1p(x)``,
``sqrt(x)``, ``z(x)`` (standardize); the column is transformed before fitting.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from counterfeed.sem.errors import SEMSyntaxError

__all__ = ["Term", "Statement", "Definition", "ParsedModel", "parse_model", "TRANSFORMS",
           "Expr", "parse_expression"]

TRANSFORMS = ("log", "log1p", "sqrt", "z")
_EXPR_OPS = ("+", "-", "*", "/")  # a line starting with one of these continues a definition
_OPERATORS = ("=~", "~~", ":=", "~", "*", "+", "-", "/", "(", ")")
_TOKEN_RE = re.compile(
    r"(?P<ws>[ \t\r]+)|(?P<comment>[#!][^\n]*)|(?P<nl>\n)|(?P<semi>;)"
    r"|(?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_.]*)"
    r"|(?P<op>=~|~~|:=|~|\*|\+|-|/|\(|\))"
)


@dataclass(frozen=True)
class Token:
    kind: str  # name, num, op, nl, semi, eof
    text: str
    line: int
    col: int

    def describe(self) -> str:
        if self.kind == "eof":
            return "end of input"
        if self.kind in ("nl", "semi"):
            return "end of statement"
        if self.kind == "num":
            return f"number '{self.text}'"
        return f"'{self.text}'"


def _tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    line, line_start, pos = 1, 0, 0
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        col = pos - line_start + 1
        if m is None:
            ch = text[pos]
            if ch == "=":
                nxt = text[pos:pos + 2]
                raise SEMSyntaxError(f"unknown operator '{nxt}'; expected one of =~, ~, ~~, :=",
                                     line=line, col=col, token=nxt)
            raise SEMSyntaxError(f"unexpected character '{ch}'", line=line, col=col, token=ch)
        kind = m.lastgroup
        if kind == "nl":
            tokens.append(Token("nl", "\n", line, col))
            line += 1
            line_start = m.end()
        elif kind not in ("ws", "comment"):
            tokens.append(Token(kind, m.group(), line, col))
        pos = m.end()
    col = pos - line_start + 1
    tokens.append(Token("eof", "", line, col))
    return tokens


@dataclass(frozen=True)
class Term:
    """One right-hand-side term: ``modifier*name``; ``name == "1"`` means an intercept."""

    name: str
    label: str | None = None
    fixed: float | None = None
    free: bool = False  # NA* modifier
    line: int = 0
    col: int = 0


@dataclass(frozen=True)
class Statement:
    lhs: str
    op: str  # "=~", "~", "~~"
    terms: tuple[Term, ...]
    line: int
    col: int


# Expression AST: ("num", value) | ("name", label, line, col) | (op, left, right) | ("neg", x)
Expr = tuple


@dataclass(frozen=True)
class Definition:
    name: str
    expr: Expr
    text: str
    line: int
    col: int


@dataclass
class ParsedModel:
    statements: list[Statement] = field(default_factory=list)
    definitions: list[Definition] = field(default_factory=list)
    text: str = ""


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0

    # -- token helpers
    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def _next(self) -> Token:
        t = self.tokens[self.i]
        self.i += 1
        return t

    def _skip_newlines(self) -> None:
        while self.tok.kind == "nl":
            self.i += 1

    def _err(self, message: str, tok: Token) -> SEMSyntaxError:
        return SEMSyntaxError(message, line=tok.line, col=tok.col, token=tok.text)

    def _is_op(self, *ops: str) -> bool:
        return self.tok.kind == "op" and self.tok.text in ops

    def _continues(self, ops: tuple[str, ...] = ("+",)) -> bool:
        """At a newline: does the next non-empty line start with one of ``ops`` (continuation)?"""
        j = self.i
        while self.tokens[j].kind == "nl":
            j += 1
        t = self.tokens[j]
        return t.kind == "op" and t.text in ops

    def _join_continuation(self, ops: tuple[str, ...] = ("+",)) -> None:
        """Skip the newlines before a continuation line (one starting with an operator in ops)."""
        if self.tok.kind == "nl" and self._continues(ops):
            self._skip_newlines()

    # -- grammar
    def parse(self) -> ParsedModel:
        model = ParsedModel(text=self.text)
        while True:
            while self.tok.kind in ("nl", "semi"):
                self.i += 1
            if self.tok.kind == "eof":
                break
            self._statement(model)
            t = self.tok
            if t.kind not in ("nl", "semi", "eof"):
                raise self._err(f"expected '+' or end of statement, found {t.describe()}", t)
        return model

    def _variable(self, after: str) -> tuple[str, Token]:
        self._skip_newlines()
        t = self.tok
        if t.kind != "name":
            raise self._err(f"expected a variable name after '{after}', found {t.describe()}", t)
        self._next()
        if self._is_op("("):
            if t.text not in TRANSFORMS:
                raise self._err(f"unknown transform '{t.text}'; expected one of "
                                + ", ".join(TRANSFORMS), t)
            self._next()
            inner = self.tok
            if inner.kind != "name":
                raise self._err(f"expected a column name inside '{t.text}(...)', found "
                                f"{inner.describe()}", inner)
            self._next()
            if not self._is_op(")"):
                raise self._err(f"expected ')' after '{t.text}({inner.text}', found "
                                f"{self.tok.describe()}", self.tok)
            self._next()
            return f"{t.text}({inner.text})", t
        return t.text, t

    def _statement(self, model: ParsedModel) -> None:
        first = self.tok
        if first.kind != "name":
            raise self._err(f"expected a variable name at the start of a statement, found "
                            f"{first.describe()}", first)
        lhs_list = [self._variable("start of statement")[0]]
        self._join_continuation()
        while self._is_op("+"):
            self._next()
            lhs_list.append(self._variable("+")[0])
            self._join_continuation()
        self._join_continuation(("=~", "~", "~~", ":="))
        op = self.tok
        if not (op.kind == "op" and op.text in ("=~", "~", "~~", ":=")):
            raise self._err(f"expected an operator (=~, ~, ~~, :=) after '{lhs_list[-1]}', "
                            f"found {op.describe()}", op)
        self._next()
        if op.text == ":=":
            if len(lhs_list) > 1 or "(" in lhs_list[0]:
                raise self._err("the left of ':=' must be a single plain name", first)
            self._skip_newlines()
            start = self.tok
            expr = self._expr(":=")
            end = self.tok
            src = self._source_between(start, end)
            model.definitions.append(Definition(lhs_list[0], expr, src, first.line, first.col))
            return
        terms = [self._term(op.text)]
        while True:
            self._join_continuation()
            if not self._is_op("+"):
                break
            plus = self._next()
            terms.append(self._term(plus.text))
        for lhs in lhs_list:
            model.statements.append(Statement(lhs, op.text, tuple(terms), first.line, first.col))

    def _source_between(self, start: Token, end: Token) -> str:
        lines = self.text.split("\n")
        if start.line == end.line or end.kind == "eof" and start.line == len(lines):
            line = lines[start.line - 1]
            stop = end.col - 1 if end.line == start.line else len(line)
            return line[start.col - 1:stop].strip()
        parts = [lines[start.line - 1][start.col - 1:]]
        parts += lines[start.line:end.line - 1]
        parts.append(lines[end.line - 1][:end.col - 1] if end.line <= len(lines) else "")
        return " ".join(p.strip() for p in parts if p.strip())

    def _term(self, after: str) -> Term:
        self._skip_newlines()
        t = self.tok
        label, fixed, free = None, None, False
        neg = False
        if self._is_op("-"):
            neg = True
            self._next()
            t2 = self.tok
            if t2.kind != "num":
                raise self._err(f"expected a number after '-', found {t2.describe()}", t2)
        if self.tok.kind == "num":
            num = self._next()
            value = float(num.text) * (-1 if neg else 1)
            if self._is_op("*"):
                self._next()
                fixed = value
                if self.tok.kind == "num" and self.tok.text in ("1", "1.0"):
                    one = self._next()  # fixed intercept: y ~ 0*1
                    return Term("1", fixed=fixed, line=one.line, col=one.col)
            elif after in ("~", "+") and value == 1 and not neg:
                return Term("1", line=num.line, col=num.col)
            else:
                raise self._err(f"expected a variable name after '{after}', found "
                                f"{num.describe()}", num)
            name, nt = self._variable("*")
            return Term(name, fixed=fixed, line=nt.line, col=nt.col)
        if t.kind == "name":
            nxt = self.tokens[self.i + 1]
            if nxt.kind == "op" and nxt.text == "*":
                self._next()
                self._next()
                if t.text == "NA":
                    free = True
                else:
                    label = t.text
                if self.tok.kind == "num" and self.tok.text in ("1", "1.0"):
                    one = self._next()
                    return Term("1", label=label, free=free, line=one.line, col=one.col)
                name, nt = self._variable("*")
                return Term(name, label=label, free=free, line=nt.line, col=nt.col)
        name, nt = self._variable(after)
        return Term(name, line=nt.line, col=nt.col)

    # expressions for :=
    def _expr(self, after: str) -> Expr:
        left = self._product(after)
        self._join_continuation(_EXPR_OPS)
        while self._is_op("+", "-"):
            op = self._next()
            left = (op.text, left, self._product(op.text))
            self._join_continuation(_EXPR_OPS)
        return left

    def _product(self, after: str) -> Expr:
        left = self._unary(after)
        self._join_continuation(_EXPR_OPS)
        while self._is_op("*", "/"):
            op = self._next()
            left = (op.text, left, self._unary(op.text))
            self._join_continuation(_EXPR_OPS)
        return left

    def _unary(self, after: str) -> Expr:
        self._skip_newlines() if after in ("+", "-", "*", "/", ":=") else None
        t = self.tok
        if self._is_op("-"):
            self._next()
            return ("neg", self._unary("-"))
        if self._is_op("("):
            self._next()
            inner = self._expr("(")
            self._skip_newlines()
            if not self._is_op(")"):
                raise self._err(f"expected ')' to close the '(' at line {t.line}, col {t.col}, "
                                f"found {self.tok.describe()}", self.tok)
            self._next()
            return inner
        if t.kind == "num":
            self._next()
            return ("num", float(t.text))
        if t.kind == "name":
            self._next()
            return ("name", t.text, t.line, t.col)
        raise self._err(f"expected a label, number or '(' after '{after}', found "
                        f"{t.describe()}", t)


def parse_model(text: str) -> ParsedModel:
    """Parse model text into statements and definitions (syntax only; see :class:`SEM`)."""
    if not text.strip():
        raise SEMSyntaxError("the model is empty", line=1, col=1)
    return _Parser(text).parse()


def parse_expression(text: str) -> Expr:
    """Parse one arithmetic expression (used by tests and by the prior grammar)."""
    p = _Parser(text)
    e = p._expr("start")
    if p.tok.kind != "eof":
        raise p._err(f"unexpected {p.tok.describe()}", p.tok)
    return e


def expr_names(expr: Expr) -> list[tuple[str, int, int]]:
    """All (name, line, col) references in an expression."""
    if expr[0] == "name":
        return [(expr[1], expr[2], expr[3])]
    if expr[0] == "num":
        return []
    if expr[0] == "neg":
        return expr_names(expr[1])
    return expr_names(expr[1]) + expr_names(expr[2])


def eval_expr(expr: Expr, env: dict):
    """Evaluate an expression over ``env`` (numbers, arrays or tensors: only + - * / are used)."""
    kind = expr[0]
    if kind == "num":
        return expr[1]
    if kind == "name":
        return env[expr[1]]
    if kind == "neg":
        return -eval_expr(expr[1], env)
    a, b = eval_expr(expr[1], env), eval_expr(expr[2], env)
    if kind == "+":
        return a + b
    if kind == "-":
        return a - b
    if kind == "*":
        return a * b
    return a / b
