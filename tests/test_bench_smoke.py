"""Smoke tests of bench/: each benchmark's --quick run exits 0 and writes consistent JSON.

The quick runs are real (tiny models and data, a few hundred generated trials), so the checks
below hold the numbers to invariants: ratios equal the timings they come from, extrapolations
scale by the stated factor, row counts match the generated results set.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# bench/ is a top-level package of the repository, not of the installed paitune: make it
# importable however pytest was started (``pytest`` puts only tests/ on sys.path).
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.common import RESULT_KEYS, format_table, median, write_json  # noqa: E402
from bench.run_all import benchmarks  # noqa: E402


def run_quick(name: str, out: Path) -> dict:
    proc = subprocess.run([sys.executable, "-m", f"bench.{name}", "--quick", "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    result = json.loads((out / f"{name}.json").read_text())
    assert tuple(result) == RESULT_KEYS
    assert result["benchmark"] == name and result["quick"] is True
    assert result["machine"]["torch_threads"] == 1 and result["machine"]["cpu_count"] >= 1
    assert name in proc.stdout  # the table was printed
    return result


def test_masked_training_quick(tmp_path):
    result = run_quick("masked_training", tmp_path)
    rows = result["rows"]
    assert [r["model"] for r in rows] == ["mlp", "cnn", "vgg11"]
    for r in rows:
        for variant in ("dense", "paitune", "torch_prune"):
            times = r["epoch_seconds"][variant]
            assert len(times) == r["repeats"] and all(t > 0 for t in times)
            assert r[f"{variant}_s"] == min(times)  # the least disturbed sample
            assert r["median_epoch_seconds"][variant] == pytest.approx(median(times))
        best = {v: min(t) for v, t in r["epoch_seconds"].items()}
        assert r["paitune_ratio"] == pytest.approx(best["paitune"] / best["dense"])
        assert r["noise"] == pytest.approx(best["dense_again"] / best["dense"])
        assert r["paitune_vs_torch_prune"] == pytest.approx(best["paitune"] / best["torch_prune"])
        assert r["steps_per_epoch"] == math.ceil(r["train_samples"] / result["settings"]["cases"][rows.index(r)]["batch_size"])
        assert r["goal_met"] == (r["paitune_ratio"] <= 1.05 and r["paitune_vs_torch_prune"] <= 1.0)
    assert rows[0]["train_samples"] == 1079  # the digits train split
    summary = result["summary"]
    assert summary["paitune_max_ratio"] == pytest.approx(max(r["paitune_ratio"] for r in rows))
    assert summary["goal_overhead_met"] == all(r["paitune_ratio"] <= 1.05 for r in rows)


def test_scoring_cost_quick(tmp_path):
    result = run_quick("scoring_cost", tmp_path)
    rows = result["rows"]
    cpu = [r for r in rows if r["device"] == "cpu"]
    assert [(r["model"], r["method"]) for r in cpu] == [
        (m, method) for m in ("cnn", "resnet20") for method in ("snip", "grasp", "synflow", "iterative_snip")]
    for r in rows:
        assert r["seconds"] > 0 and r["epoch_seconds"] > 0
        assert r["fraction"] == pytest.approx(r["seconds"] / r["epoch_seconds"])
        assert r["cifar_epoch_seconds"] == pytest.approx(r["epoch_seconds"] / r["epoch_samples"] * 45_000)
        assert r["cifar_fraction"] == pytest.approx(r["seconds"] / r["cifar_epoch_seconds"])
    by_method = {r["method"]: r for r in cpu if r["model"] == "cnn"}
    assert by_method["synflow"]["measured_iterations"] == 100 and not by_method["synflow"]["extrapolated"]
    isnip = by_method["iterative_snip"]
    assert (isnip["iterations"], isnip["measured_iterations"], isnip["extrapolated"]) == (100, 2, True)


def test_analysis_scale_quick(tmp_path):
    result = run_quick("analysis_scale", tmp_path)
    (row,) = result["rows"]
    settings = result["settings"]
    assert row["exit_status"] == 0
    assert row["trials_rows"] >= settings["trials_requested"]
    assert row["layers_rows"] == row["trials_rows"] * settings["layers"]
    # No early stops: at most every trial's full curve; failed (0 epochs) and diverged trials cut it.
    assert 0.9 * row["trials_rows"] * settings["epochs"] <= row["epochs_rows"] <= row["trials_rows"] * settings["epochs"]
    assert 0 < row["peak_rss_bytes"] < 4 * 2**30 and row["analyze_s"] > 0
    assert row["peak_rss_gib"] == pytest.approx(row["peak_rss_bytes"] / 2**30)


def test_runner_finds_benchmarks_and_rejects_unknown_names():
    found = benchmarks()
    assert found[:3] == ["masked_training", "scoring_cost", "analysis_scale"]
    assert "common" not in found and "run_all" not in found
    proc = subprocess.run([sys.executable, "-m", "bench.run_all", "--only", "nope"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "unknown benchmark(s) nope" in proc.stderr


def test_table_and_json_helpers(tmp_path):
    table = format_table([{"name": "a", "s": 1.23456, "ok": True}, {"name": "bb", "s": float("nan"), "ok": False}],
                         [("name", "name", ""), ("s", "sec", ".2f"), ("ok", "ok", "")], "T")
    assert table.splitlines() == ["T", "name   sec  ok", "----  ----  ---", "a     1.23  yes", "bb       -  no"]
    path = write_json("x", {"v": float("nan"), "t": (1, 2)}, tmp_path)
    assert json.loads(path.read_text()) == {"v": None, "t": [1, 2]}
    assert median([3.0, 1.0, 2.0]) == 2.0 and math.isnan(median([]))
