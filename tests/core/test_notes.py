"""The population-level note reads as a sentence (tester #19: "Population-level metrics
population-level: its effect ..." in the manifest and the report)."""

from counterfeed.core.plan import NOT_IDENTIFIED, POPULATION_NOTE


def test_population_note_is_not_garbled():
    short, full = POPULATION_NOTE
    assert short.startswith("population-level metrics: their effect is not identified")
    assert full.startswith("Population-level metrics: their effect is not identified") and full.endswith(".")
    assert "population-level population-level" not in (short + full).lower().replace("metrics ", "")
    assert "metrics population-level" not in (short + full).lower()
    assert NOT_IDENTIFIED.startswith("is population-level: its effect is not identified")


def test_scenarios_doc_lists_every_built_in_metric():
    """docs/scenarios.md "Built-in metrics" omitted the long-term metrics (tester #19)."""
    from pathlib import Path

    from counterfeed.core.plugins import get_registry

    text = Path(__file__).resolve().parents[2].joinpath("docs", "scenarios.md").read_text()
    section = text.split("## Built-in metrics", 1)[1].split("\n## ", 1)[0]
    infos = [i for i in get_registry().all_plugins() if i.kind == "metric" and i.source == "builtin"]
    parts = {p for i in infos for p in (i.cls.numerator, i.cls.denominator) if p}
    missing = [i.name for i in infos if i.name not in parts and i.name not in section]
    assert not missing, f"docs/scenarios.md does not list: {missing}"


def test_every_re_ranker_option_has_a_description():
    """`plugins show mmr` printed exploration, epsilon and space without a description (tester #19)."""
    from counterfeed.plugins.recommenders import rerank

    for cls in (rerank.MMR, rerank.Calibrated, rerank.PopularityDebiased, rerank.ProviderFair):
        bare = [n for n, f in cls.Options.model_fields.items() if not f.description]
        assert not bare, f"{cls.name}: options without a description: {bare}"
