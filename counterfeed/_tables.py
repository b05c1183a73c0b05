"""Tables on the command line: one writer for ``--format table|csv|json``.

``table`` never truncates a number: piped output has no width limit (a pipe has no columns to fit),
and a terminal too narrow for the table gets a narrow layout, one block of ``column: value`` lines
per row, instead of cells cut with an ellipsis. ``csv`` and ``json`` carry the raw values (JSON is
strict: NaN and infinities become ``null``).
"""

from __future__ import annotations

import csv
import json
import math
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import click

__all__ = ["FORMATS", "format_option", "Column", "emit_table", "table_console", "strict_json"]

FORMATS = ("table", "csv", "json")


def format_option(default: str = "table") -> Callable:
    """The ``--format`` click option (``--json`` stays an alias of ``--format json`` where it exists)."""
    return click.option("--format", "fmt", type=click.Choice(FORMATS), default=default, show_default=True,
                        help="Output: a table for people, csv or json for scripts (tables are never truncated).")


@dataclass(frozen=True)
class Column:
    """One column: the record key, its header, how the table shows a value, and its alignment."""

    key: str
    header: str = ""
    show: Callable[[Any], str] = field(default=lambda v: "" if v is None else str(v))
    right: bool = False

    @property
    def title(self) -> str:
        return self.header or self.key


def strict_json(value: Any) -> Any:
    """``value`` with NaN/inf replaced by None (recursively), numpy scalars as Python numbers."""
    if isinstance(value, dict):
        return {str(k): strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def table_console(stderr: bool = False) -> Any:
    """A rich Console: the terminal's width on a terminal, no width limit when piped."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    return Console(file=stream) if stream.isatty() else Console(file=stream, width=100_000)


def emit_table(records: Sequence[dict[str, Any]], columns: Sequence[Column], fmt: str, *, title: str = "",
               notes: Iterable[str] = (), console: Any = None) -> None:
    """Write ``records`` as a table, CSV (header + one line per record) or a JSON list of objects."""
    if fmt == "json":
        click.echo(json.dumps(strict_json([{c.key: r.get(c.key) for c in columns} for r in records]), indent=2,
                              allow_nan=False))
        return
    if fmt == "csv":
        out = csv.writer(sys.stdout, lineterminator="\n")
        out.writerow([c.key for c in columns])
        for r in records:
            out.writerow(["" if (v := strict_json(r.get(c.key))) is None else v for c in columns])
        sys.stdout.flush()
        return
    print_rich_table(records, columns, title=title, console=console)
    for note in notes:
        (console or table_console()).print(note)


def print_rich_table(records: Sequence[dict[str, Any]], columns: Sequence[Column], *, title: str = "",
                     console: Any = None) -> None:
    """The ``table`` format: a rich table, or the narrow layout when it does not fit the terminal."""
    from rich.measure import Measurement
    from rich.table import Table

    console = console or table_console()
    t = Table(title=title or None)
    for c in columns:
        t.add_column(c.title, justify="right" if c.right else "left", no_wrap=True)
    cells = [[c.show(r.get(c.key)) for c in columns] for r in records]
    for row in cells:
        t.add_row(*row)
    if Measurement.get(console, console.options, t).maximum <= console.width:
        console.print(t)
        return
    if title:  # narrow layout: one block per record, every value whole (it may wrap, never cut)
        console.print(title, style="bold", soft_wrap=True)
    width = max(len(c.title) for c in columns)
    for i, row in enumerate(cells):
        if i:
            console.print("")
        for c, value in zip(columns, row):
            if value != "":
                console.print(f"{c.title:>{width}}  {value}", soft_wrap=True, highlight=False)
