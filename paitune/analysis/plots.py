"""Matplotlib figures of the analysis tables (Agg backend: no display needed).

Each function takes the DataFrame its section computed and returns a Figure, or None when there
is nothing to draw. Only ``save_figure`` touches the disk.

Longer than the other modules: one short function per figure of the report, sharing one style.
"""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: the CLI and CI have no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from paitune.analysis.stats import ALPHA  # noqa: E402
from paitune.spaces.context import reference_setting  # noqa: E402

MAX_PANELS = 6
MAX_SCATTER_POINTS = 3000


def save_figure(figure, path: Path) -> bytes:
    """Write the figure as PNG at ``path`` and return the PNG bytes (for embedding)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    data = buffer.getvalue()
    Path(path).write_bytes(data)
    return data


def _panels(n: int, width: float = 4.6, height: float = 3.4):
    n = max(1, min(n, MAX_PANELS))
    cols = min(n, 3)
    rows = -(-n // cols)
    figure, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    return figure, axes.ravel()


def _panel_keys(data: pd.DataFrame, base: list[str]) -> list[str]:
    """The columns one panel shares: ``base``, and the context's ``setting`` where the table has
    one (two settings are two dense references: their lines never share a panel)."""
    return base + (["setting"] if "setting" in data.columns else [])


def _panel_title(keys: list[str], key: tuple) -> str:
    parts = []
    for name, value in zip(keys, key):
        if name == "max_epochs":
            parts.append(f"{value} ep")
        elif name != "setting" or value:
            parts.append(str(value))
    return " / ".join(parts)


def accuracy_vs_sparsity(table: pd.DataFrame):
    """One panel per dataset/model/budget/setting/allocation (control none), one line per method,
    CI bands.

    x is density on a log axis, inverted, so sparsity grows to the right and the high-sparsity
    end (where methods differ) is not squeezed into a corner; ticks are labelled in sparsity.
    The dense reference of the panel's dataset/model/budget/setting is a dashed black line with
    its band.
    """
    data = table.loc[(table["control"] == "none") & table["mean"].notna()]
    dense = data.loc[data["method"] == "dense"]
    data = data.loc[data["method"] != "dense"]
    if data.empty:
        return None
    keys = _panel_keys(data, ["dataset", "model", "max_epochs"]) + ["allocation"]
    groups = list(data.groupby(keys, observed=True))[:MAX_PANELS]
    figure, axes = _panels(len(groups))
    for ax, (key, group) in zip(axes, groups):
        for method, line in group.groupby("method"):
            line = line.sort_values("sparsity")
            density = 1.0 - line["sparsity"].to_numpy()
            ax.plot(density, line["mean"], marker="o", ms=3, label=str(method))
            ax.fill_between(density, line["ci_low"], line["ci_high"], alpha=0.2)
        same = dict(zip(keys[:-1], key[:-1]))  # the panel's dataset, model, budget (and setting)
        if "setting" in same:  # a dense row's setting is the part of a setting it shares
            same["setting"] = reference_setting(same["setting"])
        reference = dense.loc[np.logical_and.reduce([dense[k] == v for k, v in same.items()])]
        if not reference.empty:
            mean = reference["mean"].mean()
            ax.axhline(mean, color="black", ls="--", lw=1, label="dense")
            low, high = reference["ci_low"].min(), reference["ci_high"].max()
            if np.isfinite(low) and np.isfinite(high):
                ax.axhspan(low, high, color="black", alpha=0.08)
        ax.set_xscale("log")
        ax.invert_xaxis()
        levels = np.sort(group["sparsity"].unique())
        ax.set_xticks(1.0 - levels, [f"{s:g}" for s in levels], rotation=45, fontsize=7)
        ax.minorticks_off()
        ax.set_xlabel("sparsity (log density axis)")
        ax.set_ylabel("final test accuracy")
        ax.set_title(_panel_title(keys, key), fontsize=9)
        ax.legend(fontsize=7)
    figure.tight_layout()
    return figure


def _ratio_axis(ax, ratios) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks(ratios, [f"{r:g}x" for r in ratios], fontsize=7)
    ax.minorticks_off()


def _compression_panels(data: pd.DataFrame, x: str, y: tuple[str, str, str], ylabel: str, zero: str | None):
    """One panel per (dataset, model, budget, setting): a line with its CI band per method/allocation
    against compression; ``y`` is (value, ci low, ci high); ``zero`` labels a dashed line at 0."""
    value, low, high = y
    keys = _panel_keys(data, ["dataset", "model", "max_epochs"])
    groups = list(data.groupby(keys, observed=True))[:MAX_PANELS]
    figure, axes = _panels(len(groups))
    for ax, (key, group) in zip(axes, groups):
        for (method, allocation), line in list(group.groupby(["method", "allocation"]))[:12]:
            line = line.sort_values(x)
            ax.plot(line[x], line[value], marker="o", ms=3, label=f"{method}/{allocation}")
            ax.fill_between(line[x], line[low], line[high], alpha=0.15)
        if zero is not None:
            ax.axhline(0.0, color="black", ls="--", lw=1, label=zero)
        _ratio_axis(ax, sorted(group[x].unique()))
        ax.set_xlabel("compression ratio (1 / density)")
        ax.set_ylabel(ylabel)
        ax.set_title(_panel_title(keys, key), fontsize=9)
        ax.legend(fontsize=6)
    figure.tight_layout()
    return figure


def operating_points(table: pd.DataFrame):
    """Gap to dense (or accuracy, without a dense reference) at the standard compression ratios."""
    data = table.loc[table["n"] > 0]
    if data.empty:
        return None
    use_gap = data["gap"].notna().any()
    value, low, high = ("gap", "gap_ci_low", "gap_ci_high") if use_gap else ("mean", "ci_low", "ci_high")
    data = data.loc[data[value].notna()]
    ylabel = "accuracy - dense accuracy" if use_gap else "final test accuracy"
    return _compression_panels(data, "ratio", (value, low, high), ylabel, "dense" if use_gap else None)


def pai_vs_imp(table: pd.DataFrame):
    """Each method's gap to IMP (lottery ticket with rewinding) vs compression, with CIs."""
    data = table.loc[table["gap"].notna()] if not table.empty else table
    if data.empty:
        return None
    return _compression_panels(data, "compression", ("gap", "ci_low", "ci_high"), "accuracy - IMP accuracy", "imp")


