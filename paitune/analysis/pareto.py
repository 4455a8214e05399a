"""Pareto fronts: final accuracy (max) vs density and vs FLOPs (min), per dataset x model.

Every completed trial takes part (any control). Selection on validation, reporting on test: a
trial is on the front when no other trial of the same dataset and model has at least its
*validation* accuracy (``val_acc``; test_acc where a trial has none) at no more density (or
FLOPs), with one of the two strictly better; the table reports the front's test accuracy. Computed by a sort and a running maximum, so it scales to any size.
"""

from __future__ import annotations

import pandas as pd

from paitune.analysis.accuracy import completed_trials
from paitune.analysis.load import Results

OBJECTIVES = {"density": "density_achieved", "flops": "flops_sparse"}


def pareto_fronts(results: Results) -> pd.DataFrame:
    """{objective, dataset, model, experiment, trial_id, method, allocation, control, sparsity,
    density, flops_sparse, test_acc}: the non-dominated trials, cheapest first."""
    done = completed_trials(results)
    columns = [
        "objective",
        "dataset",
        "model",
        "experiment",
        "trial_id",
        "method",
        "allocation",
        "control",
        "sparsity",
        "density",
        "flops_sparse",
        "test_acc",
        "val_acc",
    ]
    done = done.assign(
        val_acc=done["val_acc"].fillna(done["test_acc"]) if "val_acc" in done.columns else done["test_acc"]
    )
    parts = []
    for objective, cost in OBJECTIVES.items():
        frame = done.loc[done[cost].notna()].sort_values(
            ["dataset", "model", cost, "val_acc"], ascending=[True, True, True, False]
        )
        # Best accuracy among all cheaper-or-equal trials seen before this one.
        before = frame.groupby(["dataset", "model"], observed=True)["val_acc"].transform(
            lambda s: s.cummax().shift(fill_value=-float("inf"))
        )
        front = frame.loc[frame["val_acc"] > before]
        parts.append(front.assign(objective=objective, density=front["density_achieved"]))
    table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)
    return table[columns].reset_index(drop=True)
