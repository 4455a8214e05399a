"""Fast checks of the state that carries a sweep across a driver restart: ASHA's rungs and stop
decisions, the searcher's Tune-to-Optuna map and orphan handling, Tune's snapshot/upload order,
and the cleanup of Ray processes a killed driver left."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from types import SimpleNamespace

import optuna
import pytest
from optuna.trial import TrialState
from ray.tune.schedulers import TrialScheduler

from paitune.search.asha import ContextASHA, pair_key, read_state
from paitune.search.ray_procs import descendants, reap_orphans, record_processes
from paitune.search.searcher import PaiOptunaSearch
from paitune.search.study_attrs import ORPHAN_ATTR, RETRY_ATTR
from paitune.search.tune_trials import TuneTrialIds
from paitune.spaces import compile_space, load_space_text

optuna.logging.set_verbosity(optuna.logging.WARNING)


class FakeController:
    pass


def _asha(path, tune_trials=None):
    # min_rung_trials=1: a result is compared with every one recorded at its rung before it
    return ContextASHA(time_attr="epoch", metric="val_acc", mode="max", max_t=4, grace_period=1,
                       reduction_factor=2, min_rung_trials=1, state_path=path, tune_trials=tune_trials)  # fmt: skip


def _trial(tid, method="snip", seed=0, control="none", status="PENDING"):
    return SimpleNamespace(trial_id=tid, config={"method": method, "seed": seed, "control": control}, status=status)


def test_asha_rungs_and_stop_decisions_survive_a_restart(tmp_path):
    path = tmp_path / "asha.json"
    ctl = FakeController()
    registry = TuneTrialIds()
    first = _asha(path, registry)
    # three configs of one context (seeds 0, 1, 2): each its own pair
    trial = {tid: _trial(tid, seed=i) for i, tid in enumerate("abc")}
    for tid in "abc":
        first.on_trial_add(ctl, trial[tid])
    assert registry.ids == {"a", "b", "c"}  # every trial Tune adds is recorded for the searcher
    # rung 1 (each result is compared with the median of those recorded before it):
    # a is first (no cutoff), b 0.95 >= 0.9, c 0.1 < median(0.9, 0.95)
    assert first.on_trial_result(ctl, trial["a"], {"epoch": 1, "val_acc": 0.9}) == TrialScheduler.CONTINUE
    assert first.on_trial_result(ctl, trial["b"], {"epoch": 1, "val_acc": 0.95}) == TrialScheduler.CONTINUE
    assert first.on_trial_result(ctl, trial["c"], {"epoch": 1, "val_acc": 0.1}) == TrialScheduler.STOP
    assert first.on_trial_result(ctl, trial["a"], {"epoch": 2, "val_acc": 0.95}) == TrialScheduler.CONTINUE
    before = first.rungs()
    ((context, rungs),) = before.items()  # one context, its rungs lowest milestone first
    assert context == "dataset=digits,model=mlp,sparsity=0.9,epochs=10"  # the default context of these configs
    key = {tid: pair_key(trial[tid].config) for tid in "abc"}  # a rung records each config once
    assert rungs == [(1, {key["a"]: 0.9, key["b"]: 0.95, key["c"]: 0.1}), (2, {key["a"]: 0.95})]

    import pickle

    # What Tune restores on --resume: the scheduler as pickled when the Tuner was built (empty)...
    restored = pickle.loads(pickle.dumps(_asha(path)))
    restored.on_trial_add(ctl, trial["b"])
    restored.on_trial_add(ctl, trial["c"])
    # ...and it reads the rungs back the first time it is used.
    assert restored.rungs() == before
    # c re-runs from its checkpoint: it is stopped where it was stopped, whatever the rung says now
    assert restored.on_trial_result(ctl, trial["c"], {"epoch": 1, "val_acc": 0.99}) == TrialScheduler.STOP
    # b's epoch-2 result meets a's pre-restart record (0.95) on rung 2: below it, stopped
    assert restored.on_trial_result(ctl, trial["b"], {"epoch": 2, "val_acc": 0.5}) == TrialScheduler.STOP
    # c's control arm, started after the restart, stops where c was stopped before it
    arm = _trial("c-shuffle", seed=2, control="shuffle")
    restored.on_trial_add(ctl, arm)
    assert restored.on_trial_result(ctl, arm, {"epoch": 1, "val_acc": 0.99}) == TrialScheduler.STOP
    state = read_state(path)
    assert state["stopped_at"] == {"c": 1.0, "b": 2.0, "c-shuffle": 1.0}
    assert sorted(state["pair_stopped"].values()) == [1.0, 2.0]


def test_stock_asha_forgets_its_rungs_when_restored():
    # The problem ContextASHA's state file solves, shown on Ray's own class.
    from ray.tune.schedulers import ASHAScheduler

    stock = ASHAScheduler(time_attr="epoch", metric="val_acc", mode="max", max_t=4, grace_period=1, reduction_factor=2)
    import pickle

    built = pickle.dumps(stock)  # Tuner pickles it at construction
    stock.on_trial_add(None, _trial("a"))
    stock.on_trial_result(None, _trial("a"), {"epoch": 1, "val_acc": 0.9})
    assert pickle.loads(built)._brackets[0]._rungs[-1][1] == {}


SPACE = """
name: s
settings: {dataset: digits, model: mlp, epochs: 2}
params:
  method: {type: categorical, choices: [random, magnitude, snip]}
  sparsity: {type: categorical, choices: [0.5, 0.9]}
