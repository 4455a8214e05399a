"""Reliability: Ctrl-C (SIGINT) and SIGTERM stop a real ``paitune sweep`` cleanly, a second signal
stops it at once, and the printed ``--resume`` command finishes it with nothing lost or run twice.

The signals are real: sent with ``os.kill`` to a ``paitune sweep`` subprocess (its own process
session), or to its whole process group as a terminal's Ctrl-C is, once a trial has finished and
others are mid-training.
"""

from __future__ import annotations

import os
import shlex
import signal
import sys
import time

import pytest
from conftest import session_pids, start_paitune
from test_reliability_faults import FIFO_ARGS, _wait, _wait_for, check_sweep_is_whole, fifo_space

EPOCHS = 30  # long enough that trials are mid-training when the signal comes
NUM_SAMPLES = 4
SPACE = fifo_space("signals", EPOCHS, NUM_SAMPLES)
ARGS = FIFO_ARGS

# case -> (signals sent, expected exit status, sent to the whole process group as a terminal's
# Ctrl-C is — the driver and every Ray process it started — rather than to the driver alone)
CASES = {
    "ctrl-c": ([signal.SIGINT], 130, False),
    "ctrl-c-from-a-terminal": ([signal.SIGINT], 130, True),
    "sigterm": ([signal.SIGTERM], 143, False),
    "ctrl-c-twice": ([signal.SIGINT, signal.SIGINT], 130, False),
}


def _written(root) -> list[str]:
    folder = root / "trials"
    return sorted(p.stem for p in folder.glob("[!.]*.parquet")) if folder.exists() else []


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.parametrize("case", list(CASES))
def test_signal_stops_cleanly_and_resume_finishes(tmp_path, case, spawned_sessions):
    sent, status, group = CASES[case]
    send = os.killpg if group else os.kill
    space = tmp_path / "signals.yaml"
    space.write_text(SPACE)
    out, name = tmp_path / "out", "s"
    root = out / name
    log = tmp_path / "first.log"
    first = start_paitune(["sweep", str(space), "--out", str(out), "--name", name, *ARGS], log)
    spawned_sessions.append(first.pid)
    assert _wait_for(lambda: len(_written(root)) >= 1, first, 300), log.read_text()[-3000:]

    send(first.pid, sent[0])  # the driver leads its own process group (a new session)
    if len(sent) > 1:  # the second once the first has been taken (the notice is printed)
        assert _wait_for(lambda: "received: stopping" in log.read_text(), first, 60), log.read_text()[-3000:]
        send(first.pid, sent[1])
        second_sent = time.monotonic()
    assert _wait(first, 240) == status, log.read_text()[-3000:]
    if len(sent) > 1:
        assert time.monotonic() - second_sent < 60  # no waiting for trials or snapshots
    assert _wait_for(lambda: not session_pids(first.pid), None, 30)  # the driver's Ray is gone too
    text = log.read_text()
    assert "Traceback" not in text, text[-3000:]
    lines = text.strip().splitlines()
    assert f"stopped by {signal.Signals(sent[0]).name}" in lines[-1], lines[-1]
    assert "Tuner.restore" not in text  # Tune's own hint names the wrong command
    command = shlex.split(lines[-1].split("resume with: ", 1)[1])
    assert command[:3] == ["paitune", "sweep", "--resume"]
    written_before = _written(root)
    assert len(written_before) < NUM_SAMPLES + 1  # it stopped before the end
    assert not list((root / "trials").glob(".*"))  # no temporary left visible beside the tables
    assert not (root / ".lock").exists() or not _lock_held(root)

    resumed = start_paitune(command[1:], tmp_path / "second.log")
    spawned_sessions.append(resumed.pid)
    assert _wait(resumed, 300) == 0, (tmp_path / "second.log").read_text()[-3000:]
    trials = check_sweep_is_whole(root, name, NUM_SAMPLES, EPOCHS, arms=0, dense=1)
    assert set(written_before) <= set(trials.trial_id)  # rows written before the signal are kept
    assert (trials.status == "completed").all()


def _lock_held(root) -> bool:
    from paitune.search.lock import lock_holder

    return lock_holder(root) is not None


def test_stop_requests_hand_a_signal_to_tune_once():
    """A signal before Tune's loop runs is handed on by the callback once the loop starts; one
    while it runs, at once; never twice; a second signal raises KeyboardInterrupt at once."""
    from paitune.search.interrupt import HandToTune, StopRequests

    calls = []
    previous = signal.getsignal(signal.SIGUSR1)
    interrupt_before = signal.getsignal(signal.SIGINT)  # another test's Tune run may have left its own
    try:
        stops = StopRequests(stream=sys.stderr)
        with stops.catching():
            HandToTune().on_step_begin(0, [])
            signal.raise_signal(signal.SIGTERM)  # Tune's loop has not started: nothing to hand to
            assert stops.signal == signal.SIGTERM and stops.exit_status == 143 and calls == []
            signal.signal(signal.SIGUSR1, lambda *a: calls.append(a))  # Tune's run installs its handler
            HandToTune().on_step_begin(1, [])
            HandToTune().on_step_begin(2, [])
            assert len(calls) == 1
            with pytest.raises(KeyboardInterrupt):
                signal.raise_signal(signal.SIGINT)
        assert signal.getsignal(signal.SIGINT) is interrupt_before

        stops = StopRequests(stream=sys.stderr)
        with stops.catching():
            signal.signal(signal.SIGUSR1, lambda *a: calls.append(a))
            signal.raise_signal(signal.SIGINT)  # while Tune's loop runs: handed on at once
            assert len(calls) == 2 and stops.exit_status == 130
            HandToTune().on_step_begin(3, [])
            assert len(calls) == 2
            # A second signal inside a shielded block (Ray's shutdown) waits for the block's end.
            finished = []
            with pytest.raises(KeyboardInterrupt):
                with stops.shielded():
                    signal.raise_signal(signal.SIGINT)
                    finished.append(True)
            assert finished == [True]
            with stops.shielded():  # nothing held: nothing raised
                pass
    finally:
        signal.signal(signal.SIGUSR1, previous)


SECOND_SIGNAL_IN_DEL = """
import os, signal, sys, threading
from paitune.search.interrupt import StopRequests

class Finalized:
    def __del__(self):  # the second signal lands while a finalizer runs
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(10_000):
            pass

stops = StopRequests()
with stops.catching():
    os.kill(os.getpid(), signal.SIGINT)
    try:
        Finalized()
        threading.Event().wait(20)  # a blocking call: the interrupt must reach it
        print("not stopped")
    except KeyboardInterrupt:
        print("stopped")
print("hook restored:", sys.unraisablehook is sys.__unraisablehook__)
"""


def test_second_signal_inside_a_finalizer_stops_without_a_traceback(tmp_path):
    """Python swallows a KeyboardInterrupt raised in ``__del__``: the second signal is taken again
    after it, the blocked main thread stops, nothing is printed but the first signal's notice, and
    the sweep's unraisable hook is gone afterwards."""
    import subprocess

    script = tmp_path / "second_in_del.py"
    script.write_text(SECOND_SIGNAL_IN_DEL)
    started = time.monotonic()
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["stopped", "hook restored: True"], done.stdout + done.stderr
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr
    assert "SIGINT received" in done.stderr
    assert time.monotonic() - started < 15  # not the 20 s wait
