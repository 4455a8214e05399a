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
import fnmatch
import functools
import json
import logging
import re

import pyarrow.fs as pafs

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


SNAPSHOT_GLOB = "experiment_state-*.json"  # Tune's experiment snapshot, one file per Tune run
# The files of one snapshot (experiment, searcher, search generator) share its run's timestamp.
SNAPSHOT_PARTS = re.compile(r"^(experiment_state|search_gen_state|searcher-state)-(?P<stamp>.+)\.(json|pkl)$")
BROKEN_SUFFIX = ".broken"


def _whole(data: bytes) -> bool:
    # By content, not by name: Tune pickles its search generator's state into a ``.json`` file.
    # A pickle (protocol 2 and up) starts with its PROTO opcode and ends with STOP; one cut short
    # does not end so (checked without unpickling it).
    if data[:1] == b"\x80":
        return data.endswith(b".")
    try:
        json.loads(data)
    except ValueError:
        return False
    return True


def set_aside_broken_snapshots(tune_dir: str, filesystem) -> tuple[list[str], int]:
    """Set aside (rename to ``<name>.broken``) every file of each experiment snapshot under
    ``tune_dir`` of which one file is cut short (an upload a full disk or a kill interrupted), so
    Tune neither restores from it nor fails on it: the resume then restores from an older whole
    snapshot or, with none left, starts Tune afresh and the searcher squares the study with the
    tables. Returns (the paths set aside, the number of whole experiment snapshots left)."""
    try:
        infos = filesystem.get_file_info(pafs.FileSelector(tune_dir, allow_not_found=True))
    except OSError:
        return [], 0
    groups: dict[str, list] = {}
    for info in infos:
        match = SNAPSHOT_PARTS.match(info.base_name)
        if info.type == pafs.FileType.File and match:
            groups.setdefault(match["stamp"], []).append(info)
    broken, whole = [], 0
    for files in groups.values():
        intact = True
        for info in files:
            with filesystem.open_input_stream(info.path) as stream:
                intact = intact and _whole(stream.read())
        if intact:
            whole += any(fnmatch.fnmatch(info.base_name, SNAPSHOT_GLOB) for info in files)
            continue
        for info in files:
            filesystem.move(info.path, info.path + BROKEN_SUFFIX)
            broken.append(info.path)
        logger.warning("Tune's snapshot in %s is cut short; resuming without it", tune_dir)
    return broken, whole
