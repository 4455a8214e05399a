"""The analysis's verdicts are statistically right: planted tables, ASHA-censored copies of them,
and seeded simulations of tables with no effect (false-verdict rate, interval coverage)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from planted import PlantedSpec, asha_censor, planted_results, with_offsets

from paitune.analysis import analyze, pai_vs_imp, proxy_correlations, rank_choices, sanity_checks

N_BOOT = 200
FALSE_VERDICTS = {"robust_winner", "robust_loser", "hurts", "helps"}


def _const(value):
    return lambda s: value + 0 * s


def _verdicts(analysis):
    rankings = analysis["rankings"]
    ranked = dict(
        zip(
            rankings.loc[rankings["factor"] == "method", "choice"],
            rankings.loc[rankings["factor"] == "method", "verdict"],
        )
    )
    sanity = analysis["sanity"]
    return ranked, dict(zip(zip(sanity["method"], sanity["control"]), sanity["verdict"]))


# ---- (a) ASHA censoring changes nothing that was planted --------------------------------------


def test_asha_censored_table_gives_the_same_verdicts_and_signs():
    spec = PlantedSpec(
        methods=("alpha", "beta", "gamma", "delta"),
        controls=("none", "shuffle", "invert"),
        sparsities=(0.5, 0.75, 0.875, 0.9375),
        seeds=6,
        noise=0.004,
        n_layers=2,
        method_effects={"alpha": _const(0.05), "delta": _const(-0.05)},
        control_effects={("alpha", "shuffle"): -0.06, ("gamma", "shuffle"): -0.06},
    )
    full = planted_results(spec)
    censored = asha_censor(full, rung=3)  # the bottom two thirds of every context stop at epoch 3
    stopped = censored.trials["status"].eq("stopped").mean()
    assert 0.6 < stopped < 0.7
    a_full = analyze(results=full, n_boot=N_BOOT)
    a_cens = analyze(results=censored, n_boot=N_BOOT)
    ranked_full, sanity_full = _verdicts(a_full)
    ranked_cens, sanity_cens = _verdicts(a_cens)
    assert ranked_full["alpha"] == "robust_winner" and ranked_full["delta"] == "robust_loser"
    # Censored, delta never ran the budget (ASHA stopped all of it at epoch 3): the leads show where
    # the pairs met, at the rung, and no claim about the budget is made.
    assert ranked_cens["alpha"] == "ahead_at_rungs" and ranked_cens["delta"] == "behind_at_rungs"
    for choice in ("beta", "gamma"):  # no planted effect: never a robust verdict, censored or not
        assert ranked_full[choice] not in FALSE_VERDICTS and ranked_cens[choice] not in FALSE_VERDICTS
    share = a_cens["rankings"].set_index(["factor", "choice"])["budget_share"]
    assert share.loc[("method", "delta")] == 0 and (share.loc["method"] < 0.2).all()
    assert (a_full["rankings"]["budget_share"] == 1).all()
    # Every effect verdict survives the censoring, at the budget where the pairs that ran it show
    # it, else at the rungs. A no_effect is a claim about the budget, shown by the pairs that ran
    # it: where ASHA stopped too many, it becomes inconclusive, never an effect.
    assert sanity_full.keys() == sanity_cens.keys()
    for key, verdict in sanity_full.items():
        allowed = ("no_effect", "inconclusive") if verdict == "no_effect" else (verdict, f"{verdict}_at_rungs")
        assert sanity_cens[key] in allowed, (key, verdict, sanity_cens[key])
    assert sanity_full[("alpha", "shuffle")] == sanity_cens[("alpha", "shuffle")] == "hurts"
    assert sanity_full[("beta", "shuffle")] in ("no_effect", "inconclusive")  # no planted effect
    # Signs of every effect agree; no context vanished from the rankings.
    for analysis in (a_full, a_cens):
        table = analysis["rankings"].set_index(["factor", "choice"])
        assert table.loc[("method", "alpha"), "win_rate"] > 0.5 > table.loc[("method", "delta"), "win_rate"]
        assert (table.loc["method", "n_contexts"] == 4).all() and (table.loc["method", "n_dropped_contexts"] == 0).all()
        sanity = analysis["sanity"].set_index(["method", "control"])
        assert sanity.loc[("alpha", "shuffle"), "delta"] < 0 and sanity.loc[("gamma", "shuffle"), "delta"] < 0
    # The censored table is compared at the epoch every trial reached, and says so.
    contexts = a_cens["contexts"]
    assert (contexts["common_epoch"] == 3).all() and (contexts["completion_rate"] < 0.4).all()
    assert (a_full["contexts"]["common_epoch"] == 10).all()


# ---- (b) no effect: at most 5% of tables show a verdict ---------------------------------------


def _null_spec(seed):
    return PlantedSpec(
        methods=("a", "b", "c", "d"),
        controls=("none", "shuffle"),
        sparsities=(0.5, 0.8, 0.9),
        seeds=3,
        noise=0.01,
        seed_effect=0.01,
        n_layers=1,
        seed=1000 + seed,
    )


@pytest.fixture(scope="module")
def null_tables():
    """100 planted tables without any effect (4 methods x 3 contexts x 3 seeds, a shuffle control);
    every other one ASHA-censored at epoch 3."""
    out = []
    for i in range(100):
        results = planted_results(_null_spec(i))
        out.append(asha_censor(results, rung=3) if i % 2 else results)
    return out


def test_false_verdict_rate_without_effects_is_at_most_five_percent(null_tables):
    false_tables = 0
    ranking_false = sanity_false = 0
    for results in null_tables:
        ranked = set(rank_choices(results, "method")["verdict"])
        sane = set(sanity_checks(results)["verdict"])
        ranking_false += bool(ranked & FALSE_VERDICTS)
        sanity_false += bool(sane & FALSE_VERDICTS)
        false_tables += bool((ranked | sane) & FALSE_VERDICTS)
    rate = false_tables / len(null_tables)
    print(f"false-verdict rate: {rate:.3f} (rankings {ranking_false}, sanity {sanity_false} of {len(null_tables)})")
    assert rate <= 0.05


def test_method_x_seed_effect_without_method_effect_gives_no_robust_winner():
    # Each method is lucky on some seeds, in every context of that seed; no method is better.
    hits = 0
    for i in range(30):
        spec = PlantedSpec(
            methods=("a", "b", "c", "d"),
            sparsities=(0.5, 0.75, 0.875, 0.9375, 0.96875),
            seeds=4,
            noise=0.002,
            method_seed_effect=0.03,
            n_layers=1,
            seed=i,
        )
        verdicts = set(rank_choices(planted_results(spec), "method")["verdict"])
        hits += bool(verdicts & {"robust_winner", "robust_loser"})
    assert hits <= 1  # 5% of 30 tables, rounded down


def test_a_choice_ahead_in_one_context_and_behind_in_the_rest_is_not_a_robust_winner():
    # A: +5 points at one sparsity, -1 point at the three others. Its mean difference to every
    # rival is positive and the same in every seed, so a test over seeds alone calls it robust.
    verdicts = []
    for i in range(8):
        spec = PlantedSpec(
            methods=("A", "B", "C"),
            sparsities=(0.5, 0.75, 0.875, 0.9375),
            seeds=5,
            noise=0.003,
            n_layers=1,
            seed=100 + i,
            method_effects={"A": lambda s: np.where(np.asarray(s) < 0.6, 0.05, -0.01)},
        )
        table = rank_choices(planted_results(spec), "method").set_index("choice")
        verdicts.append(table.loc["A", "verdict"])
    assert "robust_winner" not in verdicts
    assert verdicts.count("context_dependent") >= 6, verdicts


def _method_offset_by_dataset(results, method: str, offsets: dict):
    """``results`` with ``method``'s accuracies moved by ``offsets[<dataset>]`` (by tix)."""
    trials = results.trials
    shift = np.where(trials["method"].eq(method), trials["dataset"].map(offsets), 0.0)
    return with_offsets(results, shift)


