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
