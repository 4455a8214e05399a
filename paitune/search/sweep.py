"""``paitune sweep``: run a planned sweep (``paitune.search.plan``) with Ray Tune + Optuna + ASHA
into Parquet.

``execute_sweep(plan)`` takes the experiment lock, starts (or joins) Ray, writes or fetches
paitune's state files (``paitune.search.state_files``), runs the Tuner
(``paitune.search.tuner``) and mirrors the state next to a URI's tables when it ends;
``run_sweep(plan)`` runs it and prints a summary, or the one line of a stopped sweep.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import sys

from paitune.errors import PaituneError
from paitune.results.storage import is_uri
from paitune.search.lock import SweepLock
from paitune.search.plan import SweepPlan
from paitune.search.ray_procs import forget_processes, reap_orphans, start_ray
from paitune.search.state_files import TUNE_DIR as TUNE_DIR  # where tools find Tune's folder of a sweep
from paitune.search.state_files import fetch_state, mirror_state, write_manifest
from paitune.search.study_store import study_storage
from paitune.search.tune_state import serialized_snapshots
from paitune.search.tuner import build_tuner


def _close_study(plan: SweepPlan) -> None:
    """The sweep has ended: no trial of the study can still be running."""
    from paitune.search.contexts import load_context_studies
    from paitune.search.recovery import fail_unfinished

    for study in load_context_studies(study_storage(plan.experiment_dir), plan.options.name).values():
        fail_unfinished(study)


def _compact_results(plan: SweepPlan) -> None:
    """Merge the per-trial result files once there are ``--compact-min`` of them (readers open
    each file: 100,000 trials are 300,000 of them)."""
    from paitune.search.compaction import compact, per_trial_files

    if plan.options.compact_min > 0 and per_trial_files(plan.results) >= plan.options.compact_min:
        compact(plan.results)


def execute_sweep(plan: SweepPlan, stops=None):
    """Run the planned sweep under the experiment lock; returns Tune's ResultGrid (None when
    ``stops``, a ``StopRequests``, asked to stop before Tune began)."""
    created = not plan.experiment_dir.exists()
    # The old-style reporter prints the few columns we chose; the default new output engine would
    # print every reported key of every trial.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # see paitune.search.tuner.build_tuner
    if not (plan.options.tune_logs or plan.options.tensorboard):
        # Without its logs, Tune's end-of-run analysis warns once per trial that it found none;
        # the Parquet tables are the record.
        logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    try:
        lock = SweepLock(plan.experiment_dir, plan.options.name)
    except OSError as err:  # e.g. an --out under /proc, a read-only mount: nothing was written
        where = plan.options.state_dir if is_uri(plan.options.out) else plan.options.out
        raise PaituneError(f"--out {where}: cannot create {plan.experiment_dir}: {err.strerror or err}") from None
    try:
        # A driver of this sweep that was SIGKILLed may have left Ray helpers running.
        reap_orphans(plan.experiment_dir)
        try:
            started = start_ray(plan.options.address, plan.experiment_dir)
            if stops is not None:
                stops.install()
        except PaituneError:
            lock.release()
            if created:
                shutil.rmtree(plan.experiment_dir, ignore_errors=True)
            raise
        try:
            if plan.options.resume:
                fetch_state(plan.experiment_dir, plan.results)
            else:
                write_manifest(plan.experiment_dir, plan.options, plan.space)
                mirror_state(plan.experiment_dir, plan.results)
            from paitune.search.sink import flush_for_snapshot, flush_writes, reset_write_failure

            reset_write_failure()
            tuner, _ = build_tuner(plan)
            if stops is not None and stops.requested:
                return None
            try:
                with serialized_snapshots(before_save=flush_for_snapshot):
                    grid = tuner.fit()
            finally:
                flush_writes()  # the rows of every trial that ended, also when fit raised
            if stops is None or not stops.requested:  # a stopped sweep's running trials are Tune's to resume
                _close_study(plan)
                _compact_results(plan)
            return grid
        finally:
            mirror_state(plan.experiment_dir, plan.results)
            if started:
                import ray

                with stops.shielded() if stops is not None else contextlib.nullcontext():
                    ray.shutdown()
                    forget_processes(plan.experiment_dir)
    finally:
        lock.release()


def run_sweep(plan: SweepPlan, *, stream=None) -> int:
    """Run the planned sweep and print its summary; returns the exit status (1: no trial
    succeeded; 130 / 143: stopped by SIGINT / SIGTERM, resumable)."""
    from paitune.search.interrupt import StopRequests
    from paitune.search.sink import disk_failure, write_failure
    from paitune.search.summary import print_stopped, print_summary

    stops = StopRequests()
    with stops.catching():
        try:
            grid = execute_sweep(plan, stops)
        except KeyboardInterrupt:  # a second signal (or Ctrl-C with no handler in place yet)
            stops.signal = stops.signal or signal.SIGINT
            grid = None
        except Exception as err:  # a full or read-only disk under Tune's own writes (its state, Optuna's)
            disk = write_failure() or disk_failure(err, plan.results)
            if disk is None:
                raise
            stops.request(disk)
        if write_failure() is not None:
            stops.request(write_failure())
        if stops.requested:
            return print_stopped(plan, stops)
    return print_summary(plan.results, grid, stream=stream or sys.stdout)
