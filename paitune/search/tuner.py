"""Building the Tuner of a planned sweep: its searcher (``ContextSearch``), its scheduler
(``ContextASHA`` or ``PaiFIFO``), its storage, loggers and trainable — or, on ``--resume``, the
Tuner restored from Tune's last whole snapshot.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow.fs as pafs

from paitune.config import TRIAL_DEFAULTS
from paitune.config.sweep import SweepOptions
from paitune.results.storage import is_uri, locate
from paitune.search.plan import SAMPLER_SEED_STRIDE, SweepPlan
from paitune.search.state_files import TUNE_DIR
from paitune.search.study_store import study_storage
from paitune.search.tune_state import set_aside_broken_snapshots
from paitune.spaces.compile import SEED_PARAM


def context_sampler_seed(base_seed: int | None, index: int, held: int) -> int | None:
    """The seed of the ``index``-th context's sampler, its study holding ``held`` trials.

    Each context's sampler is seeded apart from the others'. Optuna keeps no sampler's random
    state in its storage, so a sampler built for a resumed study starts over: from the sweep's own
    seed it would draw its first configs again (told as repeats, they spend the budget). A study
    that holds trials seeds its sampler from the sweep's seed and that count, so a resume is
    repeatable and draws afresh.
    """
    if base_seed is None:
        return None
    seed = base_seed + SAMPLER_SEED_STRIDE * index
    if held:
        seed = int(np.random.SeedSequence([seed, held]).generate_state(1)[0])
    return seed


def build_searcher(plan: SweepPlan, tune_trials=None):
    import optuna

    from paitune.search.contexts import ContextSearch
    from paitune.search.samplers import make_sampler

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = study_storage(plan.experiment_dir)
    metric = plan.metrics if plan.space.multi_objective else plan.metrics[0]
    mode = plan.modes if plan.space.multi_objective else plan.modes[0]
    base_seed = plan.options.sampler_seed

    def sampler_factory(index: int, held: int):
        seed = context_sampler_seed(base_seed, index, held)
        return make_sampler(plan.options.sampler, seed=seed, n_objectives=len(plan.metrics))

    return ContextSearch(
        plan.compiled, metric=metric, mode=mode, sampler_factory=sampler_factory, storage=storage,
        study_name=plan.options.name, grid=plan.options.sampler == "grid", dense=plan.dense_references,
        budget=plan.num_samples, results=plan.results, tune_trials=tune_trials,
    )  # fmt: skip


def build_scheduler(plan: SweepPlan, tune_trials=None):
    from paitune.search.asha import STATE_FILE, ContextASHA, PaiFIFO

    if plan.scheduler == "fifo":
        return PaiFIFO(tune_trials=tune_trials)
    settings = plan.space.scheduler
    epochs = int(plan.space.settings.get("epochs", TRIAL_DEFAULTS["epochs"]))
    return ContextASHA(
        time_attr="epoch", metric=plan.metrics[0], mode=plan.modes[0], max_t=epochs,
        grace_period=settings.grace_period, reduction_factor=settings.reduction_factor,
        min_rung_trials=settings.min_rung_trials, state_path=plan.experiment_dir / STATE_FILE, tune_trials=tune_trials,
    )  # fmt: skip


def trial_dirname(trial) -> str:
    """Short trial directories (Tune's default spells out the whole config)."""
    return f"trial_{trial.trial_id}"


def tune_storage(plan: SweepPlan) -> tuple[str, Any]:
    """Tune's storage (path, pyarrow filesystem or None): its experiment is ``<storage>/NAME/tune``
    (DIR/NAME/tune by default). A URI is opened here and handed to Tune as a filesystem plus a
    path, so URI options (``?endpoint_override=...``) survive Tune's own path joins."""
    if not is_uri(plan.storage_path):
        return f"{plan.storage_path.rstrip('/')}/{plan.options.name}", None
    where = locate(plan.storage_path).join(plan.options.name)
    return where.path, where.fs


def tune_loggers(options: SweepOptions) -> list:
    """Tune's per-trial loggers the options ask for: --tune-logs (result.json and progress.csv),
    --tensorboard (event files)."""
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback, TBXLoggerCallback

    loggers = [JsonLoggerCallback(), CSVLoggerCallback()] if options.tune_logs else []
    return loggers + ([TBXLoggerCallback()] if options.tensorboard else [])


def build_tuner(plan: SweepPlan):
    from ray import tune

    from paitune.results.rows import trials_schema
    from paitune.search.interrupt import HandToTune
    from paitune.search.lean_state import LeanTrialState
    from paitune.search.limiter import ResumableLimiter
    from paitune.search.sink import ParquetSink
    from paitune.search.trainable import run_trial
    from paitune.search.tune_trials import TuneTrialIds

    proxies = list(plan.space.settings.get("proxies", TRIAL_DEFAULTS["proxies"]))
    sink = ParquetSink(plan.results, plan.options.name, trials_schema(plan.search_params, proxies), plan.search_params,
                       background=True)  # fmt: skip
    # The scheduler records every trial Tune adds (also those a resume restores); the searcher
    # reads them to square the study with the restored Tune (see paitune.search.recovery).
    tune_trials = TuneTrialIds()
    scheduler = build_scheduler(plan, tune_trials)
    trainable = tune.with_resources(
        tune.with_parameters(
            run_trial,
            checkpoint_every_s=plan.options.checkpoint_every_s,
            report_every_s=plan.options.report_every_s,
            # Where the scheduler decides: a trial must report these epochs, and need not report others.
            report_epochs=scheduler.decision_epochs(),
        ),
        {"cpu": plan.options.cpus_per_trial, "gpu": plan.options.gpus_per_trial},
    )
    if plan.options.verbose >= 2:  # --verbose: Tune's own table, a row per trial
        reporter = tune.CLIReporter(
            metric_columns={"epoch": "ep", plan.metrics[0]: plan.metrics[0]},
            parameter_columns={k: k for k in ("method", "sparsity", "allocation", "control", SEED_PARAM)},
            max_report_frequency=15,
            print_intermediate_tables=True,
        )
    else:
        from paitune.search.progress import CompactProgress

        reporter = CompactProgress(total=plan.total_trials, metric=plan.metrics[0], mode=plan.modes[0])
    storage_path, storage_filesystem = tune_storage(plan)
    run_config = tune.RunConfig(
        name=TUNE_DIR,
        storage_path=storage_path,
        storage_filesystem=storage_filesystem,
        # Tune's own per-trial logs are off unless asked for (TUNE_DISABLE_AUTO_CALLBACK_LOGGERS,
        # set in paitune.search.sweep.execute_sweep): they repeat what the Parquet tables hold,
        # Tune re-uploads every trial's log folder at each experiment snapshot, and the
        # TensorBoard writer alone costs the driver ~4 ms per result.
        # LeanTrialState last: it strips each result once the sink and the loggers have read it.
        callbacks=[sink, HandToTune(), *tune_loggers(plan.options), LeanTrialState()],
        failure_config=tune.FailureConfig(max_failures=plan.options.max_failures),
        # Every epoch's checkpoint is kept. Tune deletes checkpoints beyond num_to_keep as soon as
        # a newer one lands, while its experiment snapshot (what --resume restores) still names
        # the older one until the next snapshot: a driver killed in between leaves trials whose
        # checkpoint is gone, and they fail on resume. Kept checkpoints cost disk (an MLP's are
        # kilobytes); DIR/NAME/tune can be deleted once the sweep is done.
        checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
        progress_reporter=reporter,
        verbose=min(plan.options.verbose, 1),
    )
    if plan.options.resume:
        path = f"{storage_path}/{TUNE_DIR}"
        _, whole = set_aside_broken_snapshots(path, storage_filesystem or pafs.LocalFileSystem())
        # Without a whole snapshot Tune has nothing to restore: a fresh Tune run, whose searcher
        # squares the study with the tables and reruns what was never written.
        if whole and tune.Tuner.can_restore(path, storage_filesystem=storage_filesystem):
            restored = tune.Tuner.restore(path, trainable, resume_unfinished=True, resume_errored=True,
                                          storage_filesystem=storage_filesystem)  # fmt: skip
            return restored, sink
    tune_config = tune.TuneConfig(
        search_alg=ResumableLimiter(build_searcher(plan, tune_trials), plan.max_concurrent, tune_trials),
        scheduler=scheduler,
        # The searcher keeps the budget (plan.num_samples, side trials on top) and ends the search: after a restart
        # Tune's own count comes from its snapshot, which may miss trials that finished after it.
        num_samples=-1,
        reuse_actors=True,
        trial_dirname_creator=trial_dirname,
    )
    return tune.Tuner(trainable, tune_config=tune_config, run_config=run_config), sink
