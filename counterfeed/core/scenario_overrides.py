"""``--set FIELD=VALUE`` overrides, applied to the scenario as the user wrote it.

An override replaces one field of the document the user wrote (the file, before validation fills
in defaults). Switching a choice -- ``experiment.assignment.mechanism``, an arm's ``recommender``,
``catalog.plugin``, ``user_model.plugin``, an ``analysis`` entry's ``estimator`` or a ``metrics``
entry's ``metric`` -- therefore validates the new choice with only the fields the user wrote, never
with the defaults the old choice filled in (tester16 L3). A path the document lacks is created from
the validated scenario's value there, so ``--set catalog.items=100`` keeps the default catalog
plugin; a choice made inside such an unwritten mapping starts it empty (a twin's user model options
are not carried over to another user model).

The fields the user wrote for the old choice that the new one does not accept are one problem,
located at the first of them and saying which ``--set`` changed the choice
(:func:`explain_switches`).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

from counterfeed.core.scenario_messages import SET_ORIGIN
from counterfeed.errors import ScenarioError

__all__ = ["Switch", "normal_path", "apply_overrides", "explain_switches"]

#: the fields whose value decides which other fields their mapping may hold
_CHOICE = re.compile(r"(experiment\.assignment\.mechanism|(catalog|user_model)\.plugin"
                     r"|experiment\.arms\.[^.\[\]]+\.recommender|analysis\[\d+\]\.estimator"
                     r"|metrics\[\d+\]\.metric)")


@dataclass(frozen=True)
class Switch:
    """A ``--set`` that changed a choice the user wrote: ``container.key`` from ``old`` to ``new``."""

    container: str
    key: str
    old: Any
    new: Any


def normal_path(path: str) -> str:
    """``analysis.0.alpha`` -> ``analysis[0].alpha`` (the form error messages use)."""
    return re.sub(r"\.(\d+)(?=\.|\[|$)", r"[\1]", path.strip())


def apply_overrides(written: dict[str, Any], resolved: dict[str, Any],
                    overrides: dict[str, Any]) -> tuple[dict[str, Any], tuple[str, ...], list[Switch]]:
    """The user's document ``written`` with ``overrides`` (dotted path -> value) applied.

    ``resolved`` is the validated scenario's plain data, from which paths missing in ``written``
    are filled. Returns the new document, the normalised override paths and the choices changed.

    Raises
    ------
    ScenarioError
        Located at ``--set`` when a path goes through a value that is not a mapping or list.
    """
    data = copy.deepcopy(written)
    paths = tuple(normal_path(p) for p in overrides)
    switches = []
    for path, value in zip(paths, overrides.values()):
        switch = _set_path(data, resolved, path, value)
        if switch is not None:
            switches.append(switch)
    return data, paths, switches


def _child(value: Any, key: Any) -> Any:
    if isinstance(value, dict):
        return value.get(key)
    if isinstance(value, list) and isinstance(key, int) and key < len(value):
        return value[key]
    return None


def _set_path(data: dict[str, Any], resolved: Any, path: str, value: Any) -> Switch | None:
    parts = [p for p in re.split(r"\.|\[(\d+)\]", path) if p]
    cur: Any = data
    fallback, written = resolved, True
    for i, part in enumerate(parts):
        key: Any = int(part) if part.isdigit() and isinstance(cur, list) else part
        if isinstance(cur, list):
            if not isinstance(key, int) or key >= len(cur):
                raise ScenarioError(f"no element {part} in list", file=SET_ORIGIN, field=path)
        elif not isinstance(cur, dict):
            raise ScenarioError("is not a mapping", file=SET_ORIGIN, field=".".join(parts[:i]) or path)
        if i < len(parts) - 1:
            fallback = _child(fallback, key)
            if isinstance(cur, dict) and key not in cur:  # not written: the validated value, or a new mapping
                cur[key] = copy.deepcopy(fallback) if isinstance(fallback, (dict, list)) else {}
                written = False
            cur = cur[key]
            continue
        switch = None
        if _CHOICE.fullmatch(path) and isinstance(cur, dict):
            if not written:
                cur.clear()  # a new choice in a mapping the user never wrote: only what --set says
            elif key in cur and cur[key] != value:
                switch = Switch(path.rsplit(".", 1)[0], str(key), cur[key], value)
        cur[key] = value
        return switch
    return None


def explain_switches(err: ScenarioError, switches: list[Switch] | tuple[Switch, ...]) -> ScenarioError:
    """``err`` with the unknown fields the user wrote under each switched choice merged into one
    problem that names the ``--set`` which changed it; ``err`` itself when there are none."""
    problems = [err, *err.others]
    if not switches or len(err.others) != len(err.also):
        return err
    changed = False
    for sw in switches:
        inside = [p for p in problems if p.file != SET_ORIGIN and p.field
                  and p.field.startswith(sw.container + ".") and p.bare_message.startswith("unknown field")]
        if not inside:
            continue
        first, rest = inside[0], inside[1:]
        names = [p.field[len(sw.container) + 1:] for p in inside]
        where = ", ".join(f"{n} (line {p.line})" if p.line else n for n, p in zip(names[1:], rest))
        accepted = first.bare_message.partition("expected one of: ")[2]
        msg = (f"not a field of {sw.key} '{sw.new}', which --set {sw.container}.{sw.key}={sw.new} chose "
               f"instead of the file's '{sw.old}'" + (f"; nor are {where}" if where else "")
               + (f"; {sw.key} '{sw.new}' accepts: {accepted}" if accepted else "")
               + f". Remove {'them' if rest else 'it'} from the file, or set a {sw.key} that accepts "
               + ("them" if rest else "it"))
        merged = ScenarioError(msg, file=first.file, line=first.line, field=first.field)
        problems = [merged if p is first else p for p in problems if not any(p is r for r in rest)]
        changed = True
    if not changed:
        return err
    head = problems[0]
    return ScenarioError(head.bare_message, file=head.file, line=head.line, field=head.field,
                         also=problems[1:])
