"""Bad input corpus: malformed spaces and command lines.

Each case must give exit status 2 and one line on stderr that names the problem (and the fix),
no traceback, start no Ray (nothing that starts Ray is even called) and write no file. Most cases
run in-process through ``paitune.cli.main`` (fast); a few run as real subprocesses, where "no Ray
started" is checked on the machine: no Ray session folder of that process and no process left.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, kill_session, paitune_env, session_pids

GOOD = """
name: good
settings: {dataset: digits, model: mlp, epochs: 2}
params:
  method: {type: categorical, choices: [random, snip]}
  sparsity: {type: categorical, choices: [0.5, 0.9]}
seeds: [0]
num_samples: 2
"""

# name -> (space YAML, or None for the good one; extra command-line args; expected text in the line)
SPACE_CASES = {
    "yaml-syntax-bracket": ("params: {method: [random, snip}\n", [], "invalid YAML"),
    "yaml-syntax-indent": ("settings:\n  epochs: 2\n   lr: 0.1\n", [], "invalid YAML"),
    "yaml-not-a-mapping": ("- random\n- snip\n", [], "must be a YAML mapping"),
    "yaml-empty": ("", [], "the space is empty"),
    "yaml-duplicate-key": ("settings: {epochs: 1, epochs: 2}\n", [], "line 1: key 'epochs' appears twice"),
    "yaml-duplicate-nested-key": (
        GOOD + "scheduler:\n  type: fifo\n  type: asha\n",
        [],
        "key 'type' appears twice in one mapping",
    ),
    "unknown-top-level-key": (GOOD + "parms: {}\n", [], "parms: unknown key"),
    "unknown-setting": ("settings: {epoch: 2}\n", [], "unknown setting 'epoch'"),
    "unknown-key-in-param": (
        "params:\n  method: {type: categorical, choices: [snip], weights: [1]}\n",
        [],
        "weights: unknown key",
    ),
    "unknown-param-type": (
        "params:\n  lr: {type: uniform, low: 0.1, high: 1}\n",
        [],
        "choose one of: categorical, float, int, fixed",
    ),
    "unknown-param-name": (
        "params:\n  learning_rate: {type: categorical, choices: [0.1]}\n",
        [],
        "unknown parameter 'learning_rate'",
    ),
    "wrong-type-epochs": ("settings: {epochs: two}\n", [], "epochs must be an integer"),
    "wrong-type-seeds": ("seeds: zero\n", [], "seeds"),
    "wrong-type-choices": ("params:\n  method: {type: categorical, choices: snip}\n", [], "choices"),
    "empty-categorical": ("params:\n  method: {type: categorical, choices: []}\n", [], "choices"),
    "sparsity-one": (
        "params:\n  sparsity: {type: categorical, choices: [0.5, 1.0]}\n",
        [],
        "sparsity must be in [0, 1)",
    ),
    "sparsity-negative": (
        "params:\n  sparsity: {type: float, low: -0.1, high: 0.5}\n",
        [],
        "sparsity must be in [0, 1)",
    ),
    "sparsity-setting-one": ("settings: {sparsity: 1.0}\n", [], "sparsity must be in [0, 1)"),
    "log-lower-bound-zero": (
        "params:\n  lr: {type: float, low: 0, high: 1, log: true}\n",
        [],
        "log-scale range needs low > 0",
    ),
    "range-low-above-high": ("params:\n  lr: {type: float, low: 0.5, high: 0.1}\n", [], "low must be < high"),
    "conditional-unknown-param": (
        "params:\n  method: {type: categorical, choices: [synflow]}\n  iterations: {type: int, low: 5, high: 9, when: {methd: [synflow]}}\n",
        [],
        "condition on unknown parameter 'methd'",
    ),
    "conditional-unknown-value": (
        "params:\n  method: {type: categorical, choices: [snip]}\n  iterations: {type: int, low: 5, high: 9, when: {method: [synflow]}}\n",
        [],
        "'synflow' is not a value of 'method'",
    ),
    "unknown-model": ("settings: {model: resnet9000}\n", [], "unknown model 'resnet9000'"),
    "unknown-dataset": ("settings: {dataset: imagenet22k}\n", [], "unknown dataset 'imagenet22k'"),
    "unknown-method": (
        "params:\n  method: {type: categorical, choices: [snip, snipp]}\n",
        [],
        "unknown pruning method 'snipp'",
    ),
    "unknown-allocation": ("settings: {allocation: erk2}\n", [], "unknown allocation 'erk2'"),
    "unknown-control": ("settings: {control: shufle}\n", [], "unknown control 'shufle'"),
    "unknown-proxy": ("settings: {proxies: [synflow, zenn]}\n", [], "unknown proxy 'zenn'"),
    "momentum-one": ("settings: {momentum: 1.0}\n", [], "momentum must be in [0, 1)"),
    "epochs-searched": ("params:\n  epochs: {type: int, low: 1, high: 5}\n", [], "epochs is the training budget"),
    "grace-beyond-budget": ("settings: {epochs: 2}\nscheduler: {grace_period: 5}\n", [], "exceeds the budget"),
    "unknown-objective": ("objectives: [{metric: accuracy, mode: max}]\n", [], "objectives"),
    "duplicate-seeds": ("seeds: [0, 0]\n", [], "seeds must be distinct"),
    "searched-without-family": (
        "params:\n  allocation: {type: categorical, choices: [global, searched]}\n",
        [],
        "needs an allocation_search",
    ),
    "missing-data-root": (
        "settings: {dataset: cifar10, data_root: /nonexistent/data}\n",
        [],
        "not found; set data_root",
    ),
    # valid key by key, but a rule across keys (IMP's rewind epoch inside the budget) that only the
    # trial's own code knows: the planner runs it on every config the space can give
    "combination-a-trial-rejects": (
        "settings: {epochs: 2, rewind_epoch: 5}\nparams:\n  method: {type: categorical, choices: [snip, imp]}\n"
        "scheduler: {type: fifo}\n",
        [],
        "the space gives trials that cannot run (method='imp', control='none'): trial config key 'rewind_epoch'",
    ),
    "multistep-milestones-collide": (
        "settings: {epochs: 7, lr_schedule: multistep, lr_milestones: [0.5, 0.55]}\n",
        [],
        "lr_milestones [0.5, 0.55] fall at epochs [3, 3] of 7: 0.5 and 0.55 are both epoch 3; give fewer milestones",
    ),
    "multistep-milestone-at-the-end": (
        "settings: {epochs: 1, lr_schedule: multistep, lr_milestones: [0.5]}\n",
        [],
        "lr_milestones: 0.5 of the run falls at epoch 1 of 1, the last",
    ),
    "milestone-out-of-range": (
        "settings: {lr_milestones: [0.5, 1.5]}\n",
        [],
        "settings.lr_milestones: lr_milestones[1] must be in (0, 1), got 1.5",
    ),
    "milestones-not-increasing": (
        "settings: {lr_milestones: [0.75, 0.5]}\n",
        [],
        "settings.lr_milestones: lr_milestones must be strictly increasing",
    ),
    "milestones-searched": (
        "params:\n  lr_milestones: {type: categorical, choices: [0.5, 0.75]}\n",
        [],
        "params.lr_milestones: lr_milestones is a list of fractions; set it under settings",
    ),
    "nesterov-with-adam": (
        "settings: {optimizer: adam, nesterov: true}\n",
        [],
        "nesterov applies to the sgd optimizer only, not 'adam'",
    ),
    "nesterov-without-momentum": (
        "settings: {momentum: 0.0, nesterov: true}\n",
        [],
        "nesterov needs momentum > 0",
    ),
    "nesterov-searched-with-adam": (
        "params:\n  optimizer: {type: categorical, choices: [sgd, adam]}\n"
        "  nesterov: {type: categorical, choices: [false, true]}\n",
        [],
        "(method='random', optimizer='adam', nesterov=True, control='none'): nesterov applies to the sgd optimizer",
    ),
}

# name -> (args after `paitune sweep`, with {space} {out}; expected text)
ARG_CASES = {
    "set-makes-a-combination-a-trial-rejects": (
        ["{space}", "--set", "method=imp", "--set", "rewind_epoch=3", "--scheduler", "fifo"],
        "trial config key 'rewind_epoch' must be in [0, epochs)",
    ),
    "set-multistep-on-a-short-run": (
        ["{space}", "--set", "lr_schedule=multistep"],
        "lr_milestones [0.5, 0.75] fall at epochs [1, 1] of 2: 0.5 and 0.75 are both epoch 1",
    ),
    "set-milestones-as-text": (
        ["{space}", "--set", "lr_milestones=0.5,0.75"],
        "lr_milestones must be a list of numbers like [0.5, 0.75], each in (0, 1), got '0.5,0.75'",
    ),
    "set-nesterov-without-momentum": (
        ["{space}", "--set", "nesterov=true", "--set", "momentum=0"],
        "nesterov needs momentum > 0",
    ),
    "unknown-sampler": (["{space}", "--sampler", "bayes"], "unknown sampler 'bayes'"),
    "unknown-scheduler": (["{space}", "--scheduler", "hyperband"], "unknown scheduler 'hyperband'"),
    "num-samples-zero": (["{space}", "--num-samples", "0"], "--num-samples must be >= 1"),
    "num-samples-not-int": (["{space}", "--num-samples", "ten"], "invalid int value: 'ten'"),
    "max-concurrent-zero": (["{space}", "--max-concurrent", "0"], "--max-concurrent must be >= 1"),
    "cpus-per-trial-zero": (["{space}", "--cpus-per-trial", "0"], "--cpus-per-trial must be a finite number > 0"),
    "cpus-per-trial-infinite": (["{space}", "--cpus-per-trial", "inf"], "--cpus-per-trial must be a finite number"),
    "gpus-per-trial-nan": (["{space}", "--gpus-per-trial", "nan"], "--gpus-per-trial must be a finite number >= 0"),
    "sampler-seed-negative": (["{space}", "--sampler-seed", "-1"], "--sampler-seed must be in [0, 4294966295]"),
    # two contexts (sparsity 0.5, 0.9): the second's sampler gets seed + 1000
    "sampler-seed-too-large": (["{space}", "--sampler-seed", "4294966296"], "for 2 contexts"),
    "gpus-without-gpu": (["{space}", "--gpus-per-trial", "1"], "no CUDA GPU"),
    "set-without-equals": (["{space}", "--set", "epochs"], "expected key=value"),
    "set-sparsity-one": (["{space}", "--set", "sparsity=1.0"], "sparsity must be in [0, 1)"),
    "set-unknown-key": (["{space}", "--set", "epochz=2"], "epochz: unknown key"),
    "set-missing-data-root": (
        ["{space}", "--set", "dataset=mnist", "--set", "data_root=/nonexistent"],
        "not found; set data_root",
    ),
    "space-file-missing": (["{out}/nope.yaml"], "does not exist"),
    "unknown-preset": (["defualt"], "unknown space (preset name or YAML file) 'defualt'"),
    "bad-name": (["{space}", "--name", "../escape"], "--name"),
    "out-is-a-file": (["{space}", "--out", "{space}/sub"], "is not a directory"),
    "negative-checkpoint-interval": (["{space}", "--checkpoint-every", "-1"], "--checkpoint-every"),
    "negative-report-interval": (["{space}", "--report-every", "-0.5"], "--report-every must be >= 0 seconds"),
    "out-uri-no-filesystem": (["{space}", "--out", "nosuchscheme://bucket/x"], "pyarrow cannot open this location"),
    "cmaes-multi-objective": (
        [
            "{space}",
            "--sampler",
            "cmaes",
            "--set",
            "objectives=[{metric: val_acc, mode: max}, {metric: flops_sparse, mode: min}]",
        ],
        "handles one objective",
    ),
    "grid-continuous": (["{space}", "--sampler", "grid", "--set", "lr={type: float, low: 0.01, high: 0.1}"], "lr"),
    "dense-at-a-sparsity": (
        ["{space}", "--set", "params.method.choices=[random, dense]"],
        "method 'dense' is the unpruned reference: use sparsity 0",
    ),
    "seed-beyond-32-bits": (["{space}", "--set", "seeds=[0, 4294967296]"], "seed must be in [0, 4294967296)"),
    "allocation-map-of-other-layers": (
        ["{space}", "--set", "allocation={fc.weight: 0.5}"],
        "no trial of model mlp on dataset digits can run: explicit allocation must name every prunable layer",
    ),
    "samples-not-a-multiple-of-seeds": (
        ["{space}", "--set", "seeds=[0, 1]", "--num-samples", "3"],
        "--num-samples 3 is not a multiple of the 2 seeds (every sampled config runs once per seed): use 2 or 4",
    ),
    "allocation-map-of-another-sparsity": (
        ["{space}", "--set", "allocation={layers.1.weight: 0.5, layers.3.weight: 0.5, layers.5.weight: 0.5}"],
        "model mlp on dataset digits at sparsity 0.9: explicit allocation removes 0.5 of the weights, not the "
        "sparsity 0.9 asked",
    ),
    "model-for-another-input": (
        ["{space}", "--set", "dataset=synthetic", "--set", "synthetic_shape=[5]", "--set", "model=resnet20"],
        "no trial of model resnet20 on dataset synthetic can run: model 'resnet20' needs an image input shape",
    ),
    "resume-missing": (["--resume"], "--resume: no sweep 's'"),
    "resume-with-space": (["{space}", "--resume"], "--resume: no sweep 's'"),
}


def _tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*")) if path.exists() else []


@pytest.fixture
def no_ray(monkeypatch):
    """Anything that would start or join Ray fails the test."""
    import ray

    import paitune.search.sweep as sweep

    def forbidden(*args, **kwargs):
        raise AssertionError("bad input must be rejected before Ray starts")

    monkeypatch.setattr(ray, "init", forbidden)
    monkeypatch.setattr(sweep, "start_ray", forbidden)


def _run_main(argv, capsys):
    from paitune.cli import main

    code = main(argv)
    err = capsys.readouterr().err
    return code, err


def _assert_one_line(code, err, expected):
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert expected in lines[0], lines[0]
    assert lines[0].startswith("paitune sweep: error:") or lines[0].startswith("paitune sweep: error"), lines[0]


@pytest.mark.parametrize("case", list(SPACE_CASES))
def test_bad_space_is_rejected_with_one_line(case, tmp_path, capsys, no_ray):
    text, extra, expected = SPACE_CASES[case]
    space = tmp_path / "space.yaml"
    space.write_text(text)
    out = tmp_path / "out"
    before = _tree(tmp_path)
    code, err = _run_main(["sweep", str(space), "--out", str(out), "--name", "s", *extra], capsys)
    _assert_one_line(code, err, expected)
    assert _tree(tmp_path) == before  # nothing written
    # the same file through `paitune spaces check` fails the same way (except where only the
    # sweep knows: data on disk)
    if case != "missing-data-root":
        from paitune.cli import main

        assert main(["spaces", "check", str(space)]) == 2
        assert expected in capsys.readouterr().err


@pytest.mark.parametrize("case", list(ARG_CASES))
def test_bad_command_line_is_rejected_with_one_line(case, tmp_path, capsys, no_ray):
    args, expected = ARG_CASES[case]
    space = tmp_path / "space.yaml"
    space.write_text(GOOD)
    out = tmp_path / "out"
    argv = ["sweep", *[a.replace("{space}", str(space)).replace("{out}", str(out)) for a in args]]
    if "--out" not in argv:
        argv += ["--out", str(out)]
    if "--name" not in argv:
        argv += ["--name", "s"]
    before = _tree(tmp_path)
    if case == "num-samples-not-int":  # argparse's own usage error: also one line, status 2
        with pytest.raises(SystemExit) as info:
            _run_main(argv, capsys)
        err = capsys.readouterr().err
        assert info.value.code == 2 and len(err.strip().splitlines()) == 1 and expected in err
        return
    code, err = _run_main(argv, capsys)
    _assert_one_line(code, err, expected)
    assert _tree(tmp_path) == before


def test_unwritable_out_and_existing_or_corrupt_sweeps(tmp_path, capsys, no_ray):
    space = tmp_path / "space.yaml"
    space.write_text(GOOD)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    # root writes anywhere it has mode bits for; /proc/1 is a directory nobody may create files in
    unwritable = locked if not os.access(locked, os.W_OK) else Path("/proc/1")
    code, err = _run_main(["sweep", str(space), "--out", str(unwritable / "results"), "--name", "s"], capsys)
    _assert_one_line(code, err, "is not writable; pick a directory you can write to")
    locked.chmod(0o700)
    # /proc passes the write-permission probe (as root) but no folder can be made there
    code, err = _run_main(["sweep", str(space), "--out", "/proc/forbidden", "--name", "s"], capsys)
    _assert_one_line(code, err, "--out /proc/forbidden: cannot create /proc/forbidden/s")

    out = tmp_path / "out"
    (out / "done").mkdir(parents=True)
    (out / "done" / "sweep.json").write_text("{}")
    code, err = _run_main(["sweep", str(space), "--out", str(out), "--name", "done"], capsys)
    _assert_one_line(code, err, "already exists under")
    (out / "broken").mkdir()
    (out / "broken" / "sweep.json").write_text('{"options": {')  # a manifest cut short
    code, err = _run_main(["sweep", "--out", str(out), "--name", "broken", "--resume"], capsys)
    _assert_one_line(code, err, "--resume: cannot read")
    for name, manifest in (("foreign", '{"space": 3}'), ("unknown", '{"space": {}, "options": {"bogus": 1}}')):
        (out / name).mkdir()
        (out / name / "sweep.json").write_text(manifest)  # JSON, but not a plan paitune wrote
        code, err = _run_main(["sweep", "--out", str(out), "--name", name, "--resume"], capsys)
        _assert_one_line(code, err, "is not a sweep plan paitune wrote")
    # the plan decides the search: a flag that would change it is refused, not silently ignored
    code, err = _run_main(["sweep", "--out", str(out), "--name", "done", "--resume", "--num-samples", "50",
                           "--sampler", "random"], capsys)  # fmt: skip
    _assert_one_line(code, err, "--resume continues the sweep as it was planned; drop --num-samples, --sampler")
    assert sorted(p.name for p in out.iterdir()) == ["broken", "done", "foreign", "unknown"]


# ---- real subprocesses: the installed entry point, and a second process holding the lock --------


def _run_cli(args, tmp_path) -> subprocess.CompletedProcess:
    sessions_before = set(Path("/tmp/ray").glob("session_*")) if Path("/tmp/ray").exists() else set()
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from paitune.cli import main; sys.exit(main())", *args],
        cwd=ROOT, env=paitune_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    stdout, stderr = proc.communicate(timeout=120)
    assert not session_pids(proc.pid)  # it started no process that outlived it
    new_sessions = (set(Path("/tmp/ray").glob("session_*")) if Path("/tmp/ray").exists() else set()) - sessions_before
    assert not [p for p in new_sessions if p.name.endswith(f"_{proc.pid}")]  # and no Ray session
    kill_session(proc.pid)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


@pytest.mark.parametrize(
    "args,expected",
    [
        (["sweep", "{space_bad}", "--out", "{out}", "--name", "s"], "invalid YAML"),
        (
            ["sweep", "{space}", "--out", "{out}", "--name", "s", "--set", "method=snipp"],
            "unknown pruning method 'snipp'",
        ),
        (["sweep", "--out", "{out}", "--name", "ghost", "--resume"], "--resume: no sweep 'ghost'"),
        (
            ["sweep", "{space}", "--out", "{out}", "--name", "s", "--set", "optimizer=adam", "--set", "nesterov=true"],
            "nesterov applies to the sgd optimizer only, not 'adam'",
        ),
    ],
)
def test_bad_input_in_a_real_process(args, expected, tmp_path):
    (tmp_path / "good.yaml").write_text(GOOD)
    (tmp_path / "bad.yaml").write_text("params: {method: [random, snip}\n")
    out = tmp_path / "out"
    argv = [a.format(space=tmp_path / "good.yaml", space_bad=tmp_path / "bad.yaml", out=out) for a in args]
    done = _run_cli(argv, tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0] and "Traceback" not in done.stderr, done.stderr
    assert not out.exists()


def test_two_sweeps_with_the_same_name_at_once(tmp_path):
    """A second ``paitune sweep --name N`` while another process runs sweep N: refused at once."""
    (tmp_path / "good.yaml").write_text(GOOD)
    out = tmp_path / "out"
    # The first "sweep": a real process holding the experiment lock, as a running sweep does.
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from pathlib import Path; from paitune.search.lock import SweepLock; "
         "lock = SweepLock(Path(sys.argv[1]), 's'); print('locked', flush=True); time.sleep(60)", str(out / "s")],
        cwd=ROOT, stdout=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = _tree(out)
        for args in (["sweep", str(tmp_path / "good.yaml")], ["sweep", "--resume"]):
            done = _run_cli([*args, "--out", str(out), "--name", "s"], tmp_path)
            assert done.returncode == 2, done.stderr
            line = done.stderr.strip()
            assert "\n" not in line and f"already running (pid {holder.pid})" in line and "use another --name" in line
        assert _tree(out) == before
    finally:
        kill_session(holder.pid)
        holder.wait()
    # once the holder is gone (even killed), its flock is gone too
    from paitune.search.lock import lock_holder

    assert lock_holder(out / "s") is None


def test_resume_of_a_sweep_another_host_runs(tmp_path, capsys, no_ray):
    """`paitune sweep --resume` (and a new sweep of that name) while a driver on another host that
    shares the filesystem holds the lease: one line naming it, exit 2, nothing written."""
    import json
    import time

    out = tmp_path / "out"
    (out / "s").mkdir(parents=True)
    (out / "s" / "sweep.json").write_text("{}")
    record = {"host": "node-b", "pid": 99, "start": 1, "token": "t", "lease_s": 60.0, "renewed": time.time() - 2}
    (out / "s" / ".lock").write_text(json.dumps(record))
    (tmp_path / "good.yaml").write_text(GOOD)
    before = _tree(tmp_path)
    for args in (["--resume"], [str(tmp_path / "good.yaml")]):
        code, err = _run_main(["sweep", *args, "--out", str(out), "--name", "s"], capsys)
        _assert_one_line(code, err, "already running (pid 99) on host node-b, lease renewed")
    assert _tree(tmp_path) == before


# ---- broken result directories: `paitune analyze` names the file and what is wrong --------------


def _planted(root: Path, name: str = "exp", **spec) -> Path:
    from planted import PlantedSpec, write_results

    return write_results(root, name, PlantedSpec(experiment="exp", seeds=2, **spec), files_per_table=3)


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:300])


def _other_version(path: Path, version: int = 2) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    index = table.schema.get_field_index("schema_version")
    pq.write_table(table.set_column(index, "schema_version", pa.array([version] * len(table), pa.int32())), path)


def _copy_trials_as_other_sweep(root: Path) -> list[str]:
    """A second directory of the same experiment name whose trial ids clash with the first's but
    whose trials are others (another sampler seed drew other configs)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    other = _planted(root, "exp-copy", seed=7)
    for part in sorted((other / "trials").glob("*.parquet")):
        table = pq.read_table(part)
        hashes = pa.array([f"other-{h}" for h in table["config_hash"].to_pylist()])
        pq.write_table(table.set_column(table.schema.get_field_index("config_hash"), "config_hash", hashes), part)
    return [str(root / "exp"), str(other)]


