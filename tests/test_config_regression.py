"""Fixed configs give bit-identical config hashes and masks, and the same first-epoch metrics.

The expected values were recorded from the trial pipeline with one torch thread. A change to how a
config is declared, resolved or hashed must leave all three unchanged; a change meant to alter
results must re-record them and say why in its commit. Hashes and masks are compared bit for bit.
Metrics are compared to float tolerance: their float kernels (MKL's, oneDNN's) take different code
paths on different CPUs, which move a loss in its last few bits (about 1e-8 relative across MKL's
and oneDNN's instruction-set paths), while any change to what is trained moves it far more.
"""

from __future__ import annotations

import pytest
import torch

from paitune.config import config_hash
from paitune.trial import prepare_trial, resolve_config

# (config, config_hash, mask_hash, first-epoch (train_loss, val_loss, val_acc, test_acc)); epochs 2.
CASES = [
    (
        {"method": "random", "sparsity": 0.9},
        "0774a62b7458e09b", "a606740a2a92a165", (2.2894529971510753, 2.2775188647936977, 0.25348189415041783, 0.24512534818941503),
    ),
    (
        {"method": "snip", "sparsity": 0.8, "allocation": "erk", "seed": 3},
        "c1439d49242aa7ed", "bfd30d047005b82c", (1.9417675107689893, 0.9794757811139885, 0.7938718662952646, 0.7688022284122563),
    ),
    (
        {"method": "synflow", "sparsity": 0.95, "model": "cnn", "control": "shuffle"},
        "72ab9f4453237934", "ac2b2344f9e3b5f5", (2.302200455042474, 2.295384484081215, 0.1309192200557103, 0.14484679665738162),
    ),
    (
        {"method": "grasp", "sparsity": 0.7, "control": "reinit", "lr": 0.1, "lr_schedule": "step"},
        "4a4a08efe477026f", "944c50f56c28b887", (1.9197029913874883, 1.069608725545134, 0.7465181058495822, 0.7910863509749304),
    ),
    (
        {"method": "set", "sparsity": 0.8, "epochs": 2, "update_interval": 5},
        "326089276e07a681", "236016f5821bd0d9", (2.2706883559081152, 2.2012351203429668, 0.3064066852367688, 0.31197771587743733),
    ),
]  # fmt: skip
LOSS_RTOL = 1e-6
ACCURACY_ATOL = 0.003  # one sample of the digits splits (359 and 360 images), should a near tie flip


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize(("case", "want_config", "want_mask", "want_metrics"), CASES, ids=lambda v: None)
def test_fixed_config_gives_the_recorded_hashes_masks_and_metrics(
    one_thread, case, want_config, want_mask, want_metrics
):
    config = {**case, "epochs": case.get("epochs", 2)}
    assert config_hash(resolve_config(config)) == want_config
    trial = prepare_trial(config)
    assert trial.mask_hash == want_mask
    m = trial.trainer.run_epoch()
    train_loss, val_loss, val_acc, test_acc = want_metrics
    assert (m.train_loss, m.val_loss) == pytest.approx((train_loss, val_loss), rel=LOSS_RTOL, abs=0)
    assert (m.val_acc, m.test_acc) == pytest.approx((val_acc, test_acc), abs=ACCURACY_ATOL)
