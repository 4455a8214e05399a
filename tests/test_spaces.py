"""Search spaces: presets, compilation to Optuna, conditionals, searched allocations, bad input."""

from __future__ import annotations

import argparse
import math

import optuna
import pytest

from paitune.config import TRIAL_DEFAULTS, TRIAL_KEYS, config_hash
from paitune.errors import PaituneError
from paitune.spaces import (
    compile_space,
    list_presets,
    load_space,
    load_space_text,
)
from paitune.spaces.allocation import depth_weights, scale_to_budget, searched_allocation
from paitune.spaces.check import check_value
from paitune.spaces.compile import finalize, model_layer_shapes
from paitune.spaces.context import context_id, reference_keys, reference_setting

optuna.logging.set_verbosity(optuna.logging.WARNING)

PRESETS = ("default", "sanity", "allocation", "zero_cost", "cifar", "frontier")


def _configs(compiled, n, seed=0):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out = []
    for _ in range(n):
        trial = study.ask()
        out.append((trial, compiled.define_by_run(trial)))
    return out


def test_every_preset_ships_and_validates():
    assert set(PRESETS) <= set(list_presets())
    for name in PRESETS:
        space = load_space(name)
        assert space.name == name and space.description


@pytest.mark.parametrize("name", PRESETS)
def test_presets_compile_to_complete_valid_configs(name):
    compiled = compile_space(load_space(name))
    for _, config in _configs(compiled, 15):
        assert list(config) == list(TRIAL_KEYS)  # every default filled in, canonical order
        for key, value in config.items():
            if key != "allocation" or not isinstance(value, dict):
                check_value(key, value)
        assert config["seed"] in compiled.seeds


def test_config_hash_is_16_hex_and_order_independent():
    config = dict(TRIAL_DEFAULTS)
    h = config_hash(config)
    assert len(h) == 16 and int(h, 16) >= 0
    assert config_hash(dict(reversed(list(config.items())))) == h
    assert config_hash({**config, "seed": 1}) != h


def test_default_preset_covers_the_core_axes():
    space = load_space("default")
    assert set(space.params["method"].choices) == {"random", "magnitude", "snip", "grasp", "synflow"}
    assert {"global", "erk"} <= set(space.params["allocation"].choices)
    # controls run as paired arms of every sampled trial: shuffle is random pruning at the
    # method's own layerwise density
    assert set(space.params["control"].choices) == {"none", "shuffle"}
    assert compile_space(space).control_arms == ["shuffle"]
    # the sparsities are contexts, each covered; the methods and allocations are the choices
    assert len(space.params["sparsity"].choices) >= 3
    assert list(space.context) == ["dataset", "model", "sparsity", "epochs"]
    assert len(compile_space(space).contexts()) == len(space.params["sparsity"].choices)
    # one config per method x allocation cell: every trial runs the budget the question is asked at
    assert space.scheduler.type == "fifo"


ITERATIVE_SPACE = """
settings: {dataset: digits, model: mlp, epochs: 2, sparsity: 0.9}
params:
  method: {type: categorical, choices: [random, magnitude, snip, grasp, synflow, iterative_snip]}
  iterations: {type: int, low: 5, high: 50, log: true, when: {method: [synflow, iterative_snip]}}
"""


def test_conditional_iterations_only_for_iterative_methods():
    # (the default preset fixes iterations as a setting; a conditional parameter, as it once had)
    compiled = compile_space(load_space_text(ITERATIVE_SPACE))
    seen = set()
    for trial, config in _configs(compiled, 60):
        iterative = config["method"] in ("synflow", "iterative_snip")
        assert ("iterations" in trial.params) == iterative
        if iterative:
            assert 5 <= config["iterations"] <= 50
        else:
            assert config["iterations"] is None
        seen.add(config["method"])
    assert {"synflow", "random"} <= seen


