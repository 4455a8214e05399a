"""Like with like: each trial's context, the epoch every trial of a context reached, and each
trial's accuracy there.

A *context* is what a PaI question is asked in: dataset x model x sparsity x training budget
(``paitune.spaces.context``); the seed is never part of it. The trials table's ``context`` column
is used when the sweep wrote it; otherwise (older results, or sparsity binned from a continuous
sampler) it is derived with ``context_id`` from dataset, model, sparsity and the budget
(``epochs``, else ``max_epochs``).

Stopped trials are data. Within a context, the *common epoch* is the last epoch that every trial
of the context reached (failed trials aside: an error is not a verdict on a choice; the dense
reference, sparsity 0, is its own context). Every comparison between trials of a context uses
their accuracy at that epoch, read from the epochs table, so an ASHA-stopped trial counts with
what it showed when it was stopped instead of vanishing, and a survivor is never compared with
trials that were not allowed to get as far. When nothing was stopped, the common epoch is the
budget and the accuracy is the final one. A trial without epoch rows has one known point: its
reported accuracy at ``epochs_run``.

*Selection on validation, reporting on test, cross-fitted*: where a choice was run with several
configs in a context (e.g. learning rates), each seed's config is the one with the best mean
validation accuracy over the OTHER seeds (``selected``), judged at the deepest epoch of its cell
(the budget when nothing was stopped; ``_select``), and that config's test accuracy in the seed is
what the comparisons use.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from paitune.analysis.load import Results
from paitune.results.schema import STATUS_COMPLETED
from paitune.spaces.context import CONTEXT_COLUMN, DEFAULT_CONTEXT_KEYS, context_id

DENSE_METHOD = "dense"
STATUS_FAILED = "failed"
# Trials-table columns that are never a choice's hyperparameter (config identity for selection).
NOT_HYPERPARAMETERS = frozenset(
    {
        CONTEXT_COLUMN,
        "epochs",
        "seed",
        "dense_test_acc",
        "sparsity_raw",
        "method",
        "allocation",
        "control",
        "dataset",
        "model",
        "sparsity",
        "max_epochs",
    }
)

_CACHE: dict[int, tuple[Results, pd.DataFrame, dict]] = {}


def _budget(trials: pd.DataFrame) -> pd.Series:
    if "epochs" in trials.columns and pd.api.types.is_numeric_dtype(trials["epochs"]):
        return trials["epochs"].fillna(trials["max_epochs"])
    return trials["max_epochs"]


def context_of(trials: pd.DataFrame) -> pd.Series:
    """Each trial's context id (string): the sweep's ``context`` column, else derived."""
    derived_needed = CONTEXT_COLUMN not in trials.columns or "sparsity_raw" in trials.columns
    if not derived_needed:
        column = trials[CONTEXT_COLUMN]
        if column.notna().all():
            return column.astype(str)
    parts = pd.DataFrame(
        {
            "dataset": trials["dataset"],
            "model": trials["model"],
            "sparsity": trials["sparsity"].astype(np.float64),
            "epochs": _budget(trials),
        }
    )
    codes, uniques = pd.MultiIndex.from_frame(parts).factorize()
    names = np.array(
        [context_id(dict(zip(DEFAULT_CONTEXT_KEYS, (d, m, float(s), _int(e))))) for d, m, s, e in uniques], dtype=object
    )
    derived = pd.Series(names[codes], index=trials.index)
    if not derived_needed:
        derived = trials[CONTEXT_COLUMN].where(trials[CONTEXT_COLUMN].notna(), derived)
    return derived.astype(str)


def _int(value):
    try:
        return int(value) if float(value).is_integer() else value
    except (TypeError, ValueError):
        return value


def hyperparameter_columns(results: Results) -> list[str]:
    """Config columns that tell two configs of one choice apart (lr, iterations, ...)."""
    return [c for c in results.extra_config_columns if c not in NOT_HYPERPARAMETERS]


def _lookup(epochs: pd.DataFrame, tix: np.ndarray, epoch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(val_acc, test_acc) of each (tix, epoch) pair from the epochs table; NaN where absent."""
    val = np.full(len(tix), np.nan)
    test = np.full(len(tix), np.nan)
    if epochs.empty or len(tix) == 0:
        return val, test
    span = int(max(epochs["epoch"].max(), np.nanmax(epoch) if len(epoch) else 0)) + 2
    keys = epochs["tix"].to_numpy(np.int64) * span + epochs["epoch"].to_numpy(np.int64)
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    wanted = tix.astype(np.int64) * span + np.nan_to_num(epoch, nan=-1).astype(np.int64)
    pos = np.searchsorted(sorted_keys, wanted)
    pos = np.minimum(pos, len(sorted_keys) - 1)
    hit = sorted_keys[pos] == wanted
    rows = order[pos[hit]]
    ev = epochs["val_acc"].to_numpy(np.float64) if "val_acc" in epochs.columns else np.full(len(epochs), np.nan)
    et = epochs["test_acc"].to_numpy(np.float64) if "test_acc" in epochs.columns else np.full(len(epochs), np.nan)
    val[hit] = ev[rows]
    test[hit] = et[rows]
    return val, test


