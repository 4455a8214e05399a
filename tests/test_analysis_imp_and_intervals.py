"""PaI vs IMP pairs each trial with its IMP partner at the last epoch the two reached; its
equivalence claims are Holm-controlled over the table's rows; the descriptive tables' intervals
over 2 to 5 seeds are Student-t intervals that cover the planted truth."""

from __future__ import annotations

import numpy as np
import pytest
from planted import PlantedSpec, asha_censor, planted_results, with_offsets

from paitune.analysis import accuracy_vs_sparsity, dense_reference, operating_points, pai_vs_imp
from paitune.analysis.load import Results


def _const(value):
    return lambda s: value + 0 * s


def _stop(results: Results, hit: np.ndarray, rung: int) -> Results:
    """The trials ``hit`` (boolean per trial) stopped at epoch ``rung``, reporting that epoch."""
    trials = results.trials.copy()
    epochs = results.epochs
    at = epochs.loc[epochs["epoch"] == rung].set_index("tix")
    trials.loc[hit, "status"] = "stopped"
    trials.loc[hit, "epochs_run"] = rung
    for column in ("val_acc", "test_acc"):
        trials.loc[hit, column] = trials.loc[hit, "tix"].map(at[column]).to_numpy()
    trials.loc[hit, "best_val_acc"] = trials.loc[hit, "val_acc"]
    drop = np.isin(epochs["tix"], trials.loc[hit, "tix"]) & (epochs["epoch"] > rung)
    return Results(
        trials=trials, epochs=epochs.loc[~drop].reset_index(drop=True), layers=results.layers, sources=results.sources
    )


def _imp_two_points_ahead(methods, *, seed):
    """Three contexts, 10 seeds: IMP planted 2 points above every other method."""
    return PlantedSpec(
        methods=methods,
        sparsities=(0.5, 0.8, 0.9),
        seeds=10,
        noise=0.005,
        seed_effect=0.01,
        n_layers=1,
        method_effects={"imp": _const(0.02)},
        seed=seed,
    )


# ---- pairs meet at the last epoch both reached ------------------------------------------------


@pytest.mark.parametrize("draw", range(3))
def test_an_unrelated_method_stopped_early_does_not_move_the_comparison_with_imp(draw):
    # alpha and imp both run the budget, alpha planted 2 points below imp. gamma, a third method,
    # is stopped at epoch 1 in every context: the context's common epoch is 1, where the planted
    # curves have shrunk the gap to a quarter of itself. The pairs alpha-imp must still meet at 10.
    full = planted_results(_imp_two_points_ahead(("alpha", "gamma", "imp"), seed=1200 + draw))
    stopped = _stop(full, (full.trials["method"] == "gamma").to_numpy(), rung=1)
    table = pai_vs_imp(stopped)
    alpha = table.loc[table["method"] == "alpha"]
    assert len(alpha) == 3 and (alpha["n"] == 10).all()
    assert (alpha["epoch"] == 10).all() and (alpha["n_censored"] == 0).all()
    assert np.allclose(alpha["gap"], -0.02, atol=0.006)
    assert (alpha["verdict"] == "below_imp").all()
    # gamma itself was stopped: its pairs meet at epoch 1, and no equivalence is claimed from them.
    gamma = table.loc[table["method"] == "gamma"]
    assert (gamma["epoch"] == 1).all() and (gamma["n_censored"] == gamma["n_pairs"]).all()
    assert not (gamma["verdict"] == "matches_imp").any()
    assert gamma["note"].str.contains("epoch 1").all()


def test_no_equivalence_is_claimed_from_pairs_compared_before_the_budget():
    # beta matches imp exactly; in 2 of 5 seeds its trials were stopped at epoch 3 (so were their
    # imp partners' rivals: nothing else). The equivalence shown at epoch 3 is no claim about the
    # budget: the verdict is not matches_imp and the note says how many pairs and where.
    spec = PlantedSpec(
        methods=("beta", "imp"),
        sparsities=(0.5, 0.8),
        seeds=5,
        noise=0.001,
        seed_effect=0.01,
        n_layers=1,
        seed=7,
    )
    full = planted_results(spec)
    assert (pai_vs_imp(full)["verdict"] == "matches_imp").all()  # uncensored, the planted tie is shown
    trials = full.trials
    hit = ((trials["method"] == "beta") & trials["seed"].isin([0, 1])).to_numpy()
    table = pai_vs_imp(_stop(full, hit, rung=3))
    assert (table["n_censored"] == 2).all() and (table["n_pairs"] == 5).all()
    assert not (table["verdict"] == "matches_imp").any()
    assert table["note"].str.contains("2 of 5 pairs").all() and table["note"].str.contains("epoch 3").all()


