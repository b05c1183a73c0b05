"""Errors raised by the SEM engine; both are :class:`counterfeed.errors.ModelError`."""

from __future__ import annotations

from counterfeed.errors import ModelError

__all__ = ["SEMSyntaxError", "SEMModelError"]


class SEMSyntaxError(ModelError):
    """The model text cannot be parsed; the message names the line, column and token."""

    def __init__(self, message: str, *, line: int, col: int, token: str | None = None):
        self.line, self.col, self.token, self.bare_message = line, col, token, message
        super().__init__(f"line {line}, col {col}: {message}")


class SEMModelError(ModelError):
    """The model parses but is not a valid or identified SEM (or does not match the data)."""