def proxy_size_bias(table: pd.DataFrame):
    """Raw vs partial (size-controlled) Spearman per proxy, with CIs; baselines for scale."""
    data = table.loc[table["spearman"].notna()] if not table.empty else table
    if data.empty:
        return None
    figure, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(data) + 2), 3.4))
    x = np.arange(len(data))
    raw_err = [
        (data["spearman"] - data["ci_low"]).clip(lower=0).fillna(0),
        (data["ci_high"] - data["spearman"]).clip(lower=0).fillna(0),
    ]
    ax.bar(x - 0.2, data["spearman"], 0.4, yerr=raw_err, label="Spearman with accuracy")
    partial = data["partial_spearman"]
    part_err = [
        (partial - data["partial_ci_low"]).clip(lower=0).fillna(0),
        (data["partial_ci_high"] - partial).clip(lower=0).fillna(0),
    ]
    ax.bar(x + 0.2, partial.fillna(0), 0.4, yerr=part_err, label="partial, controlling params + FLOPs")
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(x, data["proxy"], rotation=30, fontsize=8)
    ax.set_ylim(-1, 1)
    ax.legend(fontsize=7)
    figure.tight_layout()
    return figure


def rankings(table: pd.DataFrame):
    """Win rate with CI per choice, one panel per factor; colour = verdict."""
    if table.empty or table["win_rate"].isna().all():
        return None
    colours = {
        "robust_winner": "tab:green",
        "ahead_at_rungs": "yellowgreen",
        "context_dependent": "tab:orange",
        "no_difference": "tab:gray",
        "inconclusive": "tab:blue",
        "behind_at_rungs": "lightcoral",
        "robust_loser": "tab:red",
        "too_few_runs": "lightgray",
    }
    factors = list(table.groupby("factor", sort=False))
    figure, axes = _panels(len(factors), height=3.8)
    for ax, (factor, group) in zip(axes, factors):
        group = group.sort_values("win_rate").tail(20)
        y = np.arange(len(group))
        low = (group["win_rate"] - group["ci_low"]).clip(lower=0).fillna(0)
        high = (group["ci_high"] - group["win_rate"]).clip(lower=0).fillna(0)
        ax.barh(y, group["win_rate"], xerr=[low, high], color=[colours.get(v, "gray") for v in group["verdict"]])
        ax.axvline(0.5, color="black", lw=0.8, ls="--")
        ax.set_yticks(y, group["choice"], fontsize=7)
        ax.set_xlim(0, 1)
        ax.set_xlabel("win rate (95% t-CI over seeds)")
        ax.set_title(factor, fontsize=9)
    figure.tight_layout()
    return figure


