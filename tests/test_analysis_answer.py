"""The answer the report opens with, on planted tables (paitune.analysis.answer)."""

from __future__ import annotations

import pytest
from planted import PlantedSpec, asha_censor, planted_results

from paitune.analysis.run import analyze

METHODS = ("random", "magnitude", "snip", "synflow")


def _answer(spec, censor: bool = False):
    results = planted_results(spec)
    if censor:
        results = asha_censor(results, rung=3)
    return analyze(results=results)["answer"].set_index(["question", "subject"])


def test_methods_that_beat_random_are_named_and_a_null_method_is_not():
    spec = PlantedSpec(
        methods=METHODS,
        allocations=("global", "erk"),
        controls=("none", "shuffle"),
        seeds=5,
        method_effects={"synflow": lambda s: 0.05 + 0 * s, "snip": lambda s: 0.03 + 0 * s},
        control_effects={("synflow", "shuffle"): -0.05, ("snip", "shuffle"): -0.03},
    )
    for censor in (False, True):
        answer = _answer(spec, censor)
        # ASHA stopped two thirds of the trials early, random's nearly all: the lead is shown where
        # the pairs met (at rungs), and the few pairs that ran the budget cannot show it.
        beats = "beats_random_at_rungs" if censor else "beats_random"
        assert answer.loc[("pai_vs_random", "synflow"), "verdict"] == beats
        assert answer.loc[("pai_vs_random", "snip"), "verdict"] == beats
        assert answer.loc[("pai_vs_random", "magnitude"), "verdict"] == "inconclusive"
        sentence = answer.loc[("pai_vs_random", "synflow"), "sentence"]
        assert "5 seeds" in sentence and "shuffling its mask" in sentence
        # the planted +0.05, at the full budget; where ASHA stopped a trial, at the epoch both reached
        assert ("+5.0 points" in sentence) == (not censor)
        assert ("ran the budget" in sentence) == censor


@pytest.mark.parametrize(
    "effects, expected",
    [
        ({"allocation_effects": {"erk": 0.08}, "method_effects": {"snip": lambda s: 0.01 + 0 * s}}, "allocation"),
        (
            {
                "allocation_effects": {"erk": 0.005},
                "method_effects": {"snip": lambda s: 0.08 + 0 * s, "synflow": lambda s: 0.12 + 0 * s},
            },
            "method",
        ),
    ],
)
def test_which_matters_more_the_allocation_or_the_method(effects, expected):
    spec = PlantedSpec(methods=METHODS, allocations=("global", "erk"), seeds=5, **effects)
    row = _answer(spec).loc[("allocation_vs_method", "allocation vs method")]
    assert row["verdict"] == expected and row["n_units"] == 5
    assert row["sentence"].startswith(f"The {expected} matters more")


def test_no_effect_anywhere_claims_nothing():
    false = 0
    for seed in range(20):
        spec = PlantedSpec(
            methods=METHODS,
            allocations=("global", "erk"),
            controls=("none", "shuffle"),
            seeds=5,
            seed=seed,
            seed_effect=0.01,
            method_seed_effect=0.01,
        )
        answer = _answer(spec)
        false += int(answer["verdict"].isin(["beats_random", "loses_to_random", "allocation", "method"]).any())
    assert false <= 2  # 20 tables, 4 claims each: a calibrated 5% test per claim, Holm within a table