# name -> (how to break DIR/exp (returns extra dirs to analyze, or None); exit status; expected text)
# Status 0: the broken file is skipped with a warning and the rest analyzed; 2: nothing usable.
ANALYZE_CASES = {
    "truncated-trials-file": (lambda d: _truncate(d / "trials" / "part-00001.parquet"), 0,
                              "trials/part-00001.parquet: not a readable Parquet file"),
    "not-parquet-in-trials": (lambda d: (d / "trials" / "notes.parquet").write_text("a,b\n1,2\n"), 0,
                              "trials/notes.parquet: not a readable Parquet file"),
    "truncated-epochs-file": (lambda d: _truncate(d / "epochs" / "part-00002.parquet"), 0,
                              "epochs/part-00002.parquet: not a readable Parquet file"),
    "empty-layers-file": (lambda d: (d / "layers" / "part-00000.parquet").write_bytes(b""), 0,
                          "layers/part-00000.parquet: not a readable Parquet file"),
    "other-schema-version-file": (lambda d: _other_version(d / "trials" / "part-00000.parquet"), 0,
                                  "trials/part-00000.parquet: schema version 2, this paitune reads version 1"),
    "same-trial-file-twice": (
        lambda d: (d / "trials" / "part-copy.parquet").write_bytes((d / "trials" / "part-00000.parquet").read_bytes()),
        0, "trials/part-copy.parquet: trial 't0' of experiment 'exp' again"),
    "every-trials-file-truncated": (lambda d: [_truncate(p) for p in (d / "trials").glob("*.parquet")], 2,
                                    "no usable trials file (3 skipped"),
    "every-trials-file-other-version": (lambda d: [_other_version(p, 3) for p in (d / "trials").glob("*.parquet")],
                                        2, "schema version 3, this paitune reads version 1"),
    "two-sweeps-clashing-trial-ids": (lambda d: _copy_trials_as_other_sweep(d.parent), 2,
                                      "with different configs: these are tables of two different sweeps"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(ANALYZE_CASES))
def test_broken_results_are_named_not_a_traceback(case, tmp_path, capsys):
    """Each broken directory: the load names the file and what is wrong; where the rest is usable
    the file is left out with a warning, otherwise `paitune analyze` exits 2 with one line."""
    from paitune.analysis import load_results
    from paitune.cli import main
    from paitune.errors import PaituneError

    break_it, status, expected = ANALYZE_CASES[case]
    exp = _planted(tmp_path)
    extra = break_it(exp)
    dirs = extra if isinstance(extra, list) and extra and isinstance(extra[0], str) else [str(exp)]
    if status == 0:
        results = load_results(*dirs)
        assert any(expected in line for line in results.skipped), results.skipped
        assert len(results.trials) > 0 and results.trials.groupby(["experiment"]).size().max() <= 40
        assert not results.epochs.duplicated(["tix", "epoch"]).any()
        return
    before = _tree(tmp_path)
    with pytest.raises(PaituneError):
        load_results(*dirs)
    code = main(["analyze", *dirs, "--out", str(tmp_path / "report")])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("paitune analyze: error:") and expected in lines[0], lines[0]
    assert _tree(tmp_path) == before  # no report written


def test_analyze_skips_a_broken_file_with_a_warning_end_to_end(tmp_path, capsys):
    """The whole command on a directory with a truncated trials file and a file of another schema
    version: two warnings on stderr naming them, the report of the rest, exit 0."""
    from paitune.cli import main

    exp = _planted(tmp_path)
    _truncate(exp / "trials" / "part-00001.parquet")
    _other_version(exp / "epochs" / "part-00000.parquet")
    code = main(["analyze", str(exp), "--out", str(tmp_path / "report"), "--n-boot", "100", "--json"])
    captured = capsys.readouterr()
    warnings = captured.err.strip().splitlines()
    assert code == 0, captured.err
    assert len(warnings) == 2 and all(w.startswith("paitune analyze: warning: ") for w in warnings), warnings
    assert "trials/part-00001.parquet: not a readable Parquet file" in warnings[0]
    assert "epochs/part-00000.parquet: schema version 2" in warnings[1]
    assert (tmp_path / "report" / "summary.json").exists()


def test_a_report_folder_that_cannot_be_written_is_refused_before_the_analysis(tmp_path, capsys, monkeypatch):
    import paitune.analysis as analysis
    from paitune.cli import main

    exp = _planted(tmp_path)
    a_file = tmp_path / "a-file"
    a_file.write_text("x")

    def forbidden(*args, **kwargs):
        raise AssertionError("the analysis ran before --out was checked")

    monkeypatch.setattr(analysis, "load_results", forbidden)
    for out, expected in ((a_file, "is not a directory"), (a_file / "report", "is not a writable directory")):
        before = _tree(tmp_path)
        code = main(["analyze", str(exp), "--out", str(out)])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and expected in err and "Traceback" not in err, err
        assert _tree(tmp_path) == before


def test_a_profile_sparsity_no_trial_ran_at_is_refused_naming_the_levels(tmp_path, capsys):
    """A level the sweep did not run would leave the layerwise profiles empty: one line listing the
    levels it did run, nothing written."""
    from paitune.analysis import load_results
    from paitune.analysis.layers import profile_levels
    from paitune.cli import main

    exp = _planted(tmp_path)
    levels = profile_levels(load_results(exp))
    assert len(levels) >= 2
    before = _tree(tmp_path)
    code = main(["analyze", str(exp), "--out", str(tmp_path / "report"), "--profile-sparsity", "0.123"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert "--profile-sparsity 0.123: no trial ran at that level" in err
    assert ", ".join(f"{level:g}" for level in levels) in err
    assert _tree(tmp_path) == before


def test_an_address_nothing_answers_at_is_one_line_not_a_wait(tmp_path, monkeypatch):
    # Ray retries an unreachable head for minutes and ignores Ctrl-C meanwhile.
    import ray

    from paitune.errors import PaituneError
    from paitune.search.ray_procs import start_ray

    def forbidden(*args, **kwargs):
        raise AssertionError("ray.init was reached")

    monkeypatch.setattr(ray, "init", forbidden)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    with pytest.raises(PaituneError, match=r"cannot connect to Ray at 127\.0\.0\.1:1: nothing answers"):
        start_ray("127.0.0.1:1", tmp_path)


def test_a_vision_dataset_without_torchvision_is_refused_by_the_planner(tmp_path, capsys, monkeypatch, no_ray):
    from paitune.data.vision import VISION_DATASETS

    spec = VISION_DATASETS["mnist"]
    (tmp_path / "data" / spec.folder).mkdir(parents=True)
    for name in spec.files:
        (tmp_path / "data" / spec.folder / name).write_bytes(b"")
    monkeypatch.setitem(sys.modules, "torchvision", None)  # import torchvision raises ImportError
    space = tmp_path / "space.yaml"
    space.write_text(GOOD)
    out = tmp_path / "out"
    argv = ["sweep", str(space), "--out", str(out), "--name", "s", "--set", "dataset=mnist",
            "--set", f"data_root={tmp_path / 'data'}"]  # fmt: skip
    code, err = _run_main(argv, capsys)
    _assert_one_line(code, err, "the image datasets need torchvision")
    assert not out.exists()
