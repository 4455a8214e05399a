"""Honest comparisons: dense reference and gap to dense, corrupted-data controls, standard
operating points, proxy size bias, PaI vs IMP, and binning of continuously sampled sparsity —
each recovered from planted tables, plus hand-checked pieces."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from planted import PlantedSpec, write_results

from paitune.analysis import (
    accuracy_vs_sparsity,
    analyze,
    bin_continuous_sparsity,
    bin_to_ratio_grid,
    compression_ratio,
    dense_reference,
    load_results,
    operating_points,
    pai_vs_imp,
    proxy_correlations,
    rank_choices,
    sanity_checks,
)
from paitune.analysis.operating import match_ratio
from paitune.analysis.stats import grouped_partial_spearman

N_BOOT = 300
SPARSITIES = (0.5, 0.75, 0.875, 0.9375)


def _results(tmp_path, name="exp", **spec_args):
    spec = PlantedSpec(experiment=name, **spec_args)
    return load_results(write_results(tmp_path, name, spec, files_per_table=2)), spec


def _base_curve(s):
    return 0.92 - 0.5 * np.asarray(s) ** 6  # the planted accuracy of a method without effects


# ---- dense reference --------------------------------------------------------------------------


def test_gap_to_dense_is_recovered_and_paired_by_seed(tmp_path):
    # A large per-seed offset shared by every trial of the seed (dense included): pairing by seed
    # must cancel it, so the gap's CI is far narrower than the accuracy's.
    results, spec = _results(
        tmp_path,
        methods=("alpha", "beta"),
        sparsities=SPARSITIES,
        seeds=6,
        dense=True,
        dense_accuracy=0.9,
        seed_effect=0.03,
        noise=0.005,
        method_effects={"beta": lambda s: -0.04 + 0 * s},
    )
    table = accuracy_vs_sparsity(results, n_boot=N_BOOT)
    rows = table.loc[table["method"] != "dense"].set_index(["method", "sparsity"])
    for s in SPARSITIES:
        for method, effect in (("alpha", 0.0), ("beta", -0.04)):
            row = rows.loc[(method, s)]
            planted = _base_curve(s) + effect - 0.9
            assert row["gap"] == pytest.approx(planted, abs=0.01)
            assert row["gap_ci_low"] <= planted + 0.005 and planted - 0.005 <= row["gap_ci_high"]
            assert row["n_gap"] == 6 and row["gap_note"] == ""
            assert row["compression"] == pytest.approx(1 / (1 - s))
            assert row["gap_ci_high"] - row["gap_ci_low"] < 0.5 * (row["ci_high"] - row["ci_low"])
    dense = table.loc[table["method"] == "dense"].iloc[0]
    assert dense["sparsity"] == 0 and dense["compression"] == 1 and dense["gap"] == pytest.approx(0)
    reference = dense_reference(results, n_boot=N_BOOT).iloc[0]
    assert reference["n"] == 6 and reference["source"] == "dense_trials" and reference["note"] == ""
    # The reference is not a competing method.
    ranked = rank_choices(results, "method", n_boot=N_BOOT)
    assert "dense" not in set(ranked["choice"])
    assert set(operating_points(results, n_boot=N_BOOT)["method"]) == {"alpha", "beta"}


def test_under_asha_a_cells_gap_is_its_final_accuracys_gap(tmp_path):
    """ASHA stops half of each context's trials at epoch 2 of 10 (the context's common epoch): the
    table's accuracy is its completed trials' final one, and its gap is that accuracy's gap to the
    dense model's final accuracy, paired by seed, not a gap at epoch 2 (under half the final one
    on these learning curves) beside a final accuracy."""
    from planted import asha_censor

    results, _ = _results(
        tmp_path, methods=("alpha", "beta"), sparsities=(0.875, 0.9375), seeds=8, dense=True, dense_accuracy=0.9,
        seed_effect=0.01, noise=0.003, method_effects={"beta": lambda s: -0.04 + 0 * s},
    )  # fmt: skip
    censored = asha_censor(results, rung=2, keep=0.5)
    table = accuracy_vs_sparsity(censored, n_boot=N_BOOT)
    rows = table.loc[table["method"] != "dense"].set_index(["method", "sparsity"])
    points = operating_points(censored, n_boot=N_BOOT).set_index(["method", "ratio"])
    assert rows["n_stopped"].sum() > 0
    for (method, s), row in rows.iterrows():
        if row["n"] == 0:
            continue
        planted = _base_curve(s) + (-0.04 if method == "beta" else 0.0) - 0.9
        assert row["n_gap"] == row["n"]
        assert row["gap"] == pytest.approx(row["mean"] - row["dense_mean"], abs=1e-12)
        assert row["gap"] == pytest.approx(planted, abs=0.01)
        point = points.loc[(method, round(1 / (1 - s)))]
        assert point["gap"] == pytest.approx(row["gap"], abs=1e-12) and point["mean"] == pytest.approx(row["mean"])


def _results_per_setting(specs: dict[str, PlantedSpec]):
    """One planted results set from one spec per context setting (``"augment=none"``, say): each
    part's trials get the setting appended to their context id and a prefix to their ids."""
    import pyarrow as pa
    from planted import generate_tables, results_from_tables

    parts = []
    for i, (setting, spec) in enumerate(specs.items()):
        tables = generate_tables(spec)
        for name, table in tables.items():
            ids = pa.compute.binary_join_element_wise(f"s{i}-", table["trial_id"], "")
            table = table.set_column(table.schema.get_field_index("trial_id"), "trial_id", ids)
            if name == "trials":
                contexts = pa.compute.binary_join_element_wise(table["context"], setting, ",")
                table = table.set_column(table.schema.get_field_index("context"), "context", contexts)
            tables[name] = table
        parts.append(tables)
    return results_from_tables({k: pa.concat_tables([p[k] for p in parts]) for k in parts[0]})


