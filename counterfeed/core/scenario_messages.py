"""From a pydantic ``ValidationError`` to the message a user reads.

Each problem is located by its field path (``experiment.arms.treatment.recommender``), the line
of that field (or of its closest ancestor) in the scenario file, and a short sentence. A document
with several problems lists them all, one per line, so a hint on a later one is never hidden.
Fields set from the command line (``--set FIELD=VALUE``) are attributed to ``--set``, not to a
line of the file.
"""

from __future__ import annotations

import difflib
import math
import re
import typing
from dataclasses import dataclass
from typing import Any, Iterable

from pydantic import BaseModel, ValidationError

from counterfeed.core._yaml import join_path
from counterfeed.errors import ScenarioError

__all__ = ["validation_message", "Problem", "SET_ORIGIN", "line_of", "from_set", "kind_of"]

#: what a problem in a ``--set`` override names instead of the file
SET_ORIGIN = "--set"

# Location parts pydantic adds for validators and union branches; they are not field names.
_BRANCH_TAGS = ("str", "MetricSpec", "constrained-str")


def _is_tag(part: Any) -> bool:
    return isinstance(part, str) and (part.startswith(("function-", "mechanism=")) or part in _BRANCH_TAGS)


@dataclass(frozen=True)
class Problem:
    """One located problem of a document."""

    path: str
    message: str


def kind_of(v: Any) -> str:
    """``'a mapping'``, ``'a list'``, ... for messages about the wrong kind of value."""
    return {dict: "a mapping", list: "a list", str: "a string", int: "an integer", float: "a number",
            bool: "a boolean", type(None): "nothing"}.get(type(v), type(v).__name__)


def line_of(lines: dict[str, int], path: str) -> int | None:
    """Line of ``path`` (dotted) or of its closest ancestor present in ``lines``."""
    probe = path
    while probe:
        if probe in lines:
            return lines[probe]
        parent = re.sub(r"(\.[^.\[\]]+|\[\d+\])$", "", probe)
        if parent == probe:
            break
        probe = parent
    return None


def from_set(path: str, overridden: Iterable[str]) -> bool:
    """Whether ``path`` is, contains or lies inside a field set by ``--set``."""
    for o in overridden:
        if path == o or path.startswith((o + ".", o + "[")) or o.startswith((path + ".", path + "[")):
            return True
    return False


def _tagged_member(tp: Any, tag: str) -> Any:
    """The member of a (possibly optional, annotated) union whose pydantic ``Tag`` is ``tag``; None if none."""
    for arg in typing.get_args(tp):
        if typing.get_origin(arg) is typing.Annotated:
            base, *meta = typing.get_args(arg)
            if any(getattr(m, "tag", None) == tag for m in meta):
                return base
        found = _tagged_member(arg, tag) if typing.get_args(arg) else None
        if found is not None:
            return found
    return None


