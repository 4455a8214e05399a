"""Fixed configs give bit-identical config hashes, masks and first-epoch metrics.

The expected hashes were recorded from the trial pipeline with one torch thread. A change to how a
config is declared, resolved or hashed must leave all three unchanged; a change meant to alter
results must re-record them and say why in its commit. Float kernels differ between CPU instruction
sets, so the metric hashes are compared only on the instruction set they were recorded on.
"""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

from paitune.config import config_hash
from paitune.trial import prepare_trial, resolve_config

RECORDED_ON = "AVX512"  # torch.backends.cpu.get_cpu_capability() where the hashes were recorded

# (config, config_hash, mask_hash, first-epoch metrics hash); epochs defaults to 2 below.
CASES = [
    ({"method": "random", "sparsity": 0.9}, "0774a62b7458e09b", "a606740a2a92a165", "02b710523ed231a3"),
    (
        {"method": "snip", "sparsity": 0.8, "allocation": "erk", "seed": 3},
        "c1439d49242aa7ed", "bfd30d047005b82c", "1051c53bdeb1b9dd",
    ),
    (
        {"method": "synflow", "sparsity": 0.95, "model": "cnn", "control": "shuffle"},
        "72ab9f4453237934", "ac2b2344f9e3b5f5", "0dd106909398f60f",
    ),
    (
        {"method": "grasp", "sparsity": 0.7, "control": "reinit", "lr": 0.1, "lr_schedule": "step"},
        "4a4a08efe477026f", "944c50f56c28b887", "5b4a9844f13ea6eb",
    ),
    (
        {"method": "set", "sparsity": 0.8, "epochs": 2, "update_interval": 5},
        "326089276e07a681", "236016f5821bd0d9", "5226796811aced46",
    ),
]  # fmt: skip


def _metrics_hash(m) -> str:
    values = [float(v).hex() for v in (m.train_loss, m.val_loss, m.val_acc, m.test_acc)]
    return hashlib.sha256(json.dumps(values).encode()).hexdigest()[:16]


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize(("case", "want_config", "want_mask", "want_metrics"), CASES, ids=lambda v: None)
def test_fixed_config_is_bit_identical(one_thread, case, want_config, want_mask, want_metrics):
    config = {**case, "epochs": case.get("epochs", 2)}
    assert config_hash(resolve_config(config)) == want_config
    trial = prepare_trial(config)
    assert trial.mask_hash == want_mask
    metrics = trial.trainer.run_epoch()
    if torch.backends.cpu.get_cpu_capability() != RECORDED_ON:
        pytest.skip(f"metric hashes were recorded on {RECORDED_ON}; float kernels differ elsewhere")
    assert _metrics_hash(metrics) == want_metrics