def cd_bars(mean_ranks: pd.Series, p_matrix: pd.DataFrame, alpha: float = ALPHA) -> list[list[str]]:
    """The bars of a critical-difference diagram, each a list of choices in rank order.

    The choices are ordered by ``mean_ranks`` (ties by name). A bar joins a maximal run of choices
    adjacent in that order in which no pair is significantly different: every pair's p in
    ``p_matrix`` (Holm-adjusted) is at least ``alpha``, and a pair without a test (NaN, or absent
    from the matrix) counts as not separated. A run inside another is dropped, and so is a run of
    one choice. Every choice between a bar's ends is in the bar, so a bar never passes over a
    choice that differs significantly from any choice it joins."""
    order = sorted(mean_ranks.index, key=lambda c: (float(mean_ranks[c]), str(c)))
    p = p_matrix.reindex(index=order, columns=order).to_numpy(dtype=np.float64)
    with np.errstate(invalid="ignore"):
        separated = p < alpha  # NaN compares false: not separated
    separated |= separated.T
    runs = []
    for i in range(len(order)):
        j = i
        while j + 1 < len(order) and not separated[j + 1, i : j + 1].any():
            j += 1
        runs.append((i, j))
    # The run from i ends no earlier than the run from i - 1, so a run lies inside another
    # exactly when the run before it ends at the same choice.
    kept = [(i, j) for n, (i, j) in enumerate(runs) if j > i and (n == 0 or runs[n - 1][1] < j)]
    return [order[i : j + 1] for i, j in kept]


def _seeds_text(n_units: pd.Series) -> str:
    n = pd.to_numeric(n_units, errors="coerce").dropna().astype(int)
    if n.empty:
        return "seeds"
    low, high = int(n.min()), int(n.max())
    return f"{high} seeds" if low == high else f"{low}-{high} seeds"


def _bar_rows(ranks: pd.Series, bars: list[list[str]], pad: float) -> list[int]:
    """The row (0 = nearest the axis) of each bar: the first row whose bars all end, with a gap,
    before it starts (the bars come in rank order), so bars that do not overlap share a row."""
    ends: list[float] = []
    rows = []
    for bar in bars:
        start = float(ranks[bar[0]]) - pad
        row = next((r for r, end in enumerate(ends) if end + 2 * pad < start), len(ends))
        if row == len(ends):
            ends.append(0.0)
        ends[row] = float(ranks[bar[-1]]) + pad
        rows.append(row)
    return rows


