"""Write the report: ``report.html``, ``report.md``, the PNG plots, ``tables/<name>.csv`` and ``summary.json``.

Both documents read in the same order (``paitune.analysis.document``): findings, plots, tables.
``report.html`` embeds its plots and links only the CSV files beside it, so the report folder
can be moved or mailed as a whole.
"""

from __future__ import annotations

import base64
from pathlib import Path

from paitune.analysis import document, plots
from paitune.analysis.accuracy import completed_trials
from paitune.analysis.html_report import render_html
from paitune.analysis.markdown_report import render_markdown
from paitune.analysis.proxies import proxy_points
from paitune.analysis.run import Analysis
from paitune.analysis.summary import write_summary


def _plot_figures(analysis: Analysis) -> dict[str, list[tuple[str, object]]]:
    """Section anchor -> [(plot name, figure or None)]."""
    t = analysis.tables
    done = completed_trials(analysis.results)
    return {
        "accuracy": [("accuracy_vs_sparsity", plots.accuracy_vs_sparsity(t["accuracy_vs_sparsity"]))],
        "operating_points": [("operating_points", plots.operating_points(t["operating_points"]))],
        "pai_vs_imp": [("pai_vs_imp", plots.pai_vs_imp(t["pai_vs_imp"]))],
        "rankings": [
            ("rankings", plots.rankings(t["rankings"])),
            ("critical_difference", plots.critical_difference(t["rankings"], analysis.tests)),
        ],
        "sanity": [("sanity", plots.sanity(t["sanity"]))],
        "layers": [("layer_profiles", plots.layer_profiles(t["layer_profiles"], t["searched_profiles"]))],
        "proxies": [
            ("proxies", plots.proxies(proxy_points(analysis.results), t["proxies"])),
            ("proxy_size_bias", plots.proxy_size_bias(t["proxies"])),
        ],
        "importance": [("importance", plots.importance(t["importance"]))],
        "early": [("early_vs_final", plots.early_vs_final(t["early_vs_final"]))],
        "pareto": [("pareto", plots.pareto(done, t["pareto"]))],
    }


def _write_text(path: Path, text: str) -> None:
    # Through a temporary file: a reader never sees half a report.
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def write_tables(analysis: Analysis, out: Path) -> Path:
    """Every table as ``tables/<name>.csv`` (pandas' writer, full precision, empty cells for missing)."""
    folder = out / document.CSV_DIR
    folder.mkdir(parents=True, exist_ok=True)
    for name, table in analysis.tables.items():
        table.to_csv(out / document.csv_path(name), index=False)
    return folder


def write_report(analysis: Analysis, out_dir) -> dict[str, Path]:
    """Write the report into ``out_dir``; returns the paths written (plots by name, plus
    ``report``, ``markdown``, ``tables`` and ``summary``)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    names: dict[str, list[str]] = {}
    images: dict[str, str] = {}
    for anchor, figures in _plot_figures(analysis).items():
        for name, figure in figures:
            if figure is None:
                continue
            path = out / f"{name}.png"
            images[name] = base64.b64encode(plots.save_figure(figure, path)).decode("ascii")
            written[name] = path
            names.setdefault(anchor, []).append(name)
    plot_sections = document.plots_by_section(names)
    written["tables"] = write_tables(analysis, out)
    _write_text(out / "report.html", render_html(analysis.tables, plot_sections, images))
    written["report"] = out / "report.html"
    _write_text(out / "report.md", render_markdown(analysis.tables, plot_sections))
    written["markdown"] = out / "report.md"
    write_summary(analysis.tables, out / "summary.json")
    written["summary"] = out / "summary.json"
    return written