def test_a_context_with_a_training_value_is_paired_with_its_own_dense_reference(tmp_path):
    # A space whose context holds augment: each augment value has its own dense reference (0.95
    # with augmentation, 0.80 without), and every gap, table row and operating point stays within
    # its setting. Paired across settings, each gap would be off by 0.075.
    results = _results_per_setting(
        {
            f"augment={augment}": PlantedSpec(methods=("alpha",), sparsities=(0.5, 0.75), seeds=4, dense=True,
                                              dense_accuracy=dense, noise=0.002,
                                              method_effects={"alpha": lambda s, d=dense: d - 0.95 + 0 * s})
            for augment, dense in (("standard", 0.95), ("none", 0.80))
        }
    )  # fmt: skip

    reference = dense_reference(results, n_boot=N_BOOT).set_index("setting")
    assert reference.loc["augment=standard", "mean"] == pytest.approx(0.95, abs=0.005)
    assert reference.loc["augment=none", "mean"] == pytest.approx(0.80, abs=0.005)
    assert (reference["n"] == 4).all()
    table = accuracy_vs_sparsity(results, n_boot=N_BOOT)
    rows = table.loc[table["method"] == "alpha"].set_index(["setting", "sparsity"])
    for setting, dense in (("augment=standard", 0.95), ("augment=none", 0.80)):
        for s in (0.5, 0.75):
            row = rows.loc[(setting, s)]
            assert row["gap"] == pytest.approx(_base_curve(s) - 0.95, abs=0.005)
            assert row["dense_mean"] == pytest.approx(dense, abs=0.005) and row["n"] == 4 and row["n_gap"] == 4
    from paitune.analysis import plots

    titles = sorted(ax.get_title() for ax in plots.accuracy_vs_sparsity(table).axes if ax.get_visible())
    assert titles == [
        "digits / mlp / 10 ep / augment=none / global",
        "digits / mlp / 10 ep / augment=standard / global",
    ]
    figure = plots.operating_points(operating_points(results, n_boot=N_BOOT))
    assert sorted(ax.get_title() for ax in figure.axes if ax.get_visible()) == [
        "digits / mlp / 10 ep / augment=none",
        "digits / mlp / 10 ep / augment=standard",
    ]
    points = operating_points(results, n_boot=N_BOOT).set_index(["setting", "ratio"])
    assert points.loc[("augment=none", 2.0), "gap"] == pytest.approx(_base_curve(0.5) - 0.95, abs=0.005)
    assert points.loc[("augment=standard", 4.0), "mean"] == pytest.approx(_base_curve(0.75), abs=0.005)