def _cd_panel(ax, ranks: pd.Series, bars: list[list[str]]) -> None:
    """One Demsar-style diagram: the rank axis (1 = best, on the left), a marker and an elbow to
    its label per choice (the better half labelled on the left, the rest on the right), and the
    bars below the axis."""
    order = sorted(ranks.index, key=lambda c: (float(ranks[c]), str(c)))
    low, high = 1, max(len(order), int(np.ceil(float(ranks.max()))))
    span = max(high - low, 1)
    margin = 0.35 * span + 1.0  # room for the labels, in rank units
    ax.plot([low, high], [0, 0], color="black", lw=1)
    for tick in range(low, high + 1):
        ax.plot([tick, tick], [0, 0.06], color="black", lw=1)
        ax.text(tick, 0.09, str(tick), ha="center", va="bottom", fontsize=7)
    bar_step, label_step = 0.15, 0.2
    pad = 0.015 * span
    rows = _bar_rows(ranks, bars, pad)
    for row, bar in zip(rows, bars):
        y = -bar_step * (row + 1)
        ax.plot(
            [ranks[bar[0]] - pad, ranks[bar[-1]] + pad],
            [y, y],
            color="tab:gray",
            lw=3,
            solid_capstyle="round",
            gid="cd_bar",
        )
    top = -bar_step * (max(rows, default=-1) + 2) - 0.05
    n_left = -(-len(order) // 2)
    sides = [(order[:n_left], low - 0.2, "right"), (order[n_left:][::-1], high + 0.2, "left")]
    for side, edge, align in sides:
        for i, choice in enumerate(side):  # the choice nearest its edge has the shortest elbow
            x, y = float(ranks[choice]), top - i * label_step
            ax.plot([x, x, edge], [0, y, y], color="black", lw=0.7)
            ax.text(
                edge + (-0.05 if align == "right" else 0.05),
                y,
                f"{choice} ({x:.2f})",
                ha=align,
                va="center",
                fontsize=7,
            )
    ax.plot(ranks.reindex(order).to_numpy(), np.zeros(len(order)), "o", color="black", ms=3, gid="cd_ranks")
    ax.set_xlim(low - margin, high + margin)
    ax.set_ylim(top - n_left * label_step, 0.3)
    ax.axis("off")


def critical_difference(rankings_table: pd.DataFrame, tests: dict):
    """Critical-difference diagrams (Demsar 2006), one per factor with three to twenty choices.

    Each choice sits at its ``mean_rank`` from the rankings table (1 = best), the number the
    report prints. The bars come from the report's own head-to-head tests (``tests[factor]
    ["p_matrix"]``, the Holm-adjusted p the verdicts and the pairwise table use), not from a
    Nemenyi critical difference: ``cd_bars`` joins runs of choices adjacent in rank order with no
    significantly different pair among them. A factor whose pairs were all left untested (too few
    seeds) is not drawn."""
    panels = []
    for factor, t in tests.items():
        rows = rankings_table.loc[rankings_table["factor"] == factor]
        ranks = pd.to_numeric(rows.set_index("choice")["mean_rank"], errors="coerce").dropna()
        p_matrix = t.get("p_matrix", pd.DataFrame())
        if not 3 <= len(ranks) <= 20 or p_matrix.empty:  # beyond 20 labels the diagram is unreadable
            continue
        p = p_matrix.reindex(index=ranks.index, columns=ranks.index).to_numpy(dtype=np.float64)
        upper = p[np.triu_indices(len(ranks), k=1)]
        if not np.isfinite(upper).any():
            continue
        panels.append((factor, ranks, cd_bars(ranks, p_matrix), t, rows, int((~np.isfinite(upper)).sum())))
    if not panels:
        return None
    heights = [
        1.0 + 0.15 * (max(_bar_rows(ranks, bars, 0.0), default=-1) + 1) + 0.2 * -(-len(ranks) // 2)
        for _, ranks, bars, *_ in panels
    ]
    figure, axes = plt.subplots(
        len(panels), 1, figsize=(10, sum(heights)), squeeze=False, gridspec_kw={"height_ratios": heights}
    )
    for ax, (factor, ranks, bars, t, rows, untested) in zip(axes.ravel(), panels):
        _cd_panel(ax, ranks, bars)
        friedman = t.get("friedman_p", np.nan)
        friedman_text = f"; Friedman p = {friedman:.3g}" if np.isfinite(friedman) else ""
        untested_text = ""
        if untested == 1:
            untested_text = "\n1 pair without a test (too few seeds) counts as not separated"
        elif untested:
            untested_text = f"\n{untested} pairs without a test (too few seeds) count as not separated"
        ax.set_title(
            f"{factor}: mean rank over {_seeds_text(rows['n_units'])} (1 = best; the rankings table's mean_rank)"
            f"{friedman_text}\na bar joins choices with no significant difference by the head-to-head tests, "
            f"Holm-adjusted (p >= {ALPHA:g}){untested_text}",
            fontsize=8,
        )
    figure.tight_layout()
    return figure


def sanity(table: pd.DataFrame):
    """Accuracy change of each control vs the unmodified mask, per method, with CIs."""
    data = table.loc[table["delta"].notna()]
    if data.empty:
        return None
    controls = sorted(data["control"].unique())
    methods = sorted(data["method"].unique())
    figure, ax = plt.subplots(figsize=(max(5, 1.2 * len(methods) * len(controls) ** 0.5), 3.6))
    width = 0.8 / len(controls)
    for i, control in enumerate(controls):
        rows = data.loc[data["control"] == control].set_index("method").reindex(methods)
        x = np.arange(len(methods)) + i * width
        err = [
            (rows["delta"] - rows["ci_low"]).clip(lower=0).fillna(0),
            (rows["ci_high"] - rows["delta"]).clip(lower=0).fillna(0),
        ]
        ax.bar(x, rows["delta"].fillna(0), width, yerr=err, label=control)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(np.arange(len(methods)) + width * (len(controls) - 1) / 2, methods, rotation=30, fontsize=8)
    ax.set_ylabel("accuracy(control) - accuracy(none)")
    ax.legend(fontsize=7)
    figure.tight_layout()
    return figure


def layer_profiles(table: pd.DataFrame, searched: pd.DataFrame | None = None):
    """Per-layer density by method/allocation (one panel per model), plus searched profiles."""
    if table.empty:
        return None
    models = list(table.groupby("model"))[: MAX_PANELS - 1]
    extra = searched is not None and not searched.empty
    figure, axes = _panels(len(models) + int(extra))
    for ax, (model, group) in zip(axes, models):
        for (method, allocation), line in list(group.groupby(["method", "allocation"]))[:12]:
            ax.plot(line["layer_index"], line["density"], marker=".", label=f"{method}/{allocation}")
        ax.set_yscale("log")
        ax.set_xlabel("layer (input -> output)")
        ax.set_ylabel("density")
        ax.set_title(f"{model} at sparsity {group['sparsity'].iloc[0]:g}", fontsize=9)
        ax.legend(fontsize=6)
    if extra:
        ax = axes[len(models)]
        for profile, line in list(searched.groupby("profile"))[:12]:
            ax.plot(line["layer_index"], line["density"], marker=".", label=str(profile)[:40])
        ax.set_yscale("log")
        ax.set_title("searched allocation vs standard profiles", fontsize=9)
        ax.set_xlabel("layer (input -> output)")
        ax.legend(fontsize=6)
    figure.tight_layout()
    return figure


def proxies(points: pd.DataFrame, table: pd.DataFrame):
    """Scatter of each proxy (at init) vs accuracy: the rows the ``proxies`` table's pooled
    Spearman is computed over (``paitune.analysis.proxies.proxy_points``: control none, no dense
    trials, test accuracy at the context's common epoch), one panel per proxy in the table's
    order, sampled to MAX_SCATTER_POINTS points per panel; the title quotes the table's pooled
    Spearman and its n."""
    if table.empty or points.empty:
        return None
    names = [n for n in table.loc[table["kind"] == "proxy", "proxy"] if (points["proxy"] == n).any()][:MAX_PANELS]
    if not names:
        return None
    rows = table.set_index("proxy")
    figure, axes = _panels(len(names), width=3.6, height=3.0)
    for ax, name in zip(axes, names):
        data = points.loc[points["proxy"] == name]
        shown = data.sample(n=min(len(data), MAX_SCATTER_POINTS), random_state=0)
        values = shown["value"].to_numpy(dtype=np.float64)
        ax.scatter(values, shown["test_acc"], s=4, alpha=0.4)
        if len(values) and (values > 0).all() and values.max() / values.min() > 100:
            ax.set_xscale("log")
        rho, n = rows.loc[name, "spearman"], len(data)
        title = f"{name}: pooled rho = {rho:.2f}" if pd.notna(rho) else f"{name}: pooled rho —"
        count = f"n = {n}" if len(shown) == n else f"{len(shown)} of n = {n} shown"
        ax.set_title(f"{title} ({count})", fontsize=9)
        ax.set_xlabel(f"{name} at init")
        ax.set_ylabel("test accuracy at the context's common epoch", fontsize=8)
    figure.tight_layout()
    return figure


def importance(table: pd.DataFrame):
    if table.empty:
        return None
    pivot = table.pivot_table(index="param", columns="evaluator", values="importance").fillna(0)
    pivot = pivot.sort_values(pivot.columns[0])
    figure, ax = plt.subplots(figsize=(6, 0.35 * len(pivot) + 1.5))
    pivot.plot.barh(ax=ax)
    ax.set_xlabel("share of importance")
    figure.tight_layout()
    return figure


def early_vs_final(table: pd.DataFrame):
    data = table.loc[table["spearman"].notna()]
    if data.empty:
        return None
    figure, ax = plt.subplots(figsize=(5.5, 3.4))
    for budget, line in data.groupby("max_epochs"):
        ax.plot(line["epoch"], line["spearman"], marker="o", ms=3, label=f"{budget} epochs")
        ax.fill_between(line["epoch"], line["ci_low"], line["ci_high"], alpha=0.2)
    ax.set_ylim(-1, 1.02)
    ax.set_xlabel("epoch (rung)")
    ax.set_ylabel("Spearman(val acc at epoch, final acc)")
    ax.legend(fontsize=7)
    figure.tight_layout()
    return figure


def pareto(trials: pd.DataFrame, front: pd.DataFrame):
    data = trials.loc[trials["density_achieved"].notna() & trials["test_acc"].notna()]
    if data.empty:
        return None
    sample = data.sample(n=min(len(data), MAX_SCATTER_POINTS), random_state=0)
    figure, ax = plt.subplots(figsize=(5.5, 3.6))
    ax.scatter(sample["density_achieved"], sample["test_acc"], s=4, alpha=0.3, color="gray", label="trials")
    line = front.loc[front["objective"] == "density"]
    for (dataset, model), group in line.groupby(["dataset", "model"]):
        ax.step(group["density"], group["test_acc"], where="post", marker="o", ms=3, label=f"front {dataset}/{model}")
    ax.set_xscale("log")
    ax.set_xlabel("density (log)")
    ax.set_ylabel("final test accuracy")
    ax.legend(fontsize=7)
    figure.tight_layout()
    return figure
