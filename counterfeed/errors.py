"""The exceptions counterfeed raises on purpose.

Everything a user can cause (a bad scenario, a bad log, a bad model, a broken plugin) is a
:class:`CounterfeedError`; the CLI turns it into one line on stderr and exit code 2. Anything else
is a bug in counterfeed and keeps its traceback.
"""

from __future__ import annotations

from typing import Sequence

__all__ = [
    "CounterfeedError",
    "ScenarioError",
    "PluginError",
    "DataError",
    "ModelError",
    "OutputError",
    "PluginWarning",
]


def printable(text: str) -> str:
    """``text`` with control characters escaped (``'a\\rb'``): a value from a user's file must not
    break a one-line-per-problem message."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def plain(value: object) -> str:
    """A value from a user's file for a message: ``repr`` of the Python value, so a numpy scalar reads
    ``-0.1`` or ``'u7'``, never ``np.float64(-0.1)``."""
    item = getattr(value, "item", None)
    return repr(item() if callable(item) and type(value).__module__ == "numpy" else value)


class CounterfeedError(Exception):
    """Base class: a problem the user can fix; shown as one message, exit code 2."""

    exit_code = 2


class ScenarioError(CounterfeedError):
    """A scenario file or document is invalid.

    The message names the file, the line (when known) and the field path. A document with
    several problems carries the first in ``file``/``line``/``field`` and the others, already
    located, in ``also``; the message lists them all, one per line.
    """

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 field: str | None = None, also: "Sequence[ScenarioError | str]" = ()):
        message, field = printable(message), (None if field is None else printable(field))
        self.file, self.line, self.field = file, line, field
        self.others = tuple(a for a in also if isinstance(a, ScenarioError))  # relocatable problems
        self.also = tuple(str(a) for a in also)
        where = ""
        if file:
            where = f"{file}:{line}: " if line else f"{file}: "
        elif line:
            where = f"line {line}: "
        super().__init__("\n".join([f"{where}{field + ': ' if field else ''}{message}", *self.also]))
        self.bare_message = message


class PluginError(CounterfeedError):
    """A plugin is unknown, badly registered, raised, or broke its contract.

    The message names the plugin, the hook or method it was in, and the rule it broke.
    """

    def __init__(self, message: str, *, plugin: str | None = None, hook: str | None = None):
        self.plugin, self.hook = plugin, hook
        prefix = ""
        if plugin:
            prefix = f"plugin '{plugin}'"
            if hook:
                prefix += f" in {hook}"
            prefix += ": "
        super().__init__(prefix + message)


class DataError(CounterfeedError):
    """Input data (a log, a CSV, a catalog file) is malformed; names the file, column or row."""


class ModelError(CounterfeedError):
    """A statistical model specification is invalid (e.g. an SEM that cannot be identified)."""


class OutputError(CounterfeedError):
    """The output directory cannot be written (permissions, disk full, unsafe path)."""


class PluginWarning(UserWarning):
    """Something about plugin discovery the user should know (e.g. an unknown name in
    ``COUNTERFEED_LOAD_PLUGINS``); loading goes on."""
