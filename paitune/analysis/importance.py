"""Hyperparameter importance for accuracy within context, with Optuna's evaluators.

The question is which *choices* matter once the context is fixed, so the context variables
(dataset, model, sparsity, training budget, the context id) are never parameters: "lower sparsity
trains better" is not a finding. Neither are the controls (sanity arms, not choices) or the seed
(a replicate). Trials: control ``none``, the dense reference left out, every trial with an
accuracy at its context's common epoch (``paitune.analysis.common``: stopped trials count). The
objective is that accuracy *minus its context's mean* (a within-context target), so differences
between contexts cannot pose as a parameter's importance.

They become an in-memory Optuna study (``optuna.create_trial`` + ``study.add_trials``): each
remaining config value is a parameter with a distribution inferred from the column (categorical
for strings and booleans, int or float ranges otherwise; log scale for a positive float spanning
two decades or more). fANOVA (``FanovaImportanceEvaluator``, a random forest of 32 trees, fixed
seed) and PED-ANOVA (``PedAnovaImportanceEvaluator``, top 10% vs all) give each parameter's
share. Parameters are the keys of the trials' resolved config (``config_json``) that are columns
of the trials table, minus the above and minus constants; Optuna scores only parameters every
trial has, so conditional ones (e.g. ``iterations``) drop out. At most MAX_TRIALS trials are used
(a fixed-seed random sample).
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd

from paitune.analysis.common import DENSE_METHOD, scored_trials
from paitune.analysis.load import Results
from paitune.analysis.stats import MIN_RUNS_CORRELATION, SEED
from paitune.spaces.context import CONTEXT_COLUMN

MAX_TRIALS = 1000
_FALLBACK_PARAMS = ("method", "allocation")
# Never a parameter: the context (what a question is asked in), the seed, the controls.
EXCLUDED = frozenset(
    {
        "seed",
        "control",
        "dataset",
        "model",
        "sparsity",
        "sparsity_raw",
        "epochs",
        "max_epochs",
        CONTEXT_COLUMN,
        "dense_test_acc",
    }
)


def _config_keys(trials: pd.DataFrame) -> list[str]:
    keys: set[str] = set()
    if "config_json" in trials.columns:
        for text in trials["config_json"].dropna().head(200):  # a sample: keys repeat
            try:
                loaded = json.loads(text)
            except ValueError:
                continue
            if isinstance(loaded, dict):
                keys.update(loaded)
    if not keys:
        keys = set(_FALLBACK_PARAMS)
    return [k for k in sorted(keys) if k in trials.columns and k not in EXCLUDED]


def _distribution(column: pd.Series):
    import optuna.distributions as od

    values = column.dropna()
    if pd.api.types.is_bool_dtype(values) or not pd.api.types.is_numeric_dtype(values):
        return od.CategoricalDistribution(sorted({str(v) if not isinstance(v, bool) else v for v in values}, key=str))
    low, high = values.min(), values.max()
    if pd.api.types.is_integer_dtype(values):
        return od.IntDistribution(int(low), int(high))
    log = bool(low > 0 and high / low >= 100)
    return od.FloatDistribution(float(low), float(high), log=log)


def _python(value, distribution):
    import optuna.distributions as od

    if isinstance(distribution, od.CategoricalDistribution):
        return value if isinstance(value, bool) else str(value)
    if isinstance(distribution, od.IntDistribution):
        return int(value)
    return float(value)


def build_study(results: Results, *, max_trials: int = MAX_TRIALS, seed: int = SEED):
    """An in-memory Optuna study (objective: accuracy at the common epoch minus its context's mean, maximized)."""
    import optuna

    scored = scored_trials(results)
    rows = scored.loc[(scored["control"] == "none") & (scored["method"] != DENSE_METHOD)]
    target = rows["acc"] - rows.groupby("context")["acc"].transform("mean")
    done = results.trials.iloc[rows["tix"].to_numpy()].assign(_target=target.to_numpy())
    if len(done) > max_trials:
        done = done.sample(n=max_trials, random_state=seed)
    params = [k for k in _config_keys(done) if done[k].nunique(dropna=True) > 1]
    distributions = {p: _distribution(done[p]) for p in params}
    study = optuna.create_study(direction="maximize")
    frozen = []
    records = done[params + ["_target"]].to_dict("records")
    for record in records:  # Optuna's API takes one trial at a time; capped at max_trials
        values = {
            p: _python(record[p], distributions[p])
            for p in params
            if record[p] is not None and not (isinstance(record[p], float) and np.isnan(record[p]))
        }
        frozen.append(
            optuna.trial.create_trial(
                params=values, distributions={p: distributions[p] for p in values}, value=float(record["_target"])
            )
        )
    study.add_trials(frozen)
    return study


def hyperparameter_importance(results: Results, *, max_trials: int = MAX_TRIALS, seed: int = SEED) -> pd.DataFrame:
    """{param, importance, evaluator, n}: fANOVA and PED-ANOVA shares of each choice parameter."""
    import optuna

    columns = ["param", "importance", "evaluator", "n"]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = build_study(results, max_trials=max_trials, seed=seed)
    n = len(study.trials)
    if n < MIN_RUNS_CORRELATION or not study.trials[0].params:
        return pd.DataFrame(columns=columns)
    evaluators = {
        "fanova": optuna.importance.FanovaImportanceEvaluator(n_trees=32, seed=seed),
        "ped_anova": optuna.importance.PedAnovaImportanceEvaluator(),
    }
    rows = []
    for name, evaluator in evaluators.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # experimental-feature notices
                shares = optuna.importance.get_param_importances(study, evaluator=evaluator, normalize=True)
        except (ValueError, RuntimeError):
            # E.g. no parameter common to all trials, or PED-ANOVA's top quantile too small:
            # that evaluator has nothing to say, the other may.
            continue
        rows.extend({"param": p, "importance": float(v), "evaluator": name, "n": n} for p, v in shares.items())
    return pd.DataFrame(rows, columns=columns)