def test_seed_replicate_axis_and_settings_override():
    space = load_space("default", ["epochs=2", "method=snip", "seed=[3, 4]"])
    assert space.settings["epochs"] == 2 and "method" not in space.params
    assert space.seeds == [3, 4]
    for _, config in _configs(compile_space(space), 10):
        assert config["method"] == "snip" and config["epochs"] == 2 and config["seed"] in (3, 4)


def test_scale_to_budget_hand_checked():
    # c * (1*100 + 3*100) = 0.5 * 200  ->  c = 0.25
    assert scale_to_budget({"a": 100, "b": 100}, {"a": 1.0, "b": 3.0}, 0.5) == pytest.approx({"a": 0.25, "b": 0.75})
    # b would get 10 * 120/1100 > 1: made dense (100 weights), a keeps the remaining 20 of 100
    assert scale_to_budget({"a": 100, "b": 100}, {"a": 1.0, "b": 10.0}, 0.6) == pytest.approx({"a": 0.2, "b": 1.0})
    assert scale_to_budget({"a": 10}, {"a": 2.0}, 1.0) == {"a": 1.0}


def test_depth_weights_follow_the_slope():
    w = depth_weights(["l0", "l1", "l2"], 2.0)
    assert w["l0"] == pytest.approx(1.0) and w["l2"] == pytest.approx(math.e**2)
    assert w["l0"] < w["l1"] < w["l2"]


def test_searched_allocation_meets_the_sparsity_exactly():
    space = load_space("allocation")
    compiled = compile_space(space)
    shapes = dict(model_layer_shapes("cnn", "digits"))
    sizes = {n: math.prod(s) for n, s in shapes.items()}
    searched = 0
    for trial, config in _configs(compiled, 40, seed=3):
        if not isinstance(config["allocation"], dict):
            assert not any(p.startswith("alloc_") for p in trial.params)
            continue
        searched += 1
        densities = config["allocation"]
        assert list(densities) == list(shapes)
        assert all(0.0 <= d <= 1.0 for d in densities.values())
        kept = sum(densities[n] * sizes[n] for n in sizes)
        assert kept / sum(sizes.values()) == pytest.approx(1 - config["sparsity"], rel=1e-9)
        assert sum(p.startswith("alloc_") for p in trial.params) == len(shapes)
    assert searched > 0


def test_searched_allocation_reaches_prune():
    import torch

    from paitune.models import build_model
    from paitune.pruning import prune

    shapes = dict(model_layer_shapes("mlp", "digits"))
    weights = {n: float(i + 1) for i, n in enumerate(shapes)}
    densities = searched_allocation(shapes, 0.8, weights)
    model = build_model("mlp", (1, 8, 8), 10, seed=0)
    masks = prune(model, "magnitude", sparsity=0.8, allocation=densities)
    kept = sum(int(m.sum()) for m in masks.values())
    total = sum(m.numel() for m in masks.values())
    assert abs(kept / total - 0.2) < 0.01
    for name, mask in masks.items():
        assert float(mask.float().mean()) == pytest.approx(densities[name], abs=1.0 / mask.numel() + 1e-9)
    assert isinstance(masks[next(iter(masks))], torch.Tensor)


def test_grid_points_respect_conditions():
    space = load_space_text(
        """
settings: {epochs: 2}
params:
  method: {type: categorical, choices: [magnitude, synflow]}
  iterations: {type: categorical, choices: [10, 20], when: {method: [synflow]}}
  lr: {type: float, low: 0.01, high: 0.03, step: 0.01}
seeds: [0, 1]
"""
    )
    points = compile_space(space).grid_points()
    # (magnitude + synflow x 2 iterations) x 3 lrs x 2 seeds
    assert len(points) == 3 * 3 * 2
    assert all(("iterations" in p) == (p["method"] == "synflow") for p in points)
    assert len({tuple(sorted(p.items())) for p in points}) == len(points)
    assert (
        len(compile_space(load_space("sanity")).grid_points()) == 144
    )  # 4 methods x 2 sparsities x 6 controls x 3 seeds


