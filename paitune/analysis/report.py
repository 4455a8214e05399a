"""The report: terminal tables, PNG plots, a self-contained ``report.html`` and ``summary.json``.

``report.html`` has no external resources: CSS is inline and every plot is embedded as a base64
``data:image/png`` URI, so the file opens from disk in any browser, with no server.
"""

from __future__ import annotations

import base64
import html
import textwrap
from pathlib import Path

import pandas as pd

from paitune.analysis import operating, plots
from paitune.analysis.accuracy import completed_trials
from paitune.analysis.run import Analysis
from paitune.analysis.summary import write_summary

# (anchor, heading, what it shows, tables shown, plot builder)
SECTIONS = [
    (
        "trials",
        "Trials",
        "Every trial by status. Only completed trials have a final accuracy "
        "(test_acc); stopped, failed and diverged trials are counted here and beside every average.",
        ["trials", "status_by_choice"],
    ),
    (
        "accuracy",
        "Accuracy vs sparsity",
        "Mean final accuracy per cell with a 95% bootstrap CI "
        "over seeds; n = seeds, n_trials = completed trials behind them. compression = 1 / density. "
        "gap = accuracy - accuracy of the dense (unpruned) model of the same dataset, model, budget "
        "and seed, with a 95% CI over the paired seeds (n_gap); the dense reference is the dashed line.",
        ["accuracy_vs_sparsity", "dense_reference"],
    ),
    (
        "operating_points",
        "Standard operating points",
        "Accuracy at the compression ratios of the "
        "literature's tables (ShrinkBench): 2, 4, 8, 16, 32 and, where swept, up to 1000; control none; "
        "mean and 95% CI over seeds and the paired gap to dense.",
        ["operating_points"],
    ),
    (
        "contexts",
        "Contexts and common epochs",
        "Choices are compared only within a context (dataset x "
        "model x sparsity x budget). Stopped trials are data: within a context every trial counts with its "
        "accuracy at the common epoch, the last epoch all of them reached (the budget when nothing was "
        "stopped); completion_rate = share of the context's trials that ran their full budget.",
        ["contexts"],
    ),
    (
        "rankings",
        "Generalization of rankings",
        "Choices compared within contexts (other factor fixed), "
        "each pair at the last epoch both reached, config picked by validation accuracy and judged on test. "
        "The unit is the seed: win rate = mean over seeds of the share of within-context comparisons won, 95% "
        "t-interval over seeds (n_units). Friedman test over seeds, then head-to-head paired t-tests over "
        "seeds of the accuracy difference, Holm-adjusted (p_adjusted); robust_winner = significantly ahead of every other choice. Kendall's W: "
        "agreement of seed-averaged rankings across contexts; regret: accuracy lost by carrying the choice "
        "picked on the other dataset x model groups to a held-out one.",
        ["rankings", "concordance", "pairwise"],
    ),
    (
        "sanity",
        "Sanity checks",
        "Accuracy of each control minus its paired unmodified trial (same "
        "config and seed) at the last epoch both reached. The unit is the seed (pairs of a seed averaged): "
        "95% t-interval over seeds (n_units; n = pairs), t-test Holm-adjusted over rows (p_adjusted); "
        "no_effect only when an equivalence test (TOST) shows |delta| < 0.01, else inconclusive. "
        "corrupt_labels / corrupt_pixels score the mask on corrupted data: hurting means the mask uses the "
        "data; for data-free methods they are not applicable.",
        ["sanity"],
    ),
    (
        "pai_vs_imp",
        "PaI vs after-training (IMP)",
        "Each method's accuracy minus that of the lottery "
        "ticket with rewinding (IMP) in the same context and seed, at the context's common epoch; 95% "
        "t-interval over the paired seeds (n), Holm-adjusted t-tests; matches_imp only when an equivalence "
        "test shows |gap| < 0.01, else inconclusive.",
        ["pai_vs_imp"],
    ),
    (
        "layers",
        "Layerwise profiles",
        "Mean per-layer density at one sparsity level; for a "
        "searched allocation, the best profile found beside ERK / uniform / global.",
        ["layer_profiles", "searched_profiles"],
    ),
    (
        "collapse",
        "Layer collapse",
        "Highest sparsity reached before any trial collapsed, per dataset x model.",
        ["collapse"],
    ),
    (
        "proxies",
        "Zero-cost proxies",
        "Rank correlation of each proxy at init with accuracy at the common "
        "epoch, unmodified masks only (control none). What decides is within context: per-context Spearman "
        "and partial Spearman controlling for parameter count and FLOPs, combined on Fisher's z scale with a "
        "t-interval over contexts (adds_beyond_size: the within-context partial interval excludes 0). The "
        "pooled numbers (spearman, partial_spearman) mix contexts and are descriptive only.",
        ["proxies"],
    ),
    (
        "importance",
        "Hyperparameter importance",
        "Share of the variance of accuracy within context "
        "(accuracy minus its context's mean) explained by each choice parameter (Optuna fANOVA, PED-ANOVA); "
        "context variables, controls and the seed are not parameters.",
        ["importance"],
    ),
    (
        "early",
        "Early vs final",
        "Within-context Spearman between validation accuracy at each epoch and test "
        "accuracy at a later rung (target_epoch), over every trial that reached the rung; survivors_only "
        "marks rows whose sample some stopped trials left. top_recall = share of the top quarter at the "
        "rung that a top-third cut at that epoch would keep.",
        ["early_vs_final", "early_vs_final_by_method"],
    ),
    (
        "pareto",
        "Pareto front",
        "Non-dominated trials by validation accuracy (max) vs density and FLOPs (min); their test accuracy shown.",
        ["pareto"],
    ),
]
MAX_HTML_ROWS = 200

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1200px;color:#222;padding:0 1em}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}h3{font-size:1em;color:#555}
table{border-collapse:collapse;font-size:12px;margin:.5em 0 1em}td,th{border:1px solid #ddd;padding:2px 6px;text-align:right}
th{background:#f3f3f3}img{max-width:100%;display:block;margin:.5em 0}.note{color:#666;font-size:.9em}
nav a{margin-right:1em}.finding{background:#fff8e1;border-left:3px solid #f0b400;padding:.3em .6em}
"""


def _plot_figures(analysis: Analysis) -> dict[str, list[tuple[str, object]]]:
    t = analysis.tables
    done = completed_trials(analysis.results)
    return {
        "accuracy": [("accuracy_vs_sparsity", plots.accuracy_vs_sparsity(t["accuracy_vs_sparsity"]))],
        "operating_points": [("operating_points", plots.operating_points(t["operating_points"]))],
        "pai_vs_imp": [("pai_vs_imp", plots.pai_vs_imp(t["pai_vs_imp"]))],
        "rankings": [
            ("rankings", plots.rankings(t["rankings"])),
            ("critical_difference", plots.critical_difference(analysis.tests)),
        ],
        "sanity": [("sanity", plots.sanity(t["sanity"]))],
        "layers": [("layer_profiles", plots.layer_profiles(t["layer_profiles"], t["searched_profiles"]))],
        "proxies": [
            ("proxies", plots.proxies(done, analysis.results.proxy_columns, t["proxies"])),
            ("proxy_size_bias", plots.proxy_size_bias(t["proxies"])),
        ],
        "importance": [("importance", plots.importance(t["importance"]))],
        "early": [("early_vs_final", plots.early_vs_final(t["early_vs_final"]))],
        "pareto": [("pareto", plots.pareto(done, t["pareto"]))],
    }


def _table_html(table: pd.DataFrame) -> str:
    if table.empty:
        return '<p class="note">no data (too few runs, or not part of this sweep)</p>'
    shown = table.head(MAX_HTML_ROWS)
    body = shown.to_html(index=False, na_rep="—", float_format=lambda v: f"{v:.4g}", escape=True, border=0)
    if len(table) > len(shown):
        body += f'<p class="note">first {len(shown)} of {len(table)} rows; all in summary.json</p>'
    return body


def write_report(analysis: Analysis, out_dir) -> dict[str, Path]:
    """Write report.html, summary.json and the PNG plots into ``out_dir``; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    images: dict[str, list[tuple[str, str]]] = {}
    for anchor, figures in _plot_figures(analysis).items():
        for name, figure in figures:
            if figure is None:
                continue
            path = out / f"{name}.png"
            data = plots.save_figure(figure, path)
            written[name] = path
            images.setdefault(anchor, []).append((name, base64.b64encode(data).decode("ascii")))

    meta = analysis.tables["meta"].iloc[0]
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<title>paitune analysis</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>paitune analysis: which PaI choices generalize</h1>",
        f"<p class='note'>Sources: {html.escape(str(meta['sources']))}. {int(meta['n_trials'])} trials. "
        f"Final accuracy = {html.escape(str(meta['final_accuracy']))}. CIs: {html.escape(str(meta['ci']))}. "
        "Every number is also in summary.json.</p>",
        "<nav>" + "".join(f"<a href='#{a}'>{html.escape(h)}</a>" for a, h, _, _ in SECTIONS) + "</nav>",
    ]
    answer = analysis.tables.get("answer")
    if answer is not None and not answer.empty:
        # The answer first: one paragraph, every sentence with its numbers and its seeds.
        parts.append(
            "<section id='answer'><h2>The answer</h2><p class='answer'>"
            + html.escape(" ".join(answer["sentence"]))
            + "</p></section>"
        )
    notes = analysis.tables.get("notes")
    findings = analysis.tables.get("findings")
    for anchor, heading, text, table_names in SECTIONS:
        parts.append(f"<section id='{anchor}'><h2>{html.escape(heading)}</h2><p>{html.escape(text)}</p>")
        if notes is not None and not notes.empty:
            for note in notes.loc[notes["section"] == anchor, "note"]:
                parts.append(f"<p class='finding'>{html.escape(str(note))}</p>")
        if findings is not None and not findings.empty:
            shown = findings.loc[findings["section"] == anchor, "sentence"]
            if len(shown):
                items = "".join(f"<li>{html.escape(str(x))}</li>" for x in shown.head(MAX_HTML_ROWS))
                parts.append(f"<ul class='verdicts'>{items}</ul>")
        for name, encoded in images.get(anchor, []):
            parts.append(f"<img alt='{name}' src='data:image/png;base64,{encoded}'>")
        for name in table_names:
            parts.append(f"<h3>{html.escape(name)}</h3>{_table_html(analysis.tables[name])}")
        parts.append("</section>")
    parts.append("</body></html>")
    report = out / "report.html"
    tmp = out / ".report.html.tmp"
    tmp.write_text("\n".join(parts), encoding="utf-8")
    tmp.replace(report)
    written["report"] = report
    write_summary(analysis.tables, out / "summary.json")
    written["summary"] = out / "summary.json"
    return written


# Terminal: the tables a user reads first, with the columns that matter.
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
        [
            "factor",
            "choice",
            "mean_rank",
            "win_rate",
            "ci_low",
            "ci_high",
            "n_contexts",
            "n_units",
            "p_adjusted",
            "verdict",
        ],
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
            "partial_ci_low",
            "partial_ci_high",
            "adds_beyond_size",
        ],
    ),
    ("Hyperparameter importance", "importance", None),
]


def terminal_text(analysis: Analysis, max_rows: int = 40) -> str:
    lines = []
    answer = analysis.tables.get("answer")
    if answer is not None and not answer.empty:
        lines.append("\n== The answer ==")
        lines.append(textwrap.fill(" ".join(answer["sentence"]), width=100))
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
            lines.append(f"... {len(table) - max_rows} more rows in summary.json")
    notes = analysis.tables.get("notes")
    if notes is not None and not notes.empty:
        lines.append("\n== Notes ==")
        lines.extend(f"- {note}" for note in notes["note"])
    return "\n".join(lines)
