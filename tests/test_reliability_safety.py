"""Reproducibility and safety.

- The same config and seed give the same mask (hash) and the same metrics on CPU, across two
  separate sweeps; each trial row records its mask hash.
- YAML is parsed with ``yaml.safe_load`` only; checkpoints are read with ``torch.load(...,
  weights_only=True)`` and paitune's own state is JSON, so nothing from disk is unpickled by
  paitune; a Ray paitune starts has its dashboard on 127.0.0.1 and token authentication on.
"""

from __future__ import annotations

import json
import pickle
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import ROOT, kill_session, paitune_env

from paitune.errors import PaituneError

PACKAGE = ROOT / "paitune"

REPRO_SPACE = """
name: repro
settings: {dataset: digits, model: mlp, epochs: 2, batch_size: 64, lr: 0.05, sparsity: 0.9, proxies: [synflow]}
params:
  method: {type: categorical, choices: [random, synflow]}
seeds: [0, 1]
scheduler: {type: fifo}
"""


@pytest.mark.ray
@pytest.mark.slow
def test_same_config_and_seed_give_the_same_mask_and_metrics_across_sweeps(ray_session, tmp_path):
    from paitune.config.sweep import SweepOptions
    from paitune.pruning import mask_hash
    from paitune.search.plan import plan_sweep
    from paitune.search.sweep import execute_sweep
    from paitune.trial import prepare_trial

    space = tmp_path / "repro.yaml"
    space.write_text(REPRO_SPACE)
    tables = {}
    for name in ("first", "second"):
        plan = plan_sweep(SweepOptions(space=str(space), out=str(tmp_path), name=name, sampler="grid", verbose=0))
        execute_sweep(plan)
        trials = pd.read_parquet(tmp_path / name / "trials").set_index("config_hash").sort_index()
        epochs = pd.read_parquet(tmp_path / name / "epochs")
        tables[name] = (trials, epochs.merge(trials.reset_index()[["trial_id", "config_hash"]], on="trial_id"))
    (t1, e1), (t2, e2) = tables["first"], tables["second"]
    # 2 methods x 2 seeds + a dense reference per seed: the same configs both times
    assert len(t1) == 6 and list(t1.index) == list(t2.index)
    assert t1.mask_hash.notna().all() and (t1.mask_hash == t2.mask_hash).all()
    pruned = t1[t1.method != "dense"]
    assert pruned.mask_hash.nunique() == 4  # a different seed or method gives a different mask
    for column in ("val_acc", "test_acc", "best_val_acc", "density_achieved", "params_kept", "proxy_synflow"):
        assert (t1[column] == t2[column]).all(), column  # bit-for-bit on CPU
    key = ["config_hash", "epoch"]
    m1, m2 = e1.sort_values(key).reset_index(drop=True), e2.sort_values(key).reset_index(drop=True)
    for column in ("train_loss", "val_loss", "val_acc", "test_acc"):
        assert (m1[column] == m2[column]).all(), column
    # the recorded hash is the hash of the mask the trial really used (recomputed without Ray)
    row = pruned.iloc[0]
    prepared = prepare_trial(json.loads(row.config_json))
    assert mask_hash(prepared.masks) == row.mask_hash == prepared.mask_hash


def _source_files():
    return [p for p in PACKAGE.rglob("*.py")]


def test_yaml_is_only_ever_loaded_safely():
    unsafe = re.compile(r"yaml\.(load|unsafe_load|full_load|load_all)\s*\(|Loader\s*=")
    offenders = [f"{p}:{i}" for p in _source_files() for i, line in enumerate(p.read_text().splitlines(), 1)
                 if unsafe.search(line)]  # fmt: skip
    assert not offenders


def test_a_space_cannot_run_code(tmp_path):
    from paitune.spaces import load_space

    marker = tmp_path / "pwned"
    space = tmp_path / "evil.yaml"
    space.write_text(f'name: !!python/object/apply:os.system ["touch {marker}"]\nsettings: {{epochs: 1}}\n')
    with pytest.raises(PaituneError, match="invalid YAML"):
        load_space(str(space))
    assert not marker.exists()


