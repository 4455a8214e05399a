"""Reliability: a driver SIGKILLed at several points resumes with nothing lost or duplicated;
a diverging trial is recorded and the sweep goes on; ASHA's rungs survive a restart.

The kill tests run ``paitune sweep`` as real subprocesses (each in its own process session) and
kill the driver for real: from outside once trial files have appeared, or from inside at a named
point through ``PAITUNE_KILL_AT`` (paitune.search.faults).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import alive, session_pids, start_paitune
from optuna.trial import TrialState

from paitune.search.contexts import load_context_studies, study_trials
from paitune.search.recovery import superseded_trials
from paitune.search.study_store import study_storage

EPOCHS = 3
NUM_SAMPLES = 6
SPACE = f"""
name: faults
settings: {{dataset: digits, model: mlp, epochs: {EPOCHS}, batch_size: 64, lr: 0.05, proxies: [grad_norm]}}
params:
  method: {{type: categorical, choices: [random, magnitude, snip]}}
  sparsity: {{type: categorical, choices: [0.5, 0.9, 0.99]}}
  control: {{type: categorical, choices: [none, shuffle]}}
seeds: [0, 1]
scheduler: {{type: asha, grace_period: 1, reduction_factor: 2}}
num_samples: {NUM_SAMPLES}
"""
SWEEP_ARGS = ["--sampler", "random", "--max-concurrent", "2", "--quiet"]


def fifo_space(name: str, epochs: int, num_samples: int = 4) -> str:
    """A FIFO space of one seed and no arms, for the tests that stop a sweep mid-training (a
    signal, a full disk): every trial trains its whole budget unless the fault stops it."""
    return f"""
name: {name}
settings: {{dataset: digits, model: mlp, epochs: {epochs}, batch_size: 64, lr: 0.05, proxies: [grad_norm]}}
params:
  method: {{type: categorical, choices: [random, magnitude, snip]}}
  sparsity: {{type: categorical, choices: [0.5, 0.9, 0.99]}}
seeds: [0]
scheduler: {{type: fifo}}
num_samples: {num_samples}
"""


# A checkpoint at every epoch: a stopped trial resumes where it stopped.
FIFO_ARGS = ["--sampler", "random", "--max-concurrent", "2", "--checkpoint-every", "0", "--quiet"]


def _wait(proc, timeout):
    try:
        return proc.wait(timeout=timeout)
    except Exception:
        proc.kill()
        raise


def tune_trial_ids(root: Path) -> set[str]:
    """The trial ids in Tune's latest experiment snapshot (its own record of the sweep)."""
    latest = max((root / "tune").glob("experiment_state-*.json"))  # named by session start time
    state = json.loads(latest.read_text())
    return {json.loads(trial_json)["trial_id"] for trial_json, _ in state["trial_data"]}


