"""``report.html``: the report as one HTML page with a small inline stylesheet and no script.

Plots are embedded as base64 PNG, so the page opens from disk anywhere; the tables' CSV files
(``tables/<name>.csv``) are the only files it links to. Every table sits in its own scroll box, so
no table makes the page wider than the window.
"""

from __future__ import annotations

from html import escape

import pandas as pd

from paitune.analysis import document
from paitune.analysis.document import TableView
from paitune.analysis.sections import SECTIONS

MAX_ROWS = 200  # per table part; the CSV holds every row

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5em auto;max-width:1200px;color:#222;
padding:0 1em;line-height:1.45;overflow-wrap:anywhere}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
h3{font-size:1.1em;margin:1.4em 0 .4em}.note{color:#666;font-size:.9em}
nav.toc{background:#f7f7f7;border:1px solid #e3e3e3;padding:.4em .8em;font-size:.92em}
nav.toc ol{margin:.2em 0;padding-left:1.4em}nav.toc ol ol{padding-left:0;list-style:none}
.answer{font-size:1.08em;background:#eef6ff;border-left:4px solid #3a7bd5;padding:.5em .8em}
.verdicts li{margin:.25em 0}.finding{background:#fff8e1;border-left:3px solid #f0b400;padding:.3em .6em}
nav.toc ol ol,.gallery{display:flex;flex-wrap:wrap;gap:.2em 1.5em}
figure{margin:.5em 0;max-width:100%}figure img{max-width:100%;height:auto;display:block}
figcaption{color:#555;font-size:.9em}
.scroll{overflow:auto;max-height:30em;width:fit-content;max-width:100%;border:1px solid #ddd;margin:.3em 0}
table{border-collapse:collapse;font-size:12px}
caption{text-align:left;padding:.3em .4em;font-size:13px;white-space:nowrap}
td,th{border:1px solid #e2e2e2;padding:2px 6px;white-space:nowrap;text-align:left;overflow-wrap:normal}
th{background:#f3f3f3;position:sticky;top:0}.num{text-align:right;font-variant-numeric:tabular-nums}
details{margin:.3em 0 1em}summary{cursor:pointer;color:#3a5fa0}
"""


def _rows_html(view: TableView, rows: pd.DataFrame) -> str:
    columns = list(rows.columns)
    cls = {c: " class='num'" if c in view.numeric else "" for c in columns}
    body = []
    for values in rows.itertuples(index=False, name=None):
        cells = "".join(f"<td{cls[c]}>{escape(document.format_cell(v))}</td>" for c, v in zip(columns, values))
        body.append(f"<tr>{cells}</tr>")
    head = "".join(f"<th{cls[c]}>{escape(str(c))}</th>" for c in columns)
    return f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody>"


def table_html(view: TableView) -> str:
    link = f"<a href='{escape(view.csv)}' download>CSV</a>"
    if view.n_rows == 0:
        return (
            f"<div class='table' id='table-{view.name}'><p class='note'><b>{escape(view.name)}</b> · no data "
            f"(too few runs, or not part of this sweep) · {link}</p></div>"
        )
    counts = document.plural(len(view.rows), "row")
    if len(view.empty_rows):
        counts += f" with data, {len(view.empty_rows)} without"
    parts = [
        f"<div class='table' id='table-{view.name}'><div class='scroll'>"
        f"<table data-table='{view.name}' data-rows='{view.n_rows}'>"
        f"<caption><b>{escape(view.name)}</b> · {counts} · {link}</caption>"
        f"{_rows_html(view, view.rows.head(MAX_ROWS))}</table></div>"
    ]
    if len(view.rows) > MAX_ROWS:
        parts.append(f"<p class='note'>first {MAX_ROWS} of {len(view.rows)} rows with data; all in the CSV</p>")
    if view.empty_columns:
        parts.append(
            "<p class='note'>left out, empty in every row (in the CSV): "
            + escape(", ".join(view.empty_columns))
            + "</p>"
        )
    if len(view.empty_rows):
        shown = view.empty_rows.head(MAX_ROWS)
        more = f"; first {MAX_ROWS} here, all in the CSV" if len(view.empty_rows) > MAX_ROWS else ""
        parts.append(
            f"<details><summary>show all: {document.plural(len(view.empty_rows), 'more row')} without data{more}</summary>"
            f"<div class='scroll'><table data-table='{view.name}' data-part='without-data'>"
            f"{_rows_html(view, shown)}</table></div></details>"
        )
    parts.append("</div>")
    return "".join(parts)


def _toc(groups, plot_sections) -> str:
    findings = ["<li><a href='#answer'>The answer</a></li>"] + [
        f"<li><a href='#findings-{g.anchor}'>{escape(g.heading)}</a></li>" for g in groups
    ]
    plots = [f"<li><a href='#plots-{s.anchor}'>{escape(s.heading)}</a></li>" for s, _ in plot_sections]
    tables = [f"<li><a href='#{s.anchor}'>{escape(s.heading)}</a></li>" for s in SECTIONS]
    return (
        "<nav class='toc'><b>Contents</b><ol>"
        f"<li><a href='#findings'>Findings</a><ol>{''.join(findings)}</ol></li>"
        f"<li><a href='#plots'>Plots</a><ol>{''.join(plots)}</ol></li>"
        f"<li><a href='#tables'>Tables</a><ol>{''.join(tables)}</ol></li>"
        "</ol></nav>"
    )


def _findings(tables, groups) -> list[str]:
    parts = ["<section id='findings'><h2>Findings</h2>", "<h3 id='answer'>The answer</h3>"]
    answer = document.answer_text(tables)
    parts.append(
        f"<p class='answer'>{escape(answer)}</p>" if answer else f"<p class='note'>{escape(document.NO_ANSWER)}</p>"
    )
    for g in groups:
        parts.append(
            f"<h3 id='findings-{g.anchor}'>{escape(g.heading)} <a class='note' href='#{g.anchor}'>tables</a></h3>"
        )
        if g.shown:
            parts.append("<ul class='verdicts'>" + "".join(f"<li>{escape(s)}</li>" for s in g.shown) + "</ul>")
        if g.folded:
            items = "".join(f"<li>{escape(s)}</li>" for s in g.folded)
            parts.append(
                f"<details><summary>show all: {escape(g.folded_label)}</summary><ul class='verdicts'>{items}</ul></details>"
            )
    parts.append("</section>")
    return parts


def _plots(plot_sections, images: dict[str, str]) -> list[str]:
    # One gallery: small plots sit side by side, each captioned with its section.
    parts = ["<section id='plots'><h2>Plots</h2><div class='gallery'>"]
    if not plot_sections:
        parts.append("<p class='note'>nothing to plot</p>")
    for section, names in plot_sections:
        for i, name in enumerate(names):
            anchor = f" id='plots-{section.anchor}'" if i == 0 else ""
            parts.append(
                f"<figure{anchor}><img alt='{name}' src='data:image/png;base64,{images[name]}'>"
                f"<figcaption><b>{escape(section.heading)}</b> · {escape(name)}.png · "
                f"<a href='#{section.anchor}'>tables</a></figcaption></figure>"
            )
    parts.append("</div></section>")
    return parts


def _tables(tables) -> list[str]:
    parts = ["<section id='tables'><h2>Tables</h2>"]
    for section in SECTIONS:
        parts.append(f"<section id='{section.anchor}'><h3>{escape(section.heading)}</h3><p>{escape(section.text)}</p>")
        parts.extend(f"<p class='finding'>{escape(note)}</p>" for note in document.notes(tables, section.anchor))
        parts.extend(table_html(document.table_view(name, tables[name])) for name in section.tables)
        parts.append("</section>")
    parts.append("</section>")
    return parts


def render_html(tables: dict[str, pd.DataFrame], plot_sections, images: dict[str, str]) -> str:
    """The page: ``plot_sections`` from ``document.plots_by_section``, ``images`` name -> base64 PNG."""
    groups = document.finding_groups(tables)
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width,initial-scale=1'>",
        "<title>paitune analysis</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>paitune analysis: which PaI choices generalize</h1>",
        f"<p class='note'>{escape(document.meta_line(tables))}</p>",
        _toc(groups, plot_sections),
        *_findings(tables, groups),
        *_plots(plot_sections, images),
        *_tables(tables),
        "</body></html>",
    ]
    return "\n".join(parts)
