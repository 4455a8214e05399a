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


def run_quick(name: str, out: Path, *extra: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", f"bench.{name}", "--quick", "--out", str(out), *extra],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
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
        assert r["steps_per_epoch"] == math.ceil(
            r["train_samples"] / result["settings"]["cases"][rows.index(r)]["batch_size"]
        )
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
        (m, method)
        for m in ("cnn", "resnet20")
        for method in ("snip", "grasp", "synflow", "iterative_snip", "prospr", "ntk_sap", "phew", "px")
    ]
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
    assert (
        0.9 * row["trials_rows"] * settings["epochs"] <= row["epochs_rows"] <= row["trials_rows"] * settings["epochs"]
    )
    assert 0 < row["peak_rss_bytes"] < 4 * 2**30 and row["analyze_s"] > 0
    assert row["peak_rss_gib"] == pytest.approx(row["peak_rss_bytes"] / 2**30)


def test_result_files_quick(tmp_path):
    result = run_quick("result_files", tmp_path)
    (row,) = result["rows"]
    assert row["tables_equal"] and row["files_after"] == 3
    assert row["files_before"] >= 2 * row["trials"]  # a trials and a layers file per trial, most an epochs one
    assert row["load_compacted_s"] < row["load_per_trial_s"]


def test_runner_finds_benchmarks_and_rejects_unknown_names():
    found = benchmarks()
    assert found[:3] == ["masked_training", "scoring_cost", "analysis_scale"]
    assert "common" not in found and "run_all" not in found
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run_all", "--only", "nope"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2 and "unknown benchmark(s) nope" in proc.stderr


def test_table_and_json_helpers(tmp_path):
    table = format_table(
        [{"name": "a", "s": 1.23456, "ok": True}, {"name": "bb", "s": float("nan"), "ok": False}],
        [("name", "name", ""), ("s", "sec", ".2f"), ("ok", "ok", "")],
        "T",
    )
    assert table.splitlines() == ["T", "name   sec  ok", "----  ----  ---", "a     1.23  yes", "bb       -  no"]
    path = write_json("x", {"v": float("nan"), "t": (1, 2)}, tmp_path)
    assert json.loads(path.read_text()) == {"v": None, "t": [1, 2]}
    assert median([3.0, 1.0, 2.0]) == 2.0 and math.isnan(median([]))


@pytest.mark.ray  # the benchmark starts its own Ray
def test_sweep_efficiency_quick(tmp_path):
    result = run_quick("sweep_efficiency", tmp_path, "--breakdown")  # the breakdown reads Tune's logs
    sweep, floor = result["rows"]
    settings, summary = result["settings"], result["summary"]
    n, cpus, parallel = sweep["trials"], settings["cpus"], settings["parallelism"]
    # paitune may run unpruned reference trials beside the requested ones; the floor replays them all.
    assert floor["trials"] == n >= settings["trials"] == 5 and sweep["parallel"] == parallel
    assert sweep["utilization"] == pytest.approx(sweep["compute_s"] / (sweep["wall_s"] * cpus))
    assert floor["utilization"] == pytest.approx(floor["compute_s"] / floor["wall_s"])
    assert sweep["s_per_trial"] == pytest.approx(sweep["wall_s"] / n)
    assert summary["utilization"] == sweep["utilization"]
    assert summary["overhead_s_per_trial"] == pytest.approx((sweep["wall_s"] - floor["wall_s"] / parallel) / n)
    # The floor reruns the sweep's own configs: same seeds, one thread, so the same accuracies.
    assert summary["floor_max_acc_diff"] <= 1e-9
    assert summary["goal_utilization_met"] == (sweep["utilization"] >= 0.8)
    assert summary["goal_overhead_met"] == (summary["overhead_s_per_trial"] <= 0.2)
    split = settings["breakdown"]
    assert split["slot_s"] == pytest.approx(sweep["wall_s"] * parallel)
    assert split["compute_s"] + split["in_trial_overhead_s"] + split["between_trials_s"] == pytest.approx(
        split["slot_s"]
    )
    assert split["compute_s"] <= split["compute_s"] + split["in_trial_overhead_s"] <= split["slot_s"]
    # FIFO decides nothing mid-trial: a trial reports its last epoch, and another one only each
    # second (--report-every), so never every one of the default space's 16 epochs.
    assert n <= split["reports"] < n * 16
    assert 1 <= split["actors"] <= parallel


