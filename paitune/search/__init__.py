"""The Ray Tune side: trial function, Optuna searcher, ASHA, the Parquet sink, sweeps.

    plan = plan_sweep(SweepOptions(space="default", out="results", name="demo"))  # validates only
    run_sweep(plan)                                                               # runs it

Modules: ``trainable`` (the Tune trial function around ``paitune.trial``), ``contexts`` and
``searcher`` (one Optuna study per context, honest PRUNED/FAIL states, replicate seeds),
``samplers``, ``asha`` (ASHA within each context, paired control arms), ``sink`` and
``parquet_io`` (the driver-side Parquet writer of ``paitune.results.rows``), ``sweep``
(validation, the Tuner, resume), ``lock``, ``interrupt``, ``internals`` (the only use of Ray's and
Optuna's private APIs), ``summary``, ``progress``.
"""

__all__ = ["SweepOptions", "SweepPlan", "plan_sweep", "run_sweep"]


def __getattr__(name: str):
    # Lazy: importing one module of the package (the searcher in a test) need not load the Tuner.
    if name in __all__:
        from paitune.search import sweep

        return getattr(sweep, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
