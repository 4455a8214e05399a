"""The dense reference: the unpruned model of each context, and every accuracy's gap to it.

Trials with ``method == "dense"`` (sparsity 0, control none) are the unpruned model trained in a
*dense context*: dataset x model x training budget (max_epochs) x seed, and the data, model or
training values of the trials' context beyond those (say ``augment=standard``: see
``paitune.spaces.context.reference_setting``; empty for the default context). Dense trials are
the reference line, not a method that competes: rankings, concordance, proxies, importance, layer profiles and
collapse leave them out.

A trial's ``setting`` is all of its context beyond dataset, model, sparsity and budget (pruning
values such as ``prune_batches=4`` too): the descriptive tables keep settings apart, and the dense
reference table's ``setting`` is the part a reference shares.

A trial's dense accuracy is, in this order: its own ``dense_test_acc`` column (the sweep writes it
when it knows the reference), else the mean final accuracy of the completed dense trials of its
dense context (same dataset, model, budget, setting and seed: the gap is paired by seed). When neither
exists the gap is null and the tables say ``no_dense_reference`` — a reference is never invented.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from paitune.analysis.common import pair_completed
from paitune.analysis.load import Results
from paitune.analysis.stats import MIN_RUNS_CI, N_BOOT, SEED, grouped_t_test
from paitune.results.schema import STATUS_COMPLETED
from paitune.spaces.context import CONTEXT_COLUMN, context_setting, reference_setting

DENSE_METHOD = "dense"
DENSE_COLUMN = "dense_test_acc"  # optional trials column written by the sweep
SETTING = "setting"  # the context's values beyond dataset, model, sparsity and budget
SHARED = "_shared_setting"  # the part of the setting the dense reference shares (its data, model, training)
BUDGET_KEYS = ["dataset", "model", "max_epochs", SHARED]
DENSE_KEYS = BUDGET_KEYS + ["seed"]
NO_DENSE = "no_dense_reference"


def seed_mean_ci(frame: pd.DataFrame, by: list[str], value: str) -> pd.DataFrame:
    """Mean of ``value`` per group of ``by``, each row one seed, with a Student-t 95% interval over
    the seeds: {by, n, mean, ci_low, ci_high}; null interval below MIN_RUNS_CI seeds.

    The descriptive tables' intervals. A percentile bootstrap over 2 to 5 seeds undercovers (at 3
    seeds about 75% of planted cells are covered by its "95%" interval); the t-interval is exact
    under normal seed-level noise and wide at few seeds, as it should be."""
    table = grouped_t_test(frame, by, value).rename(columns={"n_units": "n"})
    return table[list(by) + ["n", "mean", "ci_low", "ci_high"]]


def with_setting(trials: pd.DataFrame) -> pd.DataFrame:
    """``trials`` plus ``setting`` (``context_setting`` of each row's context id; a dense trial's is
    the shared part) and the part of it the dense reference shares (``reference_setting``); empty
    without a context column."""
    if CONTEXT_COLUMN not in trials.columns:
        return trials.assign(**{SETTING: "", SHARED: ""})
    contexts = trials[CONTEXT_COLUMN].astype(str)
    unique = contexts.unique()
    shared = contexts.map({c: reference_setting(c) for c in unique})
    full = contexts.map({c: context_setting(c) for c in unique})
    # A dense trial's setting is what it is the reference for: the shared part.
    return trials.assign(**{SETTING: full.where(~is_dense(trials), shared), SHARED: shared})


def is_dense(trials: pd.DataFrame) -> pd.Series:
    return trials["method"] == DENSE_METHOD


def without_dense(results: Results) -> pd.DataFrame:
    """The trials minus the dense reference (the methods that compete)."""
    return results.trials.loc[~is_dense(results.trials)]


def dense_per_seed(results: Results) -> pd.DataFrame:
    """{dataset, model, max_epochs, shared setting, seed, dense_acc, n_dense, source}: the reference
    per dense context.

    From completed dense trials (``source`` = "dense_trials"); contexts with no dense trial but
    whose trials carry ``dense_test_acc`` take that column's mean (``source`` = "trial_rows").
    """
    trials = with_setting(results.trials)
    done = trials.loc[is_dense(trials) & (trials["status"] == STATUS_COMPLETED) & trials["test_acc"].notna()]
    own = (
        done.groupby(DENSE_KEYS, observed=True)["test_acc"]
        .agg(["mean", "size"])
        .reset_index()
        .rename(columns={"mean": "dense_acc", "size": "n_dense"})
        .assign(source="dense_trials")
    )
    if DENSE_COLUMN in trials.columns:
        rows = trials.loc[trials[DENSE_COLUMN].notna() & ~is_dense(trials)]
        column = (
            rows.groupby(DENSE_KEYS, observed=True)[DENSE_COLUMN]
            .mean()
            .reset_index()
            .rename(columns={DENSE_COLUMN: "dense_acc"})
            .assign(n_dense=0, source="trial_rows")
        )
        if not own.empty:
            known = column[DENSE_KEYS].merge(own[DENSE_KEYS], how="left", indicator=True)["_merge"] == "both"
            column = column.loc[~known.to_numpy()]
        own = pd.concat([own, column], ignore_index=True) if not column.empty else own
    return own[DENSE_KEYS + ["dense_acc", "n_dense", "source"]].reset_index(drop=True)


def dense_reference(results: Results, *, n_boot: int = N_BOOT, seed: int = SEED) -> pd.DataFrame:
    """Per dataset x model x budget x setting: the dense accuracy over seeds, or a note that there
    is none.

    {dataset, model, max_epochs, setting, n, mean, ci_low, ci_high, n_trials, source, note}; n = seeds,
    ci = Student-t 95% interval over them (``seed_mean_ci``; ``n_boot`` and ``seed`` unused).
    """
    per_seed = dense_per_seed(results)
    contexts = with_setting(results.trials)[BUDGET_KEYS].drop_duplicates()
    table = seed_mean_ci(per_seed, BUDGET_KEYS, "dense_acc")
    extra = (
        per_seed.groupby(BUDGET_KEYS, observed=True)
        .agg(n_trials=("n_dense", "sum"), source=("source", lambda s: "+".join(sorted(set(s)))))
        .reset_index()
    )
    table = contexts.merge(table.merge(extra, on=BUDGET_KEYS), on=BUDGET_KEYS, how="left")
    table["n"] = table["n"].fillna(0).astype("int64")
    table["n_trials"] = table["n_trials"].fillna(0).astype("int64")
    table["note"] = np.select([table["n"] == 0, table["n"] < MIN_RUNS_CI], [NO_DENSE, "too_few_runs"], "")
    columns = BUDGET_KEYS + ["n", "mean", "ci_low", "ci_high", "n_trials", "source", "note"]
    table = table[columns].sort_values(BUDGET_KEYS).reset_index(drop=True)
    return table.rename(columns={SHARED: SETTING})


def missing_reference_note(reference: pd.DataFrame) -> str:
    """A sentence naming the contexts without a dense trial (empty when every context has one)."""
    missing = reference.loc[reference["n"] == 0]
    if missing.empty:
        return ""
    names = ", ".join(
        f"{r.dataset}/{r.model}/{r.max_epochs} ep" + (f" ({r.setting})" if r.setting else "")
        for r in missing.head(5).itertuples()
    )
    more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
    return (
        f"no completed dense (unpruned) trial for {names}{more}: gaps to dense are null there; "
        "add method dense (sparsity 0) to the sweep to get them"
    )


def final_gaps(results: Results) -> pd.DataFrame:
    """Gaps to dense of final accuracies: one row per completed trial with a test accuracy.

    {tix, seed, dataset, model, max_epochs, setting, method, allocation, control, sparsity, acc,
    dense_acc, gap}: ``acc`` is the trial's final test accuracy, ``dense_acc`` the final accuracy
    of its dense reference by seed (the trial's own ``dense_test_acc``, else ``dense_per_seed``),
    null where none exists. These are the trials and the epoch a descriptive table's mean rests on,
    so its gap is its accuracy's gap: under ASHA both describe the trials that ran the budget (the
    table counts the stopped ones beside them), and comparisons that count stopped trials too are
    the verdict sections' (``paitune.analysis.common``).
    """
    trials = with_setting(results.trials)
    done = trials.loc[pair_completed(results) & trials["test_acc"].notna().to_numpy()]  # completed_trials' rows
    keys = ["dataset", "model", "max_epochs", SETTING, "method", "allocation", "control", "sparsity"]
    rows = done[["tix", "seed", *keys, SHARED, "test_acc"]].rename(columns={"test_acc": "acc"}).reset_index(drop=True)
    reference = dense_per_seed(results)[DENSE_KEYS + ["dense_acc"]]
    dense_acc = rows[DENSE_KEYS].merge(reference, on=DENSE_KEYS, how="left")["dense_acc"].to_numpy(np.float64)
    if DENSE_COLUMN in done.columns:
        own = done[DENSE_COLUMN].to_numpy(dtype=np.float64)
        dense_acc = np.where(np.isfinite(own), own, dense_acc)
    out = rows.drop(columns=[SHARED]).assign(dense_acc=dense_acc)
    out["gap"] = out["acc"] - out["dense_acc"]
    return out[["tix", "seed", *keys, "acc", "dense_acc", "gap"]]
