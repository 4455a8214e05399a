"""Generate paitune results tables with planted effects (for tests and the analysis benchmark).

Every trial's accuracy is built from known parts, so a test can check that the analysis finds
exactly what was planted: a base curve that falls with sparsity, a per-method offset that may
depend on sparsity, a per-(method, control) offset, a per-seed offset shared by every trial of the
seed (``seed_effect``: what pairing by seed removes), and Gaussian noise. Optional extras: dense
reference trials (``dense``: method dense at sparsity 0, one per dataset x model x budget x seed,
accuracy ``dense_accuracy`` + seed offset + noise) and/or a ``dense_test_acc`` column; data-free
methods whose corrupt_* control trials reuse the unmodified mask and result (as the real pipeline
does: the control does not apply to them); sparsity jittered around the grid (``sparsity_jitter``,
relative, in compression ratio) to imitate a continuous sampler. Proxies: ``proxy_signal`` tracks
final accuracy, ``proxy_noise`` is independent of everything, ``proxy_size`` is the parameter
count in disguise (log params_kept times a tiny noise factor). The generator is fully
vectorized (numpy / pyarrow), so 100,000 trials x 30 epochs x 20 layers take seconds; the tables
follow ``paitune.results.schema`` exactly, plus extra config columns (lr, epochs) and proxies.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from paitune.results.schema import EPOCHS, LAYERS, SCHEMA_VERSION, TRIALS_FIXED

Effect = Callable[[np.ndarray], np.ndarray]  # sparsity array -> accuracy offset array


@dataclass
class PlantedSpec:
    """What to generate. The grid is the full product of the axes below x ``repeats`` (lr values)."""

    methods: tuple[str, ...] = ("alpha", "beta", "gamma", "delta")
    allocations: tuple[str, ...] = ("global",)
    controls: tuple[str, ...] = ("none",)
    sparsities: tuple[float, ...] = (0.5, 0.8, 0.9, 0.95, 0.98)
    seeds: int = 5
    datasets: tuple[str, ...] = ("digits",)
    models: tuple[str, ...] = ("mlp",)
    budgets: tuple[int, ...] = (10,)  # max_epochs
    repeats: int = 1  # distinct lr values per cell
    n_layers: int = 4
    noise: float = 0.01
    method_effects: dict[str, Effect] = field(default_factory=dict)
    control_effects: dict[tuple[str, str], float] = field(default_factory=dict)
    collapse_at: dict[str, float] = field(default_factory=dict)  # method -> first collapsing sparsity
    stopped_fraction: float = 0.0
    failed_fraction: float = 0.0
    diverged_fraction: float = 0.0
    experiment: str = "planted"
    seed: int = 0
    seed_effect: float = 0.0  # std of the per-seed offset
    dense: bool = False  # add dense reference trials
    dense_accuracy: float = 0.95
    dense_column: bool = False  # add the dense_test_acc column (the context's planted dense accuracy)
    data_free_methods: tuple[str, ...] = ("random", "magnitude", "synflow")
    sparsity_jitter: float = 0.0
    method_seed_effect: float = 0.0  # std of a per-(method, seed) offset: a method x seed interaction
    dataset_effects: dict[str, float] = field(default_factory=dict)  # dataset -> accuracy offset
    allocation_effects: dict[str, float] = field(default_factory=dict)  # allocation -> accuracy offset
    # method -> learning-curve rate (default 3): accuracy after epoch e of budget T is the final
    # value times 1 - exp(-rate e / T); a larger rate learns faster and ends at the same value.
    method_speeds: dict[str, float] = field(default_factory=dict)
    control_speeds: dict[tuple[str, str], float] = field(default_factory=dict)  # (method, control) -> rate
    repeat_effects: dict[int, float] = field(default_factory=dict)  # lr index -> accuracy offset
    repeat_speeds: dict[int, float] = field(default_factory=dict)  # lr index -> learning-curve rate

    @property
    def n_dense(self) -> int:
        return self.seeds * len(self.datasets) * len(self.models) * len(self.budgets) if self.dense else 0

    @property
    def n_trials(self) -> int:
        return (
            len(self.methods)
            * len(self.allocations)
            * len(self.controls)
            * len(self.sparsities)
            * self.seeds
            * len(self.datasets)
            * len(self.models)
            * len(self.budgets)
            * self.repeats
            + self.n_dense
        )


def spec_for_size(n_trials: int, *, epochs: int = 30, n_layers: int = 20, **overrides) -> PlantedSpec:
    """A spec whose grid has at least ``n_trials`` trials (seeds scaled to reach it)."""
    spec = PlantedSpec(
        allocations=("global", "erk", "uniform", "er"),
        sparsities=(0.5, 0.75, 0.875, 0.9375, 0.96875, 0.984375, 0.99, 0.995),
        budgets=(epochs,),
        n_layers=n_layers,
        methods=("random", "magnitude", "snip", "grasp", "synflow", "imp"),
        controls=("none", "shuffle", "reinit", "invert", "corrupt_labels"),
        repeats=5,
        stopped_fraction=0.3,
        failed_fraction=0.01,
        diverged_fraction=0.01,
        method_effects={"snip": lambda s: 0.02 + 0 * s, "synflow": lambda s: 0.04 * s, "imp": lambda s: 0.06 + 0 * s},
        control_effects={("snip", "invert"): -0.2, ("snip", "corrupt_labels"): -0.05},
        dense=True,
        seed_effect=0.01,
        **overrides,
    )
    per_seed = spec.n_trials // spec.seeds
    spec.seeds = -(-n_trials // per_seed)
    return spec


def _grid(spec: PlantedSpec) -> pd.DataFrame:
    axes = {
        "dataset": list(spec.datasets),
        "model": list(spec.models),
        "max_epochs": list(spec.budgets),
        "method": list(spec.methods),
        "allocation": list(spec.allocations),
        "control": list(spec.controls),
        "sparsity": list(spec.sparsities),
        "seed": list(range(spec.seeds)),
        "repeat": list(range(spec.repeats)),
    }
    index = pd.MultiIndex.from_product(list(axes.values()), names=list(axes))
    grid = index.to_frame(index=False)
    if spec.dense:
        contexts = pd.MultiIndex.from_product(
            [axes["dataset"], axes["model"], axes["max_epochs"], axes["seed"]],
            names=["dataset", "model", "max_epochs", "seed"],
        ).to_frame(index=False)
        dense = contexts.assign(method="dense", allocation=spec.allocations[0], control="none", sparsity=0.0, repeat=0)[
            list(axes)
        ]
        grid = pd.concat([grid, dense], ignore_index=True)
    return grid


def _unmodified_twin(grid: pd.DataFrame, spec: PlantedSpec) -> np.ndarray:
    """Row index of each row's control-none twin for data-free methods under corrupt_* controls, else -1."""
    twin = np.full(len(grid), -1, dtype=np.int64)
    hit = (grid["method"].isin(spec.data_free_methods) & grid["control"].str.startswith("corrupt_")).to_numpy()
    if not hit.any() or "none" not in spec.controls:
        return twin
    keys = [c for c in grid.columns if c != "control"]
    base = grid.loc[grid["control"] == "none", keys].reset_index()
    found = grid.loc[hit, keys].merge(base, on=keys, how="left")["index"].to_numpy()
    twin[hit] = found
    return twin


