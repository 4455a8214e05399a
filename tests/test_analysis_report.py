"""summary.json contract, the `paitune analyze` command, report.html / report.md / tables/*.csv,
and report.html in a real headless browser (layout at two window widths)."""

from __future__ import annotations

import html as html_lib
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from planted import PlantedSpec, write_results

from paitune.analysis import analyze, write_report
from paitune.analysis.document import format_cell, table_view
from paitune.analysis.html_report import MAX_ROWS

CONTRACT = {
    "trials": {"experiment", "status", "n"},
    "accuracy_vs_sparsity": {"method", "allocation", "control", "sparsity", "n", "mean", "ci_low", "ci_high"},
    "rankings": {
        "factor",
        "choice",
        "mean_rank",
        "win_rate",
        "ci_low",
        "ci_high",
        "n_contexts",
        "verdict",
        "n_units",
        "p_adjusted",
    },
    "concordance": {"factor", "kendall_w", "n_contexts"},
    "sanity": {"method", "control", "delta", "ci_low", "ci_high", "n", "verdict", "n_units", "p_adjusted"},
    "proxies": {"proxy", "spearman", "kendall", "ci_low", "ci_high", "n"},
    "importance": {"param", "importance"},
    "early_vs_final": {"epoch", "spearman", "n"},
    "collapse": {"method", "allocation", "max_sparsity_without_collapse"},
    "dense_reference": {"dataset", "model", "max_epochs", "n", "mean", "ci_low", "ci_high", "source", "note"},
    "operating_points": {
        "method",
        "allocation",
        "ratio",
        "target_sparsity",
        "n",
        "mean",
        "ci_low",
        "ci_high",
        "gap",
        "gap_ci_low",
        "gap_ci_high",
        "n_gap",
        "note",
    },
    "pai_vs_imp": {"method", "allocation", "sparsity", "compression", "n", "gap", "ci_low", "ci_high", "verdict"},
    "notes": {"section", "note"},
}
NEW_COLUMNS = {
    "accuracy_vs_sparsity": {"compression", "dense_mean", "gap", "gap_ci_low", "gap_ci_high", "n_gap", "gap_note"},
    "proxies": {
        "params_spearman",
        "flops_spearman",
        "partial_spearman",
        "partial_ci_low",
        "partial_ci_high",
        "adds_beyond_size",
        "size_note",
    },
}
HEADINGS = [
    "Trials",
    "Accuracy vs sparsity",
    "Standard operating points",
    "Generalization of rankings",
    "Sanity checks",
    "PaI vs after-training (IMP)",
    "Layerwise profiles",
    "Layer collapse",
    "Zero-cost proxies",
    "Hyperparameter importance",
    "Early vs final",
    "Pareto front",
]
IMAGES = (
    "accuracy_vs_sparsity",
    "operating_points",
    "rankings",
    "sanity",
    "pai_vs_imp",
    "layer_profiles",
    "proxies",
    "proxy_size_bias",
    "pareto",
    "critical_difference",
)


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory):
    spec = PlantedSpec(
        methods=("alpha", "beta", "gamma", "random", "imp"),
        allocations=("global", "erk", "searched"),
        controls=("none", "shuffle", "corrupt_labels"),
        sparsities=(0.5, 0.75, 0.9, 0.97, 0.98),
        seeds=5,
        stopped_fraction=0.15,
        failed_fraction=0.03,
        dense=True,
        method_effects={"alpha": lambda s: 0.15 + 0 * s, "imp": lambda s: 0.02 + 0 * s},
        control_effects={("alpha", "shuffle"): -0.1},
        collapse_at={"gamma": 0.98},
    )
    return write_results(tmp_path_factory.mktemp("res"), "planted", spec, files_per_table=2)


