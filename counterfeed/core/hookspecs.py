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