def generate_tables(spec: PlantedSpec) -> dict[str, pa.Table]:
    """The three tables (trials, epochs, layers) as pyarrow Tables following the schema."""
    rng = np.random.default_rng(spec.seed)
    grid = _grid(spec)
    n = len(grid)
    s = grid["sparsity"].to_numpy(dtype=np.float64)
    method = grid["method"].to_numpy()
    control = grid["control"].to_numpy()
    is_dense = method == "dense"
    # The optional extras draw from their own stream, so the base tables stay the same with or without them.
    extra_rng = np.random.default_rng([spec.seed, 1])
    if spec.sparsity_jitter:
        factor = np.exp(extra_rng.uniform(-spec.sparsity_jitter, spec.sparsity_jitter, n))
        s = np.where(is_dense, s, 1.0 - (1.0 - s) / factor)
    seed_offset = extra_rng.normal(0.0, spec.seed_effect, spec.seeds)[grid["seed"].to_numpy()]

    accuracy = 0.92 - 0.5 * s**6 + rng.normal(0.0, spec.noise, n) + seed_offset
    accuracy[is_dense] = spec.dense_accuracy + seed_offset[is_dense] + extra_rng.normal(0.0, spec.noise, is_dense.sum())
    for name, effect in spec.method_effects.items():
        hit = method == name
        accuracy[hit] += np.asarray(effect(s[hit]), dtype=np.float64)
    for name, offset in spec.dataset_effects.items():
        accuracy[grid["dataset"].to_numpy() == name] += offset
    for name, offset in spec.allocation_effects.items():
        accuracy[~is_dense & (grid["allocation"].to_numpy() == name)] += offset
    for index, offset in spec.repeat_effects.items():
        accuracy[~is_dense & (grid["repeat"].to_numpy() == index)] += offset
    if spec.method_seed_effect:
        methods, codes = np.unique(method, return_inverse=True)
        table = extra_rng.normal(0.0, spec.method_seed_effect, (len(methods), spec.seeds))
        accuracy += np.where(is_dense, 0.0, table[codes, grid["seed"].to_numpy()])
    for (name, ctrl), offset in spec.control_effects.items():
        accuracy[(method == name) & (control == ctrl)] += offset
    collapsed = np.zeros(n, dtype=bool)
    for name, threshold in spec.collapse_at.items():
        collapsed |= (method == name) & (s >= threshold - 1e-12)
    accuracy[collapsed] = 0.1
    accuracy = np.clip(accuracy, 0.0, 1.0)
    # Data-free methods ignore corrupt_* controls: same mask, same result as the unmodified trial.
    twin = _unmodified_twin(grid, spec)
    copied = twin >= 0
    accuracy[copied] = accuracy[twin[copied]]

    u = rng.random(n)
    status = np.full(n, "completed", dtype=object)
    cuts = np.cumsum([spec.stopped_fraction, spec.failed_fraction, spec.diverged_fraction])
    status[u < cuts[2]] = "diverged"
    status[u < cuts[1]] = "failed"
    status[u < cuts[0]] = "stopped"
    budget = grid["max_epochs"].to_numpy(dtype=np.int64)
    epochs_run = budget.copy()
    not_done = status != "completed"
    epochs_run[not_done] = np.maximum(1, (budget[not_done] * rng.uniform(0.1, 0.6, not_done.sum())).astype(np.int64))
    epochs_run[status == "failed"] = 0

    trial_id = np.char.add("t", np.arange(n).astype(str)).astype(object)
    lr = (0.01 * 2.0 ** grid["repeat"].to_numpy()).astype(np.float64)
    params_total = np.full(n, 10_000 * spec.n_layers, dtype=np.int64)
    density = 1.0 - s
    params_kept = np.round(params_total * density).astype(np.int64)
    flops_dense = np.full(n, 2 * params_total[0], dtype=np.int64)

    # Accuracy after each epoch: saturating curve towards the final value, plus noise.
    final_test = accuracy
    final_val = np.clip(accuracy + rng.normal(0.0, spec.noise / 2, n), 0, 1)
    # What a trial reports is its accuracy at the last epoch it ran: the final value for a trial
    # that ran its budget, the curve's value at the epoch a stopped (or diverged) trial ended.
    ended_early = epochs_run < budget
    speed = np.full(n, 3.0)
    for name, rate in spec.method_speeds.items():
        speed[method == name] = rate
    for (name, ctrl), rate in spec.control_speeds.items():
        speed[(method == name) & (control == ctrl)] = rate
    for index, rate in spec.repeat_speeds.items():
        speed[~is_dense & (grid["repeat"].to_numpy() == index)] = rate
    at_end = np.where(ended_early, 1.0 - np.exp(-speed * epochs_run / budget), 1.0)
    reported_test, reported_val = final_test * at_end, final_val * at_end

    config = grid.drop(columns=["repeat"]).assign(lr=lr, epochs=budget)
    config_json = _config_json(config)
    cols = {
        "schema_version": np.full(n, SCHEMA_VERSION, dtype=np.int32),
        "experiment": np.full(n, spec.experiment, dtype=object),
        "trial_id": trial_id,
        "config_hash": np.char.add("h", np.arange(n).astype(str)).astype(object),
        "status": status,
        "method": method,
        "sparsity": s,
        "allocation": grid["allocation"].to_numpy(),
        "control": control,
        "model": grid["model"].to_numpy(),
        "dataset": grid["dataset"].to_numpy(),
        "seed": grid["seed"].to_numpy(dtype=np.int64),
        "epochs_run": epochs_run,
        "max_epochs": budget,
        "val_acc": np.where(status == "failed", np.nan, reported_val),
        "best_val_acc": np.where(status == "failed", np.nan, reported_val),
        "test_acc": np.where(status == "failed", np.nan, reported_test),
        "density_achieved": density,
        "params_kept": params_kept,
        "params_total": params_total,
        "flops_dense": flops_dense,
        "flops_sparse": np.round(flops_dense * density).astype(np.int64),
        "collapsed": collapsed,
        "mask_hash": np.char.add("m", np.where(copied, twin, np.arange(n)).astype(str)).astype(object),
        "prune_seconds": rng.uniform(0.01, 0.1, n),
        "train_seconds": rng.uniform(1.0, 2.0, n),
        "node": np.full(n, "node0", dtype=object),
        "device": np.full(n, "cpu", dtype=object),
        "error": np.where(status == "failed", "RuntimeError: planted failure", None).astype(object),
        "config_json": config_json,
        "versions": np.full(n, json.dumps({"paitune": "planted"}), dtype=object),
    }
    # The context id, as paitune.spaces.context.context_id writes it with the default keys.
    cols["context"] = np.array([
        f"dataset={d},model={m},sparsity={float(sp)!r},epochs={int(b)}"
        for d, m, sp, b in zip(cols["dataset"], cols["model"], cols["sparsity"], cols["max_epochs"])
    ], dtype=object)  # fmt: skip
    trials = pa.Table.from_pydict(cols, schema=TRIALS_FIXED)
    trials = trials.append_column("lr", pa.array(lr))
    trials = trials.append_column("epochs", pa.array(budget))
    trials = trials.append_column("proxy_signal", pa.array(final_test + rng.normal(0, spec.noise, n)))
    trials = trials.append_column("proxy_noise", pa.array(rng.normal(0, 1, n)))
    trials = trials.append_column(
        "proxy_size", pa.array(np.log(params_kept + 1.0) * (1 + extra_rng.normal(0, 1e-4, n)))
    )
    if spec.dataset_effects:
        # Shifted between datasets like accuracy, pure noise within each dataset.
        shift = grid["dataset"].map(spec.dataset_effects).fillna(0.0).to_numpy(dtype=np.float64)
        trials = trials.append_column("proxy_dataset", pa.array(shift * 100 + extra_rng.normal(0, 1, n)))
    if spec.dense_column:
        truth = spec.dense_accuracy + seed_offset
        if spec.dense:  # the sweep writes the dense trial's own result
            dense_rows = grid.loc[is_dense, ["dataset", "model", "max_epochs", "seed"]].assign(acc=accuracy[is_dense])
            truth = grid[["dataset", "model", "max_epochs", "seed"]].merge(dense_rows, how="left")["acc"].to_numpy()
        trials = trials.append_column("dense_test_acc", pa.array(truth))

    return {
        "trials": trials,
        "epochs": _epochs_table(spec, rng, trial_id, epochs_run, budget, reported_val, reported_test, speed),
        "layers": _layers_table(spec, trial_id, grid, density, collapsed),
    }