def _model_at(root: type[BaseModel] | None, loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The schema model that owns the field at ``loc``, walking from ``root``."""
    current: Any = root
    for part in loc:
        if current is None:
            return None
        if _is_tag(part):  # a discriminated union's branch (e.g. ``mechanism=selection``): take that member
            current = _tagged_member(current, str(part)) or current  # validator wrappers are no member
            continue
        if isinstance(current, type) and issubclass(current, BaseModel):
            f = current.model_fields.get(str(part))
            if f is None:
                return None
            current = f.annotation
            continue
        current = _inner_model(current, keep_plain=True)  # dict[str, X] / list[X] / X | None -> X
    while current is not None and not (isinstance(current, type) and issubclass(current, BaseModel)):
        current = _inner_model(current, keep_plain=False)
    return current


def _inner_model(tp: Any, *, keep_plain: bool) -> Any:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
    if models:
        return models[-1]
    return (args[-1] if args else None) if keep_plain else None


def _problem(err: dict[str, Any], root: type[BaseModel] | None, model: type[BaseModel] | None) -> Problem:
    loc = tuple(p for p in err.get("loc", ()) if not _is_tag(p))
    path = ""
    for part in loc:
        path = join_path(path, part)
    typ = err.get("type", "")
    msg = err.get("msg", "invalid value")
    if typ == "extra_forbidden":
        bad = str(loc[-1]) if loc else "?"
        raw = tuple(err.get("loc", ()))
        owner = model if model is not None and len(loc) <= 1 else _model_at(root, raw[:-1])
        allowed = list(owner.model_fields) if owner is not None else []
        close = difflib.get_close_matches(bad, allowed, n=1, cutoff=0.6) if allowed else []
        hint = f"; did you mean '{close[0]}'?" if close else (
            f"; expected one of: {', '.join(allowed)}" if allowed else "")
        msg = f"unknown field '{bad}'{hint}"
    elif typ == "missing":
        msg = "required field is missing"
    elif typ in ("model_type", "dataclass_type"):  # pydantic names the class: "...instance of ExecutionSpec"
        got = err.get("input")
        shown = kind_of(got) if isinstance(got, (dict, list)) else _shown(got)
        msg = f"expected a mapping{_example(_model_at(root, tuple(err.get('loc', ()))), err)} (got {shown})"
    else:
        msg = msg.removeprefix("Value error, ")
        if typ == "finite_number" or (isinstance(err.get("input"), float) and not math.isfinite(err["input"])):
            msg = "must be finite"  # NaN compares false with every bound: "less than 1 (got nan)" misleads
        if "input" in err and (typ != "value_error" or msg == "must be finite") \
                and not isinstance(err["input"], (dict, list)):
            msg = f"{msg} (got {_shown(err['input'])})"
    return Problem(path, msg)


#: fields an example mapping shows at most (``{arms: ..., control: ..., split: ..., ...}``)
_EXAMPLE_FIELDS = 3


def _example(model: type[BaseModel] | None, err: dict[str, Any]) -> str:
    """`` such as {shards: ..., scheduler: ...}``: the fields of the mapping expected at a section
    (its required fields first), for a message that names no class; ``""`` when the model at the
    error's location is not the one pydantic expected there."""
    if model is None or model.__name__ != (err.get("ctx") or {}).get("class_name"):
        return ""
    fields = model.model_fields
    names = sorted(fields, key=lambda n: not fields[n].is_required())  # stable: declared order otherwise
    if not names:
        return ""
    shown = [f"{n}: ..." for n in names[:_EXAMPLE_FIELDS]] + (["..."] if len(names) > _EXAMPLE_FIELDS else [])
    return " such as {" + ", ".join(shown) + "}"


#: a value longer than this is shown by its start and its length in a message
_SHOWN_CHARS = 80


def _shown(value: Any) -> str:
    """``repr(value)``, or for a long one its first characters and its length: a message names the
    value, it does not repeat a 5,000-character string."""
    text = repr(value)
    if len(text) <= _SHOWN_CHARS:
        return text
    size = f"{len(value):,} characters" if isinstance(value, str) else f"{len(text):,} characters as written"
    return f"{text[:_SHOWN_CHARS]}... ({size})"


def _relevant(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop the union branches that did not apply: of the errors under one union, keep the deepest."""
    def branch_root(err: dict[str, Any]) -> tuple[Any, ...] | None:
        loc = tuple(err.get("loc", ()))
        for i, part in enumerate(loc):
            if isinstance(part, str) and part in _BRANCH_TAGS:
                return loc[:i]
        return None

    depth: dict[tuple[Any, ...], int] = {}
    for e in errors:
        root = branch_root(e)
        if root is not None:
            depth[root] = max(depth.get(root, 0), len(e["loc"]))
    return [e for e in errors if branch_root(e) is None or len(e["loc"]) == depth[branch_root(e)]]


def _alternatives(messages: list[str]) -> str:
    """``['Input should be a valid string', 'Input should be a valid dictionary']`` ->
    ``'Input should be a valid string or a valid dictionary'``; a value every branch names
    (``(got 1)``) is named once, at the end."""
    if len(messages) == 1:
        return messages[0]
    got = re.search(r" \(got [^()]*\)$", messages[0])
    tail = got.group() if got and all(m.endswith(got.group()) for m in messages) else ""
    messages = [m.removesuffix(tail) for m in messages] if tail else messages  # the value: named once, at the end
    first, rest = messages[0], messages[1:]
    words = first.split(" ")
    out = [first]
    for m in rest:
        other = m.removeprefix("expected ").split(" ")  # "... a valid string or a mapping such as {...}"
        n = 0
        while n < min(len(words), len(other)) - 1 and words[n] == other[n]:
            n += 1
        out.append(" ".join(other[n:]))
    return " or ".join(out) + tail


def validation_message(exc: ValidationError, *, file: str | None = None, lines: dict[str, int] | None = None,
                       prefix: str | None = None, model: type[BaseModel] | None = None,
                       root: type[BaseModel] | None = None,
                       overridden: Iterable[str] = ()) -> ScenarioError:
    """Turn a pydantic ValidationError into one ScenarioError listing every problem.

    ``root`` is the model that was validated (unknown-field hints list its fields), ``model`` the
    model whose own fields a top-level unknown field is compared with (plugin ``Options``),
    ``prefix`` the field path of the validated value in the scenario, ``overridden`` the paths set
    by ``--set``. The first problem gives the error's ``file``/``line``/``field``; the others follow
    on their own lines, each located the same way.
    """
    by_path: dict[str, list[str]] = {}
    for err in _relevant(exc.errors(include_url=False)):
        p = _problem(err, root, model)
        path = f"{prefix}.{p.path}" if prefix and p.path else (prefix or p.path)
        if p.message not in by_path.setdefault(path, []):
            by_path[path].append(p.message)
    # several messages at one path are the branches of a union: one problem, its alternatives
    problems = [Problem(path, _alternatives(msgs)) for path, msgs in by_path.items()]
    overridden = tuple(overridden)
    located = []
    for p in problems:
        if from_set(p.path, overridden):
            located.append(ScenarioError(p.message, file=SET_ORIGIN, field=p.path or None))
        else:
            line = line_of(lines, p.path) if lines is not None else None
            located.append(ScenarioError(p.message, file=file, line=line, field=p.path or None))
    first = located[0]
    if len(located) == 1:
        return first
    return ScenarioError(first.bare_message, file=first.file, line=first.line, field=first.field,
                         also=located[1:])