@pytest.mark.parametrize(("offsets", "robust"), [({"d1": 0.03, "d2": 0.0}, False), ({"d1": 0.03, "d2": 0.01}, True)])
def test_a_robust_lead_must_be_shown_in_every_dataset(offsets, robust):
    # A: +3 points on d1 and 0 on d2 (6 sparsities each). Over the 12 blocks A is ahead by the
    # signed-rank test (d1's six decide it), and on average over seeds: without a test in each
    # dataset it was a robust winner in 20 of 20 tables. A lead of +1 on d2 is shown there too.
    verdicts = []
    for i in range(10):
        spec = PlantedSpec(
            methods=("A", "B", "C"),
            datasets=("d1", "d2"),
            sparsities=(0.5, 0.58, 0.66, 0.74, 0.82, 0.9),
            seeds=5,
            noise=0.005,
            n_layers=1,
            seed=300 + i,
        )
        results = _method_offset_by_dataset(planted_results(spec), "A", offsets)
        verdicts.append(rank_choices(results, "method").set_index("choice").loc["A", "verdict"])
    if robust:
        assert verdicts.count("robust_winner") >= 9, verdicts
    else:
        assert "robust_winner" not in verdicts
        assert verdicts.count("context_dependent") >= 7, verdicts


def test_a_lead_that_vanishes_where_the_choices_are_close_is_still_robust():
    # A: +4 points at five sparsities, no effect at the sixth, where the block mean over seeds
    # falls on either side of 0 by chance. Across the blocks A is plainly ahead (signed-rank test).
    verdicts = []
    for i in range(6):
        spec = PlantedSpec(
            methods=("A", "B"),
            sparsities=(0.5, 0.6, 0.7, 0.75, 0.8, 0.875),
            seeds=5,
            noise=0.003,
            n_layers=1,
            seed=700 + i,
            method_effects={"A": lambda s: np.where(np.asarray(s) < 0.55, 0.0, 0.04)},
        )
        verdicts.append(rank_choices(planted_results(spec), "method").set_index("choice").loc["A", "verdict"])
    assert verdicts.count("robust_winner") >= 5, verdicts