_REACHED: dict[int, tuple] = {}


def _reached(results: Results) -> tuple[np.ndarray, np.ndarray]:
    """(epochs reached, has epoch rows) per trial (indexed by tix)."""
    cached = _REACHED.get(id(results))
    if cached is not None and cached[0] is results:
        return cached[1], cached[2]
    reached, has_rows = _compute_reached(results)
    _REACHED.clear()
    _REACHED[id(results)] = (results, reached, has_rows)
    return reached, has_rows


def _compute_reached(results: Results) -> tuple[np.ndarray, np.ndarray]:
    trials = results.trials
    n = len(trials)
    reached = np.zeros(n, dtype=np.float64)
    has_rows = np.zeros(n, dtype=bool)
    epochs = results.epochs
    if not epochs.empty and "epoch" in epochs.columns:
        tix = epochs["tix"].to_numpy(np.int64)
        ok = (
            np.isfinite(epochs["test_acc"].to_numpy(np.float64))
            if "test_acc" in epochs.columns
            else np.ones(len(tix), bool)
        )
        ep = epochs["epoch"].to_numpy(np.float64)
        np.maximum.at(reached, tix[ok], ep[ok])
        has_rows[tix[ok]] = True
    fallback = ~has_rows & trials["test_acc"].notna().to_numpy()
    if "epochs_run" in trials.columns:
        run = trials["epochs_run"].to_numpy(np.float64)
    else:
        run = np.full(n, np.nan)
    completed = (trials["status"] == "completed").to_numpy()
    run = np.where(
        np.isfinite(run) & (run > 0), run, np.where(completed, trials["max_epochs"].to_numpy(np.float64), np.nan)
    )
    reached[fallback] = np.nan_to_num(run[fallback], nan=0.0)
    return reached, has_rows


def scored_trials(results: Results) -> pd.DataFrame:
    """One row per trial that has an accuracy at its context's common epoch.

    Columns: tix, context, dataset, model, sparsity, max_epochs, seed, method, allocation,
    control, status, completed, reached, common_epoch, val, acc (val / test accuracy at the
    common epoch), config (integer id of the hyperparameter values), selected (the config picked
    by validation accuracy for its context x method x allocation x control).
    ``scoring_meta(results)`` holds the accounting: ``n_failed`` (failed trials left out),
    ``n_without_accuracy`` (trials with no accuracy at the common epoch), ``contexts`` (a table
    per context: common_epoch, budget, n_trials, n_completed).
    """
    return _scored(results)[0]


def scoring_meta(results: Results) -> dict:
    """{n_failed, n_without_accuracy, contexts}: what ``scored_trials`` left out, and per context
    its common epoch and completion counts."""
    return _scored(results)[1]


