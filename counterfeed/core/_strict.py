"""The strictness every scenario section and plugin ``Options`` share: unknown fields are an error,
numbers must be finite, and a boolean is not a number."""

from __future__ import annotations

import typing
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

__all__ = ["StrictSpec", "reject_booleans"]


def _numeric_only(annotation: Any) -> bool:
    """Whether a field of this type takes numbers (int or float) and not booleans or anything at all."""
    if annotation in (bool, Any) or annotation is None:
        return False
    if annotation in (int, float):
        return True
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return False
    if origin is typing.Annotated:
        return _numeric_only(typing.get_args(annotation)[0])
    args = typing.get_args(annotation) if origin is not None and origin not in (list, dict, tuple, set) else ()
    return bool(args) and any(_numeric_only(a) for a in args) and not any(a in (bool, Any) for a in args)


def reject_booleans(model: type[BaseModel], value: Any, info: ValidationInfo) -> Any:
    """A ``mode="before"`` field validator: ``true``/``false`` given to a numeric field is an error (pydantic
    reads them as 1 and 0 otherwise, so ``users: true`` ran one user). Fields that admit booleans, or any
    value, take them as before."""
    if isinstance(value, (bool, np.bool_)) and info.field_name in model.model_fields \
            and _numeric_only(model.model_fields[info.field_name].annotation):
        raise ValueError(f"expected a number, got a boolean ({str(bool(value)).lower()})")
    return value


class StrictSpec(BaseModel):
    """Base of the scenario's sections: unknown fields are an error, numbers must be finite (NaN and
    infinities are an error) and a boolean is not a number (:func:`reject_booleans`)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    _no_booleans = field_validator("*", mode="before")(classmethod(reject_booleans))