def test_a_pruning_value_in_the_context_splits_the_cells_but_shares_the_dense_reference():
    # prune_batches is part of the context: its values are separate cells (1 batch scores 0.05
    # better here), and both pair with the one dense reference, which has no scoring batches.
    results = _results_per_setting(
        {
            f"prune_batches={batches}": PlantedSpec(methods=("alpha",), sparsities=(0.5, 0.75), seeds=4,
                                                    dense=batches == 1, dense_accuracy=0.95, noise=0.002,
                                                    method_effects={"alpha": lambda s, e=effect: e + 0 * s})
            for batches, effect in ((1, 0.0), (4, -0.05))
        }
    )  # fmt: skip

    reference = dense_reference(results, n_boot=N_BOOT)
    assert reference["setting"].tolist() == [""] and reference["n"].tolist() == [4]
    rows = accuracy_vs_sparsity(results, n_boot=N_BOOT)
    rows = rows.loc[rows["method"] == "alpha"].set_index(["setting", "sparsity"])
    for setting, effect in (("prune_batches=1", 0.0), ("prune_batches=4", -0.05)):
        for s in (0.5, 0.75):
            row = rows.loc[(setting, s)]
            assert row["n"] == 4 and row["n_gap"] == 4
            assert row["gap"] == pytest.approx(_base_curve(s) + effect - 0.95, abs=0.005)
    dense = accuracy_vs_sparsity(results, n_boot=N_BOOT).set_index("method").loc["dense"]
    assert dense["setting"] == ""  # what it is the reference for
    from paitune.analysis import plots

    figure = plots.accuracy_vs_sparsity(accuracy_vs_sparsity(results, n_boot=N_BOOT))
    panels = [ax for ax in figure.axes if ax.get_visible()]
    assert len(panels) == 2 and all("dense" in ax.get_legend_handles_labels()[1] for ax in panels)


def test_dense_column_is_used_and_a_missing_reference_is_never_invented(tmp_path):
    # Only the column (no dense trials): the gap comes from dense_test_acc.
    with_column, _ = _results(
        tmp_path,
        "col",
        methods=("alpha", "beta"),
        sparsities=SPARSITIES,
        seeds=3,
        dense_column=True,
        dense_accuracy=0.9,
    )
    table = accuracy_vs_sparsity(with_column, n_boot=N_BOOT).set_index(["method", "sparsity"])
    assert table.loc[("alpha", 0.5), "gap"] == pytest.approx(_base_curve(0.5) - 0.9, abs=0.01)
    assert dense_reference(with_column, n_boot=N_BOOT)["source"].tolist() == ["trial_rows"]

    # A trial's own dense_test_acc wins over the dense trials of its context.
    both, _ = _results(tmp_path, "both", methods=("alpha",), sparsities=(0.5,), seeds=3, dense=True)
    trials = both.trials
    trials["dense_test_acc"] = np.where(trials["method"] == "dense", np.nan, 0.5)
    row = accuracy_vs_sparsity(both, n_boot=N_BOOT).set_index("method").loc["alpha"]
    assert row["dense_mean"] == pytest.approx(0.5)
    assert row["gap"] == pytest.approx(row["mean"] - 0.5)

    # Neither: null gaps, a note, and no made-up reference.
    none, _ = _results(tmp_path, "none", methods=("alpha", "beta"), sparsities=SPARSITIES, seeds=3)
    analysis = analyze(results=none, n_boot=N_BOOT)
    acc = analysis["accuracy_vs_sparsity"]
    assert acc["gap"].isna().all() and acc["dense_mean"].isna().all()
    assert (acc["gap_note"] == "no_dense_reference").all() and (acc["n_gap"] == 0).all()
    reference = analysis["dense_reference"].iloc[0]
    assert reference["n"] == 0 and np.isnan(reference["mean"]) and reference["note"] == "no_dense_reference"
    notes = analysis["notes"]
    assert notes.loc[notes["section"] == "accuracy", "note"].str.contains("no completed dense").any()
    assert analysis["meta"].iloc[0]["contexts_without_dense"] == 1
    assert (analysis["operating_points"]["gap"].isna()).all()


# ---- corrupted-data controls ------------------------------------------------------------------