def test_a_choice_never_ahead_is_not_context_dependent_by_the_luckiest_of_many_levels():
    # A: level with B and C at 14 of 16 sparsities, -3 points at the two highest. Its standing
    # differs between levels (a real effect), but it is ahead of the field at none: with an
    # unadjusted interval at each of 16 levels, one tied level came out "ahead" in 4 of 20 tables.
    verdicts = []
    for i in range(20):
        spec = PlantedSpec(
            methods=("A", "B", "C"),
            sparsities=tuple(np.round(np.linspace(0.3, 0.95, 16), 3)),
            seeds=5,
            noise=0.01,
            n_layers=1,
            seed=4100 + i,
            method_effects={"A": lambda s: np.where(np.asarray(s) > 0.85, -0.03, 0.0)},
        )
        verdicts.append(rank_choices(planted_results(spec), "method").set_index("choice").loc["A", "verdict"])
    # At most 5%: a tied level where A wins every comparison of all 5 seeds by chance, (1/3)^5 per
    # level, is still "ahead" there (1 table of 20).
    assert verdicts.count("context_dependent") <= 1 and "robust_winner" not in verdicts, verdicts


def test_win_scores_tied_across_levels_in_every_seed_are_not_context_dependent():
    # A and B +5 points everywhere, a method x seed effect: in each seed a choice's win score is
    # the same at every sparsity, so Friedman's statistic across levels is 0/0 (every block
    # tied): no evidence that anything depends on the context.
    flagged = 0
    for i in range(20):
        spec = PlantedSpec(
            methods=("A", "B", "C", "D"),
            sparsities=(0.5, 0.75, 0.875),
            seeds=5,
            noise=0.002,
            method_seed_effect=0.01,
            n_layers=1,
            seed=500 + i,
            method_effects={"A": _const(0.05), "B": _const(0.05)},
        )
        table = rank_choices(planted_results(spec), "method")
        flagged += bool((table["verdict"] == "context_dependent").any())
        assert not (table["heterogeneity_p"] == 0).any()
    assert flagged <= 1


