"""The cifar preset end to end on CIFAR-shaped synthetic data at a tiny size (real Ray)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from paitune.config.sweep import SweepOptions
from paitune.errors import PaituneError
from paitune.search.plan import plan_sweep
from paitune.search.sweep import execute_sweep
from paitune.spaces import load_space
from paitune.spaces.check import check_value
from paitune.trial import resolve_config


def test_cifar_preset_trains_with_standard_augmentation_by_default():
    space = load_space("cifar")
    assert space.settings["augment"] == "standard"


def test_training_mode_defaults_keep_the_plain_loop_and_bad_values_are_one_line_errors():
    config = resolve_config({})
    assert {k: config[k] for k in ("augment", "precision", "channels_last", "compile", "eval_every")} == {
        "augment": "none", "precision": "fp32", "channels_last": False, "compile": False, "eval_every": 1,
    }  # fmt: skip
    for key, value, message in [
        ("precision", "fp8", "unknown precision"),
        ("augment", "mixup", "unknown augment"),
        ("channels_last", "yes", "channels_last must be true or false"),
        ("eval_every", 0, "eval_every must be >= 1"),
    ]:
        with pytest.raises(PaituneError, match=message):
            check_value(key, value)
    with pytest.raises(PaituneError, match="unknown precision"):
        resolve_config({"precision": "fp8"})


@pytest.mark.slow
@pytest.mark.ray
def test_cifar_preset_runs_end_to_end_on_synthetic_data(ray_session, tmp_path):
    sets = [
        "dataset=synthetic", "synthetic_shape=[3,32,32]", "model=resnet20", "epochs=3", "seeds=[0]",
        "scheduler.grace_period=1", "precision=bf16", "channels_last=true", "eval_every=3",
        "prune_batches=1", "prune_batch_size=32", "proxies=[grad_norm,synflow]",
        "params.method.choices=[random,snip]", "params.sparsity.choices=[0.9]",
        "params.allocation.choices=[global]",
    ]  # fmt: skip
    plan = plan_sweep(SweepOptions(space="cifar", out=str(tmp_path), name="c", sampler="random", num_samples=2,
                                   max_concurrent=2, verbose=0, sets=sets))  # fmt: skip
    grid = execute_sweep(plan)
    assert not grid.errors
    trials = pd.read_parquet(tmp_path / "c" / "trials")
    # 2 sampled, their shuffle arms, the dense reference
    assert len(trials) == 5 and set(trials.status) <= {"completed", "stopped"}
    assert (trials.augment == "standard").all() and (trials.precision == "bf16").all()
    assert trials.channels_last.all() and not trials["compile"].any() and (trials.eval_every == 3).all()
    assert all(json.loads(c)["augment"] == "standard" for c in trials.config_json)
    epochs = pd.read_parquet(tmp_path / "c" / "epochs")
    # rungs at 1 and 3 and the last epoch are measured; epoch 2 is not (eval_every=3)
    measured = epochs.dropna(subset=["val_acc"])
    assert set(measured.epoch) <= {1, 3} and 1 in set(measured.epoch)
    assert epochs[epochs.epoch == 2].val_acc.isna().all() and epochs[epochs.epoch == 2].test_acc.isna().all()
    assert epochs.train_loss.notna().all()
    done = trials[trials.status == "completed"]
    assert done.test_acc.notna().all() and (done.epochs_run == 3).all()