seeds: [0, 1]
"""


def _searcher(storage, **kwargs):
    return PaiOptunaSearch(compile_space(load_space_text(SPACE)), metric="val_acc", mode="max",
                           sampler=optuna.samplers.RandomSampler(seed=0), storage=storage, study_name="s",
                           **kwargs)  # fmt: skip


def _written(results, *tids):
    """Parquet trial rows for ``tids``, as the sink leaves them when those trials end."""
    import pyarrow as pa

    from paitune.search.parquet_io import write_table_atomic

    for tid in tids:
        write_table_atomic(pa.table({"trial_id": [tid]}), results / "trials", tid)


def test_searcher_state_is_json_and_a_restart_squares_the_study_with_the_restored_tune(tmp_path):
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    results = tmp_path / "results"
    first = _searcher(optuna.storages.RDBStorage(url), budget=6, results=results, tune_trials=TuneTrialIds())
    for tid in ("a", "b", "c"):
        first.suggest(tid)  # a: sampled, b: a's replicate (other seed), c: sampled
    first.on_trial_result("a", {"epoch": 1, "val_acc": 0.5, "max_epochs": 2})
    first.on_trial_complete("a", {"epoch": 2, "val_acc": 0.7, "max_epochs": 2})
    _written(results, "a")
    snapshot = tmp_path / "searcher-state.pkl"
    first.save(str(snapshot))  # Tune's snapshot: it holds a, b and c
    state = json.loads(snapshot.read_text())  # plain JSON, nothing pickled
    numbers = {t.user_attrs["tune_trial_id"]: t.number for t in first.study.trials if "tune_trial_id" in t.user_attrs}
    assert state["trials"] == numbers and state["completed"] == ["a"]
    assert numbers["a"] == 0 and numbers["b"] == 1  # (c's number is higher if the sampler repeated a)
    # The driver goes on past that snapshot: c is stopped and written; d is asked and runs; e is
    # asked, finishes and is written; then the driver is killed inside the next suggest(), after
    # Optuna's ask but before the trial got its Tune id.
    first.on_trial_complete("c", {"epoch": 1, "val_acc": 0.2, "max_epochs": 2})
    _written(results, "c")
    first.suggest("d")
    first.suggest("e")
    first.on_trial_complete("e", {"epoch": 2, "val_acc": 0.8, "max_epochs": 2})
    _written(results, "e")
    unnamed = first.study.ask()

    # The resume: Tune restores a, b and c from its snapshot (the scheduler records them), then
    # restores the searcher; d and e came after the snapshot, so Tune does not know them.
    held = TuneTrialIds()
    for tid in ("a", "b", "c"):
        held.add(tid)
    resumed = _searcher(optuna.storages.RDBStorage(url), budget=6, results=results, tune_trials=held)
    resumed.restore(str(snapshot))
    first_new = resumed.suggest("f")  # squares the study with the restored Tune first
    study = resumed.study
    by_tid = {t.user_attrs["tune_trial_id"]: t for t in study.trials if "tune_trial_id" in t.user_attrs}
    # unnamed, and d (named after the snapshot, never written): FAIL + orphaned, configs queued again
    lost = [study.trials[unnamed.number], by_tid["d"]]
    for trial in lost:
        assert trial.state == TrialState.FAIL and trial.user_attrs[ORPHAN_ATTR]
        retry = [t for t in study.trials if t.user_attrs.get(RETRY_ATTR) == trial.number]
        # (ask() took a queued replicate for the unnamed one: its config is in fixed_params)
        config = trial.params or trial.system_attrs["fixed_params"]
        assert len(retry) == 1 and (retry[0].system_attrs.get("fixed_params") or retry[0].params) == config
    # e finished after the snapshot and its row is written: kept as it is, never run again
    assert by_tid["e"].state == TrialState.COMPLETE and not by_tid["e"].user_attrs.get(ORPHAN_ATTR)
    # the budget: a, b, c (Tune's) and e (written) used 4 of 6 trials; f was the 5th
    assert isinstance(first_new, dict)
    assert isinstance(resumed.suggest("g"), dict) and resumed.suggest("h") == "FINISHED"
    # c ran to its end again from its checkpoint: Optuna already has its outcome, nothing raises
    resumed.on_trial_result("c", {"epoch": 2, "val_acc": 0.9, "max_epochs": 2})
    resumed.on_trial_complete("c", {"epoch": 2, "val_acc": 0.9, "max_epochs": 2})
    c = study.trials[numbers["c"]]
    assert c.state == TrialState.PRUNED and c.intermediate_values == {1: 0.2}
    # b never reports again (say Tune lost it): failed when the sweep ends, with what the sweep
    # never got to from the queue (not_run), leaving nothing open
    from paitune.search.recovery import fail_unfinished

    failed = fail_unfinished(study)
    assert 1 in failed and study.trials[1].state == TrialState.FAIL and study.trials[1].user_attrs[ORPHAN_ATTR]
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))


def test_the_budget_counts_dense_references_written_after_the_snapshot(tmp_path):
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    results = tmp_path / "results"
    dense = [{"method": "dense", "seed": 0}, {"method": "dense", "seed": 1}]
    first = _searcher(
        optuna.storages.RDBStorage(url), budget=4, results=results, tune_trials=TuneTrialIds(), dense=dense
    )
    assert first.suggest("r0") == dense[0] and first.suggest("r1") == dense[1]  # references go first
    _written(results, "r0")  # r0 finished after Tune's last snapshot; r1 was running when the driver died
    resumed = _searcher(
        optuna.storages.RDBStorage(url), budget=4, results=results, tune_trials=TuneTrialIds(), dense=dense
    )
    # nothing of Tune's state survived: r0 (written) is kept and r1 runs again, under a new trial
    assert resumed.suggest("x") == dense[1]
    assert resumed.is_dense("x") and not resumed.is_dense("r1")
    for tid in ("y", "z"):  # the 3rd and 4th trials: sampled
        assert isinstance(resumed.suggest(tid), dict) and not resumed.is_dense(tid)
    assert resumed.suggest("w") == "FINISHED"


def test_snapshots_wait_for_the_upload_in_flight():
    from paitune.search.internals import experiment_checkpoint_manager_class as _manager_class
    from paitune.search.tune_state import serialized_snapshots

    events = []
    syncer = SimpleNamespace(
        wait=lambda: events.append("wait-upload"), sync_up=lambda *a, **k: events.append("upload") or True
    )
    manager = _manager_class()(storage=SimpleNamespace(syncer=syncer, experiment_driver_staging_path="/nonexistent",
                                                       experiment_fs_path="/nonexistent"),
                               checkpoint_period=0, sync_every_n_trial_checkpoints=None)  # fmt: skip
    with serialized_snapshots(before_save=lambda: events.append("flush-rows")):
        manager.sync_up_experiment_state(lambda: events.append("save"), force=False)
        manager.sync_up_experiment_state(lambda: events.append("save"), force=False)
    # every save into the staging folder comes after the previous upload has finished, and after
    # the rows of the trials it records as ended are written
    assert events == ["wait-upload", "flush-rows", "save", "upload"] * 2
    events.clear()
    manager.sync_up_experiment_state(lambda: events.append("save"), force=False)
    assert events == ["save", "upload"]  # outside the block Tune is as it was


def test_orphaned_processes_of_a_killed_driver_are_reaped_by_pid(tmp_path):
    # A stand-in "driver" whose child ignores SIGTERM, like Ray's agents once their raylet is gone.
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)"
    child = subprocess.Popen([sys.executable, "-c", code])
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        assert child.pid in descendants(__import__("os").getpid())
        record_processes(tmp_path, [child.pid])
        # a record whose start time does not match (a recycled pid) is never killed
        record = json.loads((tmp_path / "ray.pids").read_text())
        record["processes"].append({"pid": bystander.pid, "start": 1})
        (tmp_path / "ray.pids").write_text(json.dumps(record))
        assert reap_orphans(tmp_path) == [child.pid]
        assert child.wait(timeout=10) == -9
        time.sleep(0.2)
        assert bystander.poll() is None
        assert not (tmp_path / "ray.pids").exists() and reap_orphans(tmp_path) == []
    finally:
        for proc in (child, bystander):
            proc.kill()
            proc.wait()


def test_a_fresh_searcher_over_an_existing_study_fails_what_the_dead_driver_left_running(tmp_path):
    # The driver died before Tune saved any state: --resume builds a new Tuner over the same study.
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    dead = _searcher(optuna.storages.RDBStorage(url))
    asked = dead.suggest("lost")
    fresh = _searcher(optuna.storages.RDBStorage(url))
    config = fresh.suggest("new")
    lost = [t for t in fresh.study.trials if t.user_attrs.get("tune_trial_id") == "lost"][0]
    assert lost.state == TrialState.FAIL and lost.user_attrs[ORPHAN_ATTR]
    # the lost config's queued replicate (seed 1) comes first; the retry of "lost" is queued too
    assert {k: config[k] for k in ("method", "sparsity")} == {k: asked[k] for k in ("method", "sparsity")}
    assert any(t.user_attrs.get(RETRY_ATTR) == lost.number for t in fresh.study.trials)


def test_a_restored_scheduler_and_searcher_share_one_empty_registry(tmp_path):
    # Tune pickles the scheduler and the searcher together (its tuner file): after a restore they
    # must share the registry, and it must hold only what the restoring controller adds.
    import pickle

    registry = TuneTrialIds()
    searcher = _searcher(optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'o.db'}"), tune_trials=registry)
    registry.add("from-the-dead-driver")
    scheduler, restored = pickle.loads(pickle.dumps((_asha(tmp_path / "asha.json", registry), searcher)))
    assert scheduler.tune_trials is restored._tune_trials and not scheduler.tune_trials.ids
    scheduler.on_trial_add(FakeController(), _trial("restored"))
    assert restored._tune_trials.ids == {"restored"}


def test_sweep_journal_is_optunas_format_without_fsync(tmp_path, monkeypatch):
    """The sweep's study journal reads back through Optuna's stock JournalFileBackend (same lines,
    same lock file), and appends without an fsync per operation."""
    import os

    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from paitune.search.study_store import STUDY_FILE, study_storage

    syncs = []
    monkeypatch.setattr(os, "fsync", lambda fd: syncs.append(fd))
    study = optuna.create_study(study_name="s", storage=study_storage(tmp_path))
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0.0, 1.0)})
    for step in range(3):
        trial.report(0.1 * step, step)
    study.tell(trial, 0.5)
    assert syncs == []
    stock = optuna.load_study(study_name="s", storage=JournalStorage(JournalFileBackend(str(tmp_path / STUDY_FILE))))
    (read,) = stock.trials
    assert read.value == 0.5 and read.params["x"] == trial.params["x"]
    assert read.intermediate_values == {0: 0.0, 1: 0.1, 2: 0.2}
    assert not list(tmp_path.glob("*.lock"))  # the lock is released after each append


@pytest.mark.parametrize("taken_from_queue", [False, True])
def test_a_driver_killed_inside_an_ask_leaves_no_partial_config_to_run(tmp_path, taken_from_queue):
    """Killed after Optuna's ask had drawn some params but before the trial got its Tune id: a
    fresh draw ran nothing and is not retried (retrying its partial params, the seed drawn anew,
    once ran a config twice); a config taken from the queue (here a replicate) is retried whole."""
    from paitune.search.study_store import study_storage

    results = tmp_path / "results"
    first = _searcher(study_storage(tmp_path), budget=4, results=results, tune_trials=TuneTrialIds())
    first.suggest("a")  # sampled; its replicate (the other seed) is queued
    if not taken_from_queue:
        first.suggest("b")  # takes the replicate: the queue is empty, the next ask draws fresh
    killed = first.study.ask()
    killed.suggest_categorical("method", ["random", "magnitude", "snip"])  # ... and the driver dies
    fixed = first.study.trials[killed.number].system_attrs.get("fixed_params")
    assert (fixed is not None) == taken_from_queue

    held = TuneTrialIds()  # Tune restores the trials it had been given
    for tid in ["a"] if taken_from_queue else ["a", "b"]:
        held.add(tid)
    resumed = _searcher(study_storage(tmp_path), budget=4, results=results, tune_trials=held)
    new = ["c", "d"] if not taken_from_queue else ["c", "d", "e"]
    assert all(isinstance(resumed.suggest(tid), dict) for tid in new)
    assert resumed.suggest("f") == "FINISHED"
    study = resumed.study
    lost = study.trials[killed.number]
    assert lost.state == TrialState.FAIL and lost.user_attrs[ORPHAN_ATTR]
    retries = [t for t in study.trials if t.user_attrs.get(RETRY_ATTR) == killed.number]
    if taken_from_queue:
        assert len(retries) == 1 and retries[0].params == fixed and retries[0].user_attrs["tune_trial_id"] == "c"
    else:
        assert retries == []
    ran = [tuple(sorted(t.params.items())) for t in study.trials if "tune_trial_id" in t.user_attrs]
    assert len(ran) == 4 and len(set(ran)) == 4  # no config twice
    assert all(len(config) == 3 for config in ran)  # method, sparsity, seed: no partial config ran


def test_a_driver_killed_before_queueing_a_replicate_has_it_queued_on_resume(tmp_path, monkeypatch):
    """A fresh draw is named, then its replicates (the other seeds) are queued: a driver killed in
    between would leave the config with one seed; the resumed searcher queues the missing one."""
    from paitune.search.study_store import study_storage

    results = tmp_path / "results"
    first = _searcher(study_storage(tmp_path), budget=4, results=results, tune_trials=TuneTrialIds())
    monkeypatch.setattr(PaiOptunaSearch, "_enqueue_replicates", lambda self, trial: None)  # killed right there
    first.suggest("a")
    monkeypatch.undo()
    assert not [t for t in first.study.trials if t.state == TrialState.WAITING]

    held = TuneTrialIds()
    held.add("a")
    resumed = _searcher(study_storage(tmp_path), budget=4, results=results, tune_trials=held)
    config = resumed.suggest("b")
    study = resumed.study
    a = study.trials[0]
    replicate = next(t for t in study.trials if t.user_attrs.get("tune_trial_id") == "b")
    assert replicate.user_attrs["replicate_of"] == a.number
    assert replicate.params == {**a.params, "seed": 1 - a.params["seed"]} and isinstance(config, dict)
    assert isinstance(resumed.suggest("c"), dict) and isinstance(resumed.suggest("d"), dict)
    assert resumed.suggest("e") == "FINISHED"
    ran = [tuple(sorted(t.params.items())) for t in study.trials if "tune_trial_id" in t.user_attrs]
    assert len(ran) == len(set(ran)) == 4


CONTROL_SPACE = """
name: s
settings: {dataset: digits, model: mlp, epochs: 2}
params:
  method: {type: categorical, choices: [random, magnitude, snip]}
  sparsity: {type: categorical, choices: [0.5, 0.9]}
  control: {type: categorical, choices: [none, shuffle]}