def test_no_difference_is_found_without_effects_and_not_from_effects_that_cancel():
    # Equal choices, 20 seeds, 2 datasets: no_difference for most. A +2 points on d1 and -2 on d2
    # wins half its comparisons, as an equal choice does; over 20 tables at 3 seeds it (or a
    # rival it makes look equal) was called no_difference in 6 before each pair's accuracy had
    # to match within 1 point in every dataset.
    found = []
    for i in range(3):
        spec = PlantedSpec(
            methods=("A", "B", "C"),
            datasets=("d1", "d2"),
            sparsities=tuple(np.linspace(0.5, 0.9, 8).round(2)),
            seeds=20,
            noise=0.003,
            n_layers=1,
            seed=1700 + i,
        )
        found += list(rank_choices(planted_results(spec), "method")["verdict"])
    assert found.count("no_difference") >= 7, found
    cancelled = []
    for i in range(20):
        spec = PlantedSpec(
            methods=("random", "A", "B", "C"),
            datasets=("d1", "d2"),
            sparsities=(0.5, 0.7, 0.9),
            seeds=3,
            noise=0.01,
            n_layers=1,
            seed=1000 + i,
        )
        results = _method_offset_by_dataset(planted_results(spec), "A", {"d1": 0.02, "d2": -0.02})
        cancelled += list(rank_choices(results, "method")["verdict"])
    assert "no_difference" not in cancelled


def test_a_mid_field_choice_is_not_called_equivalent_to_the_field():
    # B is 5 points behind A and 5 ahead of C: its win rate is 0.5, yet it differs from both.
    spec = PlantedSpec(
        methods=("A", "B", "C"),
        sparsities=(0.5, 0.75, 0.875),
        seeds=5,
        noise=0.005,
        n_layers=1,
        method_effects={"A": _const(0.05), "C": _const(-0.05)},
    )
    row = rank_choices(planted_results(spec), "method").set_index("choice").loc["B"]
    assert (row["n_ahead"], row["n_behind"]) == (1, 1)
    assert row["verdict"] == "inconclusive"


def test_equal_differences_on_a_discrete_accuracy_scale_are_not_significant():
    # No control effect; accuracies measured on 360 test examples, so three seeds often show the
    # very same difference. Zero spread must not read as certainty (p = 0 survives any Holm).
    from paitune.analysis.load import Results

    def on_test_set(results, size=360.0):
        trials, epochs = results.trials.copy(), results.epochs.copy()
        for frame, columns in ((trials, ("test_acc", "val_acc", "best_val_acc")), (epochs, ("test_acc", "val_acc"))):
            for c in columns:
                frame[c] = np.round(frame[c] * size) / size
        return Results(trials=trials, epochs=epochs, layers=results.layers, sources=results.sources)

    false, zero_p = 0, 0
    for i in range(25):
        spec = PlantedSpec(
            methods=tuple(f"m{j}" for j in range(12)),
            controls=("none", "shuffle"),
            sparsities=(0.5,),
            seeds=3,
            noise=0.003,
            n_layers=1,
            seed=4000 + i,
        )
        table = sanity_checks(on_test_set(planted_results(spec)))
        false += bool(table["verdict"].isin(["hurts", "helps"]).any())
        zero_p += int((table["p_adjusted"] == 0).sum())
    assert zero_p == 0 and false <= 1


def test_all_equal_differences_get_the_exact_sign_flip_p():
    from paitune.analysis.stats import grouped_t_test, t_test_p

    assert t_test_p(np.full(3, 0.01)) == pytest.approx(0.25)
    assert t_test_p(np.full(6, -0.01)) == pytest.approx(2 / 64)
    assert t_test_p(np.zeros(5)) == 1.0
    row = grouped_t_test(pd.DataFrame({"v": np.full(5, 0.002)}), [], "v", margin=0.01).iloc[0]
    assert row["p"] == pytest.approx(2 / 32) and row["p_equivalent"] == pytest.approx(1 / 32)