def _config_json(config: pd.DataFrame) -> np.ndarray:
    """Canonical JSON (sorted keys) per row, built column-wise instead of one dumps per row."""
    parts = None
    for i, name in enumerate(sorted(config.columns)):
        column = config[name]
        if not pd.api.types.is_numeric_dtype(column):
            text = '"' + column.astype(str) + '"'
        else:
            text = column.astype(str)
        piece = f'{"{" if i == 0 else ", "}"{name}": ' + text
        parts = piece if parts is None else parts + piece
    return (parts + "}").to_numpy(dtype=object)


def _epochs_table(spec, rng, trial_id, epochs_run, max_epochs, reported_val, reported_test, speed) -> pa.Table:
    counts = epochs_run
    total = int(counts.sum())
    row_trial = np.repeat(np.arange(len(counts)), counts)
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    epoch = np.arange(total) - starts + 1
    budget = max_epochs[row_trial]
    progress = 1.0 - np.exp(-speed[row_trial] * epoch / budget)
    noise = rng.normal(0.0, spec.noise, total)
    # The curve heads for the trial's full-budget accuracy; reported_* / at_end recovers it.
    at_end = np.where(epochs_run < max_epochs, 1.0 - np.exp(-speed * epochs_run / max_epochs), 1.0)
    final_test, final_val = reported_test / np.maximum(at_end, 1e-12), reported_val / np.maximum(at_end, 1e-12)
    test = np.clip(final_test[row_trial] * progress + noise, 0, 1)
    # Validation and test sets are disjoint: their noise is independent (drawn last, so the other
    # draws do not move).
    val = np.clip(final_val[row_trial] * progress + rng.normal(0.0, spec.noise, total), 0, 1)
    # The last epoch run carries exactly the trial's reported accuracies.
    last = epoch == counts[row_trial]
    val[last] = reported_val[row_trial][last]
    test[last] = reported_test[row_trial][last]
    return pa.Table.from_pydict(
        {
            "schema_version": np.full(total, SCHEMA_VERSION, dtype=np.int32),
            "experiment": np.full(total, spec.experiment, dtype=object),
            "trial_id": trial_id[row_trial],
            "epoch": epoch.astype(np.int64),
            "train_loss": 2.3 * (1.0 - progress) + 0.05,
            "val_loss": 2.3 * (1.0 - progress) + 0.1,
            "val_acc": val,
            "test_acc": test,
            "seconds": np.full(total, 0.1),
        },
        schema=EPOCHS,
    )


