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

from paitune.search.asha import PersistentASHA
from paitune.search.ray_procs import descendants, reap_orphans, record_processes
from paitune.search.searcher import ORPHAN_ATTR, RETRY_ATTR, PaiOptunaSearch
from paitune.spaces import compile_space, load_space_text

optuna.logging.set_verbosity(optuna.logging.WARNING)


class FakeController:
    def __init__(self):
        self.snapshots = 0

    def checkpoint(self, force=False, wait=False):
        self.snapshots += 1


def _asha(path):
    return PersistentASHA(time_attr="epoch", metric="val_acc", mode="max", max_t=4, grace_period=1,
                          reduction_factor=2, state_path=path)  # fmt: skip


def _trial(tid, method="snip"):
    return SimpleNamespace(trial_id=tid, config={"method": method})


def test_asha_rungs_and_stop_decisions_survive_a_restart(tmp_path):
    path = tmp_path / "asha.json"
    ctl = FakeController()
    first = _asha(path)
    for tid in "abc":
        first.on_trial_add(ctl, _trial(tid))
    # rung 1 (each result is compared with the median of those recorded before it):
    # a is first (no cutoff), b 0.95 >= 0.9, c 0.1 < median(0.9, 0.95)
    assert first.on_trial_result(ctl, _trial("a"), {"epoch": 1, "val_acc": 0.9}) == TrialScheduler.CONTINUE
    assert first.on_trial_result(ctl, _trial("b"), {"epoch": 1, "val_acc": 0.95}) == TrialScheduler.CONTINUE
    assert first.on_trial_result(ctl, _trial("c"), {"epoch": 1, "val_acc": 0.1}) == TrialScheduler.STOP
    assert ctl.snapshots == 3  # one forced Tune snapshot per trial's first result
    assert first.on_trial_result(ctl, _trial("a"), {"epoch": 2, "val_acc": 0.95}) == TrialScheduler.CONTINUE
    before = first.rungs()
    assert before[0][-1][1] == {"a": 0.9, "b": 0.95, "c": 0.1}

    import pickle

    # What Tune restores on --resume: the scheduler as pickled when the Tuner was built (empty)...
    restored = pickle.loads(pickle.dumps(_asha(path)))
    restored.on_trial_add(ctl, _trial("b"))
    restored.on_trial_add(ctl, _trial("c"))
    # ...and it reads the rungs back the first time it is used.
    assert restored.rungs() == before
    # c re-runs from its checkpoint: it is stopped where it was stopped, whatever the rung says now
    assert restored.on_trial_result(ctl, _trial("c"), {"epoch": 1, "val_acc": 0.99}) == TrialScheduler.STOP
    # b's epoch-2 result meets a's pre-restart record (0.95) on rung 2: below it, stopped
    assert restored.on_trial_result(ctl, _trial("b"), {"epoch": 2, "val_acc": 0.5}) == TrialScheduler.STOP
    assert json.loads(path.read_text())["stopped_at"] == {"c": 1.0, "b": 2.0}


def test_stock_asha_forgets_its_rungs_when_restored():
    # The problem PersistentASHA solves, shown on Ray's own class.
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


def _searcher(storage):
    return PaiOptunaSearch(compile_space(load_space_text(SPACE)), metric="val_acc", mode="max",
                           sampler=optuna.samplers.RandomSampler(seed=0), storage=storage, study_name="s")  # fmt: skip


def test_searcher_state_is_json_and_a_restart_never_tells_optuna_twice(tmp_path):
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    first = _searcher(optuna.storages.RDBStorage(url))
    for tid in ("a", "b", "c"):
        first.suggest(tid)  # a: sampled, b: a's replicate (other seed), c: sampled
    first.on_trial_result("a", {"epoch": 1, "val_acc": 0.5, "max_epochs": 2})
    first.on_trial_complete("a", {"epoch": 2, "val_acc": 0.7, "max_epochs": 2})
    snapshot = tmp_path / "searcher-state.pkl"
    first.save(str(snapshot))
    state = json.loads(snapshot.read_text())  # plain JSON, nothing pickled
    numbers = {t.user_attrs["tune_trial_id"]: t.number for t in first.study.trials if "tune_trial_id" in t.user_attrs}
    assert state["trials"] == numbers and state["completed"] == ["a"]
    assert numbers["a"] == 0 and numbers["b"] == 1  # (c's number is higher if the sampler repeated a)
    # The driver goes on past that snapshot: c finishes, d is asked and named, and the driver is
    # killed inside the next suggest(), after Optuna's ask but before the trial got its Tune id.
    first.on_trial_complete("c", {"epoch": 1, "val_acc": 0.2, "max_epochs": 2})
    first.suggest("d")
    unnamed = first.study.ask()

    resumed = _searcher(optuna.storages.RDBStorage(url))
    resumed.restore(str(snapshot))
    study = resumed.study
    # the unnamed trial belongs to no Tune trial: FAIL + orphaned, and its config is queued again
    lost = study.trials[unnamed.number]
    assert lost.state == TrialState.FAIL and lost.user_attrs[ORPHAN_ATTR]
    retry = [t for t in study.trials if t.user_attrs.get(RETRY_ATTR) == lost.number]
    assert len(retry) == 1 and retry[0].state == TrialState.WAITING
    assert retry[0].system_attrs["fixed_params"] == lost.params
    # c ran to its end again from its checkpoint: Optuna already has its outcome, nothing raises
    resumed.on_trial_result("c", {"epoch": 2, "val_acc": 0.9, "max_epochs": 2})
    resumed.on_trial_complete("c", {"epoch": 2, "val_acc": 0.9, "max_epochs": 2})
    c = study.trials[numbers["c"]]
    assert c.state == TrialState.PRUNED and c.intermediate_values == {1: 0.2}
    # d is not in the (older) saved state, but the study names it: when Tune runs it, it lands
    resumed.on_trial_complete("d", {"epoch": 2, "val_acc": 0.6, "max_epochs": 2})
    d = [t for t in study.trials if t.user_attrs.get("tune_trial_id") == "d"][0]
    assert d.state == TrialState.COMPLETE and d.value == 0.6
    # b never reports again (Tune never ran it after the restart): failed when the sweep ends
    from paitune.search.searcher import fail_unfinished

    # ... and the queued retry the sweep never got to is closed too (not_run), leaving nothing open
    assert fail_unfinished(study) == [1, retry[0].number]
    assert study.trials[1].state == TrialState.FAIL and study.trials[1].user_attrs[ORPHAN_ATTR]
    closed = study.trials[retry[0].number]
    assert closed.state == TrialState.FAIL and closed.user_attrs["not_run"]
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))


def test_snapshots_wait_for_the_upload_in_flight():
    from paitune.search.tune_state import _manager_class, serialized_snapshots

    events = []
    syncer = SimpleNamespace(wait=lambda: events.append("wait-upload"), sync_up=lambda *a, **k: events.append("upload") or True)
    manager = _manager_class()(storage=SimpleNamespace(syncer=syncer, experiment_driver_staging_path="/nonexistent",
                                                       experiment_fs_path="/nonexistent"),
                               checkpoint_period=0, sync_every_n_trial_checkpoints=None)  # fmt: skip
    with serialized_snapshots():
        manager.sync_up_experiment_state(lambda: events.append("save"), force=False)
        manager.sync_up_experiment_state(lambda: events.append("save"), force=False)
    # every save into the staging folder comes after the previous upload has finished
    assert events == ["wait-upload", "save", "upload", "wait-upload", "save", "upload"]
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
