"""``summary.json``: every number the report shows, as a contract for users' scripts.

Format (schema_version 1): one JSON object; every key is a section and every section is a list
of flat records (``DataFrame.to_dict("records")``: string keys, values string / number / bool /
null). NaN, infinities and missing values are written as ``null``; a statistic that rests on too
few runs is null (and, where the section has one, its ``verdict``/``note`` says
``too_few_runs``). Accuracies are fractions in [0, 1] as the sweep reported them.

Comparisons use test accuracy, and stopped trials count: two trials compared with each other
(rankings, sanity, pai_vs_imp, answer) meet at the last epoch both reached; statistics that need
one accuracy per trial (proxies, importance, regret) use its context's *common epoch*, the last
epoch every trial of the context (dataset x model x sparsity x budget) reached; per choice x
context the config is picked by validation accuracy. Their unit is the seed: intervals are Student-t 95% intervals over seeds,
``n_units`` says how many, tests are Holm-adjusted (``p_adjusted``), and no verdict rests on fewer
than 3 seeds. The descriptive tables (accuracy_vs_sparsity, dense_reference, operating_points)
show final accuracy (test_acc of completed trials) with Student-t 95% intervals over seeds (a
percentile bootstrap over 2 to 5 seeds undercovers), none below 2 seeds.
``docs/analysis.md`` explains every section.

Sections (guaranteed keys first; extra keys may be added, never removed). The dense reference
(method dense) is in accuracy_vs_sparsity and dense_reference only: rankings, concordance,
pairwise, proxies, importance, layer profiles and collapse leave it out.

- ``meta``: one record {sources, n_trials, final_accuracy, ci, duplicate_trials_dropped,
  orphan_epoch_rows, orphan_layer_rows, sparsity_binned, dense_contexts, contexts_without_dense,
  schema_version, compared_at, n_contexts, n_dropped_contexts, n_failed_left_out}; sparsity_binned
  names the experiments whose continuously sampled sparsity was binned ("" when none);
  n_dropped_contexts = contexts no ranking could use (no two choices with an accuracy there).
- ``trials``: {experiment, status, n}: every status (completed, stopped, failed, diverged) per experiment.
- ``status_by_choice``: {method, allocation, control, completed, stopped, failed, diverged, total}.
- ``contexts``: {context, dataset, model, sparsity, max_epochs, common_epoch, n_trials, n_completed,
  n_stopped, completion_rate}: per context, the epoch its comparisons use.
- ``accuracy_vs_sparsity``: {method, allocation, control, sparsity, n, mean, ci_low, ci_high,
  dataset, model, max_epochs, setting, n_trials, n_stopped, n_failed, n_diverged, note,
  compression, dense_mean, gap, gap_ci_low, gap_ci_high, n_gap, gap_note}; final accuracy of
  completed trials, n = seeds; setting = the context's values beyond dataset, model, sparsity
  and budget ("augment=standard", "prune_batches=4"; empty for the default context); compression
  = 1 / (1 - sparsity); gap = accuracy - dense accuracy of the same dataset x model x budget x
  seed and the setting's data, model and training values (paired by seed, CI over seeds, n_gap
  paired seeds);
  gap_note in "" | no_dense_reference | too_few_runs. The dense reference's own rows have method
  "dense", sparsity 0, gap 0. Descriptive: n_stopped says how many trials of the cell it leaves out.
- ``dense_reference``: {dataset, model, max_epochs, setting, n, mean, ci_low, ci_high, n_trials, source,
  note}: the unpruned model's accuracy over seeds (setting: the data, model and training values
  of the context it serves); source in dense_trials | trial_rows (from the
  trials' dense_test_acc column); note "no_dense_reference" (n = 0, numbers null) where the sweep
  has no dense trial.
- ``operating_points``: {dataset, model, max_epochs, setting, method, allocation, ratio, target_sparsity,
  sparsity_mean, n, mean, ci_low, ci_high, n_trials, dense_mean, gap, gap_ci_low, gap_ci_high,
  n_gap, note}: control none at compression ratios 2, 4, 8, 16, 32 (always listed) and 64, 128,
  256, 512, 1000 (where swept); a trial counts for a ratio within 5% of it; note in "" |
  not_swept | no_completed_trials | too_few_runs | no_dense_reference.
- ``pai_vs_imp``: {dataset, model, max_epochs, method, allocation, sparsity, compression, n,
  mean_method, mean_imp, gap, ci_low, ci_high, verdict, n_units, p_adjusted, p_adjusted_budget,
  p_equivalent, epoch, n_pairs, n_censored, note}: gap = accuracy - IMP accuracy in the same
  context and seed at the last epoch both reached (``epoch``), mean over seeds with a t-interval;
  n = n_units = paired seeds; verdict in below_imp | above_imp (Holm-adjusted t-test p < 0.05, on
  every pair and on the pairs that ran the budget: p_adjusted_budget) | below_imp_at_rungs |
  above_imp_at_rungs (the first test only) | matches_imp (TOST equivalence, |gap| < 0.01, every
  pair at the budget) | inconclusive | too_few_runs (fewer than 3 seeds); empty without IMP trials.
- ``rankings``: {factor, choice, mean_rank, win_rate, ci_low, ci_high, n_contexts, verdict,
  best_share, mean_regret, mean_acc, heterogeneity_p, n_units, p_adjusted, p_adjusted_budget,
  budget_share, friedman_p, n_ahead, n_behind, completion_rate, n_dropped_contexts}; factor in method | allocation |
  method_x_allocation; win_rate = mean over seeds of the share of within-context comparisons won,
  t-interval over seeds (n_units), n_contexts = contexts (blocks) behind it; verdict in
  robust_winner (significantly ahead of every other choice: Friedman over seeds, then
  Holm-adjusted head-to-head paired t-tests over seeds; the lead over each holding across the
  contexts they share and shown in every dataset x model group; both over every comparison and
  over the pairs that ran the budget) |
  ahead_at_rungs (the lead shown only over every comparison: ASHA compared some pairs at a rung) |
  context_dependent | no_difference (win rate shown within 0.5 +/- 0.1, accuracy within 1 point of
  every rival in every dataset x model group, no head-to-head difference, at the budget too) | inconclusive | behind_at_rungs | robust_loser (behind every
  other) | too_few_runs; p_adjusted = largest Holm-adjusted pairwise p against another choice,
  p_adjusted_budget the same on the pairs that ran the budget, budget_share = share of the
  choice's comparisons made at the budget (rules in ``paitune.analysis.rankings``).
- ``concordance``: {factor, kendall_w, n_contexts, n_choices, friedman_p, loco_regret,
  loco_ci_low, loco_ci_high, transfer_regret, n_regret_contexts, n_regret_groups,
  n_incomplete_contexts}: Kendall's W and Friedman p over seed-averaged contexts holding every
  choice (n_contexts; n_incomplete_contexts left out; with fewer than 3 complete, the choices
  missing most often are left out first, n_choices = choices kept); loco_regret = leave-one-(dataset x
  model)-out regret choosing by mean rank on the other groups, t-interval over the n_regret_groups
  held-out groups (null with fewer than two).
- ``pairwise``: {factor, choice, opponent, n_contexts, n_units, win_rate, ci_low, ci_high,
  mean_diff, median_diff, blocks_ahead, blocks_behind, p_adjusted, n_units_budget,
  mean_diff_budget, p_adjusted_budget, holds, holds_budget}: win rate of choice over opponent,
  per seed then over seeds; median_diff / blocks_ahead / blocks_behind = over the shared blocks,
  each averaged over seeds, the median difference and the blocks with the choice ahead / behind;
  p_adjusted = the
  pair's Holm-adjusted head-to-head paired t-test p over seeds; the *_budget columns: the same on
  the pairs that ran the budget; holds = +1 where the choice's lead holds across the contexts the
  two share and is shown in every dataset x model group, -1 where its deficit does, 0 otherwise
  (holds_budget: at the budget).
- ``ranking_slices``: {factor, choice, slice, level, n, mean, sd, ci_low, ci_high, n_units, p}: win
  rate per level of a context variable; n = contexts, CI over seeds, p = t-test p of 0.5
  (unadjusted; context_dependent's "ahead at some level" is Bonferroni over the levels).
- ``sanity``: {method, control, delta, ci_low, ci_high, n, verdict, interpretation, mean_none,
  mean_control, n_units, p_adjusted, delta_budget, p_adjusted_budget, p_equivalent, n_censored};
  delta_budget = the same over the pairs that ran the budget (adjusted for ASHA's selection of the
  unmodified arm); delta = control - unmodified
  accuracy of paired trials (same config and seed) at the last epoch both reached, averaged per
  seed, mean and t-interval over seeds (n_units), n = pairs (n_censored of them compared before
  the budget); verdict in context_dependent (Holm-adjusted p < 0.05, not shown in every dataset x
  model group on its own) | hurts | helps (Holm-adjusted p < 0.05 on every pair, shown in every
  dataset x model group, and on the pairs that ran the budget: p_adjusted_budget) | hurts_at_rungs | helps_at_rungs (the first only) | no_effect (TOST: |delta| <
  0.01 at the budget in every context, Holm-adjusted over rows) | inconclusive | too_few_runs (fewer than 3 seeds) | not_applicable. not_applicable: a
  corrupt_labels / corrupt_pixels control on a data-free method (random, magnitude, synflow,
  dense) or on a method whose masks the control left unchanged; its numbers are null.
- ``layer_profiles``: {model, method, allocation, sparsity, layer_index, layer, density, n}.
- ``searched_profiles``: {model, profile, layer_index, layer, density, test_acc, n}; the searched
  best is picked by validation accuracy among completed trials (its test_acc, one trial's best of
  many, is optimistic), beside ERK / uniform of its method and each method's global profile
  (completed trials).
- ``collapse``: {method, allocation, max_sparsity_without_collapse, first_collapse_sparsity,
  n_trials, n_collapsed, n_levels, dataset, model}: per dataset x model.
- ``proxies``: {proxy, spearman, kendall, ci_low, ci_high, n, kind, within_spearman,
  within_ci_low, within_ci_high, n_contexts, params_spearman, flops_spearman, partial_spearman,
  partial_ci_low, partial_ci_high, adds_beyond_size, size_note, within_partial_spearman,
  within_partial_ci_low, within_partial_ci_high, n_configs, n_contexts_tested, within_stat,
  within_p, within_partial_stat, within_partial_p, within_p_adjusted, within_partial_p_adjusted,
  common_epoch, within_partial_p_budget, within_partial_p_budget_adjusted};
  control none only; kind in proxy | baseline;
  within_* = per-context correlations combined on Fisher's z scale (t-interval over the
  n_contexts contexts, descriptive); adds_beyond_size true when the permutation test that
  relabels configs (the unit: every context holds the same configs) finds the within-context
  partial Spearman (size held fixed) at p < 0.05 Holm-adjusted over the proxies
  (within_partial_p_adjusted) and, where a context's common epoch (accuracy's epoch; median:
  common_epoch) is before the budget, also on the trials that ran it
  (within_partial_p_budget_adjusted), false when not, null with too few configs (and for the
  baselines); spearman, kendall and partial_spearman pool all contexts and are descriptive only.
- ``proxies_by_context``: {proxy, context, dataset, model, sparsity, max_epochs, n, spearman,
  ci_low, ci_high, partial_spearman}.
- ``importance``: {param, importance, evaluator, n}; evaluator in fanova | ped_anova; the target
  is accuracy minus its context's mean; context variables, controls and seed are not params.
- ``early_vs_final``: {max_epochs, epoch, target_epoch, spearman, ci_low, ci_high, n, top_recall,
  survivors_only}: within-context correlation of validation accuracy at epoch with test accuracy
  at target_epoch (the budget or an ASHA rung) over the trials that reached it.
- ``early_vs_final_by_method``: the same with ``method``.
- ``notes``: {section, note}: the findings the report prints under a section (dense reference
  missing, sparsity binned, proxy size bias sentences, no IMP trials, ...).
- ``findings``: {section, subject, verdict, sentence}: each verdict as a sentence with its numbers;
  ``mean_from_few_blocks``: a pairwise mean difference its median block does not share.
- ``answer``: {question, subject, verdict, n_units, sentence}: the paragraph the report opens with
  (``paitune.analysis.answer``): question pai_vs_random (verdict beats_random | loses_to_random |
  context_dependent | beats_random_at_rungs | loses_to_random_at_rungs | inconclusive |
  too_few_runs, per method) and allocation_vs_method (verdict allocation | method |
  allocation_at_rungs | method_at_rungs | inconclusive | too_few_runs).
- ``pareto``: {objective, dataset, model, experiment, trial_id, method, allocation, control,
  sparsity, density, flops_sparse, test_acc, val_acc}; objective in density | flops; the front is
  found on val_acc and reports test_acc.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

SUMMARY_VERSION = 1


def _plain(value):
    """A JSON-safe scalar: numpy -> Python, NaN/inf/NA -> None."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, (int, str)):
        return value
    return str(value)


def records(table: pd.DataFrame) -> list[dict]:
    """Flat JSON-safe records of a table (column names as strings)."""
    columns = [str(c) for c in table.columns]
    return [dict(zip(columns, map(_plain, row))) for row in table.itertuples(index=False, name=None)]


def build_summary(tables: dict[str, pd.DataFrame]) -> dict[str, list[dict]]:
    summary = {name: records(table) for name, table in tables.items()}
    for record in summary.get("meta", []):
        record["schema_version"] = SUMMARY_VERSION
    return summary


def write_summary(tables: dict[str, pd.DataFrame], path: Path) -> dict:
    summary = build_summary(tables)
    text = json.dumps(summary, indent=1, allow_nan=False)
    tmp = Path(path).with_suffix(".json.tmp")
    tmp.write_text(text)
    tmp.replace(path)  # atomic: a reader never sees half a file
    return summary