def _layers_table(spec, trial_id, grid, density, collapsed) -> pa.Table:
    n, L = len(grid), spec.n_layers
    position = np.linspace(0.0, 1.0, L)
    # Per (method, allocation) profile: uniform keeps every layer at the target density; others
    # tilt density towards the input or the output by an amount fixed per combination.
    combo = pd.factorize(grid["method"] + "|" + grid["allocation"])[0]
    tilt = ((combo * 0.37) % 1.0 - 0.5) * 1.5
    tilt[grid["allocation"].to_numpy() == "uniform"] = 0.0
    shape = np.exp(tilt[:, None] * (position[None, :] - 0.5))
    shape /= shape.mean(axis=1, keepdims=True)
    dens = np.clip(density[:, None] * shape, 0.0, 1.0)
    dens[collapsed, L - 1] = 0.0
    return pa.Table.from_pydict(
        {
            "schema_version": np.full(n * L, SCHEMA_VERSION, dtype=np.int32),
            "experiment": np.full(n * L, spec.experiment, dtype=object),
            "trial_id": np.repeat(trial_id, L),
            "layer": np.tile(np.array([f"layers.{i}.weight" for i in range(L)], dtype=object), n),
            "layer_index": np.tile(np.arange(L, dtype=np.int64), n),
            "shape": np.tile(np.array(["100x100"] * L, dtype=object), n),
            "numel": np.full(n * L, 10_000, dtype=np.int64),
            "density": dens.ravel(),
        },
        schema=LAYERS,
    )