def _scored(results: Results) -> tuple[pd.DataFrame, dict]:
    key = id(results)
    cached = _CACHE.get(key)
    if cached is not None and cached[0] is results:
        return cached[1], cached[2]
    trials = results.trials
    reached, has_rows = _reached(results)
    frame = pd.DataFrame(
        {
            "tix": trials["tix"].to_numpy(np.int64),
            "context": context_of(trials).to_numpy(),
            "dataset": trials["dataset"].to_numpy(),
            "model": trials["model"].to_numpy(),
            "sparsity": trials["sparsity"].to_numpy(np.float64),
            "max_epochs": trials["max_epochs"].to_numpy(),
            "seed": trials["seed"].to_numpy(),
            "method": trials["method"].to_numpy(),
            "allocation": trials["allocation"].to_numpy(),
            "control": trials["control"].to_numpy(),
            "status": trials["status"].to_numpy(),
            "reached": reached,
        }
    )
    frame["completed"] = (frame["status"] == "completed") & (frame["reached"] >= frame["max_epochs"].astype(np.float64))
    failed = (frame["status"] == STATUS_FAILED).to_numpy()
    usable = ~failed & (reached > 0)
    common = frame.loc[usable].groupby("context", sort=False)["reached"].min()
    frame["common_epoch"] = frame["context"].map(common).to_numpy(np.float64)
    val, acc = _lookup(results.epochs, frame["tix"].to_numpy(), frame["common_epoch"].to_numpy())
    # Trials without epoch rows: their reported accuracy counts at the epoch they reported it.
    own = ~has_rows & (reached == frame["common_epoch"].to_numpy())
    trial_val = trials["val_acc"].to_numpy(np.float64) if "val_acc" in trials.columns else np.full(len(trials), np.nan)
    val[own] = trial_val[own]
    acc[own] = trials["test_acc"].to_numpy(np.float64)[own]
    frame["val"] = val
    frame["acc"] = acc
    contexts = frame.assign(_stopped=(frame["status"] == "stopped").to_numpy())
    contexts = (
        contexts.loc[(frame["method"] != DENSE_METHOD).to_numpy()]
        .groupby("context", sort=True)
        .agg(
            dataset=("dataset", "first"),
            model=("model", "first"),
            sparsity=("sparsity", "first"),
            max_epochs=("max_epochs", "first"),
            common_epoch=("common_epoch", "first"),
            n_trials=("tix", "size"),
            n_completed=("completed", "sum"),
            n_stopped=("_stopped", "sum"),
        )
        .reset_index()
    )
    contexts["completion_rate"] = contexts["n_completed"] / contexts["n_trials"]
    n_failed = int(failed.sum())
    kept = usable & np.isfinite(acc)
    n_without = int((~failed & ~kept).sum())
    frame = frame.loc[kept].copy()
    hyper = hyperparameter_columns(results)
    if hyper:
        config = trials.iloc[frame["tix"].to_numpy()][hyper]
        frame["config"] = config.groupby(hyper, dropna=False, sort=False).ngroup().to_numpy()
    else:
        frame["config"] = 0
    frame["selected"] = _select(results, frame)
    frame = frame.reset_index(drop=True)
    meta = {"n_failed": n_failed, "n_without_accuracy": n_without, "contexts": contexts}
    _CACHE.clear()  # one Results at a time: the analysis of a table, not a growing store
    _CACHE[key] = (results, frame, meta)
    return frame, meta


MIN_DEEP = 2  # trials of a config at the cell's deepest epoch for it to be judged there


def _select(results: Results, frame: pd.DataFrame) -> np.ndarray:
    """Per (context, method, allocation, control): the config to compare, by validation accuracy.
    Configs are judged where the cell ran deepest: at the last epoch any of its trials reached,
    each config with at least MIN_DEEP trials there by their mean validation accuracy there (the
    budget, when nothing was stopped). Under ASHA the context's common epoch is its first rung,
    where a config that learns fastest leads though it may end worse; and requiring every trial
    of a config at the deepest epoch would drop the better config for one seed ASHA stopped,
    leaving the pick a coin flip shared by every seed of the cell. A cell where no config has
    MIN_DEEP trials at that epoch is judged at the last epoch every trial of some config
    reached."""
    cell = ["context", "method", "allocation", "control"]
    if frame.empty:
        return np.zeros(0, dtype=bool)
    keys = cell + ["config"]
    groups = [frame[c] for c in cell]
    deepest = frame.groupby(groups, dropna=False, observed=True, sort=False)["reached"].transform("max")
    at_deepest = (frame["reached"] >= deepest).to_numpy()
    chosen = _best_config(results, frame, keys, at_deepest, deepest.to_numpy(np.float64), MIN_DEEP)
    has = pd.Series(chosen).groupby([frame[c].to_numpy() for c in cell], dropna=False).transform("any").to_numpy()
    if has.all():
        return chosen
    # Cells without such a config: the configs whose every trial reached the deepest epoch any
    # config reached in full.
    depth = frame.groupby(keys, dropna=False, observed=True, sort=False)["reached"].transform("min")
    full_depth = depth.groupby(groups, dropna=False, observed=True, sort=False).transform("max")
    fallback = _best_config(results, frame, keys, (depth == full_depth).to_numpy(), full_depth.to_numpy(np.float64), 1)
    return np.where(has, chosen, fallback)