def test_asha_censoring_gives_no_false_equivalence_with_imp():
    # Bottom two thirds of every context stopped at epoch 1 (ASHA's first rung): the gap at that
    # epoch is compressed, so without the rule above TOST calls nearly half the rows matches_imp.
    verdicts = []
    for draw in range(4):
        spec = _imp_two_points_ahead(("alpha", "imp"), seed=100 + draw)
        verdicts += list(pai_vs_imp(asha_censor(planted_results(spec), rung=1))["verdict"])
    assert "matches_imp" not in verdicts and "above_imp" not in verdicts


def test_a_method_meets_the_imp_of_its_own_allocation():
    # IMP/global 2 points above every method, IMP/erk 2 points below: pooled, each row's gap
    # averaged to 0 and read as matches_imp (236 of 240 rows in an audit). Against the IMP of its
    # own allocation each row is 2 points off: below IMP under global, above it under erk.
    verdicts = set()
    for draw in range(2):
        spec = PlantedSpec(
            methods=("alpha", "beta", "imp"),
            allocations=("global", "erk"),
            sparsities=(0.5, 0.8, 0.9),
            seeds=10,
            noise=0.005,
            n_layers=1,
            seed=200 + draw,
        )
        results = planted_results(spec)
        trials = results.trials
        is_imp = trials["method"].eq("imp").to_numpy()
        shift = np.where(is_imp, np.where(trials["allocation"].eq("global"), 0.02, -0.02), 0.0)
        table = pai_vs_imp(with_offsets(results, shift))
        verdicts |= set(zip(table["allocation"], table["verdict"]))
    assert verdicts == {("global", "below_imp"), ("erk", "above_imp")}, verdicts


# ---- equivalence claims over a table's rows ----------------------------------------------------


def test_a_family_of_rows_at_the_margin_rarely_gives_a_false_match():
    # Every row's true gap is exactly the margin (imp 0.01 above every method): every matches_imp
    # is false. Per row TOST errs at most 5% of the time; over a table of 12 rows, without a
    # multiplicity correction, about 30% of tables carry at least one false match.
    tables_with_a_false_match = 0
    for draw in range(20):
        spec = PlantedSpec(
            methods=("a", "b", "c", "d", "imp"),
            sparsities=(0.5, 0.8, 0.9),
            seeds=5,
            noise=0.01,
            seed_effect=0.01,
            n_layers=1,
            method_effects={"imp": _const(0.01)},
            seed=3000 + draw,
        )
        table = pai_vs_imp(planted_results(spec))
        assert len(table) == 12
        tables_with_a_false_match += int((table["verdict"] == "matches_imp").any())
    assert tables_with_a_false_match <= 2


# ---- Student-t intervals over seeds in the descriptive tables ----------------------------------


def test_descriptive_intervals_cover_the_truth_at_three_seeds():
    # 100 datasets, each its own cells and its own dense reference, no per-seed offset: the
    # cells are independent draws. Truth: accuracy 0.92 - 0.5 s^6, dense 0.95.
    spec = PlantedSpec(
        methods=("alpha",),
        datasets=tuple(f"d{i}" for i in range(100)),
        sparsities=(0.5, 0.75),
        seeds=3,
        noise=0.01,
        n_layers=1,
        dense=True,
        seed=33,
    )
    results = planted_results(spec)
    table = accuracy_vs_sparsity(results)
    table = table.loc[table["method"] == "alpha"]
    assert len(table) == 200 and (table["n"] == 3).all() and (table["n_gap"] == 3).all()
    truth = 0.92 - 0.5 * table["sparsity"] ** 6
    covered = ((table["ci_low"] <= truth) & (truth <= table["ci_high"])).mean()
    gap = truth - 0.95
    gap_covered = ((table["gap_ci_low"] <= gap) & (gap <= table["gap_ci_high"])).mean()
    points = operating_points(results)
    points = points.loc[points["n"] > 0]
    assert len(points) == 200
    point_truth = 0.92 - 0.5 * (1 - 1 / points["ratio"]) ** 6
    point_covered = ((points["ci_low"] <= point_truth) & (point_truth <= points["ci_high"])).mean()
    reference = dense_reference(results)
    assert len(reference) == 100
    dense_covered = ((reference["ci_low"] <= 0.95) & (0.95 <= reference["ci_high"])).mean()
    print(
        f"coverage at 3 seeds: accuracy {covered:.3f}, gap {gap_covered:.3f}, operating points "
        f"{point_covered:.3f}, dense {dense_covered:.3f}"
    )
    assert min(covered, gap_covered, point_covered, dense_covered) >= 0.9


def test_one_seed_gives_no_interval():
    spec = PlantedSpec(methods=("alpha",), sparsities=(0.5,), seeds=1, n_layers=1, dense=True)
    results = planted_results(spec)
    row = accuracy_vs_sparsity(results).set_index("method").loc["alpha"]
    assert row["n"] == 1 and np.isnan(row["ci_low"]) and np.isnan(row["gap_ci_low"])
    assert row["note"] == "too_few_runs"
    assert dense_reference(results)["ci_low"].isna().all()
