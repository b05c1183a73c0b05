"""Tables on the command line: one writer for ``--format table|csv|json``.

``table`` never truncates a number: piped output has no width limit (a pipe has no columns to fit),
and a terminal too narrow for the table gets a narrow layout, one block of ``column: value`` lines
per row, instead of cells cut with an ellipsis. ``csv`` and ``json`` carry the raw values (JSON is
strict: NaN and infinities become ``null``).
"""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import click

from counterfeed import _json

__all__ = ["FORMATS", "format_option", "Column", "emit_table", "emit_records", "print_table", "print_rich_table",
           "table_console"]

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


def table_console(stderr: bool = False) -> Any:
    """A rich Console: the terminal's width on a terminal, no width limit when piped."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    return Console(file=stream) if stream.isatty() else Console(file=stream, width=100_000)


def emit_table(records: Sequence[dict[str, Any]], columns: Sequence[Column], fmt: str, *, title: str = "",
               notes: Iterable[str] = (), console: Any = None) -> None:
    """Write ``records`` as a table, CSV (header + one line per record) or a JSON list of objects."""
    if fmt == "json":
        click.echo(_json.dumps([{c.key: r.get(c.key) for c in columns} for r in records], indent=2))
        return
    if fmt == "csv":
        out = csv.writer(sys.stdout, lineterminator="\n")
        out.writerow([c.key for c in columns])
        for r in records:
            out.writerow(["" if (v := _json.clean(r.get(c.key))) is None else v for c in columns])
        sys.stdout.flush()
        return
    print_rich_table(records, columns, title=title, console=console)
    for note in notes:
        (console or table_console()).print(note)


def emit_records(records: Sequence[dict[str, Any]], fmt: str) -> None:
    """``csv`` or ``json`` of records whose keys are the columns (nested values: JSON text in CSV)."""
    rows = _json.clean(list(records))
    if fmt == "json":
        click.echo(_json.dumps(rows, indent=2))
        return
    keys = list(dict.fromkeys(k for r in rows for k in r))
    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(keys)
    for r in rows:
        out.writerow(["" if r.get(k) is None else (json.dumps(r[k], default=str) if isinstance(r[k], (dict, list))
                                                    else r[k]) for k in keys])
    sys.stdout.flush()


def print_table(table: Any, console: Any = None) -> None:
    """Print a rich Table whole: as it is when it fits (always, when piped), else the narrow layout:
    one block of ``column: value`` lines per row, every value whole."""
    from rich.measure import Measurement

    console = console or table_console()
    natural = Measurement.get(console, console.options.update(max_width=1_000_000), table).maximum
    if natural <= console.width:
        console.print(table)
        return
    if table.title:
        console.print(table.title, style="bold", soft_wrap=True)
    headers = [str(c.header) for c in table.columns]
    width = max(len(h) for h in headers)
    for i, row in enumerate(zip(*(list(c.cells) for c in table.columns))):
        if i:
            console.print("")
        for header, value in zip(headers, row):
            if str(value) != "":
                console.print(f"{header:>{width}}  {value}", soft_wrap=True, highlight=False)


def print_rich_table(records: Sequence[dict[str, Any]], columns: Sequence[Column], *, title: str = "",
                     console: Any = None) -> None:
    """The ``table`` format: a rich table, or the narrow layout when it does not fit the terminal."""
    from rich.table import Table

    t = Table(title=title or None)
    for c in columns:
        t.add_column(c.title, justify="right" if c.right else "left", no_wrap=True)
    for r in records:
        t.add_row(*[c.show(r.get(c.key)) for c in columns])
    print_table(t, console)