def test_corrupt_controls_not_applicable_for_data_free_and_recovered_for_data_methods(tmp_path):
    # "alpha" is not a known data-free method, but its corrupt trials kept the unmodified masks
    # (same mask_hash): the data-driven rule marks it not applicable too.
    results, _ = _results(
        tmp_path,
        methods=("random", "magnitude", "alpha", "snip", "grasp"),
        sparsities=SPARSITIES,
        controls=("none", "corrupt_labels", "corrupt_pixels"),
        seeds=10,  # no_effect: equivalence in every context, Holm over rows
        noise=0.004,
        dense=True,
        data_free_methods=("random", "magnitude", "alpha"),
        control_effects={("snip", "corrupt_labels"): -0.08},
    )
    table = sanity_checks(results, n_boot=N_BOOT).set_index(["method", "control"])
    for method in ("random", "magnitude", "alpha", "dense"):
        for control in ("corrupt_labels", "corrupt_pixels"):
            row = table.loc[(method, control)]
            assert row["verdict"] == "not_applicable"
            assert row[["delta", "ci_low", "ci_high", "mean_none", "mean_control"]].isna().all()
            assert "does not use the data" in row["interpretation"]
    assert table.loc[("dense", "corrupt_labels"), "n"] == 0  # no dense corrupt trial exists, still listed
    hurt = table.loc[("snip", "corrupt_labels")]
    assert hurt["verdict"] == "hurts" and hurt["delta"] == pytest.approx(-0.08, abs=0.01)
    assert "the mask uses the data" in hurt["interpretation"]
    assert hurt["n"] == 10 * len(SPARSITIES) and hurt["n_units"] == 10
    for method, control in (("snip", "corrupt_pixels"), ("grasp", "corrupt_labels"), ("grasp", "corrupt_pixels")):
        row = table.loc[(method, control)]
        assert row["verdict"] == "no_effect" and "does not matter" in row["interpretation"]


def test_unchanged_masks_are_read_from_each_control_trial_and_its_own_partner(tmp_path):
    # Two learning rates per cell: each corrupt trial of "alpha" kept the mask of its own partner
    # (same lr), whose mask differs from the other lr's. Compared with every unmodified trial of
    # its context and seed instead, it would look changed, and the control "applicable".
    results, _ = _results(
        tmp_path,
        methods=("alpha", "snip"),
        sparsities=(0.5, 0.9),
        controls=("none", "corrupt_labels"),
        seeds=4,
        repeats=2,
        data_free_methods=("alpha",),
    )
    trials = results.trials
    assert trials["lr"].nunique() == 2
    table = sanity_checks(results, n_boot=N_BOOT).set_index(["method", "control"])
    assert table.loc[("alpha", "corrupt_labels"), "verdict"] == "not_applicable"
    assert table.loc[("snip", "corrupt_labels"), "verdict"] != "not_applicable"


# ---- standard operating points ----------------------------------------------------------------


def test_match_ratio_by_hand():
    matched = match_ratio(np.array([0.0, 0.5, 0.75, 0.9, 0.97, 0.984375, 0.995, 0.999, 1.0]))
    expected = [np.nan, 2, 4, np.nan, 32, 64, np.nan, 1000, np.nan]  # 0.9 = 10x, 0.995 = 200x: none
    np.testing.assert_array_equal(matched, expected)


def test_operating_point_table_matches_the_sweep(tmp_path):
    sparsities = (0.5, 0.75, 0.9, 0.97, 0.999)
    results, _ = _results(
        tmp_path, methods=("alpha", "beta"), allocations=("global", "erk"), sparsities=sparsities, seeds=3, dense=True
    )
    # Every beta/global trial at 4x failed: swept, but no number to show.
    trials = results.trials
    trials.loc[
        (trials["method"] == "beta") & (trials["allocation"] == "global") & (trials["sparsity"] == 0.75),
        ["status", "test_acc"],
    ] = ["failed", np.nan]
    table = operating_points(results, n_boot=N_BOOT)
    failed = table.loc[(table["method"] == "beta") & (table["allocation"] == "global") & (table["ratio"] == 4)].iloc[0]
    assert failed["n"] == 0 and failed["note"] == "no_completed_trials" and np.isnan(failed["mean"])
    alpha = table.loc[(table["method"] == "alpha") & (table["allocation"] == "erk")].set_index("ratio")
    assert list(alpha.index) == [2, 4, 8, 16, 32, 1000]  # core ratios always; 1000 because swept
    assert (alpha.loc[[8, 16], "n"] == 0).all() and (alpha.loc[[8, 16], "note"] == "not_swept").all()
    assert alpha.loc[32, "sparsity_mean"] == pytest.approx(0.97)  # matched within the tolerance
    assert alpha.loc[1000, "target_sparsity"] == pytest.approx(0.999)
    acc = accuracy_vs_sparsity(results, n_boot=N_BOOT)
    for ratio, s in ((2, 0.5), (4, 0.75), (32, 0.97), (1000, 0.999)):
        cell = acc.loc[
            (acc["method"] == "alpha")
            & (acc["allocation"] == "erk")
            & (acc["control"] == "none")
            & np.isclose(acc["sparsity"], s)
        ].iloc[0]
        assert alpha.loc[ratio, "n"] == 3
        assert alpha.loc[ratio, "mean"] == pytest.approx(cell["mean"])
        assert alpha.loc[ratio, "gap"] == pytest.approx(cell["gap"])
        assert alpha.loc[ratio, "gap_ci_low"] <= alpha.loc[ratio, "gap"] <= alpha.loc[ratio, "gap_ci_high"]


