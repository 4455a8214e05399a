"""Ray's and Optuna's private APIs are used in paitune.search.internals only, for the tested versions."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import tomllib

from paitune.errors import PaituneError
from paitune.search import internals

ROOT = Path(__file__).resolve().parents[1]
PRIVATE = re.compile(
    r"\._ot_|\._storage\.|\._trial_id\b|_ExperimentCheckpointManager|\._completed_trials|\.run_metadata\b"
)


def test_private_names_appear_only_in_the_adapter():
    offenders = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in sorted((ROOT / "paitune").rglob("*.py"))
        if path.name != "internals.py"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if PRIVATE.search(line)
    ]
    assert offenders == []


def test_pyproject_pins_the_tested_range():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for package, tested in internals.TESTED.items():
        major, minor = map(int, tested.split("."))
        assert any(d.startswith(package) and f">={tested},<{major}.{minor + 1}" in d for d in deps), package


def test_installed_versions_pass_and_others_are_refused_with_one_line(monkeypatch):
    internals.check_versions()
    monkeypatch.delenv(internals.ALLOW_UNTESTED_ENV, raising=False)
    monkeypatch.setattr(internals, "version", lambda package: "9.1.0")
    with pytest.raises(PaituneError) as err:
        internals.check_versions()
    assert "tested with ray 2.60.x" in str(err.value) and "\n" not in str(err.value)
    monkeypatch.setenv(internals.ALLOW_UNTESTED_ENV, "1")
    internals.check_versions()


def test_the_adapter_reaches_what_it_wraps():
    """Each wrapped internal exists in the installed versions (a release that renames one fails here)."""
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    study = optuna.create_study()
    trial = study.ask()
    frozen = study.trials[0]
    internals.set_trial_attr(study, frozen, "k", 1)
    assert internals.stored_trial(study, internals.storage_id(frozen)).user_attrs["k"] == 1
    assert internals.attach_trial(study, frozen).number == trial.number
    study.enqueue_trial({})
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))[0]
    internals.close_waiting_trial(study, waiting, optuna.trial.TrialState.FAIL)
    assert study.trials[-1].state == optuna.trial.TrialState.FAIL
    search = OptunaSearch(space=lambda t: None, metric="m", mode="max")
    search.set_search_properties("m", "max", {})
    assert isinstance(internals.ray_optuna_trials(search), dict)
    assert isinstance(internals.ray_completed_trials(search), set)
    assert internals.ray_optuna_study(search) is not None
    manager = internals.experiment_checkpoint_manager_class()
    assert callable(manager.sync_up_experiment_state)


def test_a_package_copied_without_metadata_is_read_from_its_module(monkeypatch):
    from importlib.metadata import PackageNotFoundError

    def no_metadata(package):
        raise PackageNotFoundError(package)

    monkeypatch.setattr(internals, "installed_version", no_metadata)
    import optuna
    import ray

    assert internals.version("ray") == ray.__version__ and internals.version("optuna") == optuna.__version__
    internals.check_versions()
