"""paitune.config: each option declared once, and everything derived from it agrees with it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from paitune.cli import build_parser
from paitune.config import COMPONENTS, TRIAL_DEFAULTS, TRIAL_OPTIONS, check_value, config_hash, resolve_config
from paitune.config.cli import parse_text
from paitune.config.docs import render
from paitune.config.sweep import SweepOptions
from paitune.errors import PaituneError
from paitune.results.rows import config_column_types
from paitune.spaces import compile_space, load_space_text
from paitune.training import TrainConfig

DOCS = Path(__file__).resolve().parents[1] / "docs" / "config.md"


def test_docs_table_is_generated_from_the_options():
    assert DOCS.read_text() == render(), "regenerate: python -m paitune.config.docs > docs/config.md"


@pytest.mark.parametrize("name", list(TRIAL_OPTIONS))
def test_every_default_is_a_valid_value(name):
    option = TRIAL_OPTIONS[name]
    check_value(option, option.default)


def test_train_config_defaults_are_the_trial_defaults():
    train = TrainConfig()
    for option in COMPONENTS["training"] + COMPONENTS["run"]:
        assert getattr(train, option.name) == option.default
    assert {f.name for f in dataclasses.fields(TrainConfig)} >= {o.name for o in COMPONENTS["training"]}


def test_every_option_has_a_column_type():
    from paitune.results import schema as rs

    assert set(config_column_types()) | set(rs.TRIALS_FIXED.names) >= set(TRIAL_OPTIONS)


def test_prune_flags_cover_the_options_and_list_every_name(capsys):
    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["prune", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for component in ("data", "model", "pruning", "run"):
        for option in COMPONENTS[component]:
            assert "--" + option.name.replace("_", "-") in text
    from paitune.pruning import CONTROLS
    from paitune.sparse.config import TRIAL_METHODS

    for name in TRIAL_METHODS + tuple(CONTROLS):
        assert name in text


def test_sweep_flag_defaults_are_the_options_defaults():
    args = build_parser().parse_args(["sweep"])
    for f in dataclasses.fields(SweepOptions):
        if f.name != "verbose":
            assert getattr(args, f.name) == getattr(SweepOptions(), f.name), f.name


def test_options_added_later_keep_old_hashes_at_their_default():
    base = resolve_config({"method": "snip"})
    assert base["step_size"] is None and base["gamma"] == 0.1
    assert base["nesterov"] is False and base["lr_milestones"] == [0.5, 0.75]
    later = ("step_size", "gamma", "nesterov", "lr_milestones")
    without = {k: v for k, v in base.items() if k not in later}
    assert config_hash(base) == config_hash(without)
    assert config_hash(resolve_config({"method": "snip", "gamma": 0.5})) != config_hash(base)
    assert config_hash(resolve_config({"method": "snip", "nesterov": True})) != config_hash(base)
    assert config_hash(resolve_config({"method": "snip", "lr_milestones": [0.3, 0.6]})) != config_hash(base)
    # the default given as a tuple resolves to the default list, so it is left out of the hash too
    assert config_hash(resolve_config({"method": "snip", "lr_milestones": (0.5, 0.75)})) == config_hash(base)


def test_options_a_method_does_not_read_are_held_at_their_default():
    config = resolve_config({"method": "snip", "update_interval": 7, "rewind_epoch": 1})
    assert config["update_interval"] == TRIAL_DEFAULTS["update_interval"]
    assert resolve_config({"method": "rigl", "update_interval": 7})["update_interval"] == 7


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"momentum": 1.0}, "momentum must be in [0, 1)"),
        ({"gamma": 0.0}, "gamma must be in (0, 1]"),
        ({"step_size": 0}, "step_size must be >= 1"),
        ({"optimizer": "rmsprop"}, "unknown optimizer 'rmsprop'"),
        ({"epochs": 2.5}, "epochs must be a whole number"),
        ({"bogus": 1}, "unknown trial config keys ['bogus']"),
        ({"nesterov": "true"}, "nesterov must be true or false"),
        ({"lr_milestones": "0.5,0.75"}, "lr_milestones must be a list of numbers like [0.5, 0.75], each in (0, 1)"),
        ({"lr_milestones": [0.5, "x"]}, "lr_milestones[1] must be a number, got 'x'"),
        ({"lr_milestones": [0.5, float("nan")]}, "lr_milestones[1] must be a finite number"),
        ({"lr_milestones": [0.75, 0.25]}, "lr_milestones must be strictly increasing, got [0.75, 0.25]"),
        ({"lr_milestones": [0.5, 1]}, "lr_milestones[1] must be in (0, 1), got 1.0"),
    ],
)
def test_bad_values_are_one_line(values, message):
    with pytest.raises(PaituneError) as err:
        resolve_config(values)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"nesterov": True, "optimizer": "adam"}, "nesterov applies to the sgd optimizer only, not 'adam'"),
        ({"nesterov": True, "momentum": 0}, "nesterov needs momentum > 0"),
        ({"lr_schedule": "multistep", "epochs": 2}, "lr_milestones [0.5, 0.75] fall at epochs [1, 1] of 2"),
        ({"lr_schedule": "multistep", "epochs": 1, "lr_milestones": [0.5]}, "0.5 of the run falls at epoch 1 of 1"),
    ],
)
def test_training_rules_across_options_are_one_line(values, message):
    from paitune.trial import resolve_config as resolve_trial

    with pytest.raises(PaituneError) as err:
        resolve_trial({"method": "snip", **values})
    assert message in str(err.value) and "\n" not in str(err.value)


def test_nesterov_and_milestones_that_fit_resolve():
    from paitune.trial import resolve_config as resolve_trial

    config = resolve_trial({"method": "snip", "nesterov": True, "lr_schedule": "multistep", "epochs": 4,
                            "lr_milestones": [0.25, 0.75]})  # fmt: skip
    assert (config["nesterov"], config["lr_milestones"]) == (True, [0.25, 0.75])
    # milestones only multistep reads are not checked against a run too short for them
    assert resolve_trial({"method": "snip", "epochs": 1})["lr_milestones"] == [0.5, 0.75]


def test_list_of_numbers_from_command_line_text():
    option = TRIAL_OPTIONS["lr_milestones"]
    assert parse_text(option, "0.5,0.75") == [0.5, 0.75]
    assert parse_text(option, "0.3") == [0.3]
    with pytest.raises(PaituneError) as err:
        parse_text(option, "0.5,half")
    assert str(err.value) == "--lr-milestones '0.5,half': lr_milestones must be comma-separated numbers like 0.5,0.75"
    assert parse_text(TRIAL_OPTIONS["nesterov"], "True") is True


def test_multistep_options_reach_a_trial_from_a_space():
    space = load_space_text(
        "settings: {lr_schedule: multistep, lr_milestones: [0.25, 0.5], gamma: 0.5, epochs: 8, nesterov: true}\n"
        "params:\n  method: {type: categorical, choices: [random]}\n"
    )
    compiled = compile_space(space)
    import optuna

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    config = compiled.define_by_run(study.ask())
    train = TrainConfig.from_trial_config(config)
    assert (train.lr_schedule, train.lr_milestones) == ("multistep", [0.25, 0.5])
    assert (train.gamma, train.nesterov) == (0.5, True)


def test_a_list_of_numbers_is_a_text_column_of_the_trials_table():
    from paitune.results.rows import TrialRecord, trial_row, trials_schema

    config = {"method": "random", "lr_schedule": "multistep", "lr_milestones": [0.25, 0.5], "epochs": 8,
              "proxies": ["params", "flops"], "dataset": "synthetic", "synthetic_shape": [3, 8, 8]}  # fmt: skip
    schema = trials_schema([], [])
    row = trial_row(TrialRecord("t", config), experiment="e", status="completed", error=None, schema=schema,
                    search_params=[]).to_pylist()[0]  # fmt: skip
    assert (row["lr_milestones"], row["proxies"], row["synthetic_shape"]) == ("0.25,0.5", "params,flops", "3x8x8")
    assert row["nesterov"] is False


def test_step_schedule_options_reach_a_trial_from_a_space():
    space = load_space_text(
        "settings: {lr_schedule: step, step_size: 2, gamma: 0.5, epochs: 4}\n"
        "params:\n  method: {type: categorical, choices: [random]}\n"
    )
    compiled = compile_space(space)
    import optuna

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    config = compiled.define_by_run(study.ask())
    train = TrainConfig.from_trial_config(config)
    assert (train.lr_schedule, train.step_size, train.gamma) == ("step", 2, 0.5)


def test_a_method_option_whose_trial_key_is_taken_is_refused_and_nothing_registered():
    from paitune.pruning import MethodSpec, method_names, method_option, register_method

    spec = MethodSpec("drop", make_scorer=lambda inputs: None, options=[method_option("fraction", "float", 0.5, "x")])
    with pytest.raises(ValueError, match="trial key 'drop_fraction', which is taken"):
        register_method(spec)
    assert "drop" not in method_names() and TRIAL_OPTIONS["drop_fraction"].component == "sparse"


def test_two_explicit_maps_are_filed_as_two_allocations():
    from paitune.config import TRIAL_DEFAULTS, allocation_label
    from paitune.results.rows import TrialRecord, trial_row, trials_schema

    first, second = {"0.weight": 0.1, "2.weight": 0.3}, {"0.weight": 0.3, "2.weight": 0.1}
    labels = []
    for densities in (first, second, dict(reversed(list(first.items())))):
        record = TrialRecord("t", {**TRIAL_DEFAULTS, "allocation": densities})
        row = trial_row(record, experiment="e", status="completed", error=None, schema=trials_schema([], []),
                        search_params=[])  # fmt: skip
        labels.append(row.column("allocation")[0].as_py())
    # One name per map (the keys' order does not matter), never a name two maps share.
    assert labels[0] == labels[2] == allocation_label(first) and labels[1] == allocation_label(second)
    assert labels[0] != labels[1] and all(label.startswith("explicit:") for label in labels)
    assert allocation_label("erk") == "erk"