def check_sweep_is_whole(
    root: Path, name: str, num_samples: int, epochs: int, arms: int = 0, dense: int = 2
) -> pd.DataFrame:
    """The budget's trials exactly once (no config run twice), each sampled trial's ``arms`` control
    arms exactly once (stopped at its partner's epoch), ``dense`` references, every epoch once, no
    temporary or truncated file, every trial Tune holds written, and the Optuna studies (one per
    context) agree with the tables."""
    for table in ("trials", "epochs", "layers"):
        folder = root / table
        assert not [p.name for p in folder.iterdir() if not p.name.endswith(".parquet")], table
        for path in folder.glob("*.parquet"):
            pq.read_table(path)  # a truncated file would raise here
    trials = pd.read_parquet(root / "trials")
    assert len(trials) == num_samples * (1 + arms) + dense and trials.trial_id.is_unique
    assert not trials.config_hash.duplicated().any(), trials[["trial_id", "config_hash"]]
    # Tune's latest snapshot misses the trials that finished after the one the resume restored
    # (the searcher keeps the budget), but every trial it holds has its row.
    assert tune_trial_ids(root) <= set(trials.trial_id)
    assert trials.status.isin(["completed", "stopped"]).all(), trials[["trial_id", "status", "error"]]
    epochs_t = pd.read_parquet(root / "epochs")
    assert not epochs_t.duplicated(["trial_id", "epoch"]).any()
    for row in trials.itertuples():
        mine = sorted(epochs_t[epochs_t.trial_id == row.trial_id].epoch)
        assert mine == list(range(1, row.epochs_run + 1)), (row.trial_id, mine)
        assert (row.status == "completed") == (row.epochs_run == epochs)
    layers = pd.read_parquet(root / "layers")
    assert set(layers.trial_id) == set(trials.trial_id)
    assert not layers.duplicated(["trial_id", "layer"]).any()

    studies = load_context_studies(study_storage(root), name)
    by_tune_id: dict[str, list] = {}
    for context, study in studies.items():
        assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
        replaced = superseded_trials(study.trials)  # numbers are per study
        for t in study.trials:
            if "tune_trial_id" in t.user_attrs and not t.user_attrs.get("orphaned") and t.number not in replaced:
                by_tune_id.setdefault(t.user_attrs["tune_trial_id"], []).append(t)
                assert trials.set_index("trial_id").loc[t.user_attrs["tune_trial_id"], "context"] == context
    sampled = trials[(trials.method != "dense") & (trials.control == "none")]
    # dense references and control arms bypass the samplers
    assert sorted(by_tune_id) == sorted(sampled.trial_id)
    assert len(sampled) == num_samples
    dense_rows = trials[trials.method == "dense"]
    assert len(dense_rows) == dense and (dense_rows.status == "completed").all()  # one per seed, full budget
    arm_rows = trials[(trials.method != "dense") & (trials.control != "none")]
    assert len(arm_rows) == num_samples * arms
    partner = {(r.context, r.method, r.allocation, r.seed): r for r in sampled.itertuples()}
    for arm in arm_rows.itertuples():  # every arm pairs with one sampled trial and reached its last epoch
        mate = partner[(arm.context, arm.method, arm.allocation, arm.seed)]
        assert arm.epochs_run >= mate.epochs_run, (arm.trial_id, arm.epochs_run, mate.trial_id, mate.epochs_run)
    if arms:
        pairs = arm_rows.groupby(["context", "method", "allocation", "seed"]).control.nunique()
        assert len(pairs) == num_samples and (pairs == arms).all()
    for row in sampled.itertuples():
        (t,) = by_tune_id[row.trial_id]
        expected = TrialState.COMPLETE if row.status == "completed" else TrialState.PRUNED
        assert t.state == expected, (row.trial_id, t.state, row.status)
        if row.status == "completed":
            assert t.value == pytest.approx(row.val_acc)
    return trials


def _asha_records(root: Path) -> set[tuple[str, float, str, float]]:
    """(context, milestone, trial id, score) of every record on ASHA's rungs (asha.json)."""
    from paitune.search.asha import read_state

    state = read_state(root / "asha.json")
    return {
        (ctx, float(m), tid, float(v))
        for ctx, rungs in state["rungs"].items() for m, rec in rungs.items() for tid, v in rec.items()
    }  # fmt: skip


