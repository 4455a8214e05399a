"""Where a sweep's Optuna study lives: an append-only journal file in the experiment directory.

Optuna's journal storage writes one log line per operation (ask, each sampled parameter, each
intermediate value, tell) under a file lock, and rebuilds the study by replaying the log, so it
survives a driver crash like a database does and ``--resume`` continues the sampler's history.
It is an order of magnitude cheaper per operation than SQLite through SQLAlchemy (a sweep makes
a few dozen such operations per trial on the driver, between a trial's reports), and it needs no
database server on a cluster. Open the study with :func:`load_study`, or with
``optuna.load_study(storage=JournalStorage(JournalFileBackend(path)))``.

The sweep appends without Optuna's ``fsync`` per operation: see ``paitune.search.journal``.
"""

from __future__ import annotations

from pathlib import Path

STUDY_FILE = "optuna.journal"


def study_storage(experiment_dir: str | Path):
    """The Optuna storage of the sweep in ``experiment_dir`` (created on first write)."""
    from optuna.storages import JournalStorage

    from paitune.search.journal import UnsyncedJournalFile

    return JournalStorage(UnsyncedJournalFile(Path(experiment_dir) / STUDY_FILE))


def load_study(experiment_dir: str | Path, name: str):
    """The Optuna study named ``name`` (the sweep's ``--name``). The sweep's sampled trials are not
    in it: each context has its own study (``paitune.search.contexts.load_context_studies`` /
    ``study_trials``); this one holds only the side-trial bookkeeping (``side:<tune id>`` attrs)."""
    import optuna

    return optuna.load_study(study_name=name, storage=study_storage(experiment_dir))