seeds: [0]
"""


def test_an_arm_written_before_its_partner_is_not_run_again_when_the_partner_is_retried(tmp_path):
    """The sweep's searcher (ContextSearch) after a restart: a shuffle arm that finished (and was
    written) while its partner was still running, both after Tune's last snapshot. The partner is
    neither held nor written: its config runs again (a retry); the arm must not."""
    from paitune.search.asha import pair_key
    from paitune.search.contexts import ContextSearch
    from paitune.search.study_store import study_storage

    compiled = compile_space(load_space_text(CONTROL_SPACE))
    results = tmp_path / "results"

    def searcher(held):
        return ContextSearch(compiled, metric="val_acc", mode="max", storage=study_storage(tmp_path), study_name="s",
                             sampler_factory=lambda i, held: optuna.samplers.RandomSampler(seed=i), budget=4,
                             dense=compiled.dense_references(), results=results, tune_trials=held)  # fmt: skip

    first = searcher(TuneTrialIds())
    configs = {tid: first.suggest(tid) for tid in ("d0", "s1", "a1", "s2", "a2")}
    assert [configs[t]["control"] for t in ("s1", "a1", "s2", "a2")] == ["none", "shuffle"] * 2
    assert configs["d0"]["method"] == "dense" and pair_key(configs["s1"]) == pair_key(configs["a1"])
    snapshot = tmp_path / "searcher.json"
    first.save(str(snapshot))
    _written(results, "d0", "a1")  # Tune's snapshot holds only d0; a1 finished after it, s1 runs on
    held = TuneTrialIds()
    held.add("d0")
    resumed = searcher(held)
    resumed.restore(str(snapshot))
    new = []
    for i in range(20):
        config = resumed.suggest(f"n{i}")
        if not isinstance(config, dict):
            assert config == "FINISHED"
            break
        new.append(config)
    ran = [configs["d0"], configs["a1"], *new]  # what the sweep ran in all: kept rows + the resume's
    keys = [(pair_key(c), c["control"]) for c in ran]
    assert len(keys) == len(set(keys))  # nothing ran twice
    sampled = [c for c in ran if c["method"] != "dense" and c["control"] == "none"]
    arms = [c for c in ran if c["control"] == "shuffle"]
    assert len(sampled) == 4 and sorted(map(pair_key, arms)) == sorted(map(pair_key, sampled))
    assert pair_key(configs["s1"]) in map(pair_key, sampled)  # the lost partner's config ran again


def test_a_retried_partner_stops_where_its_first_run_and_its_arm_stopped(tmp_path):
    """A partner stopped before the driver died, its row never written and Tune not holding it, runs
    again under a new Tune trial: it stops at the epoch its arm stopped at, whatever the rung says."""
    ctl = FakeController()
    asha = _asha(tmp_path / "asha.json")
    others = [_trial(tid, seed=i) for i, tid in enumerate("xy", start=1)]
    for trial, acc in zip(others, (0.9, 0.95)):
        assert asha.on_trial_result(ctl, trial, {"epoch": 1, "val_acc": acc}) == TrialScheduler.CONTINUE
    partner, arm = _trial("p", seed=0), _trial("p-shuffle", seed=0, control="shuffle")
    assert asha.on_trial_result(ctl, partner, {"epoch": 1, "val_acc": 0.1}) == TrialScheduler.STOP
    assert asha.on_trial_result(ctl, arm, {"epoch": 1, "val_acc": 0.5}) == TrialScheduler.STOP
    restored = _asha(tmp_path / "asha.json")
    retry = _trial("p-retry", seed=0)  # same config, new Tune trial
    assert restored.on_trial_result(ctl, retry, {"epoch": 1, "val_acc": 0.99}) == TrialScheduler.STOP
    (rungs,) = restored.rungs().values()
    assert "p-retry" not in rungs[0][1]  # the config is on the rung once


def test_a_cut_short_tune_snapshot_is_set_aside_before_a_resume(tmp_path):
    import pickle

    import pyarrow.fs as pafs

    from paitune.search.tune_state import set_aside_broken_snapshots

    old, new, newer = "2026-01-01_00-00-00", "2026-01-02_00-00-00", "2026-01-03_00-00-00"
    (tmp_path / f"experiment_state-{old}.json").write_text('{"trial_data": []}')
    (tmp_path / f"searcher-state-{old}.pkl").write_bytes(pickle.dumps({"a": 1}))
    # Tune pickles its search generator's state into a file named .json: whole, it is kept.
    (tmp_path / f"search_gen_state-{old}.json").write_bytes(pickle.dumps({"counter": 3}))
    # a cut-short experiment state
    (tmp_path / f"experiment_state-{new}.json").write_text('{"trial_data": [["{\\"config')
    # a whole experiment state beside a cut-short searcher state: the snapshot is not whole either
    (tmp_path / f"experiment_state-{newer}.json").write_text('{"trial_data": []}')
    (tmp_path / f"searcher-state-{newer}.pkl").write_bytes(pickle.dumps({"a": 1})[:-3])
    broken, whole = set_aside_broken_snapshots(str(tmp_path), pafs.LocalFileSystem())
    assert whole == 1
    assert sorted(p.rsplit("/", 1)[-1] for p in broken) == [
        f"experiment_state-{new}.json",
        f"experiment_state-{newer}.json",
        f"searcher-state-{newer}.pkl",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [
            f"experiment_state-{old}.json",
            f"searcher-state-{old}.pkl",
            f"search_gen_state-{old}.json",
            f"experiment_state-{new}.json.broken",
            f"experiment_state-{newer}.json.broken",
            f"searcher-state-{newer}.pkl.broken",
        ]
    )


class _Counting:
    """A searcher that suggests a constant config and records the trials it is told have ended."""

    def __new__(cls):
        from ray.tune.search import Searcher

        class Counting(Searcher):
            def __init__(self):
                super().__init__(metric="val_acc", mode="max")
                self.ended = []

            def suggest(self, trial_id):
                return {"x": 1}

            def on_trial_complete(self, trial_id, result=None, error=False):
                self.ended.append(trial_id)

        return Counting()


def test_a_restored_limiter_counts_the_restored_trials_once_they_report():
    """After a restart the limiter starts empty; a trial Tune restored holds a slot from its first
    report, and its end frees it (and still reaches the searcher)."""
    from paitune.search.limiter import ResumableLimiter

    Counting = _Counting
    searcher = Counting()
    limiter = ResumableLimiter(searcher, max_concurrent=2)
    assert limiter.suggest("a") and limiter.suggest("b") and limiter.suggest("c") is None
    restored = ResumableLimiter(Counting(), max_concurrent=2)
    restored.set_state(limiter.get_state())
    assert restored.live_trials == set()
    restored.on_trial_result("a", {"val_acc": 0.5})  # Tune's restored trials report
    restored.on_trial_result("b", {"val_acc": 0.5})
    assert restored.suggest("c") is None  # both slots held
    restored.on_trial_complete("a", {"val_acc": 0.6})
    assert restored.searcher.ended == ["a"] and restored.suggest("c") == {"x": 1}
    restored.on_trial_complete("zz")  # a trial it never knew: passed on
    assert restored.searcher.ended == ["a", "zz"]


def test_a_restored_limiter_holds_slots_for_the_trials_tune_restores_before_they_report():
    """The scheduler records the trials Tune restores (unfinished ones to run again); the restored
    limiter, sharing that registry through the tuner file, holds their slots from its first call,
    so no new trial starts beside them past ``max_concurrent``."""
    from ray import cloudpickle  # how Tune writes its tuner file

    from paitune.search.limiter import ResumableLimiter
    from paitune.search.tune_trials import TuneTrialIds

    registry = TuneTrialIds()
    limiter = ResumableLimiter(_Counting(), 2, registry)
    assert limiter.suggest("a") and limiter.suggest("b") and limiter.suggest("c") is None
    saved_state = limiter.get_state()  # the searcher-state snapshot
    assert "tune_trials" not in saved_state
    # A new driver: the tuner file restores the limiter and the registry together.
    restored, shared = cloudpickle.loads(cloudpickle.dumps((limiter, registry)))
    assert restored.tune_trials is shared and shared.ids == set()
    restored.set_state(saved_state)
    assert restored.tune_trials is shared  # the snapshot does not replace the shared registry
    # Tune adds the restored trials (scheduler.on_trial_add): "a" finished, "b" and "x" run again
    # ("x" started after the snapshot the limiter's state comes from).
    shared.add("a", unfinished=False)
    shared.add("b")
    shared.add("x")
    assert restored.suggest("c") is None  # both slots held before any restored trial reports
    restored.on_trial_result("b", {"val_acc": 0.5})  # a report does not take a second slot
    assert restored.num_unfinished_live_trials == 2
    restored.on_trial_complete("x", {"val_acc": 0.6})
    assert restored.searcher.ended == ["x"] and restored.suggest("c") == {"x": 1}
    assert restored.suggest("d") is None
    restored.on_trial_complete("b", {"val_acc": 0.6})
    restored.on_trial_complete("c", {"val_acc": 0.6})
    assert restored.num_unfinished_live_trials == 0 and restored.live_trials == set()


def test_a_fresh_limiter_takes_no_trial_from_the_registry():
    """In a fresh run the registry fills with the trials the limiter itself suggested: none is
    counted twice."""
    from paitune.search.limiter import ResumableLimiter
    from paitune.search.tune_trials import TuneTrialIds

    registry = TuneTrialIds()
    limiter = ResumableLimiter(_Counting(), 2, registry)
    assert limiter.suggest("a")
    registry.add("a")
    assert limiter.suggest("b")
    registry.add("b")
    assert limiter.suggest("c") is None and limiter.num_unfinished_live_trials == 2
    limiter.on_trial_complete("a", {"val_acc": 0.5})
    assert limiter.suggest("c") and limiter.num_unfinished_live_trials == 2


def _retry_harness(monkeypatch, tmp_path):
    """run_trial with Tune's side stubbed: reports collected, each checkpoint copied by its epoch."""
    import shutil

    from ray import tune

    from paitune.search import trainable

    reports: list[dict] = []

    def report(result, checkpoint=None):
        reports.append(result)
        if checkpoint is not None:
            shutil.copytree(checkpoint.path, tmp_path / f"epoch{result['epoch']}", dirs_exist_ok=True)

    monkeypatch.setattr(trainable, "assigned_device", lambda: ("cpu", 1))  # one CPU, as in a worker
    monkeypatch.setattr(trainable.tune, "report", report)

    def run(config, resume_at=None):
        reports.clear()
        found = None if resume_at is None else tune.Checkpoint.from_directory(tmp_path / f"epoch{resume_at}")
        monkeypatch.setattr(trainable.tune, "get_checkpoint", lambda: found)
        trainable.run_trial(config, checkpoint_every_s=0.0, report_every_s=0.0)
        return list(reports)

    return run


