"""``counterfeed plugin new``: generate a ready-to-publish plugin package from templates.

The templates live in ``templates/`` (package data) and are rendered with :class:`string.Template`.
"""

from counterfeed.plugin_template.generator import KIND_CHOICES, PluginNames, generate, plugin_names

__all__ = ["generate", "plugin_names", "PluginNames", "KIND_CHOICES"]
