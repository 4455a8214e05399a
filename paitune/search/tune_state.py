"""Tune's experiment snapshots without the save/upload race.

Tune writes its experiment state (trial table, searcher and callback state) into a staging
folder under ``/tmp/ray/session_*/.../driver_artifacts`` and uploads that folder to the storage
path in a background thread. The next snapshot writes its files into the same folder — each
through a temporary ``.<uuid>-tmp-*`` file that is renamed — without waiting for the previous
upload, so an upload still listing the folder tries to copy a temporary that has just been
renamed away and logs "Saving experiment state to storage ... failed ... FileNotFoundError"
(or copies a half-written ``experiment_state-*.json``). ``serialized_snapshots()`` makes every
snapshot wait for the upload in flight before touching the staging folder, so the upload always
reads a folder nobody is writing. Uploads stay in the background between snapshots.

``before_save`` runs right before each snapshot is written: the sweep flushes its queued Parquet
writes there, so every trial a snapshot records as ended has its rows on disk. When it returns
False (a write failed) the snapshot is not taken.
"""

from __future__ import annotations

import contextlib
import functools
import logging

from paitune.search import internals

logger = logging.getLogger(__name__)


def _wait_then(original, before_save):
    @functools.wraps(original)
    def sync_up_experiment_state(self, save_fn, force=False, wait=False):
        def save_after_upload():
            try:
                internals.wait_for_upload(self)
            except Exception as err:  # the upload's own failure is reported by the next snapshot
                logger.warning("previous experiment-state upload failed: %s", err)
            if before_save is not None and before_save() is False:
                return  # the caller asked for no snapshot (results it could not write)
            save_fn()

        return original(self, save_after_upload, force=force, wait=wait)

    sync_up_experiment_state.__paitune_serialized__ = True
    return sync_up_experiment_state


@contextlib.contextmanager
def serialized_snapshots(before_save=None):
    """Within this block, Tune's experiment snapshots wait for the previous upload first (and call
    ``before_save``, when given)."""
    cls = internals.experiment_checkpoint_manager_class()
    original = cls.sync_up_experiment_state
    if getattr(original, "__paitune_serialized__", False):  # nested: already in place
        yield
        return
    cls.sync_up_experiment_state = _wait_then(original, before_save)
    try:
        yield
    finally:
        cls.sync_up_experiment_state = original