def _scoring_that_moves_one_weight(monkeypatch, module):
    """``module.prune_from_config`` giving the first mask with one kept and one pruned weight
    swapped, as GPU scores that differ in their last bits can; the calls are recorded."""
    real, calls = module.prune_from_config, []

    def moved(model, cfg, batches, *, method):
        calls.append(method)
        masks = real(model, cfg, batches, method=method)
        first = next(iter(masks))
        flat = masks[first].view(-1)
        kept, pruned = int(flat.nonzero()[0]), int((~flat).nonzero()[0])
        flat[kept], flat[pruned] = False, True
        return masks

    monkeypatch.setattr(module, "prune_from_config", moved)
    return calls


@pytest.mark.parametrize("method", ["snip", "rigl"])
def test_a_retry_continues_under_its_checkpoints_mask_without_scoring_again(monkeypatch, tmp_path, method):
    """A retry trains on under the mask its checkpointed weights were trained under and reports the
    first start's prune-time facts, even where scoring again would give another mask."""
    from paitune import trial as pipeline
    from paitune.sparse import registry

    run = _retry_harness(monkeypatch, tmp_path)
    config = {"dataset": "digits", "model": "mlp", "epochs": 4, "method": method, "sparsity": 0.9,
              "proxies": ["synflow", "snip"], "update_interval": 5}  # fmt: skip
    if method == "rigl":
        config["init_method"] = "snip"
    straight = run(config)
    assert [r["epoch"] for r in straight] == [1, 2, 3, 4]

    calls = _scoring_that_moves_one_weight(monkeypatch, registry if method == "rigl" else pipeline)
    retried = run(config, resume_at=2)
    assert calls == []  # nothing scored: no pruning (and no proxies) on a retry
    assert [r["epoch"] for r in retried] == [3, 4]
    first, again = straight[0], retried[0]
    for key in ("mask_hash", "density_achieved", "params_kept", "flops_sparse", "layers_json", "prune_seconds",
                "proxy_synflow", "proxy_snip"):  # fmt: skip
        assert again[key] == first[key], key
    # The run goes on bit for bit as the uninterrupted one (CPU); RigL's final mask too.
    assert ("mask_hash" in straight[-1]) == (method == "rigl")
    for key in ("train_loss", "val_acc", "test_acc", "mask_hash"):
        assert retried[-1].get(key) == straight[-1].get(key), key

    # A checkpoint without the facts (written by an older paitune) is pruned again and must match.
    state_file = tmp_path / "epoch2" / "trial.pt"
    import torch

    state = torch.load(state_file, weights_only=True)
    del state["facts"]
    torch.save(state, state_file)
    with pytest.raises(RuntimeError, match="pruning is not deterministic"):
        run(config, resume_at=2)
    assert calls == [config.get("init_method", method)]