def write_results(root: str | Path, name: str, spec: PlantedSpec, *, files_per_table: int = 1) -> Path:
    """Write the tables under ``root/name/{trials,epochs,layers}/`` as Parquet; returns the dir."""
    out = Path(root) / name
    for table_name, table in generate_tables(spec).items():
        folder = out / table_name
        folder.mkdir(parents=True, exist_ok=True)
        step = -(-len(table) // files_per_table) if len(table) else 1
        for part, start in enumerate(range(0, max(len(table), 1), step)):
            pq.write_table(table.slice(start, step), folder / f"part-{part:05d}.parquet")
    return out


def results_from_tables(tables: dict[str, pa.Table], source: str = "memory"):
    """A ``paitune.analysis.Results`` straight from ``generate_tables`` (no Parquet round trip):
    what ``load_results`` would give for one experiment, for fast simulation tests."""
    from paitune.analysis.load import Results

    trials = tables["trials"].to_pandas()
    trials.insert(0, "tix", np.arange(len(trials), dtype=np.int64))
    index = pd.Series(np.arange(len(trials)), index=trials["trial_id"].to_numpy())
    frames = {}
    for name in ("epochs", "layers"):
        frame = tables[name].to_pandas()
        tix = index.reindex(frame["trial_id"].to_numpy()).to_numpy()
        frame = frame.drop(columns=["experiment", "trial_id", "schema_version"])
        frame.insert(0, "tix", tix.astype(np.int64))
        frames[name] = frame
    return Results(trials=trials, epochs=frames["epochs"], layers=frames["layers"], sources=(source,))


def planted_results(spec: PlantedSpec):
    return results_from_tables(generate_tables(spec), spec.experiment)


def asha_censor(results, rung: int, keep: float = 1.0 / 3.0):
    """The same trials as if ASHA had stopped, at epoch ``rung``, every unmodified trial outside
    the top ``keep`` of its context (dataset x model x sparsity x budget, all seeds together) by
    validation accuracy there; control trials (paired arms) stop with their unmodified partner.
    Stopped trials keep their epochs up to ``rung`` and report the accuracies of that epoch."""
    from paitune.analysis.load import Results

    trials = results.trials.copy()
    epochs = results.epochs
    at_rung = epochs.loc[epochs["epoch"] == rung].set_index("tix")
    trials["_val"] = trials["tix"].map(at_rung["val_acc"])
    context = ["dataset", "model", "sparsity", "max_epochs"]
    base = trials.loc[(trials["control"] == "none") & (trials["method"] != "dense")]
    share = base.groupby(context)["_val"].rank(ascending=False, pct=True)
    stopped_base = base.loc[share > keep]
    pair = context + ["method", "allocation", "seed", "lr"]
    stop = trials[pair].merge(stopped_base[pair].drop_duplicates().assign(_stop=True), on=pair, how="left")["_stop"]
    stop = (
        stop.eq(True).to_numpy()
        & (trials["status"] == "completed").to_numpy()
        & (trials["max_epochs"] > rung).to_numpy()
    )
    trials.loc[stop, "status"] = "stopped"
    trials.loc[stop, "epochs_run"] = rung
    trials.loc[stop, "val_acc"] = trials.loc[stop, "tix"].map(at_rung["val_acc"]).to_numpy()
    trials.loc[stop, "best_val_acc"] = trials.loc[stop, "val_acc"].to_numpy()
    trials.loc[stop, "test_acc"] = trials.loc[stop, "tix"].map(at_rung["test_acc"]).to_numpy()
    stopped_tix = trials.loc[stop, "tix"].to_numpy()
    drop = np.isin(epochs["tix"].to_numpy(), stopped_tix) & (epochs["epoch"].to_numpy() > rung)
    return Results(
        trials=trials.drop(columns="_val"),
        epochs=epochs.loc[~drop].reset_index(drop=True),
        layers=results.layers,
        sources=results.sources,
    )


def with_offsets(results, shift):
    """``results`` with a known accuracy offset added to each trial's accuracies: ``shift`` holds
    one offset per row of ``results.trials`` (its epochs move with it, found by tix)."""
    from paitune.analysis.load import Results

    offset_by_tix = np.zeros(int(results.trials["tix"].max()) + 1)
    offset_by_tix[results.trials["tix"].to_numpy()] = np.asarray(shift, dtype=np.float64)
    trials, epochs = results.trials.copy(), results.epochs.copy()
    for frame, columns in ((trials, ("test_acc", "val_acc", "best_val_acc")), (epochs, ("test_acc", "val_acc"))):
        for c in columns:
            frame[c] = frame[c] + offset_by_tix[frame["tix"].to_numpy()]
    return Results(trials=trials, epochs=epochs, layers=results.layers, sources=results.sources)