@pytest.fixture(scope="module")
def report(results_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    written = write_report(analyze(results_dir, n_boot=200), out)
    return out, written


@pytest.fixture(scope="module")
def small_report(tmp_path_factory):
    """A first look at a sweep: two methods, two sparsities, two seeds, no dense, no IMP, no controls."""
    spec = PlantedSpec(methods=("snip", "random"), sparsities=(0.5, 0.9), seeds=2)
    results = write_results(tmp_path_factory.mktemp("small"), "small", spec)
    out = tmp_path_factory.mktemp("small_report")
    written = write_report(analyze(results, n_boot=200), out)
    return out, written


def test_summary_json_contract(report):
    out, _ = report
    text = (out / "summary.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    summary = json.loads(text)
    for section, keys in CONTRACT.items():
        assert isinstance(summary[section], list) and summary[section], section
        for record in summary[section]:
            assert keys <= set(record), (section, keys - set(record))
            # Flat records: no nested containers anywhere.
            assert all(v is None or isinstance(v, (str, int, float, bool)) for v in record.values())
    verdicts = {"robust_winner", "context_dependent", "no_difference", "inconclusive", "robust_loser", "too_few_runs"}
    assert {r["verdict"] for r in summary["rankings"]} <= verdicts
    alpha = [r for r in summary["rankings"] if r["factor"] == "method" and r["choice"] == "alpha"]
    assert alpha[0]["verdict"] == "robust_winner"
    assert {r["status"] for r in summary["trials"]} == {"completed", "stopped", "failed", "diverged"}
    assert sum(r["n"] for r in summary["trials"]) == 5 * 3 * 3 * 5 * 5 + 5  # + one dense trial per seed
    for section, keys in NEW_COLUMNS.items():
        for record in summary[section]:
            assert keys <= set(record), (section, keys - set(record))
    dense_rows = [r for r in summary["accuracy_vs_sparsity"] if r["method"] == "dense"]
    assert dense_rows and all(r["compression"] == 1 and r["sparsity"] == 0 for r in dense_rows)
    assert all(r["choice"] != "dense" for r in summary["rankings"])
    sanity = {(r["method"], r["control"]): r for r in summary["sanity"]}
    assert sanity[("random", "corrupt_labels")]["verdict"] == "not_applicable"
    assert sanity[("random", "corrupt_labels")]["delta"] is None
    assert {r["ratio"] for r in summary["operating_points"]} == {2, 4, 8, 16, 32}
    assert {r["method"] for r in summary["pai_vs_imp"]} == {"alpha", "beta", "gamma", "random"}
    flags = {r["proxy"]: r["adds_beyond_size"] for r in summary["proxies"]}
    assert flags["size"] is False and flags["params_kept"] is None
    for record in summary["accuracy_vs_sparsity"]:  # too few runs -> null, never a made-up number
        if record["n"] < 2:
            assert record["ci_low"] is None and record["note"] == "too_few_runs"
    collapse = {r["method"]: r for r in summary["collapse"] if r["allocation"] == "global"}
    assert collapse["gamma"]["max_sparsity_without_collapse"] == 0.97


def test_report_files_are_self_contained(report):
    out, written = report
    html = (out / "report.html").read_text()
    for name in IMAGES:
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"alt='{name}'" in html
    # No external resources: every src is an embedded data URI, no stylesheet or script links;
    # the only links leave the page for the CSV files beside it.
    assert all(src.startswith("data:image/png;base64,") for src in re.findall(r"src='([^']*)'", html))
    assert not re.search(r"(href|src)=['\"]?(https?:|//)", html)
    assert "<script" not in html and "<link" not in html
    for href in re.findall(r"href='([^'#][^']*)'", html):
        assert href.startswith("tables/") and (out / href).is_file(), href
    for heading in HEADINGS:
        assert f"<h3>{heading}</h3>" in html
    assert written["markdown"] == out / "report.md" and written["tables"] == out / "tables"


def _positions(text: str, markers) -> list[int]:
    found = [text.find(m) for m in markers]
    assert -1 not in found, [m for m, i in zip(markers, found) if i < 0]
    return found


def test_report_reads_findings_then_plots_then_tables(report):
    out, _ = report
    html = (out / "report.html").read_text()
    findings, answer, plots, first_image, tables, first_table = _positions(
        html, ["id='findings'", "class='answer'", "id='plots'", "<img", "id='tables'", "<table"]
    )
    assert findings < answer < plots < first_image < tables < first_table
    # The table of contents links every part and every section.
    toc = html[: html.find("</nav>")]
    for anchor in ("findings", "answer", "plots", "tables", "accuracy", "rankings", "pareto"):
        assert f"href='#{anchor}'" in toc and f"id='{anchor}'" in html, anchor
    # Each verdict is a sentence with its numbers and seeds; the decisive ones show, the rest fold.
    verdicts = html[findings:plots]
    assert "robust winner" in verdicts and "over 5 seeds" in verdicts and "<details>" in verdicts
    for group in verdicts.split("<h3 id='findings-")[2:]:
        shown = group.split("<details>")[0]
        assert "<li>" in shown or "without a decision" in group, group[:200]
        assert "inconclusive:" not in shown and "too few runs:" not in shown, group[:200]
    md = (out / "report.md").read_text()
    assert _positions(md, ["## Findings", "### The answer", "## Plots", "![", "## Tables", "| method"]) == sorted(
        _positions(md, ["## Findings", "### The answer", "## Plots", "![", "## Tables", "| method"])
    )
    for heading in HEADINGS:
        assert f"### {heading}" in md
    for name in IMAGES:
        assert f"![{name}]({name}.png)" in md


def test_every_table_is_written_as_csv_and_linked(report):
    out, _ = report
    html = (out / "report.html").read_text()
    summary = json.loads((out / "summary.json").read_text())
    for name, records in summary.items():
        if name == "schema_version":
            continue
        table = pd.read_csv(out / "tables" / f"{name}.csv", keep_default_na=False) if records else None
        if table is not None:
            assert len(table) == len(records), name
            assert set(records[0]) - {"schema_version"} <= set(table.columns), name
    for name in ("accuracy_vs_sparsity", "operating_points", "rankings", "sanity", "pai_vs_imp", "proxies"):
        assert f"href='tables/{name}.csv'" in html
        assert f"href='tables/{name}.csv'" in html[html.find(f"id='table-{name}'") :].split("</caption>")[0]


def test_table_view_folds_rows_and_columns_without_data():
    table = pd.DataFrame(
        {
            "method": ["snip", "snip", "random"],
            "ratio": [2, 64, 2],  # a level: no data on its own
            "n": [3, 0, 3],  # a count: no data on its own
            "mean": [0.9, np.nan, 0.8],
            "gap": [np.nan, np.nan, np.nan],
            "note": ["", "not_swept", ""],
            "flag": [True, None, False],
        }
    )
    view = table_view("t", table)
    assert list(view.rows["method"]) == ["snip", "random"] and list(view.empty_rows["ratio"]) == [64]
    assert view.empty_columns == ("gap",) and "gap" not in view.rows.columns
    assert view.numeric == {"ratio", "n", "mean"}
    assert [format_cell(v) for v in (np.nan, None, 0.123456, 3, True, "x")] == ["—", "—", "0.1235", "3", "yes", "x"]
    empty = table_view("e", table.iloc[:0])
    assert empty.n_rows == 0 and empty.rows.empty and empty.empty_columns == ()


def test_small_sweep_shows_what_it_has(small_report):
    """Rows without any statistic (ratios not swept, a dense reference not run) fold behind
    "show all"; columns empty in every row are left out and named."""
    out, _ = small_report
    html = (out / "report.html").read_text()
    start = html.find("id='table-operating_points'")
    block = html[start : html.find("<div class='table'", start + 1)]
    main, folded = block.split("<details>")
    assert main.count("<tr>") == 1 + 2  # header + the two methods at ratio 2 (sparsity 0.9 is ratio 10)
    assert "show all: " in folded and folded.count("<tr>") > 1
    assert ">not_swept<" not in main and ">not_swept<" in folded
    assert "left out, empty in every row" in main and "gap_ci_low" in main.split("left out")[1]
    assert "<th class='num'>mean</th>" in main and "<td class='num'>" in main
    ops = pd.read_csv(out / "tables" / "operating_points.csv")
    assert len(ops) == main.count("<tr>") - 1 + folded.count("<tr>") - 1
    assert "too few runs: only 2 seeds hold every choice" in html
    md = (out / "report.md").read_text()
    assert "| not_swept |" not in md and "[CSV](tables/operating_points.csv)" in md


def _cli(*args, cwd=None):
    code = "import sys; from paitune.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", code, "analyze", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def test_cli_bad_path_is_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "out"
    proc = _cli(str(tmp_path / "missing"), "--out", str(out))
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr and not out.exists()
    (tmp_path / "notresults").mkdir()
    proc = _cli(str(tmp_path / "notresults"), "--out", str(out))
    assert proc.returncode == 2 and "trials/" in proc.stderr and not out.exists()


def test_cli_writes_report_and_json(results_dir, tmp_path):
    out = tmp_path / "rep"
    proc = _cli(str(results_dir), "--out", str(out), "--json", "--n-boot", "200")
    assert proc.returncode == 0, proc.stderr
    printed = json.loads(proc.stdout)
    assert printed == json.loads((out / "summary.json").read_text())
    assert (out / "report.html").exists() and (out / "report.md").exists()
    assert (out / "tables" / "rankings.csv").exists()
    proc = _cli(str(results_dir), "--out", str(out), "--n-boot", "200")
    assert proc.returncode == 0 and "Rankings" in proc.stdout and str(out / "report.html") in proc.stdout
    assert "Standard operating points" in proc.stdout and "32x" in proc.stdout
    assert "gap to IMP" in proc.stdout and "== Notes ==" in proc.stdout


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _browser_args(browser: str, profile, width: int) -> list[str]:
    return [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        f"--window-size={width},2000",
    ]


# Runs once the page has loaded: opens every "show all", then measures (before it adds anything
# itself) each element's right edge against the document width, leaving out what sits inside a
# scroll box; writes the result and each image's decoded size into the DOM for --dump-dom.
PROBE = """<script>window.addEventListener('load',()=>{
document.querySelectorAll('details').forEach(d=>{d.open=true;});
const width=document.documentElement.clientWidth;
const scrolls=e=>{for(let p=e.parentElement;p;p=p.parentElement){
  const o=getComputedStyle(p).overflowX;if(o==='auto'||o==='scroll'||o==='hidden')return true;}return false;};
const wide=[...document.body.querySelectorAll('*')].filter(e=>!scrolls(e)&&e.getBoundingClientRect().right>width+0.5)
  .map(e=>e.tagName+'#'+e.id+'.'+e.className+':'+Math.round(e.getBoundingClientRect().right));
const top=e=>e?e.getBoundingClientRect().top+window.scrollY:null;
const probe={width:width,scrollWidth:document.documentElement.scrollWidth,wide:wide.slice(0,20),n_wide:wide.length,
  findings:top(document.getElementById('findings')),answer:top(document.querySelector('.answer')),
  image:top(document.querySelector('img')),table:top(document.querySelector('table')),
  images:[...document.images].map(i=>[i.complete,i.naturalWidth,i.naturalHeight])};
const p=document.createElement('pre');p.id='probe';p.textContent=JSON.stringify(probe);document.body.appendChild(p);
});</script>"""


def _table_rows(dom: str) -> dict[str, dict]:
    """Per table name: rows declared (data-rows), rows rendered (every part) and its caption's CSV link."""
    found: dict[str, dict] = {}
    for attrs, body in re.findall(r"<table ([^>]*)>(.*?)</table>", dom, re.S):
        name = re.search(r'data-table="(\w+)"', attrs).group(1)
        entry = found.setdefault(name, {"rendered": 0})
        entry["rendered"] += len(re.findall(r"<tr>", body.split("<tbody>", 1)[1]))
        declared = re.search(r'data-rows="(\d+)"', attrs)
        if declared:
            entry["declared"] = int(declared.group(1))
            caption = re.search(r"<caption>(.*?)</caption>", body, re.S).group(1)
            entry["href"] = re.search(r'href="([^"]+)"', caption).group(1)
    return found


@pytest.mark.parametrize(("which", "width"), [("report", 1280), ("report", 800), ("small_report", 800)])
def test_report_fits_the_page_in_headless_chromium(which, width, request, tmp_path):
    browser = _chromium()
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is required in CI (apt-get install -y chromium)")
        pytest.skip("chromium not installed (apt-get install -y chromium)")
    out, _ = request.getfixturevalue(which)
    probe = out / f"probe-{width}.html"  # beside report.html, so its relative CSV links resolve alike
    probe.write_text((out / "report.html").read_text().replace("</body>", PROBE + "</body>"))
    args = _browser_args(browser, tmp_path / "profile", width)
    proc = subprocess.run(
        [*args, "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120
    )
    dom = proc.stdout
    assert proc.returncode == 0 and "<h2>" in dom, proc.stderr[-2000:]
    found = re.search(r'<pre id="probe">([^<]*)</pre>', dom)
    assert found, "probe script did not run"
    result = json.loads(html_lib.unescape(found.group(1)))
    # Nothing is wider than the page: wide tables scroll inside their own box.
    assert result["width"] == width and result["scrollWidth"] <= width, result
    assert result["n_wide"] == 0, result["wide"]
    # Findings, with the answer, come before the first plot and the first table.
    assert result["findings"] < result["answer"] < result["image"] < result["table"], result
    for heading in HEADINGS:
        assert f"<h3>{heading}</h3>" in dom
    if which == "report":
        for section in ("operating_points", "pai_vs_imp"):
            assert re.search(rf'<section id="{section}">.*?<table', dom, re.S), section
        assert "is not shown to add anything beyond size" in dom and "not applicable" in dom
        assert len(result["images"]) >= len(IMAGES)
    for complete, image_width, image_height in result["images"]:
        assert complete and image_width > 100 and image_height > 100, result["images"]
    # Each table's caption links its CSV; pandas reads it with the table's rows.
    tables = _table_rows(dom)
    assert {"trials", "accuracy_vs_sparsity", "operating_points", "rankings"} <= set(tables)
    for name, entry in tables.items():
        assert entry["href"] == f"tables/{name}.csv"
        csv = pd.read_csv(out / entry["href"])
        assert entry["declared"] == len(csv), name
        if len(csv) <= MAX_ROWS:
            assert entry["rendered"] == len(csv), name
        else:
            assert MAX_ROWS <= entry["rendered"] < len(csv), name
    for href in re.findall(r'href="(tables/[^"]+)"', dom):  # tables without rows link theirs too
        assert (out / href).is_file(), href
    screenshot = tmp_path / "shot.png"
    subprocess.run(
        [*args, f"--screenshot={screenshot}", (out / "report.html").as_uri()], capture_output=True, timeout=120
    )
    assert screenshot.exists() and screenshot.read_bytes()[:4] == b"\x89PNG"
