"""The search side: honest Optuna states, the Parquet sink, sweep validation, and a real sweep."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import optuna
import pandas as pd
import pyarrow.dataset as pads
import pytest
from optuna.trial import TrialState

from paitune.config import config_hash, trial_config
from paitune.config.sweep import SweepOptions
from paitune.errors import PaituneError
from paitune.results.rows import trials_schema
from paitune.search.asha import STATE_FILES
from paitune.search.contexts import study_trials
from paitune.search.lock import SweepLock
from paitune.search.parquet_io import write_table_atomic
from paitune.search.plan import plan_sweep
from paitune.search.repeats import MAX_REDRAWS
from paitune.search.searcher import PaiOptunaSearch, trial_outcome
from paitune.search.sink import ERRORS_DIR, ParquetSink
from paitune.search.study_attrs import DUPLICATE_ATTR
from paitune.search.study_store import study_storage
from paitune.search.trainable import CHECKPOINT_FILE, load_checkpoint
from paitune.search.tune_trials import TuneTrialIds
from paitune.spaces import compile_space, load_space_text

optuna.logging.set_verbosity(optuna.logging.WARNING)

SMALL_SPACE = """
name: small
settings: {dataset: digits, model: mlp, epochs: 3, batch_size: 64, lr: 0.05, proxies: [grad_norm, synflow]}
params:
  method: {type: categorical, choices: [random, magnitude, snip]}
  sparsity: {type: categorical, choices: [0.5, 0.9, 0.995]}
  control: {type: categorical, choices: [none, shuffle]}
