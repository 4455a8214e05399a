"""A validated space -> an Optuna define-by-run function that returns the full trial config.

``CompiledSpace.define_by_run(trial)`` samples the parameters in the order the space lists them
(skipping those whose ``when`` does not hold), then the seed, then the searched allocation if the
trial drew ``allocation: searched``, and returns the resolved flat trial config. Ray's OptunaSearch
accepts such a function as ``space=``. ``grid_points()`` enumerates the same tree for
``--sampler grid``.
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import Any

from paitune.config import METHOD_OPTION_KEYS, TRIAL_DEFAULTS, resolve_config
from paitune.errors import PaituneError
from paitune.spaces.allocation import depth_weights, searched_allocation
from paitune.spaces.check import SEARCHED_ALLOCATION
from paitune.spaces.context import DEFAULT_CONTEXT_KEYS, context_id, reference_keys
from paitune.spaces.schema import Categorical, DepthAllocation, Fixed, FloatRange, IntRange, PerLayerAllocation, Space

SEED_PARAM = "seed"
# The unpruned reference every sweep runs once per context it samples (see dense_references).
DENSE = {"method": "dense", "sparsity": 0.0, "allocation": "global", "control": "none"}
CONTROL = "control"
NO_CONTROL = "none"
SLOPE_PARAM = "alloc_slope"


def layer_param(index: int) -> str:
    """Optuna name of the searched weight of the index-th prunable layer (input to output)."""
    return f"alloc_{index:02d}"


def dataset_signature(
    name: str, synthetic_shape: tuple[int, ...], synthetic_classes: int
) -> tuple[tuple[int, ...], int]:
    """(input_shape, num_classes) of a dataset, without loading it."""
    from paitune.data import dataset_spec

    spec = dataset_spec(name)
    if spec.input_shape is None:  # synthetic: the trial sets its shape
        return tuple(synthetic_shape), int(synthetic_classes)
    return tuple(spec.input_shape), spec.num_classes


@functools.lru_cache(maxsize=16)
def model_layer_shapes(
    model: str, dataset: str, synthetic_shape: tuple[int, ...] = (3, 32, 32), synthetic_classes: int = 10
) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """Prunable layer names and shapes of ``model`` built for ``dataset``, input to output."""
    from paitune.models import build_model
    from paitune.pruning import prunable_parameters

    input_shape, num_classes = dataset_signature(dataset, synthetic_shape, synthetic_classes)
    net = build_model(model, input_shape, num_classes, seed=0)
    return tuple((name, tuple(p.shape)) for name, p in prunable_parameters(net).items())


def rounds_of(method: str, iterations: int | None) -> int | None:
    """The rounds a trial of ``method`` records: its value or default for an iterative method (one
    round where it has no default), None for any other (it ignores them, and a value would make
    equal runs hash differently)."""
    from paitune.pruning.registry import get_method, method_names

    if method not in method_names() or not get_method(method).iterative:
        return None
    return iterations if iterations is not None else (get_method(method).default_iterations or 1)


def finalize(values: dict[str, Any]) -> dict[str, Any]:
    """Resolve a trial config: defaults filled, ``iterations`` only where the method reads it."""
    from paitune.sparse.config import pai_method

    config = resolve_config(values)
    method = pai_method(config)
    config["iterations"] = rounds_of(method, config["iterations"])
    _resolve_method_options(config, method)
    return config


def _resolve_method_options(config: dict[str, Any], method: str) -> None:
    """The trial's own method's options filled with their values (defaults included), the others None."""
    from paitune.pruning.registry import get_method

    for key, (owner, option) in METHOD_OPTION_KEYS.items():
        if owner != method:
            config[key] = None
        else:
            spec = get_method(owner)
            value = config[key]
            config[key] = spec.options[option].default if value is None else spec.check_option(option, value, key=key)


def _active(param, values: dict[str, Any]) -> bool:
    return all(values.get(ref) in allowed for ref, allowed in (param.when or {}).items())


class CompiledSpace:
    """A space ready for Optuna: the define-by-run function and the grid enumeration."""

    def __init__(self, space: Space):
        self.space = space
        self.settings = dict(space.settings)

    @property
    def seeds(self) -> list[int]:
        return list(self.space.seeds)

    # -- context and choices (paitune.spaces.context) -------------------------------------------
    @property
    def context_keys(self) -> tuple[str, ...]:
        return tuple(self.space.context or DEFAULT_CONTEXT_KEYS)

    def context_of(self, config: dict[str, Any]) -> str:
        """The context id of a (resolved) trial config."""
        return context_id(config, self.context_keys)

    def contexts(self) -> list[dict[str, Any]]:
        """Every context of the space (context key -> value), in the order the space lists the
        values, the first context key outermost."""
        keys = self.context_keys
        values = [self._context_values(key) for key in keys]
        return [dict(zip(keys, combo)) for combo in itertools.product(*values)]

    def context_ids(self) -> list[str]:
        return [self.context_of(finalize({**self.settings, **ctx})) for ctx in self.contexts()]

    @property
    def control_arms(self) -> list[str]:
        """The controls every sampled config also runs with, as paired arms (control none is the
        sampled trial itself): the space's control choices (or setting) other than none."""
        return [c for c in self._context_values(CONTROL) if c != NO_CONTROL]

    def for_context(self, context: dict[str, Any]) -> CompiledSpace:
        """The space of the choices within one context: the context's values (and control none:
        controls run as paired arms, never sampled) become settings, the rest stays searched."""
        fixed = {**context, CONTROL: NO_CONTROL}
        params = {name: p for name, p in self.space.params.items() if name not in fixed}
        return CompiledSpace(self.space.model_copy(update={"settings": {**self.settings, **fixed}, "params": params}))

    def _sample(self, trial, name: str, param) -> Any:
        if isinstance(param, Categorical):
            return trial.suggest_categorical(name, list(param.choices))
        if isinstance(param, FloatRange):
            return trial.suggest_float(name, param.low, param.high, log=param.log, step=param.step)
        if isinstance(param, IntRange):
            return trial.suggest_int(name, param.low, param.high, log=param.log, step=param.step)
        if isinstance(param, Fixed):
            return param.value
        raise TypeError(f"unknown parameter type {type(param).__name__}")

    def define_by_run(self, trial) -> dict[str, Any]:
        """Sample one trial's values through ``trial.suggest_*`` and return its resolved config."""
        values = dict(self.settings)
        for name, param in self.space.params.items():
            if _active(param, values):
                values[name] = self._sample(trial, name, param)
        values["seed"] = trial.suggest_categorical(SEED_PARAM, self.seeds)
        if values.get("allocation") == SEARCHED_ALLOCATION:
            values["allocation"] = self._searched_allocation(trial, values)
        return finalize(values)

    __call__ = define_by_run

    def _searched_allocation(self, trial, values: dict[str, Any]) -> dict[str, float]:
        family = self.space.allocation_search
        base = finalize({k: v for k, v in values.items() if k != "allocation"})
        shapes = dict(
            model_layer_shapes(
                base["model"], base["dataset"], tuple(base["synthetic_shape"]), base["synthetic_classes"]
            )
        )
        layers = list(shapes)
        if isinstance(family, PerLayerAllocation):
            weights = {
                name: trial.suggest_float(layer_param(i), family.low, family.high, log=family.log)
                for i, name in enumerate(layers)
            }
        elif isinstance(family, DepthAllocation):
            weights = depth_weights(layers, trial.suggest_float(SLOPE_PARAM, family.low, family.high))
        else:
            raise TypeError(f"unknown allocation family {type(family).__name__}")
        return searched_allocation(shapes, base["sparsity"], weights)

    def _context_values(self, key: str) -> list[Any]:
        if key == SEED_PARAM:
            return self.seeds
        param = self.space.params.get(key)
        if isinstance(param, (Categorical, Fixed)):
            return list(param.choices) if isinstance(param, Categorical) else [param.value]
        return [self.settings.get(key, TRIAL_DEFAULTS[key])]

    def dense_references(self) -> list[dict[str, Any]]:
        """One unpruned trial config (method dense, sparsity 0, allocation global, control none)
        per dataset, model, budget and seed the space can sample, and per value of every other
        context key the reference shares (``paitune.spaces.context.reference_keys``), seeds innermost.

        They are scheduled beside the sampled trials, never through the sampler, so they cannot
        bias it. Everything else comes from the space's settings; a training setting the space
        searches as a choice (say lr) takes its default, ``paitune.config.TRIAL_DEFAULTS``: the
        reference is one line per context, not a competitor tuned alongside. A space that samples
        only the dense method needs no reference: none."""
        methods = self._context_values("method")
        if all(m == DENSE["method"] for m in methods):
            return []
        keys = (*reference_keys(self.context_keys), SEED_PARAM)
        contexts = itertools.product(*(self._context_values(k) for k in keys))
        return [finalize({**self.settings, **dict(zip(keys, values)), **DENSE}) for values in contexts]

    def _grid_values(self, name: str, param) -> list[Any]:
        if isinstance(param, Categorical):
            return list(param.choices)
        if isinstance(param, Fixed):
            return [param.value]
        if isinstance(param, IntRange):
            if param.log:
                raise PaituneError(
                    f"--sampler grid: params.{name} is a log-scale int range; list its values (type: categorical)"
                )
            return list(range(param.low, param.high + 1, param.step))
        if isinstance(param, FloatRange):
            if param.step is None:
                raise PaituneError(
                    f"--sampler grid: params.{name} is a continuous range; give it a step or list its values (type: categorical)"
                )
            count = int(math.floor((param.high - param.low) / param.step + 1e-9)) + 1
            return [param.low + i * param.step for i in range(count)]
        raise TypeError(f"unknown parameter type {type(param).__name__}")

    def grid_size_bound(self) -> int:
        """An upper bound of ``len(grid_points())`` without enumerating them (conditional
        parameters make the real count smaller); raises like ``grid_points`` when not enumerable."""
        if self.space.allocation_search is not None:
            raise PaituneError("--sampler grid cannot enumerate a searched allocation; use tpe, random, cmaes or gp")
        return math.prod(len(self._grid_values(name, param)) for name, param in self.space.params.items()) * len(
            self.seeds
        )

    def grid_points(self) -> list[dict[str, Any]]:
        """Every combination of the sampled parameters (Optuna names -> values), seeds innermost."""
        if self.space.allocation_search is not None:
            raise PaituneError("--sampler grid cannot enumerate a searched allocation; use tpe, random, cmaes or gp")
        points: list[tuple[dict[str, Any], dict[str, Any]]] = [({}, dict(self.settings))]
        for name, param in self.space.params.items():
            grown = []
            for optuna_params, values in points:
                if not _active(param, values):
                    grown.append((optuna_params, values))
                    continue
                for v in self._grid_values(name, param):
                    p = dict(optuna_params)
                    if not isinstance(param, Fixed):
                        p[name] = v
                    grown.append((p, {**values, name: v}))
            points = grown
        return [{**p, SEED_PARAM: seed} for (p, _), seed in itertools.product(points, self.seeds)]


def compile_space(space: Space) -> CompiledSpace:
    return CompiledSpace(space)
