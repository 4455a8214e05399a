"""The unit of replication behind two verdicts: a proxy "adds information beyond size"
(``paitune.analysis.proxies``) and "the allocation / the method matters more"
(``paitune.analysis.answer``).

Every context holds the same methods and allocations, with several seeds of each, so neither the
trials of a context nor the contexts are independent of each other; and a seed's leave-one-out
value depends on every other seed. Planted tables without an effect must give a false verdict
about as often as the nominal 5% (counted over repeated draws), and planted effects must still be
found. Most draws go through the tests' own functions on small synthetic frames (cheap); a few go
through ``proxy_correlations`` / ``allocation_vs_method`` on planted results tables.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from planted import PlantedSpec, planted_results

from paitune.analysis import proxy_correlations
from paitune.analysis.answer import allocation_vs_method, cross_validated_spread, split_sample_test
from paitune.analysis.load import Results
from paitune.analysis.proxies import config_permutation_tests
from paitune.analysis.stats import fisher_z_combine, grouped_partial_spearman, t_test_p

N_BOOT = 50
N_PERM = 999  # enough to place p around 0.05; the analysis uses more


# ---- proxies: the config is the unit ------------------------------------------------------------


def _proxy_long(rng, *, methods=4, allocations=2, contexts=4, seeds=3, acc_sd=0.02, own=1.0, link=0.0, proxy_noise=0.3):
    """The long frame ``config_permutation_tests`` reads: one row per trial. Accuracy = the
    context's base + a per-method offset a_m ~ N(0, acc_sd) + trial noise (0.01). The proxy =
    a per-method value b_m ~ N(0, ``own``), drawn independently of a_m, + ``link`` * a_m / acc_sd
    + trial noise: worthless in expectation when ``link`` is 0. Size: parameter count fixed by the
    context, FLOPs depending on the allocation too."""
    m, a, c, s = np.meshgrid(
        np.arange(methods), np.arange(allocations), np.arange(contexts), np.arange(seeds), indexing="ij"
    )
    m, a, c, s = m.ravel(), a.ravel(), c.ravel(), s.ravel()
    offset, value = rng.normal(0, acc_sd, methods), rng.normal(0, own, methods)
    acc = 0.9 - 0.05 * c + offset[m] + rng.normal(0, 0.01, len(m))
    proxy = value[m] + link * offset[m] / acc_sd + rng.normal(0, proxy_noise, len(m))
    params = 1000.0 * 0.5 ** (c + 1)
    return pd.DataFrame(
        {
            "context": np.char.add("ctx", c.astype(str)),
            "method": np.char.add("m", m.astype(str)),
            "allocation": np.char.add("alloc", a.astype(str)),
            "hyper": 0,
            "seed": s,
            "tix": np.arange(len(m)),
            "test_acc": acc,
            "params_kept": params,
            "flops_sparse": params * (1 + 0.1 * a),
            "proxy": "clustered",
            "kind": "proxy",
            "value": proxy,
        }
    )


def _old_verdict(long) -> bool:
    """The verdict of a t-interval over contexts of per-context partial Spearmans, every trial a
    unit: what the audit found false in two thirds of these tables."""
    per = grouped_partial_spearman(long, ["context"], "value", "test_acc", ["params_kept", "flops_sparse"], n_boot=1)
    _, low, high, _ = fisher_z_combine(per["partial"].to_numpy(), per["n"].to_numpy())
    return bool(low > 0 or high < 0)


def test_worthless_proxy_clustered_by_method_rarely_adds_beyond_size():
    rng = np.random.default_rng(11)
    draws, false, old = 200, 0, 0
    for _ in range(draws):
        long = _proxy_long(rng)
        row = config_permutation_tests(long, n_resamples=N_PERM).iloc[0]
        assert row["n_configs"] == 8
        false += bool(row["within_partial_p"] < 0.05)
        old += _old_verdict(long)
    assert old / draws > 0.3  # the generator has the problem: trials and contexts as units
    assert false / draws <= 0.08  # the permutation test over configs: near the nominal 5%


def test_missing_trials_and_shared_seed_effects_keep_the_rate_near_nominal():
    # A seed shifts the proxy of all its trials and, independently, their accuracy; a tenth of
    # the trials failed, so configs are matched by position where a seed is missing.
    rng = np.random.default_rng(15)
    draws, false = 150, 0
    for _ in range(draws):
        long = _proxy_long(rng, seeds=4)
        long["value"] += rng.normal(0, 0.5, 4)[long["seed"]]
        long["test_acc"] += rng.normal(0, 0.01, 4)[long["seed"]]
        row = config_permutation_tests(long.loc[rng.random(len(long)) >= 0.1], n_resamples=N_PERM).iloc[0]
        false += bool(row["within_partial_p"] < 0.05)
    assert false / draws <= 0.1


def test_proxy_tracking_the_method_effect_is_found():
    rng = np.random.default_rng(12)
    found = 0
    for _ in range(20):
        long = _proxy_long(rng, methods=6, own=0.0, link=1.0, proxy_noise=0.3)
        row = config_permutation_tests(long, n_resamples=N_PERM)
        found += bool(row.iloc[0]["within_partial_p"] < 0.05)
    assert found >= 18


def test_permutation_statistic_is_the_mean_within_context_partial_spearman():
    long = _proxy_long(np.random.default_rng(13), link=0.5)
    row = config_permutation_tests(long, n_resamples=N_PERM).iloc[0]
    per = grouped_partial_spearman(long, ["context"], "value", "test_acc", ["params_kept", "flops_sparse"], n_boot=1)
    assert row["within_partial_stat"] == pytest.approx(per["partial"].mean())
    assert row["n_contexts_tested"] == 4


def test_a_missing_cell_leaves_a_complete_block():
    long = _proxy_long(np.random.default_rng(14), methods=5, own=0.0, link=1.0)
    ctx0 = long["context"] == "ctx0"
    gone = ctx0 & (
        ((long["method"] == "m0") & (long["allocation"] == "alloc1"))
        | ((long["method"] == "m1") & (long["allocation"] == "alloc0"))
    )
    row = config_permutation_tests(long.loc[~gone], n_resamples=N_PERM).iloc[0]
    # The greedy block drops the least complete line (context 0: 2 of its 10 cells missing,
    # methods 0 and 1: 1 of 8 each); what is left is complete.
    assert row["n_configs"] == 10 and row["n_contexts_tested"] == 3
    assert row["within_partial_p"] < 0.05


def _add_offset(results: Results, offset: np.ndarray) -> Results:
    trials, epochs = results.trials.copy(), results.epochs.copy()
    for column in ("test_acc", "val_acc", "best_val_acc"):
        trials[column] = trials[column] + offset[trials["tix"].to_numpy()]
    for column in ("test_acc", "val_acc"):
        epochs[column] = epochs[column] + offset[epochs["tix"].to_numpy()]
    return Results(trials=trials, epochs=epochs, layers=results.layers, sources=results.sources)


def _clustered_tables(i: int, rng, *, own: float = 1.0, link: float = 0.0, methods: int = 4) -> Results:
    """The audit's tables (4 methods x 2 allocations x 4 sparsities x 3 seeds): a per-method
    accuracy offset and a per-method proxy value, independent unless ``link``."""
    spec = PlantedSpec(
        methods=tuple("abcdefgh"[:methods]),
        allocations=("global", "erk"),
        sparsities=(0.5, 0.75, 0.875, 0.9375),
        seeds=3,
        noise=0.01,
        n_layers=1,
        seed=3000 + i,
    )
    results = planted_results(spec)
    method = results.trials["method"]
    offset = dict(zip(spec.methods, rng.normal(0, 0.02, methods)))
    value = dict(zip(spec.methods, rng.normal(0, own, methods)))
    results = _add_offset(results, method.map(offset).to_numpy())
    proxy = method.map(value).to_numpy() + link * method.map(offset).to_numpy() / 0.02
    results.trials["proxy_clustered"] = proxy + rng.normal(0, 0.3, len(method))
    return results


def test_planted_tables_without_information_rarely_add_beyond_size():
    rng = np.random.default_rng(1)
    false = 0
    for i in range(12):
        table = proxy_correlations(_clustered_tables(i, rng), n_boot=N_BOOT)[0].set_index("proxy")
        row = table.loc["clustered"]
        assert row["n_configs"] == 8 and "8 configs" in row["size_note"]
        false += bool(row["adds_beyond_size"])
    assert false <= 2  # 12 tables at a 5% test: 2 or fewer with probability 0.98


def test_planted_proxy_that_tracks_the_method_adds_beyond_size():
    # The information is in the method (6 of them): nothing finer to relabel.
    results = _clustered_tables(0, np.random.default_rng(2), own=0.0, link=1.0, methods=6)
    row = proxy_correlations(results, n_boot=N_BOOT)[0].set_index("proxy").loc["clustered"]
    assert row["adds_beyond_size"] == True  # noqa: E712
    assert row["within_partial_p"] < 0.05
    assert "adds information beyond size" in row["size_note"] and "12 configs" in row["size_note"]
    # The note quotes the table's described value and the test's own statistic, each by its name.
    assert f"partial Spearman {row['within_partial_spearman']:.2f} (Fisher-z mean" in row["size_note"]
    assert (
        f"its statistic (the plain mean over their seed-matched trials) {row['within_partial_stat']:.2f}"
        in row["size_note"]
    )


def test_too_few_configs_give_no_verdict():
    spec = PlantedSpec(methods=("a",), allocations=("global", "erk"), sparsities=(0.5, 0.9), seeds=4, n_layers=1)
    table = proxy_correlations(planted_results(spec), n_boot=N_BOOT)[0].set_index("proxy")
    row = table.loc["signal"]
    assert row["n_configs"] == 2 and pd.isna(row["adds_beyond_size"]) and pd.isna(row["within_partial_p"])
    assert "too few configs" in row["size_note"]
    assert pd.notna(row["within_spearman"])  # the descriptive numbers are still shown


# ---- allocation vs method: the seed is the unit, the pair is named on other seeds ---------------


def _advantages(rng, seeds, *, methods=5, allocations=3, sparsities=3, allocation_effect=0.0, method_effect=0.0):
    """Per seed and choice, the accuracy relative to the mean of all choices (what the answer
    derives from ``head_to_head`` on a complete grid): accuracy = noise (0.01) + the planted
    effect on the first allocation / method, the audit's e8 design (5 x 3 x 3)."""
    acc = rng.normal(0, 0.01, (seeds, methods, allocations, sparsities))
    acc[:, :, 0] += allocation_effect
    acc[:, 0] += method_effect

    def advantage(means):
        return means - means.mean(axis=1, keepdims=True)

    return advantage(acc.mean(axis=(1, 3))), advantage(acc.mean(axis=(2, 3)))