def test_no_effect_needs_equivalence_in_every_context_at_the_budget():
    # shuffle: +3 points at one sparsity, 0 at another, -3 at the third. The mean over contexts is
    # 0 and within the margin, yet the control plainly matters: not no_effect.
    effects = {0.5: 0.03, 0.8: 0.0, 0.9: -0.03}
    verdicts = []
    for i in range(6):
        spec = PlantedSpec(
            methods=("alpha",),
            controls=("none", "shuffle"),
            sparsities=tuple(effects),
            seeds=6,
            noise=0.003,
            n_layers=1,
            seed=300 + i,
        )
        shifted = _shuffle_shifted(planted_results(spec), "sparsity", effects)
        verdicts.append(sanity_checks(shifted).iloc[0]["verdict"])
    assert "no_effect" not in verdicts, verdicts


def test_no_effect_needs_equivalence_under_every_allocation_a_row_pools():
    # shuffle: -3 points under global, +3 under erk, in every context. A sanity row pools the
    # allocations, so each context's mean delta is 0; yet the control matters under both.
    effects = {"global": -0.03, "erk": 0.03}
    verdicts = []
    for i in range(6):
        spec = PlantedSpec(
            methods=("alpha",),
            allocations=tuple(effects),
            controls=("none", "shuffle"),
            sparsities=(0.5, 0.8, 0.9),
            seeds=8,
            noise=0.003,
            n_layers=1,
            seed=400 + i,
        )
        shifted = _shuffle_shifted(planted_results(spec), "allocation", effects)
        verdicts.append(sanity_checks(shifted).iloc[0]["verdict"])
    assert "no_effect" not in verdicts, verdicts


def test_no_effect_is_found_for_a_control_without_effect_given_seeds():
    # Power: a control with no effect, 10 seeds, 3 contexts, three rows under Holm.
    found = 0
    for i in range(6):
        spec = PlantedSpec(
            methods=("alpha", "beta", "gamma"),
            controls=("none", "shuffle"),
            sparsities=(0.5, 0.75, 0.875),
            seeds=10,
            noise=0.004,
            n_layers=1,
            seed=i,
            control_effects={("alpha", "shuffle"): -0.06},
        )
        table = sanity_checks(planted_results(spec)).set_index(["method", "control"])
        assert table.loc[("alpha", "shuffle"), "verdict"] == "hurts"
        found += table.loc[("beta", "shuffle"), "verdict"] == "no_effect"
    assert found >= 5


def test_a_control_that_hurts_on_one_dataset_and_helps_on_the_other_is_context_dependent():
    # alpha's shuffle arm: -3 points on d1, +1 on d2 (beta's: no effect). On average over the
    # datasets it hurts (significantly at 10 seeds), which without a test in each dataset was the
    # verdict in 20 of 20 tables; a -2 point effect on both is still "hurts".
    verdicts, both = [], []
    for i in range(6):
        spec = PlantedSpec(
            methods=("alpha", "beta"),
            controls=("none", "shuffle"),
            datasets=("d1", "d2"),
            sparsities=(0.5, 0.7, 0.9),
            seeds=10,
            noise=0.01,
            n_layers=1,
            seed=500 + i,
        )
        results = planted_results(spec)
        hit = results.trials["control"].eq("shuffle") & results.trials["method"].eq("alpha")
        for effects, out in (({"d1": -0.03, "d2": 0.01}, verdicts), ({"d1": -0.02, "d2": -0.02}, both)):
            shift = np.where(hit, results.trials["dataset"].map(effects), 0.0)
            table = sanity_checks(with_offsets(results, shift)).set_index(["method", "control"])
            out.append(table.loc[("alpha", "shuffle"), "verdict"])
            assert table.loc[("beta", "shuffle"), "verdict"] in ("no_effect", "inconclusive")
    assert "hurts" not in verdicts and verdicts.count("context_dependent") >= 4, verdicts
    assert both.count("hurts") >= 5, both


def _shuffle_shifted(results, column: str, effects: dict):
    """``results`` with each shuffle trial's accuracies moved by ``effects[<its column value>]``."""
    trials = results.trials
    shift = np.where(trials["control"].eq("shuffle"), trials[column].map(effects), 0.0)
    return with_offsets(results, shift)


# ---- (c) coverage of the intervals at few seeds -----------------------------------------------


