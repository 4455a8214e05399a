"""What the report's plots draw, checked on their data rather than their pixels: the
critical-difference bars (``plots.cd_bars``) against the head-to-head tests, the diagram's ranks
against the rankings table, and the proxies scatter against the proxies table's rows."""

from __future__ import annotations

import itertools

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from planted import PlantedSpec, planted_results
from scipy.stats import spearmanr

from paitune.analysis import analyze, plots
from paitune.analysis.common import DENSE_METHOD, scored_trials
from paitune.analysis.proxies import proxy_points
from paitune.analysis.stats import ALPHA


def _p_matrix(choices, pairs: dict[tuple[str, str], float], default: float = 0.5) -> pd.DataFrame:
    p = pd.DataFrame(default, index=choices, columns=choices, dtype=np.float64)
    for (a, b), value in pairs.items():
        p.loc[a, b] = p.loc[b, a] = value
    for c in choices:
        p.loc[c, c] = 1.0
    return p


def _maximal_runs(order: list[str], p: pd.DataFrame, alpha: float = ALPHA) -> list[list[str]]:
    """Brute force: every run of adjacent choices (two or more) with no pair below alpha, not
    inside another such run."""
    ok = [
        (i, j)
        for i, j in itertools.combinations(range(len(order)), 2)
        if not any(p.loc[a, b] < alpha for a, b in itertools.combinations(order[i : j + 1], 2))
    ]
    maximal = [(i, j) for i, j in ok if not any(a <= i and j <= b and (a, b) != (i, j) for a, b in ok)]
    return [order[i : j + 1] for i, j in sorted(maximal)]


def test_a_bar_never_passes_over_a_choice_separated_from_its_ends():
    """The reviewer's case: magnitude (3.3) and random (4.6) are not separated, but grasp (4.1),
    between them in rank, is significantly different from both. No bar may join magnitude to
    random over grasp."""
    ranks = pd.Series({"synflow": 1.0, "snip": 2.0, "magnitude": 3.3, "grasp": 4.1, "random": 4.6})
    p = _p_matrix(
        list(ranks.index),
        {
            ("magnitude", "random"): 0.3,
            ("grasp", "magnitude"): 0.001,
            ("grasp", "random"): 0.005,
            ("synflow", "snip"): 0.2,
            ("snip", "magnitude"): 0.4,
            ("synflow", "magnitude"): 0.01,
            ("synflow", "grasp"): 0.001,
            ("synflow", "random"): 0.001,
            ("snip", "grasp"): 0.001,
            ("snip", "random"): 0.001,
        },
    )
    bars = plots.cd_bars(ranks, p)
    assert bars == [["synflow", "snip"], ["snip", "magnitude"]]
    assert not any({"magnitude", "random"} <= set(bar) for bar in bars)
    # grasp and random would share a bar at p = 0.05 (not below alpha): the bound is p >= alpha.
    assert plots.cd_bars(ranks, p.replace(0.005, ALPHA))[-1] == ["grasp", "random"]


def test_a_pair_without_a_test_counts_as_not_separated():
    ranks = pd.Series({"a": 1.0, "b": 2.0, "c": 3.0})
    p = _p_matrix(["a", "b", "c"], {("a", "b"): np.nan, ("b", "c"): 0.5, ("a", "c"): 0.01})
    assert plots.cd_bars(ranks, p) == [["a", "b"], ["b", "c"]]
    # A choice missing from the matrix has no test against anyone: joined to its neighbours.
    assert plots.cd_bars(pd.Series({"a": 1.0, "b": 2.0, "z": 2.5}), p) == [["a", "b", "z"]]


def test_bars_follow_the_ranks_not_the_order_of_the_matrix():
    ranks = pd.Series({"c": 1.0, "a": 2.5, "b": 2.0})  # rank order c, b, a
    p = _p_matrix(["a", "b", "c"], {("a", "c"): 0.01})
    assert plots.cd_bars(ranks, p) == [["c", "b"], ["b", "a"]]
    assert plots.cd_bars(ranks, _p_matrix(["a", "b", "c"], {})) == [["c", "b", "a"]]
    everything_differs = _p_matrix(["a", "b", "c"], {}, default=0.001)
    assert plots.cd_bars(ranks, everything_differs) == []


def test_bars_are_the_maximal_runs_of_unseparated_neighbours():
    rng = np.random.default_rng(0)
    for _ in range(300):
        k = int(rng.integers(2, 9))
        choices = [f"c{i}" for i in range(k)]
        ranks = pd.Series(rng.permutation(np.arange(1.0, k + 1.0)), index=choices)
        values = rng.choice([0.001, 0.03, 0.2, 0.6, np.nan], size=(k, k), p=[0.25, 0.1, 0.3, 0.25, 0.1])
        upper = np.triu(values, 1)  # NaN (no test) kept above the diagonal, 0 below
        symmetric = upper + upper.T
        np.fill_diagonal(symmetric, 1.0)
        p = pd.DataFrame(symmetric, index=choices, columns=choices)
        order = list(ranks.sort_values().index)
        bars = plots.cd_bars(ranks, p)
        assert bars == _maximal_runs(order, p)
        for bar in bars:  # no separated pair inside a bar; every choice between its ends is in it
            assert not any(p.loc[a, b] < ALPHA for a, b in itertools.combinations(bar, 2))
            inside = ranks[(ranks >= ranks[bar[0]]) & (ranks <= ranks[bar[-1]])]
            assert set(inside.index) == set(bar)