def _loo_t_test(allocation, method) -> bool:
    """The leave-one-seed-out spreads with a t-test over seeds, as if independent."""

    def spread(values):
        k = values.shape[1]  # each choice's difference to each other one: mean k / (k - 1) x its advantage
        h2h = pd.DataFrame(
            [
                {"seed": s, "choice": c, "opponent": o, "diff": values[s, c] * k / (k - 1)}
                for s in range(values.shape[0])
                for c in range(k)
                for o in range(k)
                if o != c
            ]
        )
        return cross_validated_spread(h2h).to_numpy()

    return t_test_p(spread(allocation) - spread(method)) < 0.05


@pytest.mark.parametrize("seeds", [3, 5, 10])
def test_allocation_vs_method_without_effects_is_near_nominal(seeds):
    rng = np.random.default_rng(20 + seeds)
    draws, false, old = 400, 0, 0
    for i in range(draws):
        allocation, method = _advantages(rng, seeds)
        false += split_sample_test(allocation, method)["p"] < 0.05
        if i < 150:
            old += _loo_t_test(allocation, method)
    assert false / draws <= 0.06
    if seeds >= 5:
        assert old / 150 > 0.08  # the leave-one-out t-test on the same tables: too many claims


@pytest.mark.parametrize("seeds", [5, 10])
@pytest.mark.parametrize("factor", ["allocation", "method"])
def test_allocation_vs_method_finds_a_three_point_effect(seeds, factor):
    rng = np.random.default_rng(40 + seeds)
    found = 0
    for _ in range(100):
        allocation, method = _advantages(rng, seeds, **{f"{factor}_effect": 0.03})
        result = split_sample_test(allocation, method)
        found += result["p"] < 0.05 and result["more"] == factor
    assert found >= 90