@pytest.mark.parametrize("seeds", [3, 5, 10])
def test_sanity_interval_coverage_at_few_seeds(seeds):
    # 200 methods, each with its own shuffle effect of -0.03: 200 independent intervals per n.
    methods = tuple(f"m{i}" for i in range(200))
    spec = PlantedSpec(
        methods=methods,
        controls=("none", "shuffle"),
        sparsities=(0.5, 0.9),
        seeds=seeds,
        noise=0.01,
        seed_effect=0.02,
        n_layers=1,
        seed=seeds,
        control_effects={(m, "shuffle"): -0.03 for m in methods},
    )
    table = sanity_checks(planted_results(spec))
    assert (table["n_units"] == seeds).all()
    covered = ((table["ci_low"] <= -0.03) & (-0.03 <= table["ci_high"])).mean()
    print(f"coverage at {seeds} seeds: {covered:.3f}")
    assert covered >= 0.92


@pytest.mark.parametrize("seeds", [3, 5, 10])
def test_pai_vs_imp_interval_coverage_at_few_seeds(seeds):
    # 100 datasets, each with its own IMP reference: 200 independent gaps of -0.02 per n.
    spec = PlantedSpec(
        methods=("alpha", "imp"),
        datasets=tuple(f"d{i}" for i in range(100)),
        sparsities=(0.5, 0.9),
        seeds=seeds,
        noise=0.01,
        seed_effect=0.02,
        n_layers=1,
        seed=100 + seeds,
        method_effects={"imp": _const(0.02)},
    )
    table = pai_vs_imp(planted_results(spec))
    assert (table["n"] == seeds).all()
    covered = ((table["ci_low"] <= -0.02) & (-0.02 <= table["ci_high"])).mean()
    print(f"pai_vs_imp coverage at {seeds} seeds: {covered:.3f}")
    assert covered >= 0.92


# ---- (e) a strict ordering has one winner ------------------------------------------------------


def test_strict_ordering_gives_the_first_alone_as_robust_winner():
    effects = {"A": 0.08, "B": 0.06, "C": 0.04, "D": 0.02, "E": 0.0}
    spec = PlantedSpec(
        methods=tuple(effects),
        sparsities=(0.5, 0.75, 0.875),
        seeds=5,
        noise=0.005,
        n_layers=1,
        method_effects={m: _const(v) for m, v in effects.items()},
    )
    table = rank_choices(planted_results(spec), "method").set_index("choice")
    assert list(table.index[table["verdict"] == "robust_winner"]) == ["A"]
    assert list(table.index[table["verdict"] == "robust_loser"]) == ["E"]
    assert table.loc["B", "n_ahead"] == 3 and table.loc["B", "n_behind"] == 1
    assert table.loc["A", "p_adjusted"] < 0.05 and table.loc["A", "n_units"] == 5


# ---- (f) proxies are judged within context -----------------------------------------------------


def test_a_proxy_that_tracks_learning_speed_is_not_said_to_predict_final_accuracy():
    # Six methods learn at six speeds to the same final accuracy; a proxy tracks the speed. With
    # 30% of trials stopped at a rung, the contexts' common epoch is that rung, where the fast
    # learners lead: on it alone, "adds beyond size" in 10 of 10 tables. The trials that ran the
    # budget show nothing, and the claim is about the budget.
    speeds = dict(zip(("m0", "m1", "m2", "m3", "m4", "m5"), (1.0, 1.5, 2.0, 3.0, 4.5, 6.0)))
    claimed = []
    for i in range(5):
        spec = PlantedSpec(
            methods=tuple(speeds),
            sparsities=(0.5, 0.7, 0.9),
            seeds=3,
            noise=0.01,
            n_layers=1,
            seed=2500 + i,
            method_speeds=speeds,
            stopped_fraction=0.3,
        )
        results = planted_results(spec)
        noise = np.random.default_rng(i).normal(0.0, 0.3, len(results.trials))
        results.trials["proxy_speed"] = results.trials["method"].map(speeds).to_numpy(np.float64) + noise
        table, _ = proxy_correlations(results, n_boot=50)
        row = table.set_index("proxy").loc["speed"]
        assert row["common_epoch"] < 10 and np.isfinite(row["within_partial_p_adjusted"])
        claimed.append(bool(row["adds_beyond_size"]))
    assert not any(claimed)


