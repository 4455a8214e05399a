"""A plug-in registers a model and a dataset; spaces, the CLI and a trial accept their names."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from conftest import paitune_env

PLUGIN = textwrap.dedent(
    """
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
    done = _run(["prune"], tmp_path, PAITUNE_PLUGINS="not_a_module_here")
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "plug-in 'not_a_module_here' could not be imported" in done.stderr