seeds: [0, 1]
scheduler: {type: asha, grace_period: 1, reduction_factor: 2}
num_samples: 8
"""


def _searcher(seeds="[0]", **kwargs):
    space = load_space_text(SMALL_SPACE.replace("seeds: [0, 1]", f"seeds: {seeds}"))
    return PaiOptunaSearch(
        compile_space(space), metric="val_acc", mode="max", sampler=optuna.samplers.RandomSampler(seed=0), **kwargs
    )


def _result(epoch, acc, max_epochs=3, status="running"):
    return {"epoch": epoch, "val_acc": acc, "max_epochs": max_epochs, "pai_status": status, "training_iteration": epoch}


def test_trial_outcome_table():
    assert trial_outcome(_result(3, 0.9), error=False) == "completed"
    assert trial_outcome(_result(1, 0.2), error=False) == "stopped"
    assert trial_outcome(_result(1, 0.2, status="diverged"), error=False) == "diverged"
    assert trial_outcome(_result(2, 0.2), error=True) == "failed"
    assert trial_outcome(_result(0, float("nan"), status="failed"), error=False) == "failed"
    assert trial_outcome(None, error=False) == "stopped"


def test_asha_stopped_trials_reach_optuna_as_pruned_with_intermediate_values():
    searcher = _searcher()
    for tid in ("full", "cut", "boom", "nan"):
        assert searcher.suggest(tid)["method"] in ("random", "magnitude", "snip")
    for epoch, acc in ((1, 0.5), (2, 0.7)):
        searcher.on_trial_result("full", _result(epoch, acc))
    searcher.on_trial_complete("full", _result(3, 0.8))
    # ASHA stops "cut" on its first rung: Tune passes that result to on_trial_complete only.
    searcher.on_trial_complete("cut", _result(1, 0.1))
    searcher.on_trial_result("boom", _result(1, 0.3))
    searcher.on_trial_complete("boom", None, error=True)
    searcher.on_trial_complete("nan", _result(0, float("nan"), status="diverged"))
    by_tune_id = {t.user_attrs["tune_trial_id"]: t for t in searcher.study.trials}
    full, cut, boom, nan = (by_tune_id[k] for k in ("full", "cut", "boom", "nan"))
    assert full.state == TrialState.COMPLETE and full.value == 0.8
    assert full.intermediate_values == {1: 0.5, 2: 0.7, 3: 0.8}
    assert cut.state == TrialState.PRUNED and cut.intermediate_values == {1: 0.1}
    assert cut.value == 0.1  # Optuna records the last intermediate value of a pruned trial
    assert boom.state == TrialState.FAIL and boom.user_attrs["pai_status"] == "failed"
    assert nan.state == TrialState.FAIL and nan.user_attrs["pai_status"] == "diverged"
    # a late duplicate completion changes nothing
    searcher.on_trial_complete("cut", _result(3, 0.99))
    assert searcher.study.trials[cut.number].state == TrialState.PRUNED


def test_multi_objective_completion_and_pruning():
    space = load_space_text(
        SMALL_SPACE + "objectives: [{metric: val_acc, mode: max}, {metric: density_achieved, mode: min}]\n"
    )
    searcher = PaiOptunaSearch(
        compile_space(space), metric=["val_acc", "density_achieved"], mode=["max", "min"],
        sampler=optuna.samplers.NSGAIISampler(seed=0),
    )  # fmt: skip
    searcher.suggest("a")
    searcher.suggest("b")
    searcher.on_trial_complete("a", {**_result(3, 0.9), "density_achieved": 0.1})
    searcher.on_trial_complete("b", {**_result(1, 0.2), "density_achieved": 0.5})
    a, b = searcher.study.trials
    assert a.state == TrialState.COMPLETE and a.values == [0.9, 0.1]
    assert b.state == TrialState.PRUNED


def test_seeds_are_replicates_of_one_sampled_config():
    searcher = _searcher(seeds="[0, 1, 2]")
    configs = [searcher.suggest(f"t{i}") for i in range(6)]
    for group in (configs[:3], configs[3:]):
        assert sorted(c["seed"] for c in group) == [0, 1, 2]
        drop_seed = [{k: v for k, v in c.items() if k != "seed"} for c in group]
        assert drop_seed[0] == drop_seed[1] == drop_seed[2]
        assert len({config_hash(trial_config(c)) for c in group}) == 3


def test_grid_sampler_enqueues_every_point_once():
    searcher = _searcher(seeds="[0, 1]", grid=True)
    configs = [searcher.suggest(f"g{i}") for i in range(3 * 3 * 2 * 2)]
    keys = {(c["method"], c["sparsity"], c["control"], c["seed"]) for c in configs}
    assert len(keys) == 36


def test_sampled_repeats_are_never_run_until_the_space_is_exhausted():
    # 3 x 3 x 2 = 18 configs, one seed: a random sampler repeats itself long before 18 draws; the
    # last configs are found by enumerating the untried ones.
    searcher = _searcher()
    configs = [searcher.suggest(f"t{i}") for i in range(18)]
    assert len({json.dumps(c, sort_keys=True) for c in configs}) == 18
    duplicates = [t for t in searcher.study.trials if DUPLICATE_ATTR in t.user_attrs]
    assert duplicates, "the random sampler drew no repeat: the test checks nothing"
    # each repeat was closed at once (FAIL: its config was still running) and never named a Tune trial
    assert all(t.state == TrialState.FAIL and "tune_trial_id" not in t.user_attrs for t in duplicates)
    running = [t for t in searcher.study.trials if t.state == TrialState.RUNNING]
    assert sorted(t.user_attrs["tune_trial_id"] for t in running) == sorted(f"t{i}" for i in range(18))


def test_repeats_of_queued_replicates_are_never_run():
    # 18 configs x 2 seeds: a fresh draw often repeats a config whose other-seed replicate is
    # queued or already asked; every (config, seed) still runs exactly once.
    searcher = _searcher(seeds="[0, 1]")
    configs = [searcher.suggest(f"t{i}") for i in range(36)]
    assert len({json.dumps(c, sort_keys=True) for c in configs}) == 36
    for t in searcher.study.trials:
        if DUPLICATE_ATTR in t.user_attrs:
            earlier = searcher.study.trials[t.user_attrs[DUPLICATE_ATTR]]
            assert (earlier.params or earlier.system_attrs["fixed_params"]) == t.params
            assert DUPLICATE_ATTR not in earlier.user_attrs


def test_a_repeat_is_told_the_earlier_outcome():
    one_config = SMALL_SPACE.replace("[random, magnitude, snip]", "[snip]").replace("[0.5, 0.9, 0.995]", "[0.9]")
    one_config = one_config.replace("[none, shuffle]", "[none]").replace("seeds: [0, 1]", "seeds: [0]")
    for earlier_result, state in ((_result(3, 0.8), TrialState.COMPLETE), (_result(1, 0.3), TrialState.PRUNED)):
        searcher = PaiOptunaSearch(compile_space(load_space_text(one_config)), metric="val_acc", mode="max",
                                   sampler=optuna.samplers.TPESampler(seed=0))  # fmt: skip
        first = searcher.suggest("a")
        searcher.on_trial_complete("a", earlier_result)
        # the space holds one config: every draw repeats it, so after MAX_REDRAWS it runs anyway
        assert searcher.suggest("b") == first
        trials = searcher.study.trials
        told = [t for t in trials if DUPLICATE_ATTR in t.user_attrs]
        assert len(told) == MAX_REDRAWS and all(t.user_attrs[DUPLICATE_ATTR] == trials[0].number for t in told)
        assert all(t.state == state and t.value == earlier_result["val_acc"] for t in told)
        if state == TrialState.PRUNED:
            assert all(t.intermediate_values == {1: 0.3} for t in told)
        assert trials[-1].user_attrs["tune_trial_id"] == "b" and trials[-1].state == TrialState.RUNNING


# ---- the Parquet sink ---------------------------------------------------------------------------


def _fake_trial(trial_id, config, error=None):
    return SimpleNamespace(trial_id=trial_id, config=config, last_result={}, get_error=lambda: error)


def _first_facts():
    layers = [{"name": "a.weight", "shape": [4, 2], "numel": 8, "density": 0.5},
              {"name": "b.weight", "shape": [2, 4], "numel": 8, "density": 0.25}]  # fmt: skip
    return {"density_achieved": 0.375, "params_kept": 6, "params_total": 16, "flops_dense": 32, "flops_sparse": 12,
            "collapsed": False, "mask_hash": "abc", "prune_seconds": 0.1, "node": "n", "device": "cpu",
            "layers_json": json.dumps(layers), "versions_json": "{}", "history_json": "[]",
            "proxy_grad_norm": 1.5, "proxy_synflow": 2.5}  # fmt: skip


def _epoch(epoch, acc, max_epochs=3):
    return {**_result(epoch, acc, max_epochs), "train_loss": 1.0 / epoch, "val_loss": 2.0 / epoch, "test_acc": acc - 0.01,
            "seconds": 0.5}  # fmt: skip


def _sink(tmp_path):
    schema = trials_schema([], ["grad_norm", "synflow"])
    return ParquetSink(tmp_path / "exp", "exp", schema, [])


def _feed(sink, trial, epochs):
    for i, acc in enumerate(epochs, start=1):
        result = _epoch(i, acc)
        if i == 1:
            result.update(_first_facts())
        sink.on_trial_result(0, [], trial, result)


def test_sink_writes_three_tables_once_per_trial(tmp_path):
    import duckdb

    sink = _sink(tmp_path)
    config = {**trial_config({"method": "snip", "epochs": 3, "proxies": ["grad_norm", "synflow"]})}
    done, cut = _fake_trial("t_done", config), _fake_trial("t_cut", {**config, "seed": 1})
    _feed(sink, done, [0.5, 0.6, 0.7])
    _feed(sink, cut, [0.2])
    sink.on_trial_complete(0, [], done)
    sink.on_trial_complete(0, [], cut)
    failed = _fake_trial("t_fail", {**config, "seed": 2}, error="Traceback...\n  ...\nValueError: boom\n")
    sink.on_trial_error(0, [], failed)
    root = tmp_path / "exp"
    trials = pd.read_parquet(root / "trials").set_index("trial_id")
    assert trials.loc["t_done", "status"] == "completed" and trials.loc["t_cut", "status"] == "stopped"
    assert trials.loc["t_fail", "status"] == "failed" and trials.loc["t_fail", "error"] == "ValueError: boom"
    assert trials.loc["t_done", "epochs_run"] == 3 and trials.loc["t_done", "best_val_acc"] == 0.7
    assert trials.loc["t_cut", "val_acc"] == 0.2 and trials.loc["t_done", "proxy_synflow"] == 2.5
    assert trials.loc["t_done", "config_hash"] == config_hash(config)
    assert json.loads(trials.loc["t_done", "config_json"]) == config
    epochs = pd.read_parquet(root / "epochs")
    assert sorted(epochs[epochs.trial_id == "t_done"].epoch) == [1, 2, 3]
    layers = pd.read_parquet(root / "layers")
    assert list(layers[layers.trial_id == "t_done"]["shape"]) == ["4x2", "2x4"]
    # every reader sees the same rows
    assert pads.dataset(root / "trials").count_rows() == 3
    assert duckdb.sql(f"select count(*) from '{root}/epochs/*.parquet'").fetchall() == [(4,)]
    # columns are identical in every file, so the tables read whole
    assert set(trials.columns) >= {"lr", "epochs", "proxy_grad_norm", "proxy_synflow"}

    # Writing a trial again (a resumed driver) replaces its files: no duplicate rows.
    _feed(sink, done, [0.5, 0.6, 0.7])
    sink.on_trial_complete(0, [], done)
    assert len(pd.read_parquet(root / "trials")) == 3
    assert len(pd.read_parquet(root / "epochs")) == 4
    assert not list(root.rglob(".tmp-*"))


def test_a_read_result_keeps_only_what_every_report_carries_and_tunes_own_keys():
    from paitune.results.rows import REPORT_KEYS
    from paitune.search.lean_state import strip_result

    tune_keys = {"training_iteration": 1, "time_total_s": 0.2, "done": False, "trial_id": "t1", "pid": 7,
                 "config": {"lr": 0.05}}  # fmt: skip
    result = {**_epoch(1, 0.8), **_first_facts(), "config_hash": "h", "diverged_at": 1, **tune_keys}
    strip_result(result)
    assert set(result) == REPORT_KEYS | set(tune_keys)
    assert result["val_acc"] == 0.8 and result["params_kept"] == 6 and result["history_json"] == "[]"


def test_background_sink_writes_in_order_and_raises_a_failed_write(tmp_path, monkeypatch):
    """In a sweep the files are written by a writer thread: flush_writes() waits for them (the
    dense reference's accuracy, written first, still reaches the later row). A write that failed
    for want of space or permission (OSError) asks the sweep to stop and is recorded, no later
    trial is written, and no snapshot is taken after it; any other failure is raised on the driver."""
    import paitune.search.sink as sink_module

    sink_module.reset_write_failure()
    sink = ParquetSink(tmp_path / "exp", "exp", trials_schema([], ["grad_norm", "synflow"]), [], background=True)
    config = trial_config({"method": "snip", "epochs": 3, "proxies": ["grad_norm", "synflow"]})
    dense = _fake_trial("t_dense", {**config, "method": "dense", "sparsity": 0.0})
    pruned = _fake_trial("t_pruned", config)
    for trial in (dense, pruned):
        _feed(sink, trial, [0.5, 0.6, 0.7])
        sink.on_trial_complete(0, [], trial)
    assert not sink.records  # handed to the writer
    sink_module.flush_writes()
    trials = pd.read_parquet(tmp_path / "exp" / "trials").set_index("trial_id")
    assert list(trials.index.sort_values()) == ["t_dense", "t_pruned"]
    assert trials.loc["t_pruned", "dense_test_acc"] == pytest.approx(0.69)

    def broken(*args, **kwargs):
        raise ValueError("a bug")

    monkeypatch.setattr(sink_module, "write_table_atomic", broken)
    again = _fake_trial("t_again", {**config, "seed": 3})
    _feed(sink, again, [0.5])
    sink.on_trial_complete(0, [], again)
    with pytest.raises(ValueError, match="a bug"):
        sink_module.flush_writes()
    sink_module.flush_writes()  # raised once, then gone

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    asked = []
    monkeypatch.setattr("paitune.search.interrupt.request_stop", asked.append)
    monkeypatch.setattr(sink_module, "write_table_atomic", full)
    for trial_id, seed in (("t_full", 4), ("t_after", 5)):
        trial = _fake_trial(trial_id, {**config, "seed": seed})
        _feed(sink, trial, [0.5])
        sink.on_trial_complete(0, [], trial)
    assert sink_module.flush_for_snapshot() is False  # no snapshot after it
    assert "No space left on device" in sink_module.write_failure() and asked == [sink_module.write_failure()]
    sink_module.reset_write_failure()
    assert sorted(p.stem for p in (tmp_path / "exp" / "trials").glob("*.parquet")) == ["t_dense", "t_pruned"]


def test_sink_pairs_a_trial_with_the_dense_reference_of_its_training_setting(tmp_path):
    """With augment in the context, each augment value has its own dense reference: a trial's
    dense_test_acc is the one trained like it, also after a restart (read back from the tables)."""
    space = load_space_text(
        """
settings: {epochs: 3, proxies: [grad_norm, synflow]}
context: [dataset, model, sparsity, epochs, augment]
params:
  method: {type: categorical, choices: [snip]}
  augment: {type: categorical, choices: [none, standard]}
"""
    )
    compiled = compile_space(space)
    sink = _sink(tmp_path)
    for i, dense in enumerate(compiled.dense_references()):  # none, then standard
        trial = _fake_trial(f"d{i}", {**dense, "context": compiled.context_of(dense)})
        _feed(sink, trial, [0.5, 0.6, 0.7 + 0.2 * i])
        sink.on_trial_complete(0, [], trial)

    def pruned(trial_id, augment):
        config = trial_config({"method": "snip", "epochs": 3, "proxies": ["grad_norm", "synflow"], "augment": augment})
        return _fake_trial(trial_id, {**config, "context": compiled.context_of(config)})

    first = pruned("p_standard", "standard")
    _feed(sink, first, [0.5])
    sink.on_trial_complete(0, [], first)
    restarted = _sink(tmp_path)
    restarted.setup()  # the references come back from the written tables
    second = pruned("p_none", "none")
    _feed(restarted, second, [0.5])
    restarted.on_trial_complete(0, [], second)
    trials = pd.read_parquet(tmp_path / "exp" / "trials").set_index("trial_id")
    assert trials.loc["p_standard", "dense_test_acc"] == pytest.approx(0.89)
    assert trials.loc["p_none", "dense_test_acc"] == pytest.approx(0.69)


def test_sink_history_from_a_restored_trial_fills_earlier_epochs(tmp_path):
    # A resumed driver's sink starts empty: the restored trial's first report carries the facts
    # and the epochs it ran before its checkpoint.
    sink = _sink(tmp_path)
    trial = _fake_trial("t", trial_config({"epochs": 3}))
    history = [{"epoch": 1, "train_loss": 1.0, "val_loss": 2.0, "val_acc": 0.4, "test_acc": 0.39, "seconds": 0.5}]
    sink.on_trial_result(0, [], trial, {**_epoch(2, 0.5), **_first_facts(), "history_json": json.dumps(history)})
    sink.on_trial_result(0, [], trial, _epoch(3, 0.6))
    sink.on_trial_complete(0, [], trial)
    epochs = pd.read_parquet(tmp_path / "exp" / "epochs")
    assert list(epochs.sort_values("epoch").val_acc) == [0.4, 0.5, 0.6]
    assert sink.get_state() is None  # nothing of the sink is pickled into Tune's snapshot


def test_sink_setup_removes_what_a_killed_writer_left(tmp_path):
    from paitune.search.sink import remove_incomplete_trials

    sink = _sink(tmp_path)
    config = trial_config({"epochs": 3, "proxies": ["grad_norm", "synflow"]})
    whole, cut = _fake_trial("whole", config), _fake_trial("cut", {**config, "seed": 1})
    for trial in (whole, cut):
        _feed(sink, trial, [0.5, 0.6, 0.7])
    sink.on_trial_complete(0, [], whole)
    root = tmp_path / "exp"
    # "cut" was killed between its epochs/layers files and its trials file, plus a temporary.
    record = sink.records["cut"]
    from paitune.results.rows import epoch_rows, layer_rows

    write_table_atomic(epoch_rows(record, experiment="exp"), root / "epochs", "cut")
    write_table_atomic(layer_rows(record, experiment="exp"), root / "layers", "cut")
    (root / "trials" / ".tmp-cut-0000.parquet").write_bytes(b"PAR1 half")
    assert remove_incomplete_trials(root) == ["cut"]
    for table in ("trials", "epochs", "layers"):
        assert sorted(p.name for p in (root / table).iterdir()) == ["whole.parquet"]
    assert len(pd.read_parquet(root / "epochs")) == 3


def test_atomic_write_leaves_nothing_on_failure(tmp_path, monkeypatch):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"x": [1, 2]})
    write_table_atomic(table, tmp_path, "t1")

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", crash)
    with pytest.raises(OSError):
        write_table_atomic(pa.table({"x": [3]}), tmp_path, "t1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t1.parquet"]
    assert pd.read_parquet(tmp_path / "t1.parquet").x.tolist() == [1, 2]  # the old file is intact


# ---- validation before anything starts ----------------------------------------------------------


def _plan(tmp_path, **kwargs):
    options = SweepOptions(**{"space": "default", "out": str(tmp_path / "out"), "name": "s", **kwargs})
    return plan_sweep(options)


@pytest.mark.parametrize(
    "kwargs,expected",
    [
        ({"sampler": "bayes"}, "unknown sampler 'bayes'"),
        ({"scheduler": "hyperband"}, "unknown scheduler 'hyperband'"),
        ({"resume": True}, "--resume: no sweep 's'"),
        ({"name": "../x"}, "--name"),
        ({"num_samples": 0}, "--num-samples must be >= 1"),
        ({"cpus_per_trial": 0}, "--cpus-per-trial must be a finite number > 0"),
        ({"max_concurrent": -1}, "--max-concurrent must be >= 1"),
        ({"sets": ["sparsity=1.0"]}, "sparsity must be in [0, 1)"),
        ({"space": "nope.yaml"}, "does not exist"),
        (
            {
                "sampler": "cmaes",
                "sets": ["objectives=[{metric: val_acc, mode: max}, {metric: flops_sparse, mode: min}]"],
            },
            "handles one objective",
        ),
        ({"sets": ["dataset=cifar10", "data_root=/nonexistent/data"]}, "not found; set data_root"),
        # a float range is a choice only outside the context (a context parameter must list its values)
        (
            {
                "sampler": "grid",
                "space": "zero_cost",
                "sets": ["params.sparsity={type: float, low: 0.5, high: 0.9}", "context=[dataset, model, epochs]"],
            },
            "continuous range",
        ),
    ],
)
def test_bad_sweep_input_is_rejected_before_anything_is_written(tmp_path, kwargs, expected, monkeypatch):
    import ray

    def no_ray(*args, **kw):
        raise AssertionError("planning a sweep must not start Ray")

    monkeypatch.setattr(ray, "init", no_ray)
    with pytest.raises(PaituneError) as info:
        _plan(tmp_path, **kwargs)
    assert expected in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()


def test_out_that_is_a_file_and_names_in_use(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(PaituneError, match="is not a directory"):
        plan_sweep(SweepOptions(out=str(blocker / "sub"), name="s"))
    # URIs: one that no filesystem handles, and one whose storage cannot be reached (no network here)
    with pytest.raises(PaituneError, match="pyarrow cannot open this location"):
        plan_sweep(SweepOptions(out="nosuchscheme://bucket/x", name="s"))
    with pytest.raises(PaituneError, match="s3://bucket/x: .*(cannot open|cannot reach)"):
        plan_sweep(SweepOptions(out="s3://bucket/x", name="s", state_dir=str(tmp_path / "state")))
    assert not (tmp_path / "state").exists()
    lock = SweepLock(tmp_path / "out" / "busy", "busy")
    try:
        with pytest.raises(PaituneError, match="already running"):
            _plan(tmp_path, name="busy")
    finally:
        lock.release()
    (tmp_path / "out" / "done").mkdir(parents=True)
    (tmp_path / "out" / "done" / "sweep.json").write_text("{}")
    with pytest.raises(PaituneError, match="already exists"):
        _plan(tmp_path, name="done")


def test_grid_plan_counts_the_points(tmp_path):
    plan = _plan(tmp_path, space="sanity", sampler="grid")
    # 4 methods x 2 sparsities (the contexts) x 3 seeds sampled; the 5 controls other than none run as
    # the paired arms of each, beside one dense reference per seed
    assert plan.num_samples == 24 and plan.arms_per_trial == 5
    assert plan.total_trials == 24 * (1 + 5) + 3


# ---- one real sweep -----------------------------------------------------------------------------


@pytest.mark.ray
def test_real_sweep_tables_match_the_result_grid(ray_session, tmp_path):
    from paitune.search.summary import print_summary
    from paitune.search.sweep import execute_sweep

    space_file = tmp_path / "small.yaml"
    space_file.write_text(SMALL_SPACE)
    plan = plan_sweep(SweepOptions(space=str(space_file), out=str(tmp_path), name="real", sampler="random",
                                   max_concurrent=2, verbose=0, tune_logs=True))  # fmt: skip
    grid = execute_sweep(plan)
    root = tmp_path / "real"
    # 8 sampled, each with its paired shuffle arm, + the dense reference of each seed
    assert len(grid) == 8 * 2 + 2 and not grid.errors
    trials = pd.read_parquet(root / "trials").set_index("trial_id")
    dense = trials[trials.method == "dense"]
    assert sorted(dense.seed) == [0, 1] and (dense.sparsity == 0).all() and (dense.allocation == "global").all()
    assert (dense.control == "none").all() and (dense.status == "completed").all() and (dense.epochs_run == 3).all()
    assert (dense.density_achieved == 1.0).all()
    acc_by_seed = dict(zip(dense.seed, dense.test_acc))
    pruned = trials[trials.method != "dense"]
    assert pruned.dense_test_acc.notna().any()
    for row in pruned.itertuples():  # filled once that seed's dense reference had finished
        assert pd.isna(row.dense_test_acc) or row.dense_test_acc == acc_by_seed[row.seed]
    epochs = pd.read_parquet(root / "epochs")
    layers = pd.read_parquet(root / "layers")
    assert sorted(trials.index) == sorted(r.metrics["trial_id"] for r in grid)
    for result in grid:
        tid, last = result.metrics["trial_id"], result.metrics
        row = trials.loc[tid]
        assert row.experiment == "real" and row.config_hash == last["config_hash"]
        assert row.epochs_run == last["epoch"] and row.val_acc == pytest.approx(last["val_acc"])
        assert row.status == ("completed" if last["epoch"] == 3 else "stopped")
        assert row.method == result.config["method"] and row.seed == result.config["seed"]
        history = result.metrics_dataframe.sort_values("epoch")
        mine = epochs[epochs.trial_id == tid].sort_values("epoch")
        assert list(mine.epoch) == list(history.epoch)
        assert mine.val_acc.tolist() == pytest.approx(history.val_acc.tolist())
        assert mine.train_loss.tolist() == pytest.approx(history.train_loss.tolist())
        assert row.best_val_acc == pytest.approx(history.val_acc.max())
        first = history.iloc[0]
        assert row.mask_hash == first["mask_hash"] and row.params_kept == first["params_kept"]
        assert row.proxy_synflow == pytest.approx(first["proxy_synflow"])
        mine_layers = layers[layers.trial_id == tid]
        assert len(mine_layers) == 3  # the MLP's three Linear weights
        kept = (mine_layers.density * mine_layers.numel).sum()
        assert kept / mine_layers.numel.sum() == pytest.approx(row.density_achieved)
        assert math.isclose(row.density_achieved, 1 - row.sparsity, abs_tol=0.01)
    assert (trials.status == "stopped").sum() >= 1  # ASHA cut some trials
    assert (trials.status == "completed").sum() >= 1

    # every trial's context is its dataset, model, sparsity and budget
    for row in trials.itertuples():
        assert row.context == f"dataset=digits,model=mlp,sparsity={row.sparsity!r},epochs=3"
    # controls are never sampled: each sampled trial (control none) has one shuffle arm, the same
    # config and seed, never stopped before its partner
    sampled, arms = pruned[pruned.control == "none"], pruned[pruned.control == "shuffle"]
    assert len(sampled) == len(arms) == 8 and set(pruned.control) == {"none", "shuffle"}
    partner = {(r.context, r.method, r.allocation, r.seed): r for r in sampled.itertuples()}
    assert len(partner) == 8
    for arm in arms.itertuples():
        mate = partner.pop((arm.context, arm.method, arm.allocation, arm.seed))
        assert arm.epochs_run >= mate.epochs_run and (mate.status == "stopped" or arm.status == mate.status)
    assert not partner

    study_rows = study_trials(study_storage(root), "real")
    # paitune's own state sits beside Tune's experiment folder, never inside it
    assert (root / "tune").is_dir() and not list((root / "tune").glob("sweep.json"))
    assert any((root / name).exists() for name in STATE_FILES) and not (root / "ray.pids").exists()
    states = {t.user_attrs["tune_trial_id"]: t for t in study_rows if "tune_trial_id" in t.user_attrs}
    # the dense references and the control arms never reach a sampler
    assert sorted(states) == sorted(sampled.index)
    assert len([t for t in study_rows if DUPLICATE_ATTR not in t.user_attrs]) == 8  # repeats are told, never run
    for tid, t in states.items():
        row = trials.loc[tid]
        if row.status == "stopped":
            assert t.state == TrialState.PRUNED
            assert sorted(t.intermediate_values) == list(range(1, row.epochs_run + 1))
        else:
            assert t.state == TrialState.COMPLETE and t.value == pytest.approx(row.val_acc)
    assert not list(Path(root).rglob(".tmp-*"))
    assert print_summary(root, grid) == 0
    # Tune's last snapshot lists each ended trial lean: no prune-time facts, no running statistics
    snapshot = json.loads(max((root / "tune").glob("experiment_state-*.json")).read_text())
    assert len(snapshot["trial_data"]) == len(trials)
    for _, runtime_json in snapshot["trial_data"]:
        runtime = json.loads(runtime_json)
        assert runtime["metric_analysis"] == {} and runtime["metric_n_steps"] == {}
        assert "val_acc" in runtime["last_result"] and not {"layers_json", "proxy_synflow"} & set(
            runtime["last_result"]
        )


@pytest.mark.ray
def test_a_sweep_with_a_training_value_in_its_context_pairs_gaps_within_it(ray_session, tmp_path):
    """lr is part of the context: a dense reference runs per lr and seed, each trial's
    dense_test_acc is the one of its lr and seed, and the analysis keeps the two apart."""
    from paitune.analysis import dense_reference, load_results
    from paitune.search.sweep import execute_sweep

    space_file = tmp_path / "lr.yaml"
    space_file.write_text(
        "settings: {dataset: digits, model: mlp, sparsity: 0.8, epochs: 2, proxies: []}\n"
        "context: [dataset, model, sparsity, epochs, lr]\n"
        "params:\n"
        "  method: {type: categorical, choices: [random, magnitude]}\n"
        "  lr: {type: categorical, choices: [0.01, 0.2]}\n"
        "seeds: [0, 1]\nscheduler: {type: fifo}\n"
    )
    plan = plan_sweep(SweepOptions(space=str(space_file), out=str(tmp_path), name="lr", sampler="grid",
                                   max_concurrent=2, verbose=0))  # fmt: skip
    assert [(d["lr"], d["seed"]) for d in plan.dense_references] == [(0.01, 0), (0.01, 1), (0.2, 0), (0.2, 1)]
    execute_sweep(plan)
    trials = pd.read_parquet(tmp_path / "lr" / "trials")
    dense = trials[trials.method == "dense"].set_index(["lr", "seed"])["test_acc"]
    assert len(dense) == 4 and dense.loc[(0.01, 0)] != dense.loc[(0.2, 0)]
    pruned = trials[trials.method != "dense"]
    assert len(pruned) == 8 and pruned.dense_test_acc.notna().any()
    for row in pruned.itertuples():
        assert pd.isna(row.dense_test_acc) or row.dense_test_acc == dense.loc[(row.lr, row.seed)]
    reference = dense_reference(load_results(tmp_path / "lr"), n_boot=50).set_index("setting")
    assert sorted(reference.index) == ["lr=0.01", "lr=0.2"] and (reference["n"] == 2).all()
    assert reference.loc["lr=0.2", "mean"] == pytest.approx(dense.loc[0.2].mean())


def test_cluster_yaml_is_a_closed_ray_launcher_config():
    import yaml
    from ray.autoscaler._private.util import prepare_config, validate_config

    path = Path(__file__).resolve().parents[1] / "cluster.yaml"
    text = path.read_text()
    config = yaml.safe_load(text)
    for key in ("cluster_name", "provider", "auth", "available_node_types", "head_node_type", "setup_commands",
                "head_start_ray_commands", "worker_start_ray_commands"):  # fmt: skip
        assert key in config, key
    validate_config(prepare_config(yaml.safe_load(text)))  # Ray's own schema, as `ray up` checks it
    assert config["provider"]["type"] == "aws"
    workers = [t for name, t in config["available_node_types"].items() if name != config["head_node_type"]]
    assert any(t["node_config"]["InstanceType"].startswith(("g", "p")) for t in workers)  # GPU instances
    assert any("pip install" in c and "paitune" in c for c in config["setup_commands"])
    head_start = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start
    assert "0.0.0.0" not in text and "IpRanges" not in text  # no inbound rule open to the world


def test_dense_references_are_handed_out_first_and_never_reach_optuna(tmp_path):
    space = load_space_text(SMALL_SPACE)
    compiled = compile_space(space)
    dense = compiled.dense_references()
    assert len(dense) == 2  # digits x mlp x 3 epochs x seeds [0, 1]
    url = f"sqlite:///{tmp_path / 'o.db'}"
    searcher = PaiOptunaSearch(compiled, metric="val_acc", mode="max", sampler=optuna.samplers.RandomSampler(seed=0),
                               storage=optuna.storages.RDBStorage(url), study_name="s", dense=dense)  # fmt: skip
    first = [searcher.suggest(t) for t in ("d0", "d1", "x0")]
    assert [c["method"] for c in first[:2]] == ["dense", "dense"] and [c["seed"] for c in first[:2]] == [0, 1]
    assert first[2]["method"] != "dense" and len(searcher.study.trials) == 2  # x0 and its queued replicate
    searcher.on_trial_result("d0", _result(1, 0.9))
    searcher.on_trial_complete("d0", _result(3, 0.95))
    assert len(searcher.study.trials) == 2 and all(
        t.user_attrs.get("tune_trial_id") != "d0" for t in searcher.study.trials
    )
    # a resumed driver whose Tune holds the references (restored from its snapshot) does not
    # hand them out again
    path = tmp_path / "state.json"
    searcher.save(str(path))
    held = TuneTrialIds()
    for tid in ("d0", "d1", "x0"):
        held.add(tid)
    again = PaiOptunaSearch(compiled, metric="val_acc", mode="max", sampler=optuna.samplers.RandomSampler(seed=0),
                            storage=optuna.storages.RDBStorage(url), study_name="s", dense=dense,
                            tune_trials=held)  # fmt: skip
    again.restore(str(path))
    assert again.suggest("y")["method"] != "dense" and again.suggest("d1")["seed"] == 1


def test_asha_never_stops_or_records_the_dense_reference(tmp_path):
    from ray.tune.schedulers import TrialScheduler

    from paitune.search.asha import ContextASHA, pair_key

    asha = ContextASHA(time_attr="epoch", metric="val_acc", mode="max", max_t=4, grace_period=1,
                       reduction_factor=2, min_rung_trials=1, state_path=tmp_path / "asha.json")  # fmt: skip
    ctl = SimpleNamespace(checkpoint=lambda **kw: None)
    good, dense = (
        SimpleNamespace(trial_id="g", config={"method": "snip", "seed": 0}),
        SimpleNamespace(trial_id="d", config={"method": "dense"}),
    )
    asha.on_trial_add(ctl, good)
    asha.on_trial_add(ctl, dense)
    assert asha.on_trial_result(ctl, good, {"epoch": 1, "val_acc": 0.9}) == TrialScheduler.CONTINUE
    assert asha.on_trial_result(ctl, dense, {"epoch": 1, "val_acc": 0.1}) == TrialScheduler.CONTINUE
    asha.on_trial_complete(ctl, dense, {"epoch": 4, "val_acc": 0.99})
    # a worse pruned trial of the same context is stopped where the dense reference was not
    worse = SimpleNamespace(trial_id="w", config={"method": "snip", "seed": 1})
    assert asha.on_trial_result(ctl, worse, {"epoch": 1, "val_acc": 0.5}) == TrialScheduler.STOP
    rungs = asha.rungs()
    records = {key for ctx in rungs.values() for _, rec in ctx for key in rec}
    assert records == {pair_key(good.config), pair_key(worse.config)}  # never the dense reference's


SPARSE_SPACE = """
name: sparse
settings: {dataset: digits, model: mlp, epochs: 2, batch_size: 128, sparsity: 0.5, allocation: erk, update_interval: 5}
params:
  method: {type: categorical, choices: [rigl, imp]}
seeds: [0]
scheduler: {type: fifo}
num_samples: 2
"""


@pytest.mark.ray
def test_sparse_methods_run_as_trials_and_record_their_final_masks(ray_session, tmp_path):
    """RigL and IMP through a real sweep: IMP reports one row per round, both record the final mask."""
    import math

    from paitune.search.sweep import execute_sweep

    space_file = tmp_path / "sparse.yaml"
    space_file.write_text(SPARSE_SPACE)
    plan = plan_sweep(SweepOptions(space=str(space_file), out=str(tmp_path), name="sparse", sampler="grid",
                                   max_concurrent=2, verbose=0))  # fmt: skip
    grid = execute_sweep(plan)
    assert not grid.errors
    trials = pd.read_parquet(tmp_path / "sparse" / "trials").set_index("method")
    epochs = pd.read_parquet(tmp_path / "sparse" / "epochs")
    layers = pd.read_parquet(tmp_path / "sparse" / "layers")
    rounds = math.ceil(math.log(0.5) / math.log(0.8))  # 4 rounds of 20% reach sparsity 0.5
    imp = trials.loc["imp"]
    assert imp.status == "completed" and imp.max_epochs == rounds + 1 and imp.epochs_run == rounds + 1
    assert sorted(epochs[epochs.trial_id == imp.trial_id].epoch) == list(range(1, rounds + 2))
    for method in ("imp", "rigl"):
        row = trials.loc[method]
        assert row.density_achieved == pytest.approx(0.5, abs=2e-3)  # the final mask, not a dense start
        mine = layers[layers.trial_id == row.trial_id]
        kept = (mine.density * mine.numel).sum() / mine.numel.sum()
        assert kept == pytest.approx(row.density_achieved, abs=1e-6)


UNBUILDABLE_SPACE = """
name: unbuildable
settings: {dataset: digits, model: cnn, epochs: 1, batch_size: 64, method: magnitude, allocation: uniform_plus}
params:
  sparsity: {type: categorical, choices: [0.5, 0.995]}
seeds: [0]
scheduler: {type: fifo}
num_samples: 2
"""


@pytest.mark.ray
def test_a_config_that_cannot_be_built_fails_once_with_its_reason(ray_session, tmp_path):
    """uniform_plus keeps the CNN's first conv dense: it cannot reach sparsity 0.995 there. The
    trial is recorded failed with the allocation's one line, at once (no retries: max_failures is 2),
    and the sweep goes on."""
    from paitune.search.sweep import execute_sweep

    space_file = tmp_path / "unbuildable.yaml"
    space_file.write_text(UNBUILDABLE_SPACE)
    plan = plan_sweep(SweepOptions(space=str(space_file), out=str(tmp_path), name="u", sampler="grid",
                                   max_concurrent=2, verbose=0))  # fmt: skip
    execute_sweep(plan)
    trials = pd.read_parquet(tmp_path / "u" / "trials")
    trials = trials[trials.method != "dense"].set_index("sparsity")
    good, bad = trials.loc[0.5], trials.loc[0.995]
    assert good.status == "completed" and good.epochs_run == 1
    assert bad.status == "failed" and bad.epochs_run == 0
    assert bad.error.startswith("uniform_plus cannot meet this sparsity")
    states = {t.user_attrs["tune_trial_id"]: t for t in study_trials(study_storage(tmp_path / "u"), "u")}
    assert states[bad.trial_id].state == TrialState.FAIL
    assert states[bad.trial_id].user_attrs["pai_status"] == "failed"
    assert states[good.trial_id].state == TrialState.COMPLETE
    # Tune never saw an error (the only way to its retries): no trial left a traceback.
    assert not list((tmp_path / "u").glob(f"{ERRORS_DIR}/*"))


def test_imp_under_asha_is_rejected_before_anything_starts(tmp_path):
    space_file = tmp_path / "imp_asha.yaml"
    space_file.write_text(SPARSE_SPACE.replace("{type: fifo}", "{type: asha}"))
    with pytest.raises(PaituneError, match="method imp reports one round per step"):
        plan_sweep(SweepOptions(space=str(space_file), out=str(tmp_path), name="x"))
    assert list(tmp_path.iterdir()) == [space_file]


@pytest.mark.parametrize("every, per_trial", [(0.0, 3), (3600.0, 0)])
def test_checkpoint_interval(ray_session, tmp_path, every, per_trial):
    """--checkpoint-every 0: a checkpoint per epoch; otherwise one when the interval has passed
    since the trial began or last checkpointed (a trial shorter than that has none)."""
    from paitune.search.sweep import execute_sweep

    space_file = tmp_path / "s.yaml"
    space_file.write_text(SMALL_SPACE.replace("type: asha, grace_period: 1, reduction_factor: 2", "type: fifo")
                          .replace("seeds: [0, 1]", "seeds: [0]"))  # fmt: skip
    plan = plan_sweep(SweepOptions(space=str(space_file), out=str(tmp_path), name="c", sampler="random",
                                   num_samples=2, max_concurrent=2, verbose=0, checkpoint_every_s=every))  # fmt: skip
    execute_sweep(plan)
    trial_dirs = sorted((tmp_path / "c" / "tune").glob("trial_*"))
    assert len(trial_dirs) == 5  # 2 sampled, their 2 shuffle arms, and the dense reference
    for trial_dir in trial_dirs:
        assert not list(trial_dir.glob("result.json"))  # Tune's own logs only with --tune-logs
        checkpoints = sorted(trial_dir.glob("checkpoint_*"))
        assert len(checkpoints) == per_trial
        if checkpoints:
            assert [load_checkpoint(c / CHECKPOINT_FILE)["trainer"]["epoch"] for c in checkpoints] == [1, 2, 3]
    epochs = pd.read_parquet(tmp_path / "c" / "epochs")
    assert len(epochs) == 5 * 3  # every epoch reported either way


@pytest.mark.ray
def test_reports_only_where_needed_and_every_epoch_still_lands(ray_session, tmp_path):
    """A trial reports at ASHA's rungs, its end and its checkpoints (a long --report-every), not
    every epoch; the epochs between reach the epochs table and Optuna through the next report,
    with the values a report-every-epoch sweep of the same configs records."""
    from paitune.search.sweep import execute_sweep

    space_file = tmp_path / "s.yaml"
    space_file.write_text(SMALL_SPACE.replace("epochs: 3", "epochs: 4").replace("seeds: [0, 1]", "seeds: [0]"))
    tables = {}
    for name, every in (("sparse", 3600.0), ("dense", 0.0)):
        plan = plan_sweep(SweepOptions(space=str(space_file), out=str(tmp_path), name=name, sampler="random",
                                       num_samples=6, max_concurrent=2, verbose=0, tune_logs=True,
                                       checkpoint_every_s=3600.0, report_every_s=every))  # fmt: skip
        grid = execute_sweep(plan)
        trials = pd.read_parquet(tmp_path / name / "trials").set_index("trial_id")
        epochs = pd.read_parquet(tmp_path / name / "epochs")
        reported = {r.metrics["trial_id"]: sorted(r.metrics_dataframe.epoch) for r in grid}
        for tid, row in trials.iterrows():
            assert sorted(epochs[epochs.trial_id == tid].epoch) == list(range(1, row.epochs_run + 1))
            if every:  # the rungs are epochs 1, 2 and 4: epoch 3 is never reported on its own
                assert set(reported[tid]) <= {1, 2, 4} and reported[tid][-1] == row.epochs_run
            else:
                assert reported[tid] == list(range(1, row.epochs_run + 1))
        if every:  # the dense reference runs all 4 epochs: its epoch 3 came with epoch 4's report
            assert any(r[-1] == 4 and 3 not in r for r in reported.values())
        study_rows = study_trials(study_storage(tmp_path / name), name)  # every context's study
        assert len([t for t in study_rows if "tune_trial_id" in t.user_attrs]) >= 6
        for t in study_rows:
            if "tune_trial_id" in t.user_attrs and t.state in (TrialState.PRUNED, TrialState.COMPLETE):
                ran = int(trials.loc[t.user_attrs["tune_trial_id"], "epochs_run"])
                assert sorted(t.intermediate_values) == list(range(1, ran + 1))
        tables[name] = epochs.merge(trials[["config_hash"]], left_on="trial_id", right_index=True)
    both = tables["sparse"].merge(tables["dense"], on=["config_hash", "epoch"], suffixes=("", "_every"))
    assert len(both) >= 6  # the same configs (fixed sampler seed) ran epochs in both sweeps
    assert both.val_acc.tolist() == both.val_acc_every.tolist()
    assert both.train_loss.tolist() == both.train_loss_every.tolist()