def test_proxy_shifted_between_datasets_does_not_add_beyond_size():
    # Four methods: with two (2 x 2 allocations x 3 settings = 12 configs) the permutation p is at
    # least 1/24, which Holm over the three proxies can never bring under 0.05.
    spec = PlantedSpec(
        methods=("alpha", "beta", "gamma", "delta"),
        allocations=("global", "erk"),
        datasets=("d1", "d2", "d3"),
        sparsities=(0.5, 0.9),
        seeds=4,
        repeats=3,
        noise=0.02,
        n_layers=1,
        dataset_effects={"d1": 0.0, "d2": 0.05, "d3": 0.1},
        controls=("none", "invert"),
        control_effects={("alpha", "invert"): -0.3},
    )
    table, by_context = proxy_correlations(planted_results(spec), n_boot=N_BOOT)
    table = table.set_index("proxy")
    shifted = table.loc["dataset"]
    assert shifted["ci_low"] > 0.2  # pooled over datasets it looks like a proxy...
    assert shifted["within_ci_low"] <= 0 <= shifted["within_ci_high"]  # ...within a context it is noise
    assert shifted["adds_beyond_size"] == False  # noqa: E712
    assert table.loc["signal", "adds_beyond_size"] == True  # noqa: E712
    assert table.loc["signal", "within_partial_spearman"] > 0.3
    assert table.loc["noise", "adds_beyond_size"] == False  # noqa: E712
    assert table.loc["signal", "n_contexts"] == 3 * 2
    # Control trials (an inverted mask) never enter a proxy's correlation.
    assert by_context.groupby("proxy")["n"].sum().max() == 4 * 2 * 3 * 2 * 4 * 3
    assert set(by_context.columns) >= {"context", "spearman", "partial_spearman"}


def test_holm_matches_statsmodels():
    from statsmodels.stats.multitest import multipletests

    from paitune.analysis.stats import holm

    p = np.array([0.01, 0.04, 0.03, 0.5, np.nan, 0.002])
    expected = multipletests(p[np.isfinite(p)], method="holm")[1]
    got = holm(p)
    assert np.isnan(got[4])
    np.testing.assert_allclose(got[np.isfinite(p)], expected)


def test_t_interval_and_tost_by_hand():
    from scipy import stats

    from paitune.analysis.stats import grouped_t_test

    values = np.array([0.01, -0.004, 0.003, 0.002])
    row = grouped_t_test(pd.DataFrame({"v": values}), [], "v", margin=0.01).iloc[0]
    low, high = stats.t.interval(0.95, 3, loc=values.mean(), scale=stats.sem(values))
    assert row["ci_low"] == pytest.approx(low) and row["ci_high"] == pytest.approx(high)
    assert row["p"] == pytest.approx(stats.ttest_1samp(values, 0).pvalue)
    lower = stats.ttest_1samp(values, -0.01, alternative="greater").pvalue
    upper = stats.ttest_1samp(values, 0.01, alternative="less").pvalue
    assert row["p_equivalent"] == pytest.approx(max(lower, upper))


# ---- contexts: the sweep's context column, dropped contexts counted ---------------------------


def test_context_column_is_used_and_dropped_contexts_are_counted():
    from paitune.analysis.common import context_table

    spec = PlantedSpec(
        methods=("alpha", "beta", "gamma"),
        sparsities=(0.5, 0.75, 0.875),
        seeds=4,
        n_layers=1,
        method_effects={"alpha": _const(0.05)},
    )
    results = planted_results(spec)
    trials = results.trials
    # Every trial but alpha's failed at sparsity 0.875: that context has nothing to compare.
    lost = (trials["sparsity"] == 0.875) & (trials["method"] != "alpha")
    trials.loc[lost, ["status", "test_acc", "val_acc"]] = ["failed", np.nan, np.nan]
    analysis = analyze(results=results, n_boot=N_BOOT)
    ranked = analysis["rankings"].set_index(["factor", "choice"]).loc["method"]
    assert (ranked["n_contexts"] == 2).all() and ranked.loc["alpha", "n_dropped_contexts"] == 1
    assert analysis["meta"].iloc[0]["n_dropped_contexts"] == 1
    assert analysis["meta"].iloc[0]["n_failed_left_out"] == int(lost.sum())
    # A sweep-written context column wins: here it (artificially) puts two sparsities in one context.
    merged = planted_results(spec)
    merged.trials["context"] = np.where(merged.trials["sparsity"] == 0.875, "c-high", "c-low")
    assert set(context_table(merged)["context"]) == {"c-high", "c-low"}
    assert set(rank_choices(merged, "method")["n_contexts"]) == {2}