# ---- proxy size bias --------------------------------------------------------------------------


def test_partial_spearman_matches_residual_regression_by_hand():
    rng = np.random.default_rng(5)
    n = 60
    z1, z2 = rng.normal(size=n), rng.normal(size=n)
    x = z1 + 0.5 * rng.normal(size=n)
    y = z1 + z2 + 0.5 * x + rng.normal(size=n)
    frame = pd.DataFrame({"x": x, "y": y, "z1": z1, "z2": z2})
    got = grouped_partial_spearman(frame, [], "x", "y", ["z1", "z2"], n_boot=N_BOOT).iloc[0]
    ranks = frame.rank()
    design = np.column_stack([np.ones(n), ranks["z1"], ranks["z2"]])
    residual = {c: ranks[c] - design @ np.linalg.lstsq(design, ranks[c], rcond=None)[0] for c in ("x", "y")}
    expected = np.corrcoef(residual["x"], residual["y"])[0, 1]
    assert got["partial"] == pytest.approx(expected)
    assert got["ci_low"] <= got["partial"] <= got["ci_high"] and got["n"] == n
    # Collinear controls (the same ranking twice) and a variable they explain fully.
    frame["z1_copy"] = 2 * frame["z1"] + 1
    same = grouped_partial_spearman(frame, [], "x", "y", ["z1", "z1_copy"], n_boot=N_BOOT).iloc[0]
    single = grouped_partial_spearman(frame, [], "x", "y", ["z1"], n_boot=N_BOOT).iloc[0]
    assert same["partial"] == pytest.approx(single["partial"])
    frame["x_size"] = np.exp(frame["z1"])  # a monotone function of the control: nothing left
    explained = grouped_partial_spearman(frame, [], "x_size", "y", ["z1"], n_boot=N_BOOT).iloc[0]
    assert explained["partial"] == 0 and explained["ci_low"] <= 0 <= explained["ci_high"]


def test_proxy_that_only_counts_parameters_adds_nothing_beyond_size(tmp_path):
    results, _ = _results(tmp_path, sparsities=SPARSITIES, seeds=4, repeats=3, noise=0.02)
    table, _ = proxy_correlations(results, n_boot=N_BOOT)
    table = table.set_index("proxy")
    size = table.loc["size"]  # log(params_kept) in disguise
    assert size["ci_low"] > 0.5  # looks like a great proxy on its own...
    assert size["partial_ci_low"] <= 0 <= size["partial_ci_high"]  # ...but it is only size
    assert size["adds_beyond_size"] is False or size["adds_beyond_size"] == False  # noqa: E712
    assert "is not shown to add anything beyond size" in size["size_note"]
    signal = table.loc["signal"]
    assert bool(signal["adds_beyond_size"]) and signal["partial_ci_low"] > 0.3
    assert "adds information beyond size" in signal["size_note"]
    assert not bool(table.loc["noise", "adds_beyond_size"])
    assert signal["params_spearman"] == pytest.approx(table.loc["params_kept", "spearman"])
    assert signal["flops_spearman"] == pytest.approx(table.loc["flops_sparse", "spearman"])
    assert pd.isna(table.loc["params_kept", "adds_beyond_size"])  # a baseline is not judged


# ---- PaI vs after-training --------------------------------------------------------------------