@pytest.fixture(scope="module")
def analysis():
    spec = PlantedSpec(
        methods=("synflow", "snip", "grasp", "magnitude", "random"),
        allocations=("global", "erk"),
        controls=("none", "shuffle"),
        sparsities=(0.5, 0.9, 0.98),
        seeds=5,
        stopped_fraction=0.3,
        dense=True,
        method_effects={"synflow": lambda s: 0.03 + 0 * s, "snip": lambda s: 0.02 + 0 * s},
    )
    return analyze(results=planted_results(spec), n_boot=100)


def _lines(ax, gid: str):
    return [line for line in ax.lines if line.get_gid() == gid]


def test_the_diagram_places_the_tables_mean_ranks_and_the_reports_tests(analysis):
    rankings = analysis.tables["rankings"]
    figure = plots.critical_difference(rankings, analysis.tests)
    drawn = [ax for ax in figure.axes if _lines(ax, "cd_ranks")]
    factors = [f for f in analysis.tests if (rankings["factor"] == f).sum() >= 3]
    assert len(drawn) == len(factors) == 2  # allocation has two choices: no diagram
    pairwise = analysis.tables["pairwise"]
    for ax, factor in zip(drawn, factors):
        rows = rankings.loc[rankings["factor"] == factor].set_index("choice")
        ranks = rows["mean_rank"].astype(float)
        (markers,) = _lines(ax, "cd_ranks")
        np.testing.assert_allclose(markers.get_xdata(), np.sort(ranks.to_numpy()))
        # The bars come from the pairwise table's Holm-adjusted p (the verdicts' tests).
        pairs = pairwise.loc[pairwise["factor"] == factor]
        p = pairs.pivot(index="choice", columns="opponent", values="p_adjusted")
        expected = plots.cd_bars(ranks, p)
        assert expected == plots.cd_bars(ranks, analysis.tests[factor]["p_matrix"])
        spans = sorted((line.get_xdata()[0], line.get_xdata()[1]) for line in _lines(ax, "cd_bar"))
        assert len(spans) == len(expected)
        for bar, (low, high) in zip(sorted(expected, key=lambda b: ranks[b[0]]), spans):
            covered = ranks[(ranks >= low) & (ranks <= high)]
            assert set(covered.index) == set(bar)
            assert all(p.loc[a, b] >= ALPHA for a, b in itertools.combinations(bar, 2) if pd.notna(p.loc[a, b]))
        title = ax.get_title()
        assert "no significant difference by the head-to-head tests, Holm-adjusted" in title
        assert f"over {int(rows['n_units'].max())} seeds" in title
    plt.close(figure)


def test_the_diagram_says_when_a_pair_had_no_test():
    rankings = pd.DataFrame(
        {"factor": "method", "choice": ["a", "b", "c"], "mean_rank": [1.2, 2.0, 2.8], "n_units": [5, 5, 4]}
    )
    p = _p_matrix(["a", "b", "c"], {("a", "b"): 0.01, ("a", "c"): 0.001, ("b", "c"): np.nan})
    figure = plots.critical_difference(rankings, {"method": {"p_matrix": p, "friedman_p": 0.01}})
    (ax,) = figure.axes
    assert "1 pair without a test (too few seeds) counts as not separated" in ax.get_title()
    assert "over 4-5 seeds" in ax.get_title()
    ((low, high),) = [tuple(line.get_xdata()) for line in _lines(ax, "cd_bar")]
    assert low < 2.0 and 2.8 < high < 3.0
    plt.close(figure)
    untested = _p_matrix(["a", "b", "c"], {}, default=np.nan)
    assert plots.critical_difference(rankings, {"method": {"p_matrix": untested, "friedman_p": np.nan}}) is None


def test_the_proxies_plot_draws_the_tables_rows(analysis):
    table = analysis.tables["proxies"]
    points = proxy_points(analysis.results)
    trials = analysis.results.trials.set_index("tix").loc[points["tix"]]
    assert (trials["control"] == "none").all() and (trials["method"] != DENSE_METHOD).all()
    assert (trials["status"] == "stopped").any()  # stopped trials count, at the common epoch
    acc = scored_trials(analysis.results).set_index("tix")["acc"]
    np.testing.assert_array_equal(points["test_acc"].to_numpy(), acc.loc[points["tix"]].to_numpy())
    for row in table.itertuples():
        rows = points.loc[points["proxy"] == row.proxy]
        assert len(rows) == row.n
        assert spearmanr(rows["value"], rows["test_acc"]).statistic == pytest.approx(row.spearman, abs=1e-9)
    figure = plots.proxies(points, table)
    panels = [ax for ax in figure.axes if ax.get_visible()]
    proxies = list(table.loc[table["kind"] == "proxy", "proxy"])
    assert len(panels) == len(proxies)
    for ax, name in zip(panels, proxies):
        row = table.set_index("proxy").loc[name]
        assert ax.get_title().startswith(f"{name}: pooled rho = {row['spearman']:.2f} (n = {row['n']})")
        assert ax.get_ylabel() == "test accuracy at the context's common epoch"
        (scatter,) = ax.collections
        drawn = np.asarray(scatter.get_offsets())
        assert len(drawn) == row["n"] <= plots.MAX_SCATTER_POINTS
        rows = points.loc[points["proxy"] == name, ["value", "test_acc"]].to_numpy()
        assert sorted(map(tuple, drawn)) == sorted(map(tuple, rows))  # the same (proxy, accuracy) pairs
        assert spearmanr(drawn[:, 0], drawn[:, 1]).statistic == pytest.approx(row["spearman"], abs=1e-9)
    plt.close(figure)