def test_nothing_on_disk_is_unpickled_by_paitune():
    pickles = re.compile(r"\b(pickle|cloudpickle|dill|joblib)\.(load|loads)\s*\(")
    torch_load = re.compile(r"torch\.load\(")
    for path in _source_files():
        text = path.read_text()
        assert not pickles.search(text), path
        for match in torch_load.finditer(text):
            call = text[match.start() : text.index("\n", match.start())]
            assert "weights_only=True" in call, f"{path}: {call}"


def test_checkpoint_loading_refuses_pickled_code(tmp_path):
    from paitune.search.trainable import load_checkpoint

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    evil = tmp_path / "trial.pt"
    with open(evil, "wb") as handle:
        pickle.dump({"trainer": Payload()}, handle)
    with pytest.raises(pickle.UnpicklingError):
        load_checkpoint(evil)
    assert not marker.exists()
    # a real checkpoint (tensors and plain containers) loads
    good = tmp_path / "good.pt"
    torch.save({"trainer": {"epoch": 1, "w": torch.ones(2)}, "masks": {"a": torch.ones(2, dtype=torch.bool)}}, good)
    assert load_checkpoint(good)["trainer"]["epoch"] == 1


def test_ray_started_by_paitune_keeps_its_dashboard_local_and_requires_a_token(tmp_path):
    """In a fresh process (not this session's Ray): paitune's start_ray, then what Ray runs."""
    probe = r"""
import json, sys, pathlib
from paitune.search.ray_procs import start_ray, descendants
import os, ray
from ray._raylet import get_authentication_mode, AuthenticationMode
start_ray(None, pathlib.Path(sys.argv[1]))
cmdlines = [pathlib.Path(f"/proc/{p}/cmdline").read_text().split("\0") for p in descendants(os.getpid())]
hosts = [a.split("=", 1)[1] for c in cmdlines if any("dashboard.py" in x for x in c) for a in c if a.startswith("--host=")]
facts = {"token": get_authentication_mode() == AuthenticationMode.TOKEN,
         "dashboard_hosts": hosts,
         "webui": ray._private.worker._global_node.address_info.get("webui_url")}
print(json.dumps(facts), flush=True)
ray.shutdown()
"""
    env = paitune_env()
    env.pop("RAY_AUTH_MODE", None)
    proc = subprocess.Popen([sys.executable, "-c", probe, str(tmp_path)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        kill_session(proc.pid)
    assert proc.returncode == 0, err[-3000:]
    facts = json.loads(out.strip().splitlines()[-1])
    assert facts["token"] is True  # Ray's gRPC ports answer only to holders of the cluster token
    assert facts["dashboard_hosts"] and set(facts["dashboard_hosts"]) == {"127.0.0.1"}
    assert not facts["webui"] or facts["webui"].startswith("127.0.0.1")
    assert "Token authentication is enabled" not in err  # the expected default is not shouted about


def test_cluster_yaml_opens_nothing_to_the_world():
    import yaml

    text = (ROOT / "cluster.yaml").read_text()
    config = yaml.safe_load(text)
    assert "0.0.0.0" not in text and "::/0" not in text and "IpRanges" not in text and "IpPermissions" not in text
    head = " ".join(config["head_start_ray_commands"])
    workers = " ".join(config["worker_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head
    assert "RAY_AUTH_MODE=token" in head and "RAY_AUTH_MODE=token" in workers
    # the security group is named, so Ray does not create its own (which opens SSH to 0.0.0.0/0)
    assert config["provider"]["security_group"]["GroupName"]
    for node in config["available_node_types"].values():
        assert "SecurityGroupIds" not in node["node_config"] or node["node_config"]["SecurityGroupIds"]