def test_pai_vs_imp_gaps_are_recovered(tmp_path):
    # matches_imp is an equivalence claim (|gap| < 0.01 by TOST over seeds): it needs the noise
    # small enough for five seeds to show it.
    results, _ = _results(
        tmp_path,
        methods=("alpha", "rigl", "imp"),
        sparsities=SPARSITIES,
        seeds=5,
        seed_effect=0.03,
        noise=0.003,
        method_effects={"imp": lambda s: 0.05 + 0 * s, "rigl": lambda s: 0.05 + 0 * s},
    )
    table = pai_vs_imp(results, n_boot=N_BOOT)
    assert set(table["method"]) == {"alpha", "rigl"}  # IMP is the reference, DST an ordinary method
    assert len(table) == 2 * len(SPARSITIES) and (table["n"] == 5).all()
    alpha = table.loc[table["method"] == "alpha"]
    assert np.allclose(alpha["gap"], -0.05, atol=0.01) and (alpha["verdict"] == "below_imp").all()
    rigl = table.loc[table["method"] == "rigl"]
    assert np.allclose(rigl["gap"], 0.0, atol=0.01)
    assert (rigl["verdict"] == "matches_imp").sum() >= 3
    assert not rigl["verdict"].isin(["below_imp", "above_imp"]).any()
    assert (table["n_units"] == 5).all() and (table["p_adjusted"] >= 0).all()
    assert np.allclose(table["compression"], 1 / (1 - table["sparsity"]))
    assert (table["mean_method"] - table["mean_imp"]).to_numpy() == pytest.approx(table["gap"].to_numpy())
    assert {"rigl", "imp"} <= set(rank_choices(results, "method", n_boot=N_BOOT)["choice"])


def test_no_imp_trials_gives_an_empty_section_and_a_note(tmp_path):
    results, _ = _results(tmp_path, methods=("alpha", "beta"), sparsities=SPARSITIES, seeds=2)
    analysis = analyze(results=results, n_boot=N_BOOT)
    assert analysis["pai_vs_imp"].empty
    assert (analysis["notes"]["section"] == "pai_vs_imp").any()


# ---- continuous sparsity ----------------------------------------------------------------------


def test_bin_to_ratio_grid_by_hand():
    binned = bin_to_ratio_grid([0.0, 0.5, 0.6, 0.9, 0.97, 1.0])
    # 0.6 = ratio 2.5 -> 2^1.5; 0.9 = ratio 10 -> 2^3.5; 0.97 = ratio 33.3 -> 32.
    np.testing.assert_allclose(binned, [0.0, 0.5, 1 - 2**-1.5, 1 - 2**-3.5, 1 - 1 / 32, 1.0])
    assert compression_ratio([0.0, 0.9])[1] == pytest.approx(10.0)


def test_continuous_sparsity_is_binned_and_said_so(tmp_path):
    results, _ = _results(
        tmp_path,
        "cont",
        methods=("alpha", "beta"),
        sparsities=SPARSITIES,
        seeds=4,
        repeats=2,
        sparsity_jitter=0.15,
        dense=True,
    )
    assert results.trials.loc[results.trials["method"] != "dense", "sparsity"].nunique() > 24
    binned, experiments = bin_continuous_sparsity(results)
    assert experiments == ["cont"]
    assert sorted(binned.trials.loc[binned.trials["method"] != "dense", "sparsity"].unique()) == pytest.approx(
        SPARSITIES
    )
    assert (binned.trials["sparsity_raw"] == results.trials["sparsity"]).all()
    analysis = analyze(results=results, n_boot=N_BOOT)
    acc = analysis["accuracy_vs_sparsity"]
    assert sorted(acc.loc[acc["method"] == "alpha", "sparsity"]) == pytest.approx(SPARSITIES)
    assert (acc.loc[acc["method"] == "alpha", "n"] == 4).all()  # seeds per level, not one trial
    assert analysis["meta"].iloc[0]["sparsity_binned"] == "cont"
    assert analysis["notes"]["note"].str.contains("sampled continuously").any()
    # A grid sweep is left alone.
    grid, _ = _results(tmp_path, "grid", methods=("alpha",), sparsities=SPARSITIES, seeds=3)
    assert bin_continuous_sparsity(grid) == (grid, [])


