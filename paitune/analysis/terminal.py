"""The report in the terminal: the answer and the tables a user reads first, with the columns that matter."""

from __future__ import annotations

import textwrap

from paitune.analysis import operating
from paitune.analysis.document import NO_ANSWER, answer_text
from paitune.analysis.rankings import COLUMNS as RANKING_COLUMNS
from paitune.analysis.run import Analysis

# (title, table, columns shown; None = all)
TERMINAL = [
    ("Trials by status", "trials", None),
    (
        "Accuracy vs sparsity (control none)",
        "accuracy_vs_sparsity",
        [
            "dataset",
            "model",
            "method",
            "allocation",
            "sparsity",
            "compression",
            "n",
            "mean",
            "ci_low",
            "ci_high",
            "gap",
            "gap_ci_low",
            "gap_ci_high",
            "n_stopped",
            "n_failed",
            "n_diverged",
        ],
    ),
    (
        "Dense reference (unpruned model)",
        "dense_reference",
        ["dataset", "model", "max_epochs", "n", "mean", "ci_low", "ci_high", "note"],
    ),
    ("Standard operating points: accuracy (gap to dense) at compression ratio", "operating_points", None),
    (
        "Rankings",
        "rankings",
        # The ranking table's leading columns (up to n_units), then its test result.
        [*RANKING_COLUMNS[: RANKING_COLUMNS.index("n_units") + 1], "p_adjusted", "budget_share", "verdict"],
    ),
    (
        "Concordance",
        "concordance",
        ["factor", "kendall_w", "n_contexts", "n_choices", "loco_regret", "transfer_regret"],
    ),
    (
        "Sanity checks",
        "sanity",
        ["method", "control", "delta", "ci_low", "ci_high", "n", "n_units", "p_adjusted", "verdict"],
    ),
    (
        "PaI vs after-training: gap to IMP",
        "pai_vs_imp",
        ["dataset", "model", "method", "allocation", "sparsity", "n", "gap", "ci_low", "ci_high", "verdict"],
    ),
    (
        "Layer collapse",
        "collapse",
        ["method", "allocation", "max_sparsity_without_collapse", "n_trials", "n_collapsed"],
    ),
    (
        "Zero-cost proxies",
        "proxies",
        [
            "proxy",
            "kind",
            "spearman",
            "kendall",
            "ci_low",
            "ci_high",
            "n",
            "within_spearman",
            "n_contexts",
            "partial_spearman",
            # The verdict's own test (configs relabelled), not the pooled interval beside it.
            "within_partial_spearman",
            "n_configs",
            "within_partial_p_adjusted",
            "adds_beyond_size",
        ],
    ),
    ("Hyperparameter importance", "importance", None),
]


def terminal_text(analysis: Analysis, max_rows: int = 40) -> str:
    lines = []
    lines.append("\n== The answer ==")
    lines.append(textwrap.fill(answer_text(analysis.tables) or NO_ANSWER, width=100))
    for title, name, columns in TERMINAL:
        table = analysis.tables[name]
        if name == "accuracy_vs_sparsity":
            table = table.loc[table["control"] == "none"]
        if name == "operating_points":
            table = operating.wide_table(table)
        if columns:
            table = table[[c for c in columns if c in table.columns]]
        lines.append(f"\n== {title} ==")
        if table.empty:
            lines.append("(no data)")
            continue
        text = table.head(max_rows).to_string(index=False, float_format=lambda v: f"{v:.4g}", na_rep="-")
        lines.append(text)
        if len(table) > max_rows:
            more = len(table) - max_rows
            lines.append(f"... {more} more row{'' if more == 1 else 's'} in summary.json")
    notes = analysis.tables.get("notes")
    if notes is not None and not notes.empty:
        lines.append("\n== Notes ==")
        lines.extend(f"- {note}" for note in notes["note"])
    return "\n".join(lines)
