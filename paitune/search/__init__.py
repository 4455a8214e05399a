"""The Ray Tune side: trial function, Optuna searcher, ASHA, the Parquet sink, sweeps.

    plan = plan_sweep(SweepOptions(space="default", out="results", name="demo"))  # validates only
    run_sweep(plan)                                                               # runs it

Modules: ``plan`` (``plan_sweep``: every check, nothing started or written), ``sweep`` (the run
under the experiment lock), ``tuner`` (the searcher, scheduler and Tuner of a plan, or the one a
resume restores), ``state_files`` (the experiment directory's layout, the manifest, the state
mirrored to a URI), ``trainable`` (the Tune trial function around ``paitune.trial``), ``contexts``
and ``searcher`` (one Optuna study per context, honest PRUNED/FAIL states), ``repeats`` (seed
replicates, sampled repeats told not run), ``recovery`` (the study squared with a restarted
driver's Tune), ``study_attrs``, ``samplers``, ``asha`` (ASHA within each context, paired control
arms), ``sink`` and ``parquet_io`` (the driver-side Parquet writer of ``paitune.results.rows``),
``lock``, ``interrupt``, ``internals`` (the only use of Ray's and Optuna's private APIs),
``summary``, ``progress``.
"""

__all__ = ["SweepOptions", "SweepPlan", "plan_sweep", "run_sweep"]


def __getattr__(name: str):
    # Lazy: importing one module of the package (the searcher in a test) need not load the Tuner.
    if name == "SweepOptions":
        from paitune.config.sweep import SweepOptions

        return SweepOptions
    if name in ("SweepPlan", "plan_sweep"):
        from paitune.search import plan

        return getattr(plan, name)
    if name == "run_sweep":
        from paitune.search.sweep import run_sweep

        return run_sweep
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
