"""The strictness every scenario section and plugin ``Options`` share: unknown fields are an error, and
a number is a number: not a boolean, not NaN (:func:`reject_booleans`)."""

from __future__ import annotations

import math
import typing
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

__all__ = ["StrictSpec", "reject_booleans"]

_CONTAINERS = (list, tuple, set, frozenset, dict)


def _unwrap(annotation: Any) -> list[Any]:
    """The alternatives of ``annotation`` (a union's members, an Annotated's type, else itself)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin is typing.Union or type(annotation).__name__ == "UnionType":
        return [t for a in typing.get_args(annotation) for t in _unwrap(a)]
    return [annotation]


def _numeric_only(annotation: Any) -> bool:
    """Whether a field of this type takes numbers (int or float) and neither booleans nor any value."""
    kinds = _unwrap(annotation)
    if any(k in (bool, Any) or typing.get_origin(k) is Literal for k in kinds):
        return False
    return any(k in (int, float) for k in kinds)


def _items(annotation: Any) -> Any:
    """The type of a container field's items (a dict's values), or None when it is not a container."""
    for k in _unwrap(annotation):
        origin = typing.get_origin(k)
        if origin in _CONTAINERS:
            args = typing.get_args(k)
            return (args[-1] if origin is dict else args[0]) if args else None
    return None


def _not_a_number(value: Any) -> str | None:
    """Why ``value`` is no number for a numeric field, or None: a boolean (pydantic reads it as 1 or 0,
    so ``users: true`` ran one user), or NaN, which compares false with every bound (``nan`` as YAML
    ``.nan`` or as the text ``nan`` of ``--set``). Infinity is left to the field's bounds: an unbounded
    option may mean "no limit" by it (``ope``'s ``tau: .inf`` is plain DR)."""
    if isinstance(value, (bool, np.bool_)):
        return f"expected a number, got a boolean ({str(bool(value)).lower()})"
    if isinstance(value, (float, np.floating)) and math.isnan(value):
        return "must be finite"
    if isinstance(value, str) and value.strip().lower().lstrip("+-") == "nan":
        return "must be finite"
    return None


def _is_duration(field: Any) -> bool:
    """Whether a field parses durations (``core.durations.parse_duration`` among its validators)."""
    return any(getattr(getattr(m, "func", None), "__name__", "") == "parse_duration" for m in field.metadata)


def reject_booleans(model: type[BaseModel], value: Any, info: ValidationInfo) -> Any:
    """A ``mode="before"`` field validator: a boolean or NaN given to a numeric field, or as an item of a
    container of numbers (``experiment.split``, a list of ``ks``), is an error (:func:`_not_a_number`).
    Fields that admit booleans, or any value, take them as before."""
    field = model.model_fields.get(info.field_name or "")
    if field is None:
        return value
    if _numeric_only(field.annotation):
        why = _not_a_number(value)
        if why and why.startswith("expected a number") and _is_duration(field):
            why = why.replace("expected a number", "expected a duration such as '14d' (or a number of days)")
        if why:
            raise ValueError(why)
    item = _items(field.annotation)
    if item is not None and _numeric_only(item) and isinstance(value, (dict, list, tuple)):
        pairs = value.items() if isinstance(value, dict) else enumerate(value)
        for key, v in pairs:
            why = _not_a_number(v)
            if why:
                where = f"'{key}'" if isinstance(value, dict) else f"item {key}"
                raise ValueError(f"{where}: {why}" + (f" (got {v!r})" if why == "must be finite" else ""))
    return value


class StrictSpec(BaseModel):
    """Base of the scenario's sections: unknown fields are an error, and a number is not a boolean or
    NaN (:func:`reject_booleans`)."""

    model_config = ConfigDict(extra="forbid")

    _no_booleans = field_validator("*", mode="before")(classmethod(reject_booleans))