MALFORMED = [
    ("params: {method: {type: categorical, choices: [snip]}\n", "invalid YAML"),
    ("- just\n- a list\n", "must be a YAML mapping"),
    ("", "empty"),
    ("setings: {epochs: 2}\n", "setings: unknown key"),
    ("params: {method: {type: categorical, choices: [snip], colour: red}}\n", "params.method.colour: unknown key"),
    ("params: {method: {type: categorical, choices: []}}\n", "params.method.choices"),
    ("params: {sparsity: {type: categorical, choices: [0.5, 1.0]}}\n", "sparsity must be in [0, 1)"),
    ("params: {sparsity: {type: float, low: -0.1, high: 0.9}}\n", "sparsity must be in [0, 1)"),
    ("params: {lr: {type: float, low: 0, high: 0.1, log: true}}\n", "log-scale range needs low > 0"),
    ("params: {lr: {type: float, low: 0.1, high: 0.01}}\n", "low must be < high"),
    ("params: {method: {type: categorical, choices: [snap]}}\n", "unknown pruning method 'snap'"),
    ("settings: {model: resnet7}\n", "unknown model 'resnet7'"),
    ("settings: {dataset: imagenet}\n", "unknown dataset 'imagenet'"),
    ("settings: {epochs: two}\n", "epochs must be an integer"),
    ("settings: {colour: red}\n", "unknown setting 'colour'"),
    (
        "params: {iterations: {type: int, low: 5, high: 9, when: {methd: [synflow]}}}\n",
        "condition on unknown parameter 'methd'",
    ),
    (
        "params:\n  method: {type: categorical, choices: [snip, synflow]}\n"
        "  iterations: {type: int, low: 5, high: 9, when: {method: [grasp]}}\n",
        "'grasp' is not a value of 'method'",
    ),
    ("params: {method: {type: uniform, choices: [snip]}}\n", "choose one of: categorical, float, int, fixed"),
    ("params: {epochs: {type: int, low: 1, high: 5}}\n", "epochs is the training budget"),
    ("params: {seed: {type: categorical, choices: [0, 1]}}\n", "seeds are a replicate axis"),
    ("params: {allocation: {type: categorical, choices: [global, searched]}}\n", "needs an allocation_search"),
    ("allocation_search: {family: per_layer}\n", "no trial uses it"),
    ("settings: {epochs: 3}\nscheduler: {max_t: 5}\n", "scheduler.max_t (5) must equal settings.epochs (3)"),
    ("scheduler: {reduction_factor: 1}\n", "scheduler.reduction_factor"),
    ("seeds: []\n", "seeds"),
    ("objectives: [{metric: accuracy, mode: max}]\n", "objectives[0].metric"),
    ("settings: {proxies: [snip, nope]}\n", "unknown proxy 'nope'"),
    ("params: {method: {type: float, low: 0.1, high: 0.2}}\n", "takes names, not numbers"),
    ("settings: {lr: 0.1}\nparams: {lr: {type: float, low: 0.01, high: 0.1}}\n", "also set under settings"),
]


@pytest.mark.parametrize("text,expected", MALFORMED, ids=[e for _, e in MALFORMED])
def test_malformed_spaces_get_one_clear_line(text, expected):
    with pytest.raises(PaituneError) as info:
        load_space_text(text, "bad.yaml")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("bad.yaml")
    assert expected in message, message


def test_yaml_error_names_the_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("settings:\n  epochs: 2\n  lr: [0.1\n")
    with pytest.raises(PaituneError, match=r"broken.yaml: line \d+"):
        load_space(str(path))


@pytest.mark.parametrize(
    "ref,sets,expected",
    [
        ("no_such_preset", [], "unknown space"),
        ("missing.yaml", [], "does not exist"),
        ("default", ["epochs"], "expected key=value"),
        ("default", ["sparsity=1.5"], "sparsity must be in [0, 1)"),
        ("default", ["scheduler.grace_period=0"], "scheduler.grace_period"),
    ],
)
def test_bad_references_and_overrides(ref, sets, expected, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PaituneError) as info:
        load_space(ref, sets)
    assert expected in str(info.value) and "\n" not in str(info.value)


