"""paitune.analysis: which PaI choices generalize — tables, statistics, plots, report.

Every function takes a ``Results`` (``load_results(DIR/NAME, ...)``) and returns pandas
DataFrames, for notebooks; ``analyze`` runs them all and ``write_report`` writes report.html,
report.md, every table as tables/<name>.csv, summary.json (format: ``paitune.analysis.summary``)
and the PNG plots.

Comparisons are like with like (``paitune.analysis.common``): within a context (dataset x model x
sparsity x budget), every trial counts with its test accuracy at the last epoch all trials of the
context reached, so stopped trials are data; per choice x context the config is picked by
validation accuracy. Verdicts treat the seed as the independent unit (t-intervals over seeds,
Holm-adjusted tests, equivalence tests for "no effect"; ``docs/analysis.md``). The descriptive
tables show the final accuracy (``test_acc`` of completed trials) with stopped, failed and
diverged trials counted beside every average. The dense (unpruned) trials are the reference
every accuracy is compared with (gap to dense), not a competing method.
"""

from paitune.analysis.accuracy import (
    accuracy_vs_sparsity,
    completed_methods,
    completed_trials,
    status_by_choice,
    trial_counts,
)
from paitune.analysis.after_training import pai_vs_imp
from paitune.analysis.early import early_vs_final
from paitune.analysis.importance import build_study, hyperparameter_importance
from paitune.analysis.layers import layer_collapse, layer_profiles, searched_profiles
from paitune.analysis.levels import bin_continuous_sparsity, bin_to_ratio_grid, compression_ratio
from paitune.analysis.load import Results, load_results
from paitune.analysis.operating import operating_points
from paitune.analysis.pareto import pareto_fronts
from paitune.analysis.proxies import proxy_correlations
from paitune.analysis.rankings import concordance, pairwise_win_rates, rank_choices, ranking_tables
from paitune.analysis.reference import dense_reference
from paitune.analysis.report import write_report
from paitune.analysis.run import Analysis, analyze
from paitune.analysis.sanity import sanity_checks
from paitune.analysis.summary import build_summary, write_summary
from paitune.analysis.terminal import terminal_text

__all__ = [
    "Analysis",
    "Results",
    "accuracy_vs_sparsity",
    "analyze",
    "bin_continuous_sparsity",
    "bin_to_ratio_grid",
    "build_study",
    "build_summary",
    "completed_methods",
    "completed_trials",
    "compression_ratio",
    "concordance",
    "dense_reference",
    "early_vs_final",
    "hyperparameter_importance",
    "layer_collapse",
    "layer_profiles",
    "load_results",
    "operating_points",
    "pai_vs_imp",
    "pairwise_win_rates",
    "pareto_fronts",
    "proxy_correlations",
    "rank_choices",
    "ranking_tables",
    "sanity_checks",
    "searched_profiles",
    "status_by_choice",
    "terminal_text",
    "trial_counts",
    "write_report",
    "write_summary",
]
