"""The Ray Tune side: trial function, Optuna searcher, ASHA, the Parquet sink, sweeps.

    plan = plan_sweep(SweepOptions(space="default", out="results", name="demo"))  # validates only
    run_sweep(plan)                                                               # runs it

Modules: ``pipeline`` (one trial without Ray), ``trainable`` (the Tune trial function),
``searcher`` (OptunaSearch with honest PRUNED/FAIL states and replicate seeds), ``sink`` and
``rows`` (the driver-side Parquet writer), ``sweep`` (validation and the Tuner), ``lock``,
``summary``.
"""

__all__ = ["SweepOptions", "SweepPlan", "plan_sweep", "run_sweep"]


def __getattr__(name: str):
    # Lazy: ``paitune.search.pipeline`` is Ray-free and must stay importable without loading Ray.
    if name in __all__:
        from paitune.search import sweep

        return getattr(sweep, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
