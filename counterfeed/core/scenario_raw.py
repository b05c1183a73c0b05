"""Every problem of a scenario in one pass: when the schema rejects a scenario, its plugin references
and options are still checked from the raw data, so ``validate`` lists them together instead of
revealing them one stage at a time (tester #15)."""

from __future__ import annotations

from typing import Any, Iterable

from counterfeed.core.scenario_messages import SET_ORIGIN, from_set, line_of
from counterfeed.errors import ScenarioError

__all__ = ["with_plugin_problems"]


def _references(data: dict[str, Any]) -> list[tuple[str, str, Any, str]]:
    """(kind, field of the entry, the entry, its name key) of every inline plugin reference in ``data``."""
    refs: list[tuple[str, str, Any, str]] = []
    for key, kind in (("catalog", "catalog"), ("user_model", "user-model")):
        refs.append((kind, key, data.get(key), "plugin"))
    arms = (data.get("experiment") or {}).get("arms") if isinstance(data.get("experiment"), dict) else None
    for arm, spec in (arms.items() if isinstance(arms, dict) else []):
        refs.append(("recommender", f"experiment.arms.{arm}", spec, "recommender"))
    for i, m in enumerate(data.get("metrics") or [] if isinstance(data.get("metrics"), list) else []):
        refs.append(("metric", f"metrics[{i}]", {"metric": m} if isinstance(m, str) else m, "metric"))
    for i, a in enumerate(data.get("analysis") or [] if isinstance(data.get("analysis"), list) else []):
        refs.append(("estimator", f"analysis[{i}]", a, "estimator"))
    return [r for r in refs if isinstance(r[2], dict) and isinstance(r[2].get(r[3]), str)]


def with_plugin_problems(err: ScenarioError, data: Any, *, file: str | None, lines: dict[str, int],
                         overridden: Iterable[str] = ()) -> ScenarioError:
    """``err`` (the schema's problems) plus the plugin-option problems of ``data``, located alike."""
    if not isinstance(data, dict):
        return err
    from counterfeed.core.plugins import get_registry

    reg = get_registry()
    schema = [err, *(err.others if len(err.others) == len(err.also) else [])]
    seen = {e.field for e in schema}
    extra: list[ScenarioError] = []
    for kind, field, entry, name_key in _references(data):
        options = {k: v for k, v in entry.items() if k != name_key}
        try:
            reg.info(kind, entry[name_key], field=f"{field}.{name_key}")
            reg.create(kind, entry[name_key], options, field=field)
        except ScenarioError as exc:
            for e in [exc, *(exc.others if len(exc.others) == len(exc.also) else [])]:
                if e.field in seen:
                    continue
                seen.add(e.field)
                if e.field and from_set(e.field, overridden):
                    extra.append(ScenarioError(e.bare_message, file=SET_ORIGIN, field=e.field))
                else:
                    extra.append(ScenarioError(e.bare_message, file=file,
                                               line=line_of(lines, e.field) if e.field else None, field=e.field))
        except Exception:  # noqa: BLE001 - a plugin failing on unvalidated data adds nothing here
            continue
    if not extra:
        return err
    return ScenarioError(err.bare_message, file=err.file, line=err.line, field=err.field,
                         also=[*schema[1:], *extra])