def _e8_tables(seeds: int, i: int, **effects) -> Results:
    spec = PlantedSpec(
        methods=("random", "m1", "m2", "m3", "m4"),
        allocations=("global", "erk", "uniform"),
        sparsities=(0.5, 0.8, 0.9),
        seeds=seeds,
        noise=0.01,
        n_layers=1,
        seed=9000 + i,
        **effects,
    )
    return planted_results(spec)


def test_planted_tables_without_effects_claim_nothing():
    verdicts = [allocation_vs_method(_e8_tables(seeds, i))[0] for seeds in (3, 5, 10) for i in range(4)]
    assert all(row["verdict"] == "inconclusive" for row in verdicts)
    assert {row["n_units"] for row in verdicts} == {3, 5, 10}
    assert "5 seeds" in verdicts[4]["sentence"] and "split" in verdicts[4]["sentence"]


@pytest.mark.parametrize("seeds", [5, 10])
def test_planted_three_point_allocation_effect_is_found(seeds):
    row = allocation_vs_method(_e8_tables(seeds, 0, allocation_effects={"erk": 0.03}))[0]
    assert row["verdict"] == "allocation" and row["n_units"] == seeds
    assert row["sentence"].startswith("The allocation matters more") and f"{seeds} seeds" in row["sentence"]


