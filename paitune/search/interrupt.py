"""Ctrl-C (SIGINT) and SIGTERM during a sweep: stop cleanly, then stop at once on a second signal.

The first signal asks Tune to end its run the way its own Ctrl-C handler does: the loop stops
stepping, Tune takes a last experiment snapshot (the sink's queued writes are flushed before it),
and the running trials are stopped. Tune's snapshot still holds them as running, so
``--resume`` restores them from their checkpoints; the Optuna studies keep them as Tune's. A second
signal raises ``KeyboardInterrupt`` wherever the driver is: nothing else is awaited, and what is on
disk is what a driver killed at that moment leaves, which ``--resume`` completes (see
docs/reliability.md).

Tune's own SIGINT handler is turned off (``TUNE_DISABLE_SIGINT_HANDLER``, for the sweep only): it knows no SIGTERM,
and a signal that arrives before Tune's loop starts would be lost. Instead the handler here
records the signal and hands it to Tune through the handler Tune keeps on SIGUSR1 (which sets the
same stop event) — at once when Tune's loop runs, else from ``HandToTune.on_step_begin`` (a Tune
callback, run in every loop step) when it starts. A failed results write, noticed on the writer
thread, asks for the same stop (``request``), with no signal; the callback hands it on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import sys
import threading
import time

from ray.tune import Callback

SIGNALS = (signal.SIGINT, signal.SIGTERM)
TUNE_SIGINT_ENV = "TUNE_DISABLE_SIGINT_HANDLER"
EXIT_STATUS = {signal.SIGINT: 130, signal.SIGTERM: 143}  # 128 + the signal's number, as shells do
# Tune's own words on an interrupted run name Tuner.restore, not the paitune command; once a stop
# is asked for, the trials it abandons (Tune's "did not complete", Ray's "unhandled error" of a
# trial task nobody waits for any more) are expected, and the sweep's last line says what to do.
TUNE_INTERRUPT_WORDS = ("Stop signal received", "has been interrupted", "Resume experiment with")
STOPPED_WORDS = ("Trials did not complete", "Unhandled error")
# A trial that failed writing to a full or read-only disk is not the trial's fault, and the
# sweep's last line names the disk: Tune's report of it (a traceback per retry) is left out.
DISK_ERROR = re.compile(r"[Ee]rrno (28|30|122)\b")  # ENOSPC, EROFS, EDQUOT
QUIETED_LOGGERS = ("ray.tune.tune", "ray._private.worker", "ray.tune.execution.tune_controller",
                   "ray.tune.execution.experiment_state", "paitune.search.tune_state")  # fmt: skip


class _DropStopNoise(logging.Filter):
    def __init__(self, requests: StopRequests):
        super().__init__()
        self.requests = requests

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if any(words in message for words in TUNE_INTERRUPT_WORDS):
            return False
        if record.exc_info and record.exc_info[1] is not None:
            message = f"{message} {record.exc_info[1]}"
        if DISK_ERROR.search(message):
            return False
        return not (self.requests.requested and any(message.startswith(w) for w in STOPPED_WORDS))


_active: StopRequests | None = None  # the requests of the sweep running in this process


class StopRequests:
    """Why the sweep is stopping (a signal number, or a reason given to ``request``), if it is."""

    def __init__(self, stream=None):
        self.signal: int | None = None
        self.reason: str | None = None
        self.handed_to_tune = False
        self._stream = stream or sys.stderr
        self._shielding = False  # inside ``shielded``: a second signal waits for the block's end
        self._held = False  # a second signal came while shielded
        self._hooked = False  # ``_stop_at_once``'s hook is installed
        self._in_hook = False  # that hook is running

    @property
    def requested(self) -> bool:
        return self.signal is not None or self.reason is not None

    @property
    def exit_status(self) -> int:
        return EXIT_STATUS.get(self.signal, 2)

    def request(self, reason: str) -> None:
        """Stop the run as the first Ctrl-C would (used when results cannot be written)."""
        if self.reason is None:
            self.reason = reason

    def _handle(self, signum, frame) -> None:
        if self.requested:
            if self._shielding:
                self._held = True
                return
            if self._in_hook:  # raised here it would be swallowed: signal again after the hook
                self._signal_main_soon()
                return
            self._stop_at_once()
            raise KeyboardInterrupt  # the second signal: stop at once
        self.signal = signum
        name = signal.Signals(signum).name
        print(
            f"paitune sweep: {name} received: stopping the running trials and saving what finished "
            "(send it again to stop at once; the sweep stays resumable)",
            file=self._stream,
            flush=True,
        )
        self.hand_to_tune()  # at once when Tune's loop runs; else HandToTune does when it starts

    def _stop_at_once(self) -> None:
        """A KeyboardInterrupt raised while a ``__del__`` runs is swallowed there (Python prints
        "Exception ignored" and goes on): catch that, without its traceback, and signal the main
        thread again once the hook has returned, so the second signal always stops the sweep.

        The new signal comes from a helper thread once the hook has returned: raised inside the
        hook, the KeyboardInterrupt would be swallowed (and printed) in turn. It goes to the main
        thread itself, so that a blocking call there returns to take it, as with a real signal."""
        if self._hooked:
            return
        self._hooked = True
        previous = sys.unraisablehook

        def hook(unraisable):
            if unraisable.exc_type is not None and issubclass(unraisable.exc_type, KeyboardInterrupt):
                self._in_hook = True  # meanwhile a signal's handler sends again instead of raising
                self._signal_main_soon()
                self._in_hook = False
                return
            previous(unraisable)

        sys.unraisablehook = hook

    def _signal_main_soon(self) -> None:
        def send():
            while self._in_hook:
                time.sleep(0.001)
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

        threading.Thread(target=send, name="paitune-stop-at-once", daemon=True).start()

    @contextlib.contextmanager
    def shielded(self):
        """A block a second signal must not cut short (Ray's shutdown: a driver interrupted inside
        it can lose its raylet while still connected, and Ray's core worker then exits the process
        with status 1, printing nothing). The signal takes effect when the block ends."""
        self._shielding = True
        try:
            yield
        finally:
            self._shielding = False
            if self._held:
                self._held = False
                raise KeyboardInterrupt  # the second signal, now

    def hand_to_tune(self) -> None:
        """Set Tune's stop event through the handler Tune keeps on SIGUSR1 (main thread only:
        Tune's handler resets a signal handler)."""
        if self.handed_to_tune or threading.current_thread() is not threading.main_thread():
            return
        tune_stop = signal.getsignal(signal.SIGUSR1)  # Tune's handler, installed by its run
        if callable(tune_stop):
            self.handed_to_tune = True
            tune_stop(signal.SIGUSR1, None)

    def install(self) -> None:
        """Take SIGINT and SIGTERM (again): ``ray.init`` puts its own fatal SIGTERM handler in the
        driver, which aborts the process, so this runs once more after Ray has started."""
        if threading.current_thread() is not threading.main_thread():
            return  # only the main thread may set handlers (a sweep run from a thread keeps Tune's)
        for sig in SIGNALS:
            signal.signal(sig, self._handle)

    @contextlib.contextmanager
    def catching(self):
        """Within this block SIGINT and SIGTERM are this object's (only on the main thread)."""
        global _active
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        _active = self
        tune_handler_setting = os.environ.get(TUNE_SIGINT_ENV)
        os.environ[TUNE_SIGINT_ENV] = "1"
        quiet = _DropStopNoise(self)
        for name in QUIETED_LOGGERS:
            logging.getLogger(name).addFilter(quiet)
        previous = {sig: signal.getsignal(sig) for sig in (*SIGNALS, signal.SIGUSR1)}
        unraisable_hook = sys.unraisablehook  # ``_stop_at_once`` may wrap it for this sweep
        signal.signal(signal.SIGUSR1, signal.SIG_DFL)  # a handler left by an earlier Tune run is not this run's
        self.install()
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            sys.unraisablehook = unraisable_hook
            for name in QUIETED_LOGGERS:
                logging.getLogger(name).removeFilter(quiet)
            if tune_handler_setting is None:
                os.environ.pop(TUNE_SIGINT_ENV, None)
            else:
                os.environ[TUNE_SIGINT_ENV] = tune_handler_setting
            _active = None


def request_stop(reason: str) -> None:
    """Ask the running sweep of this process, if any, to stop as on a first Ctrl-C."""
    if _active is not None:
        _active.request(reason)


class HandToTune(Callback):
    """Passes a requested stop to Tune's loop. It holds nothing: Tune pickles its callbacks into
    the experiment and a resumed run uses the unpickled one, so it reads this process's requests."""

    def on_step_begin(self, iteration, trials, **info) -> None:
        requests = _active
        if requests is not None and requests.requested:
            requests.hand_to_tune()
