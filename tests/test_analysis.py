"""The analysis recovers effects planted in generated Parquet tables, and hand-checked statistics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from planted import PlantedSpec, generate_tables, write_results
from scipy import stats

from paitune.analysis import (
    accuracy_vs_sparsity,
    analyze,
    concordance,
    early_vs_final,
    hyperparameter_importance,
    layer_collapse,
    load_results,
    pareto_fronts,
    proxy_correlations,
    rank_choices,
    sanity_checks,
    trial_counts,
)
from paitune.analysis.load import Results
from paitune.analysis.stats import grouped_spearman, kendalls_w
from paitune.errors import PaituneError

N_BOOT = 300


def _results(tmp_path, name="exp", **spec_args):
    return load_results(write_results(tmp_path, name, PlantedSpec(experiment=name, **spec_args), files_per_table=3))


def _by_choice(table, factor="method"):
    return table.loc[table["factor"] == factor].set_index("choice")


# ---- hand-checked statistics ------------------------------------------------------------------


def test_kendalls_w_matches_friedman_with_ties():
    ranks = np.array([[1, 2.5, 2.5, 4], [2, 1, 3, 4], [1, 2, 4, 3], [1.5, 1.5, 3, 4]])
    w = kendalls_w(ranks)
    m, n = ranks.shape
    chi2 = stats.friedmanchisquare(*ranks.T).statistic  # scipy applies the tie correction
    assert w == pytest.approx(chi2 / (m * (n - 1)))
    assert kendalls_w(np.tile(np.arange(1.0, 5.0), (3, 1))) == pytest.approx(1.0)


def test_grouped_spearman_matches_direct_computation():
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"g": np.repeat(["a", "b", "c"], [4, 7, 1]), "x": rng.normal(size=12)})
    frame["y"] = frame["x"] + rng.normal(size=12)
    rho = grouped_spearman(frame, ["g"], "x", "y", n_boot=N_BOOT).set_index("g")
    assert rho.loc["b", "spearman"] == pytest.approx(stats.spearmanr(frame.x[4:11], frame.y[4:11]).statistic)
    assert np.isnan(rho.loc["a", "spearman"])  # 4 points < MIN_RUNS_CORRELATION


def _hand_results(rows):
    trials = pd.DataFrame(rows, columns=["method", "seed", "test_acc"]).assign(
        dataset="d",
        model="m",
        sparsity=0.9,
        max_epochs=5,
        allocation="global",
        control="none",
        status="completed",
        experiment="e",
    )
    trials["tix"] = np.arange(len(trials))
    trials["trial_id"] = trials["tix"].astype(str)
    return Results(
        trials=trials,
        epochs=pd.DataFrame(columns=["tix", "epoch", "val_acc"]),
        layers=pd.DataFrame(columns=["tix", "layer", "layer_index", "density"]),
        sources=(),
    )


def test_win_rates_ranks_and_regret_by_hand():
    # Three seeds (contexts): A beats B, A beats B, B beats A; C is always last.
    results = _hand_results(
        [
            ("A", 0, 0.9),
            ("B", 0, 0.8),
            ("C", 0, 0.1),
            ("A", 1, 0.7),
            ("B", 1, 0.6),
            ("C", 1, 0.1),
            ("A", 2, 0.5),
            ("B", 2, 0.6),
            ("C", 2, 0.1),
        ]
    )
    table = rank_choices(results, "method", n_boot=N_BOOT).set_index("choice")
    assert table.loc["A", "win_rate"] == pytest.approx(5 / 6)  # won 5 of its 6 comparisons
    assert table.loc["B", "win_rate"] == pytest.approx(4 / 6)  # beat C three times, A once
    assert table.loc["C", "win_rate"] == 0.0
    assert table.loc["A", "mean_rank"] == pytest.approx(4 / 3)
    assert table.loc["A", "mean_regret"] == pytest.approx(0.1 / 3)
    # Three seeds are three units: C last in all three is not enough for a verdict at 5%
    # (Friedman p = 0.097 over the seeds), so it is inconclusive, not a robust loser.
    assert table.loc["C", "verdict"] == "inconclusive" and table.loc["C", "n_units"] == 3
    assert table.loc["C", "friedman_p"] == pytest.approx(
        stats.friedmanchisquare([0.9, 0.7, 0.5], [0.8, 0.6, 0.6], [0.1, 0.1, 0.1]).pvalue
    )
    assert table.loc["A", "n_contexts"] == 1  # one context (the seed is not part of it)
    record = concordance(results, "method", n_boot=N_BOOT)
    # One seed-averaged context: no agreement across contexts to measure; one dataset x model
    # group: nothing to hold out.
    assert record["n_contexts"] == 1 and np.isnan(record["kendall_w"]) and np.isnan(record["loco_regret"])


def test_kendalls_w_and_group_regret_on_seed_averaged_contexts():
    rows = []
    # Two dataset x model groups, two contexts each, two seeds; A best in group g1, B in g2.
    for dataset, (a, b, c) in (("g1", (0.9, 0.8, 0.1)), ("g2", (0.7, 0.75, 0.1))):
        for sparsity in (0.5, 0.9):
            for seed in (0, 1):
                rows += [
                    ("A", seed, a, dataset, sparsity),
                    ("B", seed, b, dataset, sparsity),
                    ("C", seed, c, dataset, sparsity),
                ]
    trials = pd.DataFrame(rows, columns=["method", "seed", "test_acc", "dataset", "sparsity"]).assign(
        model="m", max_epochs=5, allocation="global", control="none", status="completed", experiment="e"
    )
    trials["tix"] = np.arange(len(trials))
    results = Results(
        trials=trials,
        epochs=pd.DataFrame(columns=["tix", "epoch", "val_acc"]),
        layers=pd.DataFrame(columns=["tix", "layer", "layer_index", "density"]),
        sources=(),
    )
    record = concordance(results, "method", n_boot=N_BOOT)
    assert record["n_contexts"] == 4  # seeds averaged: one block per context
    ranks = np.array([[1, 2, 3], [1, 2, 3], [2, 1, 3], [2, 1, 3]], dtype=float)
    assert record["kendall_w"] == pytest.approx(kendalls_w(ranks))
    # Holding out g1, the mean rank elsewhere picks B: regret 0.1 in g1; holding out g2 picks A:
    # regret 0.05. Two groups: the mean over groups, with a t-interval over them.
    assert record["n_regret_groups"] == 2
    assert record["loco_regret"] == pytest.approx((0.1 + 0.05) / 2)


def test_pareto_front_is_the_non_dominated_set():
    results = _hand_results([("A", 0, 0.9), ("B", 0, 0.8), ("C", 0, 0.95), ("D", 0, 0.7)])
    results.trials["density_achieved"] = [0.1, 0.05, 0.5, 0.2]  # D is dominated by A
    results.trials["flops_sparse"] = [10, 5, 50, 20]
    front = pareto_fronts(results)
    assert sorted(front.loc[front["objective"] == "density", "method"]) == ["A", "B", "C"]


# ---- planted effects --------------------------------------------------------------------------


def test_recovers_robust_and_context_dependent_winners(tmp_path):
    results = _results(
        tmp_path,
        method_effects={
            "alpha": lambda s: 0.05 + 0 * s,  # wins everywhere
            "beta": lambda s: np.where(s < 0.85, 0.03, -0.03),  # wins only at low sparsity
        },
        seeds=5,
    )
    table = _by_choice(rank_choices(results, "method", n_boot=N_BOOT))
    assert table.loc["alpha", "verdict"] == "robust_winner"
    assert table.loc["beta", "verdict"] == "context_dependent"
    assert table.loc["alpha", "n_contexts"] == 5 and table.loc["alpha", "n_units"] == 5  # sparsities; seeds
    assert table.loc["alpha", "p_adjusted"] < 0.05
    assert concordance(results, "method", n_boot=N_BOOT)["kendall_w"] > 0.5


def test_reports_no_winner_where_there_is_none(tmp_path):
    results = _results(tmp_path, seeds=6)
    table = rank_choices(results, "method", n_boot=N_BOOT)
    # No winner and no loser; with six seeds the win rates are not pinned down to within 0.1 of
    # the field either, so the honest verdict is inconclusive (no_difference needs equivalence).
    assert set(table["verdict"]) <= {"no_difference", "inconclusive"}
    assert (table["ci_low"] < 0.5).all() and (table["ci_high"] > 0.5).all()
    record = concordance(results, "method", n_boot=N_BOOT)
    assert record["kendall_w"] < 0.5 and record["friedman_p"] > 0.01


def test_too_few_runs_says_so(tmp_path):
    results = _results(tmp_path, seeds=1, sparsities=(0.5, 0.9))
    table = rank_choices(results, "method", n_boot=N_BOOT)
    assert set(table["verdict"]) == {"too_few_runs"}
    acc = accuracy_vs_sparsity(results, n_boot=N_BOOT)
    assert (acc["note"] == "too_few_runs").all() and acc["ci_low"].isna().all()


def test_sanity_verdict_differs_for_the_method_a_control_hurts(tmp_path):
    # "no_effect" is an equivalence claim (|delta| < 0.01 in every context, TOST over seeds, Holm
    # over the rows): it needs enough seeds and little enough noise to show; with fewer the
    # verdict is inconclusive.
    results = _results(
        tmp_path,
        methods=("alpha", "beta"),
        controls=("none", "shuffle", "invert"),
        control_effects={("alpha", "shuffle"): -0.1},
        seeds=10,
        noise=0.004,
    )
    table = sanity_checks(results, n_boot=N_BOOT).set_index(["method", "control"])
    assert table.loc[("alpha", "shuffle"), "verdict"] == "hurts"
    assert table.loc[("alpha", "shuffle"), "delta"] == pytest.approx(-0.1, abs=0.01)
    assert table.loc[("beta", "shuffle"), "verdict"] == "no_effect"
    assert "per-layer densities carry the signal" in table.loc[("beta", "shuffle"), "interpretation"]
    assert table.loc[("alpha", "shuffle"), "n"] == 10 * 5  # pairs: seeds x sparsities
    assert table.loc[("alpha", "shuffle"), "n_units"] == 10  # the unit is the seed


def test_the_analysis_reads_controls_methods_and_allocations_from_the_registries():
    from paitune.analysis.layers import standard_allocations
    from paitune.analysis.sanity import data_controls, data_free_methods

    assert data_controls() == {"corrupt_labels", "corrupt_pixels"}
    assert data_free_methods() == {"random", "magnitude", "synflow", "ntk_sap", "phew", "dense"}
    assert standard_allocations() >= {"global", "lamp", "uniform", "erk"} and "searched" not in standard_allocations()


def test_proxy_with_signal_vs_noise(tmp_path):
    results = _results(tmp_path, seeds=4, repeats=3, noise=0.02)
    table, by_context = proxy_correlations(results, n_boot=N_BOOT)
    table = table.set_index("proxy")
    assert table.loc["signal", "spearman"] > 0.8 and table.loc["signal", "ci_low"] > 0.5
    assert table.loc["signal", "within_spearman"] > 0.3
    assert abs(table.loc["noise", "spearman"]) < 0.15
    assert table.loc["noise", "ci_low"] < 0 < table.loc["noise", "ci_high"]
    assert table.loc["noise", "kendall"] == pytest.approx(
        stats.kendalltau(
            results.trials.loc[results.trials.status == "completed", "proxy_noise"],
            results.trials.loc[results.trials.status == "completed", "test_acc"],
        ).statistic
    )
    assert table.loc["params_kept", "kind"] == "baseline"
    assert set(by_context["proxy"]) >= {"signal", "noise"}


def test_collapse_and_status_accounting(tmp_path):
    spec = dict(
        collapse_at={"gamma": 0.95}, stopped_fraction=0.2, failed_fraction=0.05, diverged_fraction=0.05, seeds=4
    )
    results = _results(tmp_path, **spec)
    collapse = layer_collapse(results).set_index("method")
    assert collapse.loc["gamma", "max_sparsity_without_collapse"] == 0.9
    assert collapse.loc["gamma", "first_collapse_sparsity"] == 0.95
    assert collapse.loc["alpha", "max_sparsity_without_collapse"] == 0.98
    assert np.isnan(collapse.loc["alpha", "first_collapse_sparsity"])

    counts = trial_counts(results).set_index("status")["n"]
    expected = results.trials["status"].value_counts()
    assert counts.sum() == len(results.trials) == 80
    for status in ("stopped", "failed", "diverged"):
        assert counts[status] == expected.get(status, 0) > 0
    acc = accuracy_vs_sparsity(results, n_boot=N_BOOT)
    # Nothing silently dropped: every trial is in exactly one of the counted columns.
    assert (acc[["n_trials", "n_stopped", "n_failed", "n_diverged"]].to_numpy().sum()) == 80


def test_importance_and_early_vs_final(tmp_path):
    results = _results(tmp_path, seeds=3, repeats=2, method_effects={"alpha": lambda s: 0.05 + 0 * s})
    importance = hyperparameter_importance(results)
    fanova = importance.loc[importance["evaluator"] == "fanova"].set_index("param")["importance"]
    # Within context the method is what matters; the context variables are never parameters.
    assert fanova.idxmax() == "method"
    assert not {"seed", "sparsity", "dataset", "model", "epochs", "max_epochs", "control"} & set(fanova.index)
    overall, by_method = early_vs_final(results, n_boot=N_BOOT)
    assert list(overall["epoch"]) == list(range(1, 11))
    assert (overall["target_epoch"] == 10).all() and not overall["survivors_only"].any()
    assert overall["spearman"].iloc[-1] > 0.7  # within context: val vs test at the last epoch
    assert (overall["n"] == (results.trials["status"] == "completed").sum()).all()
    assert set(by_method["method"]) == {"alpha", "beta", "gamma", "delta"}


def test_early_vs_final_uses_rungs_when_trials_were_stopped(tmp_path):
    from planted import asha_censor

    censored = asha_censor(_results(tmp_path, seeds=4), rung=3)
    overall, _ = early_vs_final(censored, n_boot=N_BOOT)
    assert set(overall["target_epoch"]) == {3, 10}
    rung = overall.loc[overall["target_epoch"] == 3]
    assert not rung["survivors_only"].any() and (rung["n"] == len(censored.trials)).all()
    final = overall.loc[overall["target_epoch"] == 10]
    assert final["survivors_only"].all() and (final["n"] < len(censored.trials) / 2).all()


# ---- loading ----------------------------------------------------------------------------------


def test_load_errors_are_one_line(tmp_path):
    with pytest.raises(PaituneError, match="does not exist"):
        load_results(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PaituneError, match="no trials/ table") as info:
        load_results(tmp_path / "empty")
    assert "\n" not in str(info.value)
    out = write_results(tmp_path, "a", PlantedSpec(seeds=1))
    with pytest.raises(PaituneError, match="given twice"):
        load_results(out, out)


def test_merged_experiments_and_conditional_columns(tmp_path):
    first = write_results(tmp_path, "a", PlantedSpec(experiment="a", seeds=2))
    second = write_results(tmp_path, "b", PlantedSpec(experiment="b", seeds=2, seed=1))
    # A conditional parameter present in only one file of experiment b.
    tables = generate_tables(PlantedSpec(experiment="b", seeds=1, seed=2))
    extra = tables["trials"].slice(0, 3)
    extra = extra.set_column(
        extra.schema.get_field_index("trial_id"), "trial_id", pa.array(["x0", "x1", "x2"])
    ).append_column("iterations", pa.array([10, 20, 30]))
    pq.write_table(extra, second / "trials" / "part-extra.parquet")
    results = load_results(first, second)
    assert len(results.trials) == 40 + 40 + 3
    assert set(results.trials["experiment"]) == {"a", "b"}
    assert results.trials["iterations"].notna().sum() == 3
    # Trial ids repeat across experiments ("t0" in both); epochs join by (experiment, trial_id).
    assert len(results.epochs) == 80 * 10 and results.epochs["tix"].nunique() == 80
    analysis = analyze(results=results, n_boot=N_BOOT)
    assert analysis["trials"]["n"].sum() == 83


def test_large_groups_take_the_normal_interval_the_bootstrap_agrees_with(monkeypatch):
    from paitune.analysis import stats as pai_stats

    rng = np.random.default_rng(0)
    n = pai_stats.LARGE_N + 500
    x = rng.normal(size=n + 40)
    frame = pd.DataFrame({"g": ["large"] * n + ["small"] * 40, "x": x, "y": x + rng.normal(size=n + 40)})
    normal_rho = pai_stats.grouped_spearman(frame, ["g"], "x", "y").set_index("g")
    monkeypatch.setattr(pai_stats, "LARGE_N", 10 * n)  # every group bootstrapped
    boot_rho = pai_stats.grouped_spearman(frame, ["g"], "x", "y").set_index("g")
    assert normal_rho.loc["small"].equals(boot_rho.loc["small"])  # small groups: the same bootstrap
    width = boot_rho.loc["large", "ci_high"] - boot_rho.loc["large", "ci_low"]
    assert normal_rho.loc["large", "ci_low"] == pytest.approx(boot_rho.loc["large", "ci_low"], abs=0.1 * width)
    assert normal_rho.loc["large", "ci_high"] == pytest.approx(boot_rho.loc["large", "ci_high"], abs=0.1 * width)