@pytest.mark.ray  # the benchmark starts its own Ray
def test_search_efficiency_quick(tmp_path):
    result = run_quick("search_efficiency", tmp_path)
    rows, summary, settings = result["rows"], result["summary"], result["settings"]
    grid, asha_tpe, curve_1, curve_2 = rows
    epochs = settings["space"]["settings"]["epochs"]
    contexts = len(settings["space"]["params"]["sparsity"]["choices"])
    assert grid["arm"] == "grid" and grid["found"] == f"{contexts}/{contexts}"
    assert summary["grid_epochs"] == summary["grid_configs"] * epochs == grid["median_epochs_total"]
    assert len(summary["targets_val_acc"]) == contexts
    (grid_run,) = grid["per_seed"]
    # fifo: every grid trial runs the full budget, so a context's epochs to target are a multiple of epochs
    assert all(e % epochs == 0 and e <= summary["grid_epochs"] for e in grid_run["epochs_to_target"].values())
    for row in (asha_tpe, curve_1, curve_2):
        for run in row["per_seed"]:
            assert run["trials"] == settings["budget_trials"] and run["epochs_total"] <= run["trials"] * epochs
            # contexts are covered by design: each gets its share of the budget
            assert sorted(run["trials_per_context"].values()) == [settings["budget_trials"] // contexts] * contexts
            for spent in run["epochs_to_target"].values():  # JSON: not found (inf) is null
                assert spent is None or spent <= run["epochs_total"]
    assert (curve_1["workers"], curve_2["workers"]) == (1, 2) and curve_2["per_seed"] == asha_tpe["per_seed"]
    fraction = asha_tpe["median_fraction_of_grid"]
    assert summary["goal_met"] == (fraction is not None and fraction <= 0.25)


def test_time_to_target_counts_each_contexts_epochs_in_completion_order_until_a_full_budget_hit():
    import pandas as pd

    from bench._sweep_runs import SweepRun
    from bench.search_efficiency import arm_row, time_to_target

    trials = pd.DataFrame({
        "trial_id": list("abcdef"), "method": ["snip"] * 6, "context": ["x", "x", "y", "x", "y", "y"],
        "config_hash": list("pqrstu"), "epochs_run": [1, 2, 4, 4, 4, 1], "max_epochs": [4] * 6,
        "val_acc": [0.90, 0.95, 0.50, 0.93, 0.70, 0.99], "finished_s": [1.0, 2.0, 3.5, 5.0, 6.0, 7.0],
        "prune_seconds": [0.1] * 6, "train_seconds": [0.5] * 6,
    })  # fmt: skip
    run = SweepRun("r", Path("."), 0.0, 8.0, trials, pd.DataFrame())
    targets = {"x": (0.92, 16), "y": (0.65, 8)}
    hit = time_to_target(run, targets)
    # x: b reaches 0.95 but was stopped after 2 epochs; d (full budget, 0.93) is the hit: 1+2+4 epochs of x.
    # y: e (full budget, 0.70) after c: 4+4 epochs of y; f's 0.99 after one epoch does not count.
    assert hit["epochs_to_target"] == {"x": 7, "y": 8} and hit["found"] == 2
    assert hit["fraction_of_grid"] == {"x": 7 / 16, "y": 1.0}
    # every context found once e ends: all the epochs before and including it
    assert (hit["all_contexts_epochs"], hit["all_contexts_wall_s"]) == (15, 6.0)
    # paitune's unpruned reference trials are no part of the search
    reference = trials.iloc[:1].assign(trial_id="r", method="dense", val_acc=0.99, epochs_run=4, finished_s=0.5)
    with_reference = SweepRun(
        "r", Path("."), 0.0, 8.0, pd.concat([reference, trials], ignore_index=True), pd.DataFrame()
    )
    assert time_to_target(with_reference, targets)["epochs_to_target"] == hit["epochs_to_target"]
    miss = time_to_target(run, {"x": (0.96, 16), "y": (0.65, 8)})
    assert miss["found"] == 1 and miss["epochs_to_target"]["x"] == math.inf and miss["all_contexts_epochs"] == math.inf
    row = arm_row("a", "tpe", "asha", 2, [hit, miss], grid_epochs=24)
    # over the 4 (context, seed) pairs: 7/16, 1.0, inf, 1.0 -> median 1.0
    assert (row["found"], row["median_fraction_of_grid"]) == ("3/4", 1.0)


def test_gpu_epoch_quick(tmp_path):
    result = run_quick("gpu_epoch", tmp_path)
    rows, settings, summary = result["rows"], result["settings"], result["summary"]
    assert settings["device"] == "cpu" and settings["train_images"] == 32
    expected = [
        (m, p, lay) for m in ("resnet20", "vgg16") for p in ("fp32", "bf16") for lay in ("contiguous", "channels_last")
    ]
    assert [(r["model"], r["precision"], r["layout"]) for r in rows] == expected
    for r in rows:
        best = {k: min(v) for k, v in r["epoch_seconds"].items()}
        assert all(len(v) == settings["repeats"] and min(v) > 0 for v in r["epoch_seconds"].values())
        assert r["paitune_vs_tuned"] == pytest.approx(best["paitune"] / best["tuned"])
        # the papers' DataLoader loop runs in the fp32 contiguous rows only
        assert ("dataloader" in best) == ((r["precision"], r["layout"]) == ("fp32", "contiguous"))
        if "dataloader" in best:
            assert r["paitune_vs_dataloader"] == pytest.approx(best["paitune"] / best["dataloader"])
        base = next(b for b in rows if (b["model"], b["precision"], b["layout"]) == (r["model"], "fp32", "contiguous"))
        assert r["speedup_vs_fp32"] == pytest.approx(base["paitune_s"] / r["paitune_s"])
    assert summary["paitune_vs_tuned_max"] == pytest.approx(max(r["paitune_vs_tuned"] for r in rows))
    assert summary["goal_vs_tuned_met"] == all(r["paitune_vs_tuned"] <= 1.1 for r in rows)


def test_sampler_scale_quick(tmp_path):
    result = run_quick("sampler_scale", tmp_path)
    rows = {r["sampler"]: r for r in result["rows"]}
    assert set(rows) == {"random", "tpe", "nsga2", "nsga2-stock"}
    for row in rows.values():
        assert row["trials"] == 60 and len(row["blocks_ms"]) == 3 and all(ms > 0 for ms in row["blocks_ms"])
