"""The report's sections: what each shows, how to read its columns, and which tables it holds.

The order is the reading order of the report's tables (and of its plots, where a section has one).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Section:
    anchor: str
    heading: str
    text: str  # what the section's tables show and how to read their columns
    tables: tuple[str, ...]


SECTIONS = (
    Section(
        "trials",
        "Trials",
        "Every trial by status. Only completed trials have a final accuracy "
        "(test_acc); stopped, failed and diverged trials are counted here and beside every average.",
        ("trials", "status_by_choice"),
    ),
    Section(
        "accuracy",
        "Accuracy vs sparsity",
        "Mean final accuracy per cell with a 95% Student-t interval "
        "over seeds; n = seeds, n_trials = completed trials behind them. compression = 1 / density. "
        "gap = accuracy - accuracy of the dense (unpruned) model of the same dataset, model, budget "
        "and seed, with a 95% CI over the paired seeds (n_gap); the dense reference is the dashed line.",
        ("accuracy_vs_sparsity", "dense_reference"),
    ),
    Section(
        "operating_points",
        "Standard operating points",
        "Accuracy at the compression ratios of the "
        "literature's tables (ShrinkBench): 2, 4, 8, 16, 32 and, where swept, up to 1000; control none; "
        "mean and 95% CI over seeds and the paired gap to dense.",
        ("operating_points",),
    ),
    Section(
        "contexts",
        "Contexts and common epochs",
        "Choices are compared only within a context (dataset x "
        "model x sparsity x budget). Stopped trials are data: within a context every trial counts with its "
        "accuracy at the common epoch, the last epoch all of them reached (the budget when nothing was "
        "stopped); completion_rate = share of the context's trials that ran their full budget.",
        ("contexts",),
    ),
    Section(
        "rankings",
        "Generalization of rankings",
        "Choices compared within contexts (other factor fixed), "
        "each pair at the last epoch both reached, config picked by validation accuracy and judged on test. "
        "The unit is the seed: win rate = mean over seeds of the share of within-context comparisons won, 95% "
        "t-interval over seeds (n_units). Friedman test over seeds, then head-to-head paired t-tests over "
        "seeds of the accuracy difference, Holm-adjusted (p_adjusted); robust_winner = significantly ahead "
        "of every other choice, its lead over each holding across the contexts they share and shown in every "
        "dataset x model group, over every comparison "
        "and over the pairs that ran the budget (p_adjusted_budget); ahead_at_rungs = the first only: ASHA "
        "compared some pairs at a rung, where a choice that only learns faster also leads (budget_share = share "
        "of its comparisons made at the budget). Kendall's W: agreement of seed-averaged rankings across contexts; regret: "
        "accuracy lost by carrying the choice picked on the other dataset x model groups to a held-out one.",
        ("rankings", "concordance", "pairwise"),
    ),
    Section(
        "sanity",
        "Sanity checks",
        "Accuracy of each control minus its paired unmodified trial (same "
        "config and seed) at the last epoch both reached. The unit is the seed (pairs of a seed averaged): "
        "95% t-interval over seeds (n_units; n = pairs), t-test Holm-adjusted over rows (p_adjusted); hurts / "
        "helps need every dataset x model group to show it on its own (else context_dependent) and the pairs "
        "that ran the budget to show it too (p_adjusted_budget), else hurts_at_rungs / helps_at_rungs; "
        "no_effect only when an equivalence test (TOST) shows |delta| < 0.01, else inconclusive. "
        "corrupt_labels / corrupt_pixels score the mask on corrupted data: hurting means the mask uses the "
        "data; for data-free methods they are not applicable.",
        ("sanity",),
    ),
    Section(
        "pai_vs_imp",
        "PaI vs after-training (IMP)",
        "Each method's accuracy minus that of the lottery "
        "ticket with rewinding (IMP) in the same context and seed, each pair at the last epoch both "
        "reached; 95% t-interval over the paired seeds (n), Holm-adjusted t-tests (below_imp / above_imp need "
        "the pairs that ran the budget to show the gap too, else *_at_rungs); matches_imp only when "
        "every pair ran the budget and an equivalence test (Holm-adjusted) shows |gap| < 0.01, else "
        "inconclusive; n_censored / note: pairs compared before the budget.",
        ("pai_vs_imp",),
    ),
    Section(
        "layers",
        "Layerwise profiles",
        "Mean per-layer density at one sparsity level; for a searched allocation, the best profile "
        "found (on validation: its test accuracy, one trial's best of many, is optimistic) beside "
        "ERK / uniform of its method and the global profiles. The allocation rankings test whether "
        "searching beats ERK.",
        ("layer_profiles", "searched_profiles"),
    ),
    Section(
        "collapse",
        "Layer collapse",
        "Highest sparsity reached before any trial collapsed, per dataset x model.",
        ("collapse",),
    ),
    Section(
        "proxies",
        "Zero-cost proxies",
        "Rank correlation of each proxy at init with accuracy at the common "
        "epoch, unmodified masks only (control none). Within context, described: per-context Spearman "
        "and partial Spearman controlling for parameter count and FLOPs, combined on Fisher's z scale. "
        "Within context, tested: a permutation test that relabels the configs (method x allocation x "
        "setting, the unit: every context holds the same ones) tests the mean within-context partial "
        "Spearman; adds_beyond_size: its p, Holm-adjusted over the proxies, below 0.05. The pooled numbers "
        "(spearman, partial_spearman) mix contexts and are descriptive only.",
        ("proxies",),
    ),
    Section(
        "importance",
        "Hyperparameter importance",
        "Relative importance of each choice parameter for accuracy within context "
        "(accuracy minus its context's mean; Optuna fANOVA, PED-ANOVA), normalized to sum to 1 over the "
        "parameters: a ranking of the parameters, not a share of the variance explained, and no test that "
        "any of them matters (with no effect at all the shares still sum to 1); "
        "context variables, controls and the seed are not parameters. Whether the method or the allocation "
        "matters more is decided by the split-sample test of the answer at the top of the report, not by these shares (the two "
        "evaluators can disagree with each other and with it).",
        ("importance",),
    ),
    Section(
        "early",
        "Early vs final",
        "Within-context Spearman between validation accuracy at each epoch and test "
        "accuracy at a later rung (target_epoch), over every trial that reached the rung; survivors_only "
        "marks rows whose sample some stopped trials left. top_recall = share of the top quarter at the "
        "rung that a top-third cut at that epoch would keep.",
        ("early_vs_final", "early_vs_final_by_method"),
    ),
    Section(
        "pareto",
        "Pareto front",
        "Non-dominated trials by validation accuracy (max) vs density and FLOPs (min); their test accuracy shown.",
        ("pareto",),
    ),
)
HEADINGS = {s.anchor: s.heading for s in SECTIONS}