def test_a_resumed_context_sampler_is_seeded_from_its_history_not_started_over(tmp_path):
    """Optuna stores no sampler state: a resumed study's sampler seeded as at the start would draw
    its first configs again. Its seed comes from the sweep's seed and the trials the study holds."""
    from paitune.search.contexts import ContextSearch
    from paitune.search.plan import SAMPLER_SEED_STRIDE
    from paitune.search.study_store import study_storage
    from paitune.search.tuner import context_sampler_seed

    assert context_sampler_seed(None, 3, 10) is None
    assert context_sampler_seed(7, 2, 0) == 7 + 2 * SAMPLER_SEED_STRIDE  # a fresh study: as before
    resumed = context_sampler_seed(7, 2, 5)
    assert resumed == context_sampler_seed(7, 2, 5) and 0 <= resumed < 2**32  # repeatable, a valid seed
    assert len({resumed, context_sampler_seed(7, 2, 0), context_sampler_seed(7, 2, 6)}) == 3

    compiled = compile_space(load_space_text(CONTROL_SPACE))
    calls = []

    def factory(index, held):
        calls.append((index, held))
        return optuna.samplers.RandomSampler(seed=context_sampler_seed(0, index, held))

    def searcher():
        return ContextSearch(compiled, metric="val_acc", mode="max", storage=study_storage(tmp_path), study_name="s",
                             sampler_factory=factory, budget=6)  # fmt: skip

    first = searcher()
    for tid in ("a", "b", "c"):
        assert isinstance(first.suggest(tid), dict)
    held = {cid: len(study.trials) for cid, study in first.studies.items()}
    assert calls == [(i, 0) for i in range(len(held))] and all(n >= 1 for n in held.values())
    calls.clear()
    searcher()  # a resume: each context's sampler learns how many trials its study holds
    assert calls == [(i, n) for i, n in enumerate(held.values())]