def test_an_arm_that_ran_past_its_stopped_partner_is_described_with_its_pair():
    """ASHA stops an arm at its first report at or after its partner's stop, so an arm that was
    ahead may run the budget. The descriptive tables count it with its pair (stopped), and the
    paired deltas still compare it at the partner's last epoch: both as if it had stopped there."""
    from planted import asha_censor, planted_results

    from paitune.analysis.accuracy import accuracy_vs_sparsity
    from paitune.analysis.load import Results
    from paitune.analysis.sanity import paired_deltas

    spec = PlantedSpec(methods=("alpha", "beta"), controls=("none", "shuffle"), sparsities=(0.5, 0.9), seeds=3,
                       budgets=(6,), dense=True, control_effects={("alpha", "shuffle"): -0.05})  # fmt: skip
    full = planted_results(spec)
    censored = asha_censor(full, rung=2, keep=0.5)
    arms = (censored.trials["control"] != "none").to_numpy()
    raced = arms & (censored.trials["status"] == "stopped").to_numpy()
    assert raced.sum() >= 4
    # the arms of stopped partners ran the whole budget: their rows and epochs as if uncensored
    assert (censored.trials["tix"].to_numpy() == full.trials["tix"].to_numpy()).all()
    trials = pd.concat([censored.trials.loc[~raced], full.trials.loc[raced]]).sort_index()
    raced_tix = trials.loc[raced, "tix"].to_numpy()
    epochs = pd.concat(
        [
            censored.epochs.loc[~censored.epochs["tix"].isin(raced_tix)],
            full.epochs.loc[full.epochs["tix"].isin(raced_tix)],
        ]
    ).reset_index(drop=True)
    ahead = Results(trials=trials, epochs=epochs, layers=censored.layers, sources=censored.sources)
    assert (ahead.trials.loc[raced, "status"] == "completed").all()

    keys = ["method", "allocation", "control", "sparsity"]
    expected = accuracy_vs_sparsity(censored, n_boot=100).set_index(keys).sort_index()
    got = accuracy_vs_sparsity(ahead, n_boot=100).set_index(keys).sort_index()
    for column in ("n", "n_trials", "n_stopped", "mean", "gap"):
        pd.testing.assert_series_equal(got[column], expected[column], check_exact=False, rtol=1e-12)
    pairs = ["method", "allocation", "control", "context", "seed"]
    before = paired_deltas(censored).sort_values(pairs).reset_index(drop=True)
    after = paired_deltas(ahead).sort_values(pairs).reset_index(drop=True)
    pd.testing.assert_frame_equal(
        after[pairs + ["epoch", "delta", "stopped"]], before[pairs + ["epoch", "delta", "stopped"]]
    )


def test_the_searched_best_profile_stands_beside_completed_trials_of_its_own_method():
    """The searched best is the completed searched trial with the best validation accuracy; the
    ERK / uniform rows beside it are its own method's completed trials (a stopped trial's accuracy
    at a rung, or another method's, would set a different thing beside it), global rows every
    method's completed trials."""
    from planted import asha_censor, planted_results

    from paitune.analysis.layers import searched_profiles

    spec = PlantedSpec(methods=("random", "snip"), allocations=("erk", "uniform", "global", "searched"),
                       sparsities=(0.9,), seeds=3, budgets=(6,))  # fmt: skip
    results = asha_censor(planted_results(spec), rung=2, keep=0.5)
    trials = results.trials.loc[results.trials["control"] == "none"]
    done = trials.loc[trials["status"] == "completed"]
    table = searched_profiles(results, 0.9)
    searched = done.loc[done["allocation"] == "searched"]
    best = searched.loc[searched["val_acc"].idxmax()]
    rows = table.groupby("profile")[["test_acc", "n"]].first()
    (label,) = [p for p in rows.index if p.startswith("searched best")]
    assert best["trial_id"] in label and rows.loc[label, "test_acc"] == best["test_acc"]
    expected = {}
    for (allocation, method), group in done.loc[done["allocation"] != "searched"].groupby(["allocation", "method"]):
        if allocation == "global" or method == best["method"]:
            expected[f"{allocation}: {method}"] = (group["test_acc"].mean(), len(group))
    shown = {p: (rows.loc[p, "test_acc"], rows.loc[p, "n"]) for p in rows.index if p != label}
    assert shown.keys() == expected.keys()
    for profile, (acc, n) in expected.items():
        assert shown[profile][0] == pytest.approx(acc) and shown[profile][1] == n
