"""Squaring a context's Optuna study with a restarted driver's Tune, and closing it when the sweep ends.

The study lives in Optuna's storage (a journal file), the source of truth across a driver restart.
Tune's experiment snapshot, what a resume restores, lags the study, so before its first suggestion
a driver squares the two (``retry_lost_trials``, called by ``PaiOptunaSearch``). A trial of the
study that the restored Tune holds is Tune's to run (``TuneTrialIds``, filled by the scheduler);
one it does not hold whose row is in the Parquet trials table finished for good; any other one —
taken from the queue but never named, or named after the snapshot and not written — has its
config enqueued again (user attr ``retry_of``), so the sweep still runs it; a fresh draw never
named ran nothing and is not retried (the sampler draws again). One still RUNNING is told FAIL and
marked ``orphaned`` first, a finished one keeps its outcome and is superseded by the retry
(``superseded_trials``). A dense reference neither held nor written runs again
(``kept_dense_references``). The experiment lock guarantees no other live driver is asking.

When the sweep has ended, ``fail_unfinished`` closes what no driver will run any more.
"""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from paitune.search import internals
from paitune.search.study_attrs import (
    DENSE_ATTR,
    DUPLICATE_ATTR,
    GRID_ATTR,
    NOT_RUN_ATTR,
    ORPHAN_ATTR,
    REPLICATE_ATTR,
    RETRY_ATTR,
    TUNE_TRIAL_ATTR,
)


def fail_unfinished(study: optuna.Study) -> list[int]:
    """When a sweep has ended: fail the trials still RUNNING (asked by a driver that died, for a
    Tune trial the resumed Tune never ran), marked ``orphaned``, and those still WAITING (queued
    after the last trial was asked for), marked ``not_run``; returns their numbers."""
    failed = []
    for frozen in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        internals.set_trial_attr(study, frozen, ORPHAN_ATTR, True)
        study.tell(frozen.number, state=TrialState.FAIL)
        failed.append(frozen.number)
    for frozen in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        # Optuna's tell() takes only RUNNING trials; a queued one is closed in its storage.
        internals.set_trial_attr(study, frozen, NOT_RUN_ATTR, True)
        internals.close_waiting_trial(study, frozen, TrialState.FAIL)
        failed.append(frozen.number)
    return failed


def superseded_trials(trials) -> set[int]:
    """Numbers of the trials a retry replaced (an orphan, or a trial whose rows a dead driver
    never wrote): the study's trials without a row of their own in the tables."""
    return {t.user_attrs[RETRY_ATTR] for t in trials if RETRY_ATTR in t.user_attrs}


def retry_lost_trials(study: optuna.Study, held: set, written: set) -> tuple[int, list[str]]:
    """Square ``study`` with the Tune trials this driver's Tune holds (``held``) and those whose
    rows are in the tables (``written``): queue again what a dead driver asked for and lost.

    Returns the trials that count against the budget (held or written) and the Tune trial ids
    that no longer run (retried, or a fresh draw that ran nothing)."""
    used, lost = 0, []
    trials = study.get_trials(deepcopy=False)
    retried = superseded_trials(trials)
    for frozen in trials:
        attrs = frozen.user_attrs
        if frozen.state == TrialState.WAITING or DUPLICATE_ATTR in attrs or frozen.number in retried:
            continue
        tid = attrs.get(TUNE_TRIAL_ATTR)
        if tid is not None and (tid in held or tid in written):
            used += 1
            continue
        if tid is None and frozen.state != TrialState.RUNNING:
            continue
        if frozen.state == TrialState.RUNNING:
            internals.set_trial_attr(study, frozen, ORPHAN_ATTR, True)
            study.tell(frozen.number, state=TrialState.FAIL)
        # else: told, but the driver died before its rows were written (Tune tells the
        # searcher before the callbacks). Optuna keeps its outcome (a finished trial takes no
        # new attrs); the retry, whose retry_of names it, supersedes it in the tables.
        # What is owed again: a trial named to Tune, its whole config (named only once drawn).
        # One never named ran nothing, and its params may be partial (a driver killed inside
        # the ask): taken from the queue (a replicate, grid point or retry), it still owes the
        # queued config, whole in fixed_params; a fresh draw owes nothing, the sampler draws
        # again (retrying its partial draw ran a config twice: its seed drawn anew, it matched
        # a later draw's replicate).
        fixed = frozen.system_attrs.get("fixed_params") or {}
        params = dict((frozen.params or fixed) if tid is not None else fixed)
        if params:
            kept = {k: v for k, v in attrs.items() if k in (REPLICATE_ATTR, GRID_ATTR)}
            study.enqueue_trial(params, user_attrs={**kept, RETRY_ATTR: frozen.number})
        if tid is not None:
            lost.append(tid)
    return used, lost


def kept_dense_references(study: optuna.Study, held: set, written: set) -> dict[str, int]:
    """Tune trial id -> dense reference index, for the dense references Tune holds or the tables
    have; the study's record drops the others, which run again under new Tune trials."""
    issued = {tid: int(i) for tid, i in study.user_attrs.get(DENSE_ATTR, {}).items()}
    kept = {tid: i for tid, i in issued.items() if tid in held or tid in written}
    if kept != issued:
        study.set_user_attr(DENSE_ATTR, kept)
    return kept
