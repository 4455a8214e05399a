"""Every combination a space can give is checked before anything starts.

A space's parameters are checked one by one when it loads (``paitune.spaces.check``); some rules
span keys and methods (IMP's ``rewind_epoch`` must fall inside the budget, a method that chooses
its own mask takes no control, ...) and live with the code that runs the trial
(``paitune.trial.resolve_config``). ``check_combinations`` runs those rules on every
config the planner can name: in each context, each combination of the choices (a range by its two
ends, one seed: seeds never make a config invalid), with each control arm, up to
``MAX_CHECKED`` per context. The first config that would fail is one line, naming the values that
make it and how to exclude them, before Ray starts, with nothing written.
"""

from __future__ import annotations

from optuna.trial import FixedTrial

from paitune.errors import PaituneError
from paitune.search.contexts import control_free_methods
from paitune.spaces.check import SEARCHED_ALLOCATION
from paitune.spaces.compile import CONTROL, SEED_PARAM, CompiledSpace, compile_space
from paitune.spaces.schema import Categorical, FloatRange, IntRange

MAX_CHECKED = 20_000  # configs per context; beyond it, an even spread of them


def _ends_only(compiled: CompiledSpace) -> CompiledSpace:
    """The same space with each range reduced to its two ends, one seed and no searched allocation
    (its per-layer weights are always valid), so that it can be enumerated."""
    params = {}
    for name, param in compiled.space.params.items():
        if isinstance(param, (FloatRange, IntRange)):
            param = Categorical(type="categorical", choices=[param.low, param.high], when=param.when)
        elif isinstance(param, Categorical) and name == "allocation" and SEARCHED_ALLOCATION in param.choices:
            kept = [c for c in param.choices if c != SEARCHED_ALLOCATION] or ["global"]
            param = Categorical(type="categorical", choices=kept, when=param.when)
        params[name] = param
    space = compiled.space.model_copy(
        update={"params": params, "seeds": compiled.space.seeds[:1], "allocation_search": None}
    )
    return compile_space(space)


def _described(config: dict, point: dict) -> str:
    keys = ["method", *(k for k in point if k != SEED_PARAM), CONTROL]
    return ", ".join(f"{k}={config[k]!r}" for k in dict.fromkeys(keys) if k in config)


def check_combinations(compiled: CompiledSpace) -> None:
    """Raise PaituneError (one line) at the first config of the space a trial would reject."""
    from paitune.trial import resolve_config

    arms = compiled.control_arms
    free = control_free_methods()
    for context in compiled.contexts():
        inner = _ends_only(compiled.for_context(context))
        points = inner.grid_points()
        if len(points) > MAX_CHECKED:
            step = len(points) / MAX_CHECKED
            points = [points[int(i * step)] for i in range(MAX_CHECKED)]
        for point in points:
            config = inner.define_by_run(FixedTrial(point))
            runs = [config] + ([{**config, CONTROL: arm} for arm in arms] if config["method"] not in free else [])
            for run in runs:
                try:
                    resolve_config(run)
                except PaituneError as err:
                    raise PaituneError(
                        f"the space gives trials that cannot run ({_described(run, point)}): {err}; "
                        "exclude them with a when: condition or drop one of those values"
                    ) from None