def _best_config(
    results: Results, frame: pd.DataFrame, keys: list[str], candidate: np.ndarray, epoch: np.ndarray, min_trials: int
) -> np.ndarray:
    """Per cell (``keys`` less ``config``) and seed, the trials of the config with the best mean
    validation accuracy at ``epoch`` over the cell's ``candidate`` trials of the OTHER seeds, among
    configs with ``min_trials`` of them (cross-fitting).

    A seed's own validation accuracy never picks the config its test accuracy is read from: a
    trial's validation and test accuracy share its training noise, so a choice run with more
    configs would otherwise gain a lead that is the same in every seed (the winner's curse), and
    a test over seeds would read it as an effect. Only with one seed (nothing else to pick with) is
    a seed's config picked on that seed.
    """
    cell = keys[:-1]
    score = np.full(len(frame), np.nan)
    val, acc = accuracy_at(results, frame["tix"].to_numpy()[candidate], epoch[candidate])
    score[candidate] = np.where(np.isfinite(val), val, acc)
    scored = frame[[*keys, "seed"]].assign(_score=score, _n=np.isfinite(score).astype(np.int64))
    scored["_score"] = scored["_score"].fillna(0.0)
    by_config = scored.groupby(keys, dropna=False, observed=True, sort=False)[["_score", "_n"]].sum()
    by_seed = scored.groupby([*keys, "seed"], dropna=False, observed=True, sort=False)[["_score", "_n"]].sum()
    # Every (cell, seed) against every config of its cell: the config's totals less that seed's.
    seeds = frame[[*cell, "seed"]].drop_duplicates()
    pairs = seeds.merge(by_config.reset_index(), on=cell, how="inner")
    pairs = pairs.merge(
        by_seed.reset_index().rename(columns={"_score": "_own_score", "_n": "_own_n"}), on=[*keys, "seed"], how="left"
    )
    own_score, own_n = pairs["_own_score"].fillna(0.0), pairs["_own_n"].fillna(0).astype(np.int64)
    others = pairs["_n"] - own_n
    per_seed = pairs.groupby([*cell, "seed"], dropna=False, observed=True, sort=False)
    # No other seed has a candidate in the cell: pick on the seed's own trials.
    lone = per_seed["_n"].transform("sum").eq(per_seed["_own_n"].transform("sum"))
    n = np.where(lone, pairs["_n"], others)
    total = np.where(lone, pairs["_score"], pairs["_score"] - own_score)
    pairs = pairs.assign(_count=n, _mean=np.where(n > 0, total / np.maximum(n, 1), np.nan))
    pairs = pairs.loc[(pairs["_count"] >= min_trials) & pairs["_mean"].notna()]
    if pairs.empty:
        return np.zeros(len(frame), dtype=bool)
    best = pairs.loc[pairs.groupby([*cell, "seed"], dropna=False, observed=True, sort=False)["_mean"].idxmax()]
    picked = frame[[*keys, "seed"]].merge(best[[*keys, "seed"]].assign(_pick=True), on=[*keys, "seed"], how="left")
    return picked["_pick"].eq(True).to_numpy()


def context_table(results: Results) -> pd.DataFrame:
    """Per context: {context, dataset, model, sparsity, max_epochs, common_epoch, n_trials,
    n_completed, n_stopped, completion_rate} (the dense reference left out)."""
    return scoring_meta(results)["contexts"]


def reached_epochs(results: Results) -> np.ndarray:
    """Epochs each trial reached (indexed by tix): the last epoch with an accuracy in the epochs
    table, else ``epochs_run`` (else the budget for a completed trial); 0 when unknown."""
    return _reached(results)[0]


def points_text(value: float) -> str:
    """An accuracy difference (a fraction) as a sentence quotes it: "+4.2 points" (never "-0.0")."""
    shown = round(100 * value, 1) + 0.0  # + 0.0: no "-0.0"
    return f"{shown:+.1f} points"


