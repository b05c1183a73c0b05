"""Safe YAML loading that remembers where every value came from.

``load_yaml(text)`` returns the document as plain Python objects plus a map from field paths
(``experiment.arms.treatment.recommender``, ``analysis[0].model``) to 1-based line numbers. It
composes with ``yaml.SafeLoader`` (no tags, no Python objects), rejects duplicate keys, and bounds
the number of nodes built so that alias bombs ("billion laughs") fail fast instead of eating memory.
"""

from __future__ import annotations

from typing import Any

import yaml

__all__ = ["load_yaml", "YamlProblem", "join_path"]

MAX_NODES = 200_000
MAX_DEPTH = 64


class YamlProblem(Exception):
    """Raised with a message and a 1-based line (or None)."""

    def __init__(self, message: str, line: int | None):
        super().__init__(message)
        self.message, self.line = message, line


_PLAIN_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")


def _one_line(message: Any) -> str:
    """The first line of a PyYAML message (they append '  in "<unicode string>", ...' lines)."""
    text = str(message).strip()
    return text.splitlines()[0] if text else "parse error"


def join_path(parent: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else str(key)


def load_yaml(text: str) -> tuple[Any, dict[str, int]]:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise YamlProblem(f"invalid YAML: {_one_line(exc.problem or exc.context)}", line) from None
    except yaml.reader.ReaderError as exc:  # a control character: locate it from its offset
        line = text.count("\n", 0, max(exc.position, 0)) + 1
        raise YamlProblem(f"invalid YAML: unacceptable character #x{exc.character:04x} "
                          "(control characters are not allowed)", line) from None
    except yaml.YAMLError as exc:
        raise YamlProblem(f"invalid YAML: {_one_line(str(exc))}", None) from None
    lines: dict[str, int] = {}
    if node is None:
        return None, lines
    budget = [MAX_NODES]
    constructor = yaml.SafeLoader("")

    def build(n: yaml.Node, path: str, depth: int) -> Any:
        budget[0] -= 1
        if budget[0] < 0:
            raise YamlProblem(f"document too large: more than {MAX_NODES} values "
                              "(an alias bomb?)", n.start_mark.line + 1)
        if depth > MAX_DEPTH:
            raise YamlProblem(f"document nested deeper than {MAX_DEPTH} levels", n.start_mark.line + 1)
        lines.setdefault(path, n.start_mark.line + 1)
        if isinstance(n, (yaml.MappingNode, yaml.SequenceNode)) and n.tag not in _PLAIN_TAGS:
            # a tag on a collection (!!python/object/apply:..., !!set, !custom) would otherwise be
            # silently dropped; only plain YAML values are allowed.
            raise YamlProblem(f"invalid value: tag {n.tag} is not allowed; only plain YAML values are "
                              "allowed", n.start_mark.line + 1)
        if isinstance(n, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for k_node, v_node in n.value:
                if k_node.tag == "tag:yaml.org,2002:merge":
                    raise YamlProblem("YAML merge keys ('<<') are not supported", k_node.start_mark.line + 1)
                key = build(k_node, path + ".<key>", depth + 1)
                if isinstance(key, (dict, list)):
                    raise YamlProblem("mapping keys must be plain values", k_node.start_mark.line + 1)
                if key in out:
                    raise YamlProblem(f"duplicate key '{key}' in {path or 'the document'}",
                                      k_node.start_mark.line + 1)
                child = join_path(path, key)
                lines[child] = k_node.start_mark.line + 1
                out[key] = build(v_node, child, depth + 1)
            return out
        if isinstance(n, yaml.SequenceNode):
            return [build(v, join_path(path, i), depth + 1) for i, v in enumerate(n.value)]
        try:
            return constructor.construct_object(n, deep=True)
        except yaml.YAMLError as exc:
            problem = _one_line(getattr(exc, "problem", None) or exc)
            raise YamlProblem(f"invalid value: {problem} (tag {n.tag}); only plain YAML values are allowed",
                              n.start_mark.line + 1) from None

    data = build(node, "", 0)
    lines.pop(".<key>", None)
    return data, {k: v for k, v in lines.items() if "<key>" not in k}
