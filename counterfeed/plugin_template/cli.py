"""The ``counterfeed plugin`` command group (mounted into the main CLI by counterfeed.cli)."""

from __future__ import annotations

from pathlib import Path

import click

from counterfeed.plugin_template.generator import KIND_CHOICES, generate, plugin_names

__all__ = ["plugin"]


@click.group()
def plugin() -> None:
    """Write your own plugins: ``counterfeed plugin new my-rec --kind recommender``."""


@plugin.command("new")
@click.argument("name")
@click.option("--kind", "kind", type=click.Choice(KIND_CHOICES), required=True,
              help="What the plugin provides.")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
              show_default=True, help="Where to create the counterfeed-NAME/ package.")
def new(name: str, kind: str, directory: Path) -> None:
    """Create a plugin package counterfeed-NAME/ with a working minimal plugin, tests and a README.

    \b
    Example:
        counterfeed plugin new my-rec --kind recommender
        cd counterfeed-my-rec && python -m pip install -e ".[test]" && python -m pytest
    """
    try:
        root = generate(name, kind, directory)
    except (ValueError, FileExistsError) as exc:
        raise click.ClickException(str(exc)) from None
    names = plugin_names(name, kind)
    if name.strip() not in (names.name, names.dist):  # sanitized: say which names it took
        click.echo(f"note: {name!r} is not a plugin name as typed (plugin names are lowercase letters, digits and "
                   f"hyphens, starting with a letter); using plugin name '{names.name}', distribution "
                   f"'{names.dist}', module '{names.module}'", err=True)
    click.echo(f"created {root}")
    click.echo(f"next: cd {root} && python -m pip install -e \".[test]\" && python -m pytest "
               "(in the environment where counterfeed is installed)")
