"""``report.md``: the report in the same order as report.html (findings, plots, tables), for
reading in a repository browser or a terminal. Plots are linked PNG files beside it; tables
show their first rows with data and link their CSV."""

from __future__ import annotations

import pandas as pd

from paitune.analysis import document
from paitune.analysis.document import TableView
from paitune.analysis.sections import SECTIONS

MAX_ROWS = 30  # per table; the CSV holds every row


def _cell(value) -> str:
    return document.format_cell(value).replace("|", "\\|").replace("\n", " ")


def table_markdown(view: TableView) -> str:
    link = f"[CSV]({view.csv})"
    if view.n_rows == 0:
        return f"**{view.name}**: no data (too few runs, or not part of this sweep) · {link}\n"
    counts = document.plural(len(view.rows), "row")
    if len(view.empty_rows):
        counts += f" with data, {len(view.empty_rows)} without (in the CSV)"
    lines = [f"**{view.name}** · {counts} · {link}", ""]
    if len(view.rows):
        columns = list(view.rows.columns)
        lines.append("| " + " | ".join(columns) + " |")
        lines.append("|" + "|".join("---:" if c in view.numeric else "---" for c in columns) + "|")
        for values in view.rows.head(MAX_ROWS).itertuples(index=False, name=None):
            lines.append("| " + " | ".join(_cell(v) for v in values) + " |")
        lines.append("")
    if len(view.rows) > MAX_ROWS:
        lines += [f"first {MAX_ROWS} of {len(view.rows)} rows with data; all in the CSV", ""]
    if view.empty_columns:
        lines += ["left out, empty in every row (in the CSV): " + ", ".join(view.empty_columns), ""]
    return "\n".join(lines)


def render_markdown(tables: dict[str, pd.DataFrame], plot_sections) -> str:
    groups = document.finding_groups(tables)
    out = [
        "# paitune analysis: which PaI choices generalize",
        "",
        document.meta_line(tables),
        "",
        "Contents: [Findings](#findings) · [Plots](#plots) · [Tables](#tables)",
        "",
        "## Findings",
        "",
        "### The answer",
        "",
        document.answer_text(tables) or document.NO_ANSWER,
        "",
    ]
    for g in groups:
        out += [f"### {g.heading}", ""]
        out += [f"- {s}" for s in g.shown]
        if g.folded:
            out.append(f"- {g.folded_label}: in report.html and [findings.csv]({document.csv_path('findings')})")
        out.append("")
    out += ["## Plots", ""]
    for section, names in plot_sections:
        out += [f"### {section.heading}", ""]
        out += [f"![{name}]({name}.png)" for name in names]
        out.append("")
    out += ["## Tables", ""]
    for section in SECTIONS:
        out += [f"### {section.heading}", "", section.text, ""]
        out += [f"> {note}\n" for note in document.notes(tables, section.anchor)]
        out += [table_markdown(document.table_view(name, tables[name])) for name in section.tables]
    return "\n".join(out).rstrip() + "\n"