def test_findings_state_each_verdict_with_its_numbers():
    spec = PlantedSpec(
        methods=("alpha", "beta", "gamma"),
        controls=("none", "shuffle"),
        sparsities=(0.5, 0.75),
        seeds=5,
        noise=0.004,
        n_layers=1,
        method_effects={"alpha": _const(0.1)},
        control_effects={("alpha", "shuffle"): -0.05},
    )
    analysis = analyze(results=planted_results(spec), n_boot=N_BOOT)
    rows = analysis["findings"].set_index(["section", "subject"])
    winner = rows.loc[("rankings", "method:alpha")]
    assert winner["verdict"] == "robust_winner"
    assert "significantly ahead of all 2 other choices" in winner["sentence"] and "over 5 seeds" in winner["sentence"]
    hurt = rows.loc[("sanity", "alpha:shuffle")]
    assert hurt["verdict"] == "hurts" and "Holm-adjusted p" in hurt["sentence"] and "5 seeds" in hurt["sentence"]
    # Nothing stopped: no second test at the budget, and no word of ASHA.
    assert hurt["sentence"].endswith("every pair ran the budget.") and "ASHA" not in hurt["sentence"]
    # Neither question of the answer was asked (no random, one allocation): the terminal says so.
    from paitune.analysis.document import NO_ANSWER
    from paitune.analysis.terminal import terminal_text

    assert analysis["answer"].empty
    assert NO_ANSWER in " ".join(terminal_text(analysis).split())


@pytest.mark.parametrize("collapse", [True, False])
def test_a_mean_lead_carried_by_one_block_is_said_in_the_findings(collapse):
    # A: +20 points at the highest of four sparsities (its rival collapses there) and -1 point at
    # the three others: +4.3 points on average, behind in 3 of 4 blocks. The pairwise table's mean
    # difference alone reads as a general lead; the findings say the median block disagrees.
    # Without the collapse (+1 point everywhere), nothing is flagged.
    effect = (lambda s: np.where(np.asarray(s) > 0.9, 0.2, -0.01)) if collapse else _const(0.01)
    spec = PlantedSpec(
        methods=("A", "B"),
        sparsities=(0.5, 0.75, 0.875, 0.9375),
        seeds=5,
        noise=0.003,
        n_layers=1,
        seed=7,
        method_effects={"A": effect},
    )
    tables = analyze(results=planted_results(spec), n_boot=N_BOOT)
    pair = tables["pairwise"].set_index(["factor", "choice", "opponent"]).loc[("method", "A", "B")]
    flagged = tables["findings"].loc[tables["findings"]["verdict"] == "mean_from_few_blocks"]
    if not collapse:
        assert pair["median_diff"] > 0 and (pair["blocks_ahead"], pair["blocks_behind"]) == (4, 0)
        assert flagged.empty
        return
    assert pair["mean_diff"] == pytest.approx(0.0425, abs=0.005) and pair["median_diff"] < 0
    assert (pair["blocks_ahead"], pair["blocks_behind"]) == (1, 3)
    # Once per pair (the choice ahead on average), per factor that compares A with B.
    assert list(flagged["subject"]) == ["method:A>B", "method_x_allocation:A/global>B/global"]
    assert set(flagged["section"]) == {"rankings"}
    sentence = flagged["sentence"].iloc[0]
    assert "+4.2 points on average over 4 blocks and 5 seeds" in sentence or "+4.3 points" in sentence
    assert "ahead in 1 and behind in 3 of the 4 blocks" in sentence
