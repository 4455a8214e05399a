"""One call that runs every analysis over result directories: ``analyze(paths) -> Analysis``."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from paitune.analysis import accuracy, early, importance, layers, pareto, proxies, rankings, sanity
from paitune.analysis.load import Results, load_results
from paitune.analysis.stats import LEVEL, N_BOOT, SEED


@dataclass
class Analysis:
    """Every table of the report, as DataFrames (section name -> table), plus the inputs."""

    results: Results
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    n_boot: int = N_BOOT
    seed: int = SEED

    def __getitem__(self, section: str) -> pd.DataFrame:
        return self.tables[section]


def analyze(*paths, n_boot: int = N_BOOT, seed: int = SEED, profile_sparsity: float | None = None,
            results: Results | None = None) -> Analysis:
    """Load ``paths`` (or use ``results``) and compute every section."""
    if results is None:
        results = load_results(*paths)
    boot = {"n_boot": n_boot, "seed": seed}
    ranked, concordance, pairwise, slices = rankings.ranking_tables(results, **boot)
    proxy_table, proxy_by_context = proxies.proxy_correlations(results, **boot)
    early_overall, early_by_method = early.early_vs_final(results, **boot)
    tables = {
        "trials": accuracy.trial_counts(results),
        "status_by_choice": accuracy.status_by_choice(results),
        "accuracy_vs_sparsity": accuracy.accuracy_vs_sparsity(results, **boot),
        "rankings": ranked,
        "concordance": concordance,
        "pairwise": pairwise,
        "ranking_slices": slices,
        "sanity": sanity.sanity_checks(results, **boot),
        "layer_profiles": layers.layer_profiles(results, profile_sparsity),
        "searched_profiles": layers.searched_profiles(results, profile_sparsity),
        "collapse": layers.layer_collapse(results),
        "proxies": proxy_table,
        "proxies_by_context": proxy_by_context,
        "importance": importance.hyperparameter_importance(results, seed=seed),
        "early_vs_final": early_overall,
        "early_vs_final_by_method": early_by_method,
        "pareto": pareto.pareto_fronts(results),
    }
    meta = pd.DataFrame([{
        "sources": "; ".join(results.sources),
        "n_trials": len(results.trials),
        "final_accuracy": "test_acc of completed trials",
        "ci": f"{LEVEL:.0%} percentile bootstrap, {n_boot} resamples, seed {seed}",
        "duplicate_trials_dropped": results.duplicate_trials,
        "orphan_epoch_rows": results.orphan_rows.get("epochs", 0),
        "orphan_layer_rows": results.orphan_rows.get("layers", 0),
    }])
    tables = {"meta": meta, **tables}
    return Analysis(results=results, tables=tables, n_boot=n_boot, seed=seed)