def _cli(argv):
    from paitune.cli import spaces as spaces_cli

    parser = argparse.ArgumentParser(prog="paitune")
    spaces_cli.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_list_show_check(tmp_path, capsys):
    assert _cli(["spaces", "list"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in PRESETS)
    assert _cli(["spaces", "show", "default"]) == 0
    shown = capsys.readouterr().out
    path = tmp_path / "copy.yaml"
    path.write_text(shown)
    assert _cli(["spaces", "check", str(path)]) == 0
    assert capsys.readouterr().out.strip().endswith("ok")
    path.write_text("settings: {method: snap}\n")
    with pytest.raises(PaituneError, match="unknown pruning method 'snap'"):
        _cli(["spaces", "check", str(path)])


def test_dense_references_one_per_sampled_context():
    space = load_space_text(
        """
settings: {dataset: digits, epochs: 3, lr: 0.02, proxies: [synflow]}
context: [dataset, model, epochs]   # a float range of sparsity is a choice, not a context
params:
  model: {type: categorical, choices: [mlp, cnn]}
  method: {type: categorical, choices: [snip, random]}
  sparsity: {type: float, low: 0.5, high: 0.99}
  lr: {type: categorical, choices: [0.1, 0.01]}
seeds: [3, 4]
""".replace("lr: 0.02, ", "")
    )
    refs = compile_space(space).dense_references()
    assert [(r["model"], r["seed"]) for r in refs] == [("mlp", 3), ("mlp", 4), ("cnn", 3), ("cnn", 4)]
    for r in refs:
        assert (r["method"], r["sparsity"], r["allocation"], r["control"]) == ("dense", 0.0, "global", "none")
        assert r["epochs"] == 3 and r["proxies"] == ["synflow"] and r["iterations"] is None
        assert r["lr"] == TRIAL_DEFAULTS["lr"]  # a searched training setting takes its default
        assert list(r) == list(TRIAL_KEYS)
    only_dense = load_space_text("settings: {method: dense, sparsity: 0.0}\n")
    assert compile_space(only_dense).dense_references() == []


def test_dense_references_pass_the_rules_prune_applies_to_the_dense_method():
    # prune refuses method dense with another allocation, a control or rounds: the references a
    # sweep schedules never carry the space's own.
    from paitune.trial import resolve_config

    space = load_space_text(
        """
settings: {dataset: digits, model: mlp, epochs: 1, allocation: erk, iterations: 7, schedule: linear}
params:
  method: {type: categorical, choices: [synflow, snip]}
  sparsity: {type: categorical, choices: [0.5, 0.9]}
seeds: [0]
"""
    )
    refs = compile_space(space).dense_references()
    assert refs
    for r in refs:
        resolved = resolve_config(r)
        assert (resolved["allocation"], resolved["control"], resolved["iterations"]) == ("global", "none", None)
    with pytest.raises(PaituneError, match="method 'dense' is the unpruned reference: use allocation 'global'"):
        resolve_config({**refs[0], "allocation": "erk"})


def test_dense_references_follow_the_training_values_of_the_context(tmp_path, capsys):
    # augment is part of the context: one dense reference per augment value. prune_batches (a
    # pruning option) is part of it too, but an unpruned model has none: one reference serves both.
    text = """
settings: {dataset: digits, model: mlp, epochs: 2}
context: [dataset, model, sparsity, epochs, augment, prune_batches]
params:
  method: {type: categorical, choices: [snip, random]}
  sparsity: {type: categorical, choices: [0.5, 0.9]}
  augment: {type: categorical, choices: [none, standard]}
  prune_batches: {type: categorical, choices: [1, 4]}
seeds: [0, 1]
"""
    compiled = compile_space(load_space_text(text))
    refs = compiled.dense_references()
    assert [(r["augment"], r["seed"]) for r in refs] == [("none", 0), ("none", 1), ("standard", 0), ("standard", 1)]
    assert all(r["prune_batches"] == TRIAL_DEFAULTS["prune_batches"] for r in refs)
    assert reference_keys(compiled.context_keys) == ("dataset", "model", "epochs", "augment")
    trial = finalize(
        {**compiled.settings, "method": "snip", "sparsity": 0.9, "augment": "standard", "prune_batches": 4}
    )
    dense = next(r for r in refs if r["augment"] == "standard")
    assert reference_setting(compiled.context_of(trial)) == reference_setting(compiled.context_of(dense))
    assert reference_setting(compiled.context_of(trial)) == "augment=standard"
    assert reference_setting(context_id(trial)) == ""  # the default context: dataset, model, budget only
    path = tmp_path / "space.yaml"
    path.write_text(text)
    _cli(["spaces", "check", str(path)])
    assert "dense references: 4 (the unpruned model, one per dataset, model, epochs, augment, seed)" in (
        capsys.readouterr().out
    )


def test_set_params_key_searches_a_setting_instead_of_clashing_with_it():
    space = load_space("default", ["params.lr={type: float, low: 0.01, high: 0.2, log: true}"])
    assert "lr" not in space.settings and space.params["lr"].log
    # and the reverse: a trial key fixes a searched parameter
    assert "method" not in load_space("default", ["method=snip"]).params


# --- the frontier methods' options in a space ----------------------------------------------------


def test_method_option_keys_are_the_registrys_options():
    from paitune.config import METHOD_OPTION_KEYS, TRIAL_OPTIONS
    from paitune.config.options import method_option_of
    from paitune.pruning.registry import registered

    expected = {(spec.name, option) for spec in registered() for option in spec.options}
    assert set(METHOD_OPTION_KEYS.values()) == expected
    assert all(key == f"{method}_{option}" for key, (method, option) in METHOD_OPTION_KEYS.items())
    # The key stores the value in the option's own kind; the method declares the rest.
    assert all(TRIAL_OPTIONS[key].kind == method_option_of(TRIAL_OPTIONS[key]).kind for key in METHOD_OPTION_KEYS)


@pytest.mark.parametrize(
    ("values", "rounds"),
    [
        ({"method": "prospr"}, 1),  # one round unless asked (REFERENCE-frontier.md)
        ({"method": "prospr", "iterations": 3}, 3),
        ({"method": "synflow"}, 100),
        ({"method": "ntk_sap", "iterations": 5}, 5),
        ({"method": "snip", "iterations": 5}, None),  # iterative SNIP is its own method
        ({"method": "phew"}, None),
        ({"method": "dense", "iterations": 5}, None),
        ({"method": "rigl", "init_method": "synflow", "iterations": 7}, 7),  # DST's starting mask
        ({"method": "set", "init_method": "random", "iterations": 7}, None),
    ],
)
def test_finalize_keeps_rounds_for_the_method_that_builds_the_mask(values, rounds):
    base = {"dataset": "digits", "model": "mlp", "epochs": 2, "sparsity": 0.9}
    assert finalize({**base, **values})["iterations"] == rounds


def test_space_searches_prospr_rounds():
    space = """
settings: {dataset: digits, model: mlp, epochs: 2, sparsity: 0.9, method: prospr}
params:
  iterations: {type: categorical, choices: [1, 3]}
"""
    compiled = compile_space(load_space_text(space))
    seen = {config["iterations"] for _, config in _configs(compiled, 12)}
    assert seen == {1, 3}


def test_frontier_preset_searches_prospr_steps_only_for_prospr():
    from paitune.config import METHOD_OPTION_KEYS
    from paitune.search.combinations import check_combinations

    compiled = compile_space(load_space("frontier"))
    check_combinations(compiled)
    seen = set()
    inner = compiled.for_context(compiled.contexts()[0])
    for point in inner.grid_points():
        config = inner.define_by_run(optuna.trial.FixedTrial(point))
        method = config["method"]
        seen.add(method)
        if method == "prospr":
            assert config["prospr_inner_steps"] in (1, 3)
            assert (config["prospr_inner_lr"], config["prospr_meta_grads"]) == (0.1, "full")  # defaults recorded
        else:
            assert all(config[key] is None for key, (owner, _) in METHOD_OPTION_KEYS.items() if owner == "prospr")
        if method == "ntk_sap":
            assert (config["ntk_sap_epsilon"], config["ntk_sap_resamples"]) == (0.01, 1)
        if method == "phew":
            assert config["allocation"] == "global" and config["iterations"] is None
    assert {"random", "synflow", "prospr", "ntk_sap", "phew", "px"} <= seen


@pytest.mark.parametrize(
    "params, settings, needle",
    [
        ("method: {type: categorical, choices: [phew]}\n  allocation: {type: categorical, choices: [erk]}", "",
         "use allocation 'global'"),
        ("method: {type: categorical, choices: [prospr]}\n  prospr_inner_steps: {type: int, low: -1, high: 2}", "",
         "prospr_inner_steps must be >= 0"),
        ("method: {type: categorical, choices: [prospr]}\n  prospr_meta_grads: {type: categorical, choices: [exact]}",
         "", "first_order"),
        ("method: {type: categorical, choices: [snip]}", "\n  proxies: [swap_reg]", "needs swap_mu and swap_sigma"),
    ],
)  # fmt: skip
def test_frontier_space_errors_are_one_line(params, settings, needle):
    from paitune.search.combinations import check_combinations

    text = f"name: t\nsettings:\n  epochs: 2{settings}\nparams:\n  {params}\nnum_samples: 2\n"
    with pytest.raises(PaituneError, match=needle) as err:
        check_combinations(compile_space(load_space_text(text, "t")))
    assert "\n" not in str(err.value)


def test_method_options_from_the_config_reach_prune():
    from paitune.trial import prepare_trial

    config = {"method": "prospr", "sparsity": 0.9, "epochs": 1, "prospr_inner_steps": 1, "prune_batch_size": 32}
    trial = prepare_trial(config)
    assert trial.masks.meta["method_options"]["inner_steps"] == 1
    assert trial.config["prospr_inner_steps"] == 1
    proxies = prepare_trial({"method": "random", "proxies": ["swap_reg"], "swap_mu": 50, "swap_sigma": 10,
                             "model": "cnn", "epochs": 1, "prune_batch_size": 32})  # fmt: skip
    assert proxies.proxies["swap_reg"] >= 0


def test_combinations_a_rule_cannot_build_are_named_before_a_sweep(tmp_path, capsys):
    from paitune.cli import main
    from paitune.spaces.feasibility import unbuildable

    # uniform_plus keeps the CNN's first conv dense (288 of 55,904 weights): sparsity 0.995 and
    # 0.999 are out of its reach; erk and global (which ranks scores) reach every level.
    text = """
name: reach
settings: {dataset: digits, model: cnn, method: magnitude}
params:
  sparsity: {type: categorical, choices: [0.5, 0.995, 0.999]}
  allocation: {type: categorical, choices: [uniform_plus, erk, global]}
"""
    space = load_space_text(text)
    assert unbuildable(space) == [
        "uniform_plus cannot meet sparsity 0.995, 0.999 on cnn (digits): those trials will be recorded failed"
    ]
    cifar = unbuildable(load_space("cifar", []))
    assert cifar == [
        "uniform_plus cannot meet sparsity 0.998047, 0.999 on resnet20 (cifar10): those trials will be recorded failed"
    ]
    assert unbuildable(load_space("default", [])) == []
    path = tmp_path / "reach.yaml"
    path.write_text(text)
    assert main(["spaces", "check", str(path)]) == 0
    assert "note: uniform_plus cannot meet sparsity 0.995, 0.999 on cnn (digits)" in capsys.readouterr().out