def _wait_for(predicate, proc, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if proc is not None and proc.poll() is not None:
            return False
        time.sleep(0.05)
    return False


# kill point -> (environment for the first driver, predicate on DIR/NAME for an external kill)
KILL_POINTS = {
    # the first epoch result reaches the driver: no trial has finished yet
    "before-any-trial-finished": ({"PAITUNE_KILL_AT": "sink-result:1"}, None),
    # from outside, once two trial files are on disk and ASHA has recorded results: others are
    # mid-training (the dense references, which run first, are never recorded on ASHA's rungs)
    "while-trials-run": (
        {},
        lambda root: len(list((root / "trials").glob("[!.]*.parquet"))) >= 2 and bool(_asha_records(root)),
    ),
    # inside the final write of the third trial: its epochs/layers files exist, its trials file not
    "during-final-write": ({"PAITUNE_KILL_AT": "sink-before-trials-file:3"}, None),
}


@pytest.mark.slow
@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_driver_sigkill_then_resume_loses_and_duplicates_nothing(tmp_path, point, spawned_sessions):
    space = tmp_path / "faults.yaml"
    space.write_text(SPACE)
    out, name = tmp_path / "out", "s"
    root = out / name
    env, predicate = KILL_POINTS[point]
    first = start_paitune(
        ["sweep", str(space), "--out", str(out), "--name", name, *SWEEP_ARGS], tmp_path / "first.log", **env
    )
    spawned_sessions.append(first.pid)
    if predicate is not None:
        assert _wait_for(lambda: predicate(root), first, 240), (tmp_path / "first.log").read_text()[-3000:]
        first.kill()
    assert _wait(first, 240) == -9, (tmp_path / "first.log").read_text()[-3000:]

    # What the dead driver left: no visible partial file, possibly orphan Ray helpers.
    # (a killed writer may leave a hidden temporary, which no reader sees; the resume removes it)
    written_before = (
        sorted(p.stem for p in (root / "trials").glob("[!.]*.parquet")) if (root / "trials").exists() else []
    )
    if point == "during-final-write":
        assert len(written_before) == 2
        assert len(list((root / "epochs").glob("[!.]*.parquet"))) == 3  # the third trial's other files
    if point == "before-any-trial-finished":
        assert written_before == []
    rungs_before = _asha_records(root)
    recorded = json.loads((root / "ray.pids").read_text())["processes"]
    leftovers = [e["pid"] for e in recorded if alive(e["pid"])]

    second = start_paitune(["sweep", "--out", str(out), "--name", name, "--resume", "--quiet"], tmp_path / "second.log")
    spawned_sessions.append(second.pid)
    assert _wait(second, 300) == 0, (tmp_path / "second.log").read_text()[-3000:]

    # each sampled trial with its shuffle arm, + a dense reference per seed
    trials = check_sweep_is_whole(root, name, NUM_SAMPLES, EPOCHS, arms=1, dense=2)
    assert set(written_before) <= set(trials.trial_id)  # rows written before the kill are kept
    # ASHA's rungs came back: every record made before the kill is still there.
    assert rungs_before <= _asha_records(root)
    if point != "before-any-trial-finished":
        assert rungs_before
    # The resumed driver reaped what the dead one left behind, and exited cleanly itself.
    assert not [pid for pid in leftovers if alive(pid)]
    assert not session_pids(first.pid)
    # Ray's own shutdown lets a few of its processes linger for a moment after the driver exits.
    assert _wait_for(lambda: not session_pids(second.pid), None, 20), [
        Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")[:200] for pid in session_pids(second.pid)
    ]
    assert not (root / "ray.pids").exists()
    log = (tmp_path / "second.log").read_text()
    assert "Traceback" not in log and "failed with exception" not in log


@pytest.mark.slow
def test_diverging_trial_is_recorded_and_the_sweep_goes_on(tmp_path, spawned_sessions):
    space = tmp_path / "diverge.yaml"
    space.write_text(
        """
name: diverge
settings: {dataset: digits, model: mlp, epochs: 2, batch_size: 64, method: magnitude, sparsity: 0.5, momentum: 0.0}
params:
  lr: {type: categorical, choices: [0.05, 1.0e+30]}
seeds: [0]
scheduler: {type: fifo}
num_samples: 2
"""
    )
    out = tmp_path / "out"
    proc = start_paitune(
        ["sweep", str(space), "--out", str(out), "--name", "d", "--sampler", "grid", "--quiet"], tmp_path / "log"
    )
    spawned_sessions.append(proc.pid)
    assert _wait(proc, 300) == 0, (tmp_path / "log").read_text()[-3000:]
    trials = pd.read_parquet(out / "d" / "trials")
    assert (trials.method == "dense").sum() == 1
    trials = trials[trials.method != "dense"].set_index("lr")
    good, bad = trials.loc[0.05], trials.loc[1e30]
    assert good.status == "completed" and good.epochs_run == 2
    assert bad.status == "diverged" and pd.isna(bad.error)
    # its last good metrics: it diverged in epoch 1 (none) or later (the epoch before)
    epochs = pd.read_parquet(out / "d" / "epochs")
    mine = epochs[epochs.trial_id == bad.trial_id]
    assert bad.epochs_run == len(mine) and all(math.isfinite(v) for v in mine.train_loss)
    if len(mine):
        assert bad.val_acc == pytest.approx(mine.sort_values("epoch").val_acc.iloc[-1])
    else:
        assert pd.isna(bad.val_acc)
    states = {t.user_attrs["tune_trial_id"]: t for t in study_trials(study_storage(out / "d"), "d")}
    assert states[bad.trial_id].state == TrialState.FAIL and states[bad.trial_id].user_attrs["pai_status"] == "diverged"
    assert states[good.trial_id].state == TrialState.COMPLETE
