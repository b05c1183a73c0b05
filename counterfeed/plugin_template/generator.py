"""Render the plugin template for one kind into ``counterfeed-NAME/``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template

__all__ = ["KIND_CHOICES", "PluginNames", "plugin_names", "generate"]

#: kind -> (class-name suffix, registration hook, conformance class, scenario snippet)
_KINDS: dict[str, tuple[str, str, str, str]] = {
    "recommender": ("Recommender", "register_recommenders", "RecommenderConformance",
                    "experiment:\n  arms:\n    control: {recommender: random}\n    treatment: {recommender: $name}"),
    "user-model": ("UserModel", "register_user_models", "UserModelConformance", "user_model:\n  plugin: $name"),
    "metric": ("Metric", "register_metrics", "MetricConformance", "metrics: [clicks, ctr, $name]"),
    "estimator": ("Estimator", "register_estimators", "EstimatorConformance", "analysis:\n  - estimator: $name"),
    "catalog": ("Catalog", "register_catalogs", "CatalogConformance", "catalog:\n  plugin: $name"),
}
KIND_CHOICES: tuple[str, ...] = tuple(_KINDS)


@dataclass(frozen=True)
class PluginNames:
    """The names derived from what the user typed: registry/entry-point name, distribution, module, class."""

    name: str
    dist: str
    module: str
    class_name: str


def plugin_names(raw: str, kind: str) -> PluginNames:
    """Sanitize ``raw`` (``'My Rec'``, ``'counterfeed-my_rec'`` -> ``'my-rec'``) and derive the other names.

    Raises
    ------
    ValueError
        When nothing usable is left, or the name does not start with a letter.
    """
    if kind not in _KINDS:
        raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(_KINDS)}")
    name = re.sub(r"[^a-z0-9]+", "-", raw.strip().lower()).strip("-")
    name = re.sub(r"^counterfeed-", "", name)
    if not name or not name[0].isalpha():
        raise ValueError(f"plugin name {raw!r} must start with a letter and contain letters or digits "
                         "(e.g. 'my-recommender')")
    if len(name) > 60:
        raise ValueError(f"plugin name {raw!r} is longer than 60 characters")
    parts = name.split("-")
    class_name = "".join(p[:1].upper() + p[1:] for p in parts)
    suffix = _KINDS[kind][0]
    if not class_name.endswith(suffix):
        class_name += suffix
    return PluginNames(name=name, dist=f"counterfeed-{name}", module="counterfeed_" + name.replace("-", "_"),
                       class_name=class_name)


def _template(rel: str) -> Template:
    return Template(resources.files("counterfeed.plugin_template").joinpath("templates", rel).read_text("utf-8"))


def generate(name: str, kind: str, directory: str | Path = ".", *, overwrite: bool = False) -> Path:
    """Write ``<directory>/counterfeed-<name>/`` and return its path.

    The package holds a pyproject with the ``counterfeed`` entry point, ``<module>/plugin.py`` with a
    working minimal plugin of ``kind`` registered through its hook, conformance tests and a README.

    Raises
    ------
    ValueError
        For an unusable name or kind.
    FileExistsError
        When the target directory exists and is not empty (unless ``overwrite``).
    """
    names = plugin_names(name, kind)
    suffix, hook, conformance, snippet = _KINDS[kind]
    from counterfeed import __version__

    values = {"name": names.name, "dist": names.dist, "module": names.module, "class_name": names.class_name,
              "kind": kind, "hook": hook, "conformance_class": conformance,
              "counterfeed_min": __version__.split("+")[0],
              "scenario_snippet": Template(snippet).substitute(name=names.name)}
    root = Path(directory) / names.dist
    if root.exists() and any(root.iterdir()) and not overwrite:
        raise FileExistsError(f"{root} already exists and is not empty")
    files = {
        "pyproject.toml": "pyproject.toml.tmpl",
        "README.md": "README.md.tmpl",
        f"{names.module}/__init__.py": "init.py.tmpl",
        f"{names.module}/plugin.py": f"kinds/{kind}.py.tmpl",
        "tests/test_conformance.py": "tests/test_conformance.py.tmpl",
    }
    for target, source in files.items():
        path = root / target
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_template(source).substitute(values), encoding="utf-8")
    return root
