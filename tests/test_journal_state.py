"""ContextASHA's state: a snapshot plus a journal, so each result costs O(1) to persist."""

from __future__ import annotations

import json

import pytest
from ray.tune.schedulers import TrialScheduler
from test_contexts import CTL, _asha, _trial

from paitune.search import journal_state


def _feed(asha, n: int, epoch: int = 1):
    actions = []
    for i in range(n):
        trial = _trial(f"t{i}", sparsity=0.5 if i % 2 else 0.9)
        asha.on_trial_add(CTL, trial)
        actions.append(asha.on_trial_result(CTL, trial, {"epoch": epoch, "val_acc": (i * 37 % 101) / 101}))
    return actions


def test_a_new_scheduler_reads_back_every_decision(tmp_path):
    first = _asha(tmp_path)
    actions = _feed(first, 40)
    assert TrialScheduler.STOP in actions
    again = _asha(tmp_path)
    assert again.rungs() == first.rungs()
    assert again._stopped_at == first._stopped_at


def test_the_journal_is_compacted_so_writes_stay_linear(tmp_path, monkeypatch):
    monkeypatch.setattr(journal_state, "MIN_EVENTS_BEFORE_COMPACTING", 10)
    asha = _asha(tmp_path)
    _feed(asha, 200)
    log = tmp_path / "asha.json.log"
    snapshot = json.loads((tmp_path / "asha.json").read_text())
    records = sum(len(r) for rungs in snapshot["rungs"].values() for r in rungs.values())
    # the journal never grows past the snapshot's size (or the floor) before it is folded in
    assert len(log.read_text().splitlines()) <= max(10, records + len(snapshot["stopped_at"]))
    assert _asha(tmp_path).rungs() == asha.rungs()


def test_a_half_written_last_line_is_ignored(tmp_path):
    asha = _asha(tmp_path)
    _feed(asha, 6)
    with open(tmp_path / "asha.json.log", "a") as log:
        log.write('["rung", "ctx", 1, "t99"')  # the driver died mid-append
    assert _asha(tmp_path).rungs() == asha.rungs()


def test_replaying_events_a_snapshot_already_holds_changes_nothing(tmp_path):
    asha = _asha(tmp_path)
    _feed(asha, 12)
    log = (tmp_path / "asha.json.log").read_text()
    asha._journal.compact(*asha._snapshot())  # a crash right after the snapshot, before emptying the journal:
    (tmp_path / "asha.json.log").write_text(log)
    assert _asha(tmp_path).rungs() == asha.rungs()


def test_appends_after_a_cut_off_line_are_all_read_back(tmp_path):
    asha = _asha(tmp_path)
    _feed(asha, 6)
    with open(tmp_path / "asha.json.log", "a") as log:
        log.write('["rung", "ctx", 1, "t99"')  # a full disk cut this append short
    resumed = _asha(tmp_path)
    resumed.rungs()  # loads (and cuts the partial line) before anything is appended
    _feed(resumed, 10)  # t6..t9 are new records after the cut
    assert _asha(tmp_path).rungs() == resumed.rungs()


def test_the_study_journal_drops_a_cut_off_operation(tmp_path):
    import optuna

    from paitune.search.journal import UnsyncedJournalFile

    path = tmp_path / "study.journal"
    storage = optuna.storages.JournalStorage(UnsyncedJournalFile(path))
    study = optuna.create_study(study_name="s", storage=storage)
    study.tell(study.ask({"x": optuna.distributions.FloatDistribution(0, 1)}), 0.5)
    with open(path, "ab") as journal:
        journal.write(b'{"op_code":5,"worker_id"')  # the driver's last append, cut short
    reopened = optuna.load_study(study_name="s", storage=optuna.storages.JournalStorage(UnsyncedJournalFile(path)))
    reopened.tell(reopened.ask({"x": optuna.distributions.FloatDistribution(0, 1)}), 0.25)
    again = optuna.load_study(study_name="s", storage=optuna.storages.JournalStorage(UnsyncedJournalFile(path)))
    assert [t.value for t in again.trials] == [0.5, 0.25]


def test_an_append_that_fails_part_way_leaves_nothing(tmp_path, monkeypatch):
    import builtins

    from paitune.search.journal import append_whole

    path = tmp_path / "j.log"
    append_whole(path, b"first\n")
    real_open = builtins.open

    class HalfThenFull:
        def __init__(self, handle):
            self.handle, self.calls = handle, 0

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def seek(self, *a):
            return self.handle.seek(*a)

        def truncate(self, size):
            return self.handle.truncate(size)

        def write(self, view):
            self.calls += 1
            if self.calls > 1:
                raise OSError(28, "No space left on device")
            return self.handle.write(view[: len(view) // 2])

    monkeypatch.setattr(builtins, "open", lambda *a, **k: HalfThenFull(real_open(*a, **k)))
    with pytest.raises(OSError):
        append_whole(path, b"second line\n")
    monkeypatch.setattr(builtins, "open", real_open)
    append_whole(path, b"third\n")
    assert path.read_bytes() == b"first\nthird\n"
