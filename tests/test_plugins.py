"""A plug-in registers a model, a dataset, a method, a proxy, an allocation and a control; spaces,
the CLI and a trial accept their names."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from conftest import paitune_env

PLUGIN = textwrap.dedent(
    """
    import math

    import torch
    from torch import nn

    from paitune.data import DataBundle, DatasetSpec, Split, register_dataset
    from paitune.models import PaiModel, register_model


    class TinyNet(PaiModel):
        def __init__(self, input_shape, num_classes):
            super().__init__(input_shape, num_classes)
            width = 1
            for d in input_shape:
                width *= d
            self.body = nn.Sequential(nn.Flatten(), nn.Linear(width, 16), nn.ReLU(), nn.Linear(16, num_classes))
            self.reset_parameters()

        def forward(self, x):
            return self.body(x)


    def blobs(split_seed, data_root, download):
        g = torch.Generator().manual_seed(split_seed)
        def split(n):
            y = torch.randint(0, 3, (n,), generator=g)
            x = torch.randn(n, 2, 4, 4, generator=g) + y.view(-1, 1, 1, 1).float()
            return Split(x, y)
        return DataBundle("blobs", (2, 4, 4), 3, split(96), split(32), split(32))


    register_model("tinynet", TinyNet)
    register_dataset(DatasetSpec("blobs", blobs, (2, 4, 4), 3))

    from paitune.config import Range
    from paitune.errors import PaituneError
    from paitune.proxies import ProxySpec, register_proxy
    from paitune.pruning import (
        AllocationSpec, ControlSpec, MethodSpec, method_option, prunable_parameters, register_allocation,
        register_control, register_method,
    )


    def last_dense(shapes, sparsity):  # the last layer dense, the others sharing what is left uniformly
        sizes = {name: math.prod(shape) for name, shape in shapes.items()}
        *rest, last = sizes
        density = ((1 - sparsity) * sum(sizes.values()) - sizes[last]) / sum(sizes[n] for n in rest)
        if not 0 <= density <= 1:
            raise PaituneError(f"last_dense cannot meet sparsity {sparsity}")
        return {**{name: density for name in rest}, last: 1.0}


    def mirror(masks, seed):  # each layer's mask read backwards: the same count, other positions
        return {name: m.reshape(-1).flip(0).reshape(m.shape) for name, m in masks.items()}


    def largest_init(inputs):
        center = inputs.options["center"]  # keeps the weights whose magnitude is farthest from it
        params = prunable_parameters(inputs.model).items()
        scores = {name: (p.detach().abs().double().cpu() - center).abs() for name, p in params}
        return lambda masks: scores


    register_allocation(AllocationSpec("last_dense", densities=last_dense))
    register_control(ControlSpec("mirror", masks=mirror, if_hurts="mask positions matter"))
    register_method(MethodSpec("largest_init", make_scorer=largest_init, options=[
        method_option("center", "float", 0.0, "the magnitude scored lowest", range=Range(0.0)),
    ]))
    register_proxy(ProxySpec("kept", lambda masked, x, y: float(sum(int(m.sum()) for m in masked.masks.values()))))
    """
)


def _run(args, tmp_path, **env):
    (tmp_path / "my_plugin.py").write_text(PLUGIN)
    path = os.pathsep.join(p for p in (str(tmp_path), os.environ.get("PYTHONPATH", "")) if p)
    env = paitune_env(PYTHONPATH=path, **env)
    return subprocess.run(
        [sys.executable, "-m", "paitune", *args], capture_output=True, text=True, env=env, cwd=tmp_path
    )


def test_registered_names_work_through_the_cli_and_a_space(tmp_path):
    done = _run(["prune", "--model", "tinynet", "--dataset", "blobs", "--method", "snip", "--json"], tmp_path,
                PAITUNE_PLUGINS="my_plugin")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert '"density"' in done.stdout
    (tmp_path / "space.yaml").write_text(
        "settings: {dataset: blobs, epochs: 2}\nparams:\n  model: {type: categorical, choices: [tinynet, mlp]}\n"
    )
    done = _run(["spaces", "check", "space.yaml"], tmp_path, PAITUNE_PLUGINS="my_plugin")
    assert done.returncode == 0, done.stderr


def test_without_the_plugin_the_name_is_unknown_and_a_missing_plugin_is_one_line(tmp_path):
    done = _run(["prune", "--model", "tinynet"], tmp_path)
    assert done.returncode == 2 and "unknown model 'tinynet'" in done.stderr
    (tmp_path / "space.yaml").write_text("params:\n  control: {type: categorical, choices: [none, mirror]}\n")
    done = _run(["spaces", "check", "space.yaml"], tmp_path)
    assert done.returncode == 2 and "unknown control 'mirror'" in done.stderr
    done = _run(["prune"], tmp_path, PAITUNE_PLUGINS="not_a_module_here")
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "plug-in 'not_a_module_here' could not be imported" in done.stderr


# The CLI run inside a driver script: cli(*args) -> {code, out, err}. Importing paitune.cli loads
# no plug-in; main() does.
CLI_IN_PROCESS = textwrap.dedent(
    """
    import contextlib, io, json, sys
    from paitune.cli import main

    def cli(*args):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as stop:
                code = stop.code
        return {"code": code, "out": out.getvalue(), "err": err.getvalue()}
    """
)


def _run_driver(tmp_path, script: str) -> dict:
    """Run ``script`` in a fresh process with the plug-in named in PAITUNE_PLUGINS; its JSON output."""
    (tmp_path / "driver.py").write_text(CLI_IN_PROCESS + script)
    (tmp_path / "my_plugin.py").write_text(PLUGIN)
    path = os.pathsep.join(p for p in (str(tmp_path), os.environ.get("PYTHONPATH", "")) if p)
    done = subprocess.run([sys.executable, "driver.py"], capture_output=True, text=True, cwd=tmp_path,
                          env=paitune_env(PYTHONPATH=path, PAITUNE_PLUGINS="my_plugin"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


# Runs in one process with the plug-in loaded: the CLI's help and runs, a space check and a trial.
DRIVER = textwrap.dedent(
    """
    from paitune.trial import prepare_trial

    prune = ["prune", "--model", "tinynet", "--dataset", "blobs", "--sparsity", "0.5", "--json"]
    trial = prepare_trial({"dataset": "blobs", "model": "tinynet", "method": "largest_init", "sparsity": 0.5,
                           "allocation": "last_dense", "control": "mirror", "epochs": 1, "proxies": ["kept"]})
    json.dump({
        "help": cli("prune", "--help"),
        "plain": cli(*prune, "--method", "snip", "--allocation", "last_dense"),
        "mirrored": cli(*prune, "--method", "snip", "--allocation", "last_dense", "--control", "mirror"),
        "too_sparse": cli(*prune, "--method", "snip", "--allocation", "last_dense", "--sparsity", "0.95"),
        "phew": cli(*prune, "--method", "phew", "--control", "mirror"),
        "space": cli("spaces", "check", "space.yaml"),
        "trial": {"meta": trial.masks.meta, "proxies": trial.proxies, "density": trial.report.density},
    }, sys.stdout, default=str)
    """
)


def test_a_registered_allocation_and_control_are_values_everywhere(tmp_path):
    (tmp_path / "space.yaml").write_text(
        "settings: {dataset: blobs, model: tinynet, epochs: 2, sparsity: 0.5}\nparams:\n"
        "  method: {type: categorical, choices: [largest_init, snip]}\n"
        "  allocation: {type: categorical, choices: [last_dense, erk]}\n"
        "  control: {type: categorical, choices: [none, mirror]}\n"
    )
    runs = _run_driver(tmp_path, DRIVER)
    help_text = runs["help"]["out"]
    assert runs["help"]["code"] == 0 and all(name in help_text for name in ("last_dense", "mirror", "largest_init"))
    plain, mirrored = (json.loads(runs[key]["out"]) for key in ("plain", "mirrored"))
    assert plain["layers"][-1]["density"] == 1.0 and abs(plain["density"] - 0.5) < 0.01
    assert mirrored["config"]["control"] == "mirror" and mirrored["mask_hash"] != plain["mask_hash"]
    assert [layer["kept"] for layer in mirrored["layers"]] == [layer["kept"] for layer in plain["layers"]]
    assert runs["too_sparse"]["code"] == 2 and "last_dense cannot meet sparsity 0.95" in runs["too_sparse"]["err"]
    # phew refuses a control that changes scores; mirror changes the finished mask, so it fits.
    assert runs["phew"]["code"] == 0, runs["phew"]["err"]
    assert runs["space"]["code"] == 0, runs["space"]["err"]
    # A trial (what each Ray worker runs) loads the plug-in itself and prunes with its names.
    trial = runs["trial"]
    assert (trial["meta"]["method"], trial["meta"]["allocation"], trial["meta"]["control"]) == (
        "largest_init", "last_dense", "mirror",
    )  # fmt: skip
    assert trial["meta"]["control_applies"] and trial["proxies"]["kept"] > 0 and abs(trial["density"] - 0.5) < 0.01


# A plug-in method's option is a trial key like a built-in's: set from the CLI, searched by a space,
# checked, recorded, and read by a trial that (as in a Ray worker) loads the plug-in itself.
OPTIONS_DRIVER = textwrap.dedent(
    """
    from paitune.search import trainable

    reports = []
    trainable.tune.get_checkpoint = lambda: None
    trainable.tune.report = lambda result, checkpoint=None: reports.append(result)
    trainable.assigned_device = lambda: ("cpu", 1)
    config = {"dataset": "blobs", "model": "tinynet", "method": "largest_init", "largest_init_center": 0.3,
              "sparsity": 0.5, "epochs": 1}
    trainable.run_trial(config, checkpoint_every_s=1e9, report_every_s=0.0)  # loads the plug-in first

    from paitune.config import config_hash
    from paitune.trial import resolve_config

    prune = ["prune", "--dataset", "blobs", "--model", "tinynet", "--method", "largest_init", "--json"]
    json.dump({
        "hash": reports[0]["config_hash"],
        "expected": config_hash(resolve_config(config)),
        "default": config_hash(resolve_config({**config, "largest_init_center": None})),
        "centered": cli(*prune, "--method-option", "center=0.5"),
        "plain": cli(*prune),
        "bad": cli(*prune, "--method-option", "center=-1"),
        "space": cli("spaces", "check", "space.yaml"),
        "bad_space": cli("spaces", "check", "bad_space.yaml"),
    }, sys.stdout, default=str)
    """
)


def test_a_plugin_methods_options_are_trial_keys(tmp_path):
    (tmp_path / "space.yaml").write_text(
        "settings: {dataset: blobs, model: tinynet, method: largest_init, epochs: 1}\n"
        "params:\n  largest_init_center: {type: float, low: 0.0, high: 0.5}\n"
    )
    (tmp_path / "bad_space.yaml").write_text(
        "settings: {dataset: blobs, model: tinynet, method: largest_init, largest_init_center: -0.5}\n"
    )
    runs = _run_driver(tmp_path, OPTIONS_DRIVER)
    assert runs["hash"] == runs["expected"] != runs["default"]  # the trial ran with center 0.3
    centered, plain = json.loads(runs["centered"]["out"]), json.loads(runs["plain"]["out"])
    assert centered["config"]["largest_init_center"] == 0.5 and plain["config"]["largest_init_center"] is None
    assert centered["mask_hash"] != plain["mask_hash"]
    assert runs["bad"]["code"] == 2 and "center" in runs["bad"]["err"]
    assert runs["space"]["code"] == 0, runs["space"]["err"]
    assert runs["bad_space"]["code"] == 2 and "largest_init_center" in runs["bad_space"]["err"]