def _many_proxies_table(i: int, rng, *, worthless: int = 5, methods: int = 6) -> Results:
    """6 methods x 2 allocations x 4 sparsities x 3 seeds, a per-method accuracy offset, five
    worthless proxies (per-method values independent of it) and one that tracks it."""
    spec = PlantedSpec(
        methods=tuple("abcdefgh"[:methods]), allocations=("global", "erk"), sparsities=(0.5, 0.75, 0.875, 0.9375),
        seeds=3, noise=0.01, n_layers=1, seed=5000 + i,
    )  # fmt: skip
    results = planted_results(spec)
    method = results.trials["method"]
    offset = dict(zip(spec.methods, rng.normal(0, 0.02, methods)))
    results = _add_offset(results, method.map(offset).to_numpy())
    for k in range(worthless):
        value = dict(zip(spec.methods, rng.normal(0, 1.0, methods)))
        results.trials[f"proxy_null{k}"] = method.map(value).to_numpy() + rng.normal(0, 0.3, len(method))
    results.trials["proxy_signal"] = method.map(offset).to_numpy() / 0.02 + rng.normal(0, 0.3, len(method))
    return results


def test_a_report_of_many_proxies_holds_its_level_over_them():
    """Each proxy's `adds_beyond_size` is a claim: Holm over the proxies keeps the chance of any
    false one in a report near 5% (8 of 200 such tables; unadjusted, 44 of 200 had one), and the
    proxy that tracks the method is still found (139 of 200)."""
    rng = np.random.default_rng(21)
    draws, any_false, any_raw, found = 30, 0, 0, 0
    for i in range(draws):
        table = proxy_correlations(_many_proxies_table(i, rng), n_boot=N_BOOT)[0].set_index("proxy")
        nulls = table.loc[[name for name in table.index if name.startswith("null")]]
        assert (nulls["within_partial_p_adjusted"] >= nulls["within_partial_p"]).all()
        any_false += bool(nulls["adds_beyond_size"].fillna(False).any())
        any_raw += bool((nulls["within_partial_p"] < 0.05).any())
        found += bool(table.loc["signal", "adds_beyond_size"])
    assert any_raw >= 3  # five tests per report at 5% each: a false claim in about a fifth of them
    assert any_false <= 4  # 30 reports at a 5% family-wise level: 4 or fewer with probability 0.98
    assert found >= 15
