"""The built-in subcommands, added through the same ``register_commands`` hook as third-party ones.

They are added lazily (imported on first use) so ``counterfeed --help`` stays fast.
"""

from __future__ import annotations

from counterfeed.core.hookspecs import hookimpl

COMMANDS = {
    "sem": ("counterfeed.sem.cli:sem", "Bayesian structural equation models: show, fit."),
    "ope": ("counterfeed.ope.cli:ope", "Evaluate a policy offline from logged impressions."),
    "offline": ("counterfeed.offline.cli:offline", "Ranking metrics (recall, NDCG, MRR) on held-out logged clicks."),
    "calibrate": ("counterfeed.calibration.cli:calibrate_command",
                  "Replicate a scenario: bias, RMSE, coverage, rejection rates."),
    "sweep": ("counterfeed.calibration.cli:sweep_command", "Power and MDE over a grid of scenario fields."),
    "twin": ("counterfeed.twin.cli:twin", "Fit a twin of the users from logs; check it; evaluate policies in it."),
    "plugin": ("counterfeed.plugin_template.cli:plugin", "Create a new plugin package from a template."),
}


@hookimpl
def register_commands(cli):
    for name, (target, help_text) in COMMANDS.items():
        if hasattr(cli, "add_lazy_command"):
            cli.add_lazy_command(name, target, help_text)
        else:  # a plain click group: import now
            import importlib

            module, _, attr = target.partition(":")
            cli.add_command(getattr(importlib.import_module(module), attr), name)
