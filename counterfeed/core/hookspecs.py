"""Every hook counterfeed calls, with its documentation. ``counterfeed.hookimpl`` marks implementations.

Registration hooks follow llm's shape: counterfeed passes a ``register`` callable and the plugin
calls it once per class it provides::

    from counterfeed import hookimpl

    @hookimpl
    def register_recommenders(register):
        register(MyRecommender)

The built-in recommenders, user models, catalogs, metrics and estimators are registered through
exactly these hooks (``counterfeed/plugins/``).
"""

from __future__ import annotations

import pluggy

PROJECT = "counterfeed"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

__all__ = ["hookspec", "hookimpl", "PROJECT"]


@hookspec
def register_recommenders(register):
    """Register recommender classes.

    Called once when the plugin manager loads. ``register(cls)`` takes a subclass of
    :class:`counterfeed.Recommender` with a unique ``name``. Returns nothing.
    """


@hookspec
def register_user_models(register):
    """Register user-model classes (subclasses of :class:`counterfeed.UserModel`).

    Called once when the plugin manager loads. Returns nothing.
    """


@hookspec
def register_catalogs(register):
    """Register catalog classes (subclasses of :class:`counterfeed.Catalog`).

    Called once when the plugin manager loads. Returns nothing.
    """


@hookspec
def register_metrics(register):
    """Register metric classes (subclasses of :class:`counterfeed.Metric`).

    Called once when the plugin manager loads. Returns nothing.
    """


@hookspec
def register_estimators(register):
    """Register estimator classes (subclasses of :class:`counterfeed.Estimator`).

    Called once when the plugin manager loads. Returns nothing.
    """


@hookspec
def register_commands(cli):
    """Add commands to the ``counterfeed`` command line.

    Called once when the CLI is built, with the root :class:`click.Group`; call
    ``cli.add_command(...)``. Returns nothing.
    """


@hookspec
def counterfeed_run_start(scenario, run_dir):
    """Called when a run starts, with the validated :class:`Scenario` and the (temporary) run
    directory path. Returns nothing."""


@hookspec
def counterfeed_world_end(scenario, world, events):
    """Called when one world's simulation has finished, with the scenario, the world name and its
    :class:`WorldEvents`. Called in the process that simulated the world. Returns nothing."""


@hookspec
def counterfeed_run_end(scenario, result):
    """Called when a run has finished and its directory is complete, with the scenario and the
    :class:`RunResult`. Use it to export results elsewhere. Returns nothing."""


@hookspec
def counterfeed_report_sections(result, report):
    """Add sections to the run report.

    Called each time a report is built (at the end of a run that writes one, and by
    ``counterfeed report RUN_DIR``), after the core's sections on estimates, interference, metrics
    over time and diagnostics, once per plugin in registration order. ``result`` is the
    :class:`RunResult` read back from the run directory; ``report`` is a
    :class:`counterfeed.core.report.Report`: ``report.section(title)`` starts a section and returns a
    :class:`~counterfeed.core.report.Section` with ``heading``, ``paragraph``, ``table`` and
    ``figure`` (``report.run_dir``, ``report.level`` and ``report.colors`` help fill it). Add a
    section only when ``result`` holds something of yours (e.g. estimates with your estimator's
    name). Returns nothing. If it raises, the report says so in a note naming the plugin, and the
    other sections are still written.
    """