def p_text(value: float, digits: int = 3) -> str:
    """A p-value as a sentence quotes it: "p < 0.001" or "p = 0.0123" (``digits`` significant)."""
    return "p < 0.001" if value < 0.001 else f"p = {value:.{digits}g}"


def at_last_shared_epoch(
    results: Results, tix_a: np.ndarray, reached_a: np.ndarray, tix_b: np.ndarray, reached_b: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(epoch, test_acc of a, test_acc of b) for pairs of trials compared two at a time: each pair
    at the last epoch *both* reached, min(reached_a, reached_b), so an ASHA-stopped trial meets
    its rival where it was stopped and two trials that ran the budget meet at its end."""
    epoch = np.minimum(reached_a, reached_b)
    _, acc_a = accuracy_at(results, tix_a, epoch)
    _, acc_b = accuracy_at(results, tix_b, epoch)
    return epoch, acc_a, acc_b


def at_budget(epoch: np.ndarray, max_epochs: np.ndarray) -> np.ndarray:
    """Whether a pair compared at ``epoch`` (the last epoch both reached) was compared at the
    budget: both trials ran it. A pair compared earlier shows only where the two stood at a rung
    (ASHA stopped one, or one diverged); a claim about the budget needs the pairs that ran it."""
    return np.asarray(epoch, dtype=np.float64) >= np.asarray(max_epochs, dtype=np.float64)


def accuracy_at(results: Results, tix: np.ndarray, epoch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(val_acc, test_acc) of trials ``tix`` at ``epoch`` (arrays of equal length): from the
    epochs table, else the trial's reported accuracy when ``epoch`` is the epoch it reached."""
    tix = np.asarray(tix, dtype=np.int64)
    epoch = np.asarray(epoch, dtype=np.float64)
    val, test = _lookup(results.epochs, tix, epoch)
    reached, has_rows = _reached(results)
    own = ~has_rows[tix] & (reached[tix] == epoch)
    trials = results.trials
    if "val_acc" in trials.columns:
        val[own] = trials["val_acc"].to_numpy(np.float64)[tix[own]]
    test[own] = trials["test_acc"].to_numpy(np.float64)[tix[own]]
    return val, test


# A control trial's unmodified partner: same context, choices (but the control), seed and searched
# hyperparameters ("config", one group number), as the searcher pairs them.
PARTNER_KEYS = ["context", "method", "allocation", "seed", "config"]
# What an effect claimed across contexts must be shown in, each on its own: a claim that transfers
# across datasets and models, not an average that a gain in one and none (or a loss) in another
# make.
TRANSFER_GROUP = ["dataset", "model"]


def partner_frame(results: Results) -> pd.DataFrame:
    """{tix, control, *PARTNER_KEYS} of every trial, in the trials table's order."""
    trials = results.trials
    frame = pd.DataFrame(
        {
            "tix": trials["tix"].to_numpy(np.int64),
            "context": context_of(trials).to_numpy(),
            "method": trials["method"].to_numpy(),
            "allocation": trials["allocation"].to_numpy(),
            "control": trials["control"].to_numpy(),
            "seed": trials["seed"].to_numpy(),
        }
    )
    hyper = hyperparameter_columns(results)
    frame["config"] = trials[hyper].groupby(hyper, dropna=False, sort=False).ngroup().to_numpy() if hyper else 0
    return frame


def pair_completed(results: Results) -> np.ndarray:
    """Per trial (the trials table's order): whether it and, for a control arm, its unmodified
    partner ran the whole budget. ASHA stops an arm at its first report at or after its partner's
    stop, so an arm that was ahead may run the budget while its pair ended at the partner's epoch:
    counted as completed, it would stand in a control row beside a none row without its partner.
    An arm whose partner is not in the tables keeps its own status."""
    frame = partner_frame(results).assign(done=(results.trials["status"] == STATUS_COMPLETED).to_numpy())
    base = frame.loc[frame["control"] == "none", [*PARTNER_KEYS, "done"]].drop_duplicates(PARTNER_KEYS)
    partner = frame[PARTNER_KEYS].merge(base, on=PARTNER_KEYS, how="left")["done"]
    arm = (frame["control"] != "none").to_numpy()
    partner_done = partner.fillna(True).to_numpy(bool)
    return frame["done"].to_numpy(bool) & (~arm | partner_done)
