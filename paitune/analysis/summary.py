"""``summary.json``: every number the report shows, as a contract for users' scripts.

Format (schema_version 1): one JSON object; every key is a section and every section is a list
of flat records (``DataFrame.to_dict("records")``: string keys, values string / number / bool /
null). NaN, infinities and missing values are written as ``null``; a statistic that rests on too
few runs is null (and, where the section has one, its ``verdict``/``note`` says
``too_few_runs``). Accuracies are fractions in [0, 1] as the sweep reported them. "Final
accuracy" is ``test_acc`` of completed trials. CIs are 95% percentile bootstrap intervals
(fixed seed), or normal-approximation intervals for groups of more than 5,000 points.

Sections (guaranteed keys first; extra keys may be added, never removed). The dense reference
(method dense) is in accuracy_vs_sparsity and dense_reference only: rankings, concordance,
pairwise, proxies, importance, layer profiles and collapse leave it out.

- ``meta``: one record {sources, n_trials, final_accuracy, ci, duplicate_trials_dropped,
  orphan_epoch_rows, orphan_layer_rows, sparsity_binned, dense_contexts, contexts_without_dense,
  schema_version}; sparsity_binned names the experiments whose continuously sampled sparsity was
  binned to a log grid of compression ratios ("" when none).
- ``trials``: {experiment, status, n}: every status (completed, stopped, failed, diverged) per experiment.
- ``status_by_choice``: {method, allocation, control, completed, stopped, failed, diverged, total}.
- ``accuracy_vs_sparsity``: {method, allocation, control, sparsity, n, mean, ci_low, ci_high,
  dataset, model, max_epochs, n_trials, n_stopped, n_failed, n_diverged, note, compression,
  dense_mean, gap, gap_ci_low, gap_ci_high, n_gap, gap_note}; n = seeds; compression = 1 / (1 -
  sparsity); gap = accuracy - dense accuracy of the same dataset x model x budget x seed (paired by
  seed, CI over seeds, n_gap paired seeds); gap_note in "" | no_dense_reference | too_few_runs.
  The dense reference's own rows have method "dense", sparsity 0, gap 0.
- ``dense_reference``: {dataset, model, max_epochs, n, mean, ci_low, ci_high, n_trials, source,
  note}: the unpruned model's accuracy over seeds; source in dense_trials | trial_rows (from the
  trials' dense_test_acc column); note "no_dense_reference" (n = 0, numbers null) where the sweep
  has no dense trial.
- ``operating_points``: {dataset, model, max_epochs, method, allocation, ratio, target_sparsity,
  sparsity_mean, n, mean, ci_low, ci_high, n_trials, dense_mean, gap, gap_ci_low, gap_ci_high,
  n_gap, note}: control none at compression ratios 2, 4, 8, 16, 32 (always listed) and 64, 128,
  256, 512, 1000 (where swept); a trial counts for a ratio within 5% of it; note in "" |
  not_swept | no_completed_trials | too_few_runs | no_dense_reference.
- ``pai_vs_imp``: {dataset, model, max_epochs, method, allocation, sparsity, compression, n,
  mean_method, mean_imp, gap, ci_low, ci_high, verdict}: gap = accuracy - IMP (lottery ticket with
  rewinding) accuracy at the same sparsity and context, paired by seed; verdict in below_imp |
  matches_imp | above_imp | too_few_runs; empty without IMP trials.
- ``rankings``: {factor, choice, mean_rank, win_rate, ci_low, ci_high, n_contexts, verdict,
  best_share, mean_regret, mean_acc, heterogeneity_p}; factor in method | allocation | method_x_allocation;
  verdict in robust_winner | context_dependent | no_difference | robust_loser | too_few_runs
  (rules in ``paitune.analysis.rankings``).
- ``concordance``: {factor, kendall_w, n_contexts, n_choices, friedman_p, loco_regret,
  loco_ci_low, loco_ci_high, transfer_regret, n_regret_contexts}.
- ``pairwise``: {factor, choice, opponent, n_contexts, win_rate, ci_low, ci_high}.
- ``ranking_slices``: {factor, choice, slice, level, n, mean, ci_low, ci_high}: win rate per slice.
- ``sanity``: {method, control, delta, ci_low, ci_high, n, verdict, interpretation, mean_none,
  mean_control}; verdict in hurts | helps | no_effect | too_few_runs | not_applicable; n = paired
  runs. not_applicable: a corrupt_labels / corrupt_pixels control on a data-free method (random,
  magnitude, synflow, dense) or on a method whose masks the control left unchanged; its numbers
  are null.
- ``layer_profiles``: {model, method, allocation, sparsity, layer_index, layer, density, n}.
- ``searched_profiles``: {model, profile, layer_index, layer, density, test_acc, n}.
- ``collapse``: {method, allocation, max_sparsity_without_collapse, first_collapse_sparsity,
  n_trials, n_collapsed, n_levels}.
- ``proxies``: {proxy, spearman, kendall, ci_low, ci_high, n, kind, within_spearman,
  within_ci_low, within_ci_high, n_contexts, params_spearman, flops_spearman, partial_spearman,
  partial_ci_low, partial_ci_high, adds_beyond_size, size_note}; kind in proxy | baseline;
  partial_spearman = Spearman with accuracy controlling for params_kept and flops_sparse;
  adds_beyond_size true when its CI excludes 0, false when it includes 0, null when unknown (and
  for the baselines).
- ``proxies_by_context``: {proxy, dataset, model, sparsity, seed, max_epochs, n, spearman, ci_low, ci_high}.
- ``importance``: {param, importance, evaluator, n}; evaluator in fanova | ped_anova.
- ``early_vs_final``: {max_epochs, epoch, spearman, ci_low, ci_high, n, top_recall}.
- ``early_vs_final_by_method``: the same with ``method``.
- ``notes``: {section, note}: the findings the report prints under a section (dense reference
  missing, sparsity binned, proxy size bias sentences, no IMP trials, ...).
- ``pareto``: {objective, dataset, model, experiment, trial_id, method, allocation, control,
  sparsity, density, flops_sparse, test_acc}; objective in density | flops.
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
