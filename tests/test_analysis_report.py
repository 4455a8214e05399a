"""summary.json contract, the `paitune analyze` command, and report.html in a real headless browser."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest
from planted import PlantedSpec, write_results

from paitune.analysis import analyze, write_report

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
    # No external resources: every src is an embedded data URI, no stylesheet or script links.
    assert all(src.startswith("data:image/png;base64,") for src in re.findall(r"src='([^']*)'", html))
    assert not re.search(r"(href|src)=['\"]?(https?:|//)", html)
    for heading in HEADINGS:
        assert f"<h2>{heading}</h2>" in html


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
    assert (out / "report.html").exists()
    proc = _cli(str(results_dir), "--out", str(out), "--n-boot", "200")
    assert proc.returncode == 0 and "Rankings" in proc.stdout and str(out / "report.html") in proc.stdout
    assert "Standard operating points" in proc.stdout and "32x" in proc.stdout
    assert "gap to IMP" in proc.stdout and "== Notes ==" in proc.stdout


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def test_report_renders_in_headless_chromium(report, tmp_path):
    browser = _chromium()
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is required in CI (apt-get install -y chromium)")
        pytest.skip("chromium not installed (apt-get install -y chromium)")
    out, _ = report
    # A copy of the report with a tiny script that writes each image's decoded size into the
    # DOM once the page has loaded, so --dump-dom shows whether the browser decoded it.
    probe = out / "probe.html"
    script = (
        "<script>window.addEventListener('load',()=>{const r=[...document.images].map("
        "i=>i.complete+':'+i.naturalWidth+'x'+i.naturalHeight);const p=document.createElement('pre');"
        "p.id='probe';p.textContent='IMAGES '+r.join(' ');document.body.appendChild(p);});</script>"
    )
    probe.write_text((out / "report.html").read_text().replace("</body>", script + "</body>"))
    profile = tmp_path / "chromium-profile"
    proc = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=5000",
            "--dump-dom",
            probe.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    dom = proc.stdout
    assert proc.returncode == 0 and "<h2>" in dom, proc.stderr[-2000:]
    for heading in HEADINGS:
        assert f"<h2>{heading}</h2>" in dom
    for section in ("operating_points", "pai_vs_imp"):  # the new sections hold their tables
        assert re.search(rf'<section id="{section}">.*?<table', dom, re.S), section
    assert "adds nothing beyond size" in dom and "not applicable" in dom
    found = re.search(r'<pre id="probe">IMAGES ([^<]*)</pre>', dom)
    assert found, "probe script did not run"
    images = found.group(1).split()
    assert len(images) >= len(IMAGES)
    for image in images:
        complete, size = image.split(":")
        width, height = map(int, size.split("x"))
        assert complete == "true" and width > 100 and height > 100, image
    screenshot = tmp_path / "shot.png"
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            f"--screenshot={screenshot}",
            "--window-size=1200,2000",
            (out / "report.html").as_uri(),
        ],
        capture_output=True,
        timeout=120,
    )
    assert screenshot.exists() and screenshot.read_bytes()[:4] == b"\x89PNG"
