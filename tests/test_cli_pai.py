"""`paitune prune` / `paitune proxies` as a user runs them: real subprocesses, exit codes, output."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def paitune(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "paitune", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def test_prune_json_reports_layers_density_and_collapse():
    out = paitune("prune", "--model", "cnn", "--method", "snip", "--sparsity", "0.9", "--allocation", "erk", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["density"] == pytest.approx(0.1, abs=1e-3)
    assert report["collapsed"] is False and len(report["layers"]) >= 3
    assert report["flops_sparse"] < report["flops_dense"] and len(report["mask_hash"]) == 16
    assert report["config"]["allocation"] == "erk"


def test_prune_table_shows_collapse():
    out = paitune("prune", "--model", "mlp", "--method", "magnitude", "--sparsity", "0.999")
    assert out.returncode == 0, out.stderr
    assert "(50/50200 weights kept)" in out.stdout and "LAYER COLLAPSE" in out.stdout


def test_proxies_json():
    out = paitune(
        "proxies",
        "--model",
        "cnn",
        "--method",
        "random",
        "--sparsity",
        "0.5",
        "--names",
        "snip,synflow,params",
        "--json",
    )
    assert out.returncode == 0, out.stderr
    values = json.loads(out.stdout)["proxies"]
    assert set(values) == {"snip", "synflow", "params"} and values["params"] > 0


def test_proxies_without_names_runs_every_proxy_its_settings_allow():
    # "All" proxies: swap_reg needs swap_mu and swap_sigma, so it is left out without them (the
    # README's command) and computed with them.
    base = ("proxies", "--model", "cnn", "--method", "snip", "--sparsity", "0.9", "--json")
    out = paitune(*base)
    assert out.returncode == 0, out.stderr
    values = json.loads(out.stdout)["proxies"]
    assert "swap_reg" not in values and {"snip", "synflow", "naswot", "zen", "params"} <= set(values)
    out = paitune(*base, "--swap-mu", "0.5", "--swap-sigma", "1.0")
    assert out.returncode == 0, out.stderr
    assert "swap_reg" in json.loads(out.stdout)["proxies"]


def test_proxies_help_gives_its_own_sparsity_default():
    # proxies scores the dense model unless --sparsity is given; its help says so, prune's says 0.9.
    helps = {command: " ".join(paitune(command, "--help").stdout.split()) for command in ("proxies", "prune")}
    assert "fraction of the prunable weights removed (default: 0)" in helps["proxies"]
    assert "fraction of the prunable weights removed (default: 0.9)" in helps["prune"]


@pytest.mark.parametrize(
    "args, needle",
    [
        (["prune", "--method", "bogus"], "unknown pruning method"),
        (["prune", "--sparsity", "1.0"], "sparsity must be in [0, 1)"),
        (["prune", "--sparsity", "-0.5"], "sparsity must be in [0, 1)"),
        (["prune", "--model", "vgg99"], "unknown model"),
        (["prune", "--dataset", "imagenet"], "unknown dataset"),
        (["prune", "--dataset", "cifar10", "--data-root", "/nonexistent/dir"], "not found"),
        (["prune", "--allocation", "zigzag"], "unknown allocation"),
        (["prune", "--allocation", "missing.json"], "allocation file missing.json not found"),
        (["prune", "--control", "flip"], "unknown control"),
        (["prune", "--sparsity", "abc"], "sparsity must be a number"),
        (["prune", "--seed", "18446744073709551616"], "seed must be in [0, 4294967296)"),
        (["prune", "--method", "dense", "--sparsity", "0.5"], "method 'dense' is the unpruned reference"),
        (["proxies", "--names", "snip,bogus"], "unknown proxy"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, needle, tmp_path, monkeypatch, capsys):
    from paitune.cli import main

    monkeypatch.chdir(tmp_path)
    try:
        code = main(args)
    except SystemExit as exit_:  # argparse's own usage errors
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], err
    assert "Traceback" not in err and list(tmp_path.iterdir()) == []


def test_an_allocation_file_that_is_not_text_is_one_line(tmp_path, capsys):
    from paitune.cli import main

    binary = tmp_path / "densities.json"
    binary.write_bytes(b"\xff\xfe\x00{")
    assert main(["prune", "--allocation", str(binary)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot be read as UTF-8 JSON text" in err and "Traceback" not in err


def test_bad_input_from_a_real_process():
    out = paitune("prune", "--method", "bogus")
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "Traceback" not in out.stderr


def test_prune_with_method_options_records_them():
    out = paitune(
        "prune", "--model", "cnn", "--method", "prospr", "--sparsity", "0.9", "--prune-batch-size", "32",
        "--method-option", "inner_steps=1", "--method-option", "meta_grads=first_order", "--json",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["density"] == pytest.approx(0.1, abs=1e-4)
    assert report["method_options"] == {
        "inner_steps": 1, "inner_lr": 0.1, "inner_momentum": 0.0, "meta_grads": "first_order",
    }  # fmt: skip


@pytest.mark.parametrize(
    "args, needle",
    [
        (["prune", "--method", "prospr", "--method-option", "steps=2"], "its options: inner_steps, inner_lr"),
        (["prune", "--method", "ntk_sap", "--method-option", "epsilon"], "KEY=VALUE"),
        (["prune", "--method", "ntk_sap", "--method-option", "resamples=0"], "resamples must be >= 1"),
        (
            ["prune", "--method", "ntk_sap", "--method-option", "resamples=two"],
            "resamples=two: resamples must be an integer",
        ),
        (["prune", "--method", "snip", "--method-option", "inner_steps=2"], "takes no option 'inner_steps'"),
        (["prune", "--method", "phew", "--allocation", "erk"], "use allocation 'global'"),
        (["proxies", "--model", "cnn", "--names", "swap_reg"], "needs swap_mu and swap_sigma"),
    ],
)
def test_bad_method_options_are_one_line_exit_2(args, needle):
    out = paitune(*args)
    assert out.returncode == 2 and needle in out.stderr, out.stderr
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr


def test_proxies_new_names_json():
    out = paitune(
        "proxies", "--model", "cnn", "--names", "naswot,zico,meco,swap,swap_reg,zen",
        "--swap-mu", "60", "--swap-sigma", "40", "--json",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    values = json.loads(out.stdout)["proxies"]
    assert list(values) == ["naswot", "zico", "meco", "swap", "swap_reg", "zen"]
    assert values["swap"] > 0 and 0 < values["swap_reg"] <= values["swap"]
