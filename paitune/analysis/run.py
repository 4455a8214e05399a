"""One call that runs every analysis over result directories: ``analyze(paths) -> Analysis``."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
from threadpoolctl import threadpool_limits  # a dependency of scikit-learn

from paitune.analysis import (
    accuracy,
    after_training,
    common,
    early,
    importance,
    layers,
    operating,
    pareto,
    proxies,
    rankings,
    reference,
    sanity,
)
from paitune.analysis.answer import answer
from paitune.analysis.findings import findings
from paitune.analysis.levels import bin_continuous_sparsity, binning_note
from paitune.analysis.load import Results, load_results
from paitune.analysis.stats import LEVEL, N_BOOT, SEED


@dataclass
class Analysis:
    """Every table of the report, as DataFrames (section name -> table), plus the inputs."""

    results: Results
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    # Per ranking factor: the Holm-adjusted pairwise p matrix (the critical-difference diagram's bars) and mean ranks.
    tests: dict = field(default_factory=dict)
    n_boot: int = N_BOOT
    seed: int = SEED

    def __getitem__(self, section: str) -> pd.DataFrame:
        return self.tables[section]


def analyze(
    *paths,
    n_boot: int = N_BOOT,
    seed: int = SEED,
    profile_sparsity: float | None = None,
    results: Results | None = None,
) -> Analysis:
    """Load ``paths`` (or use ``results``) and compute every section."""
    # The bootstraps are thousands of small matrix products: a multi-threaded BLAS gains nothing
    # on them and, on a machine shared with other work, its spinning threads made them ~9x slower
    # (measured on 2 busy cores). One BLAS thread is both faster and a better neighbour.
    with threadpool_limits(limits=1, user_api="blas"):
        return _analyze(*paths, n_boot=n_boot, seed=seed, profile_sparsity=profile_sparsity, results=results)


def _analyze(*paths, n_boot: int, seed: int, profile_sparsity: float | None, results: Results | None) -> Analysis:
    if results is None:
        results = load_results(*paths)
    raw_results = results
    # Per-level statistics need levels: continuously sampled sparsity is binned (and said so).
    results, binned = bin_continuous_sparsity(results)
    boot = {"n_boot": n_boot, "seed": seed}
    ranked, concordance, pairwise, slices, tests = rankings.ranking_tables(results, **boot)
    proxy_table, proxy_by_context = proxies.proxy_correlations(results, **boot)
    early_overall, early_by_method = early.early_vs_final(results, **boot)
    tables = {
        "trials": accuracy.trial_counts(results),
        "contexts": common.context_table(results),
        "status_by_choice": accuracy.status_by_choice(results),
        "accuracy_vs_sparsity": accuracy.accuracy_vs_sparsity(results, **boot),
        "dense_reference": reference.dense_reference(results, **boot),
        "operating_points": operating.operating_points(results, **boot),
        "pai_vs_imp": after_training.pai_vs_imp(results, **boot),
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
        # The optimizer sampled the raw sparsity: importance sees what it chose, not the bins.
        "importance": importance.hyperparameter_importance(raw_results, seed=seed),
        "early_vs_final": early_overall,
        "early_vs_final_by_method": early_by_method,
        "pareto": pareto.pareto_fronts(results),
    }
    meta = pd.DataFrame(
        [
            {
                "sources": "; ".join(results.sources),
                "n_trials": len(results.trials),
                "final_accuracy": "test_acc of completed trials",
                "compared_at": "test accuracy; two trials at the last epoch both reached (rankings, controls, IMP), "
                "one accuracy per trial at its context's common epoch (correlations, regret); gaps to dense "
                "of completed trials' final accuracies; "
                "config per choice x context x seed selected by validation accuracy on the other seeds",
                "ci": (
                    f"Student-t {LEVEL:.0%} intervals over seeds (the independent unit), verdicts and descriptive "
                    f"tables alike; Holm-adjusted tests; correlations: {LEVEL:.0%} percentile bootstrap, {n_boot} "
                    f"resamples, seed {seed}"
                ),
                "n_contexts": int(len(tables["contexts"])),
                "n_dropped_contexts": rankings.dropped_contexts(results),
                "n_failed_left_out": int(common.scoring_meta(results)["n_failed"]),
                "duplicate_trials_dropped": results.duplicate_trials,
                "orphan_epoch_rows": results.orphan_rows.get("epochs", 0),
                "orphan_layer_rows": results.orphan_rows.get("layers", 0),
                "sparsity_binned": ", ".join(binned),
                "dense_contexts": int((tables["dense_reference"]["n"] > 0).sum()),
                "contexts_without_dense": int((tables["dense_reference"]["n"] == 0).sum()),
            }
        ]
    )
    tables = {"meta": meta, **tables, "notes": _notes(tables, binned)}
    tables["findings"] = findings(tables)
    tables["answer"] = answer(results, tables)
    return Analysis(results=results, tables=tables, n_boot=n_boot, seed=seed, tests=tests)


def _notes(tables: dict[str, pd.DataFrame], binned: list[str]) -> pd.DataFrame:
    """{section, note}: the sentences the report shows under its sections' headings."""
    notes = []
    if binned:
        notes.append(("accuracy", binning_note(binned)))
    missing = reference.missing_reference_note(tables["dense_reference"])
    if missing:
        notes.append(("accuracy", missing))
    notes.append(
        (
            "operating_points",
            (
                f"compression ratio r = 1 / (1 - sparsity); a trial counts for r when its ratio is within "
                f"{operating.RATIO_TOLERANCE:.0%} of r; ratios without trials say not_swept"
            ),
        )
    )
    sanity_table = tables["sanity"]
    if (sanity_table["verdict"] == sanity.NOT_APPLICABLE).any():
        notes.append(
            (
                "sanity",
                "corrupt_labels / corrupt_pixels are not applicable to "
                + ", ".join(
                    sorted(sanity_table.loc[sanity_table["verdict"] == sanity.NOT_APPLICABLE, "method"].unique())
                )
                + ": their masks do not use the data",
            )
        )
    for sentence in tables["proxies"].get("size_note", pd.Series(dtype=object)):
        if isinstance(sentence, str) and sentence:
            notes.append(("proxies", sentence))
    if tables["pai_vs_imp"].empty:
        notes.append(
            (
                "pai_vs_imp",
                f"no completed {after_training.IMP_METHOD} (lottery ticket with rewinding) "
                "trial in these results: add method imp to the sweep to compare PaI with pruning after training",
            )
        )
    return pd.DataFrame(notes, columns=["section", "note"])
