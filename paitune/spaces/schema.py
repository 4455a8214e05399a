"""The search-space schema: what a space YAML may say, checked by pydantic (no unknown keys).

This module checks shape and types (and the rules that need only one field, like a log-scale lower
bound > 0). Rules across fields and against the registries of methods, models and datasets live in
``paitune.spaces.check``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, model_validator

# A categorical choice: Optuna stores only these scalar types.
Scalar = Union[StrictBool, StrictInt, StrictFloat, StrictStr, None]

# `when: {param: [values...]}`: the parameter is sampled only when every named parameter holds one
# of the listed values.
Condition = dict[str, Annotated[list[Scalar], Field(min_length=1)]]

METRICS = ("val_acc", "val_loss", "train_loss", "density_achieved", "params_kept", "flops_sparse")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Categorical(_Strict):
    type: Literal["categorical"]
    choices: Annotated[list[Scalar], Field(min_length=1)]
    when: Condition | None = None

    @model_validator(mode="after")
    def _unique(self):
        if len({repr(c) for c in self.choices}) != len(self.choices):
            raise ValueError(f"choices must be distinct, got {self.choices}")
        return self


class _Range(_Strict):
    log: bool = False
    when: Condition | None = None

    @model_validator(mode="after")
    def _bounds(self):
        if not self.low < self.high:
            raise ValueError(f"low must be < high, got low={self.low}, high={self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"a log-scale range needs low > 0, got low={self.low}")
        if self.log and self.step is not None and not (isinstance(self, IntRange) and self.step == 1):
            raise ValueError("step and log cannot be combined")
        if self.step is not None and self.step <= 0:
            raise ValueError(f"step must be > 0, got {self.step}")
        return self


class FloatRange(_Range):
    type: Literal["float"]
    low: float
    high: float
    step: float | None = None


class IntRange(_Range):
    type: Literal["int"]
    low: StrictInt
    high: StrictInt
    step: StrictInt = 1


class Fixed(_Strict):
    type: Literal["fixed"]
    value: Any
    when: Condition | None = None


Param = Annotated[Union[Categorical, FloatRange, IntRange, Fixed], Field(discriminator="type")]
PARAM_TYPES = ("categorical", "float", "int", "fixed")


class PerLayerAllocation(_Strict):
    """One relative weight per prunable layer, scaled so the layers together meet the sparsity."""

    family: Literal["per_layer"]
    low: float = 0.05
    high: float = 1.0
    log: bool = True

    @model_validator(mode="after")
    def _bounds(self):
        if not 0 < self.low < self.high:
            raise ValueError(f"per-layer weights need 0 < low < high, got low={self.low}, high={self.high}")
        return self


class DepthAllocation(_Strict):
    """density_l proportional to exp(slope * depth_l), depth from 0 (input) to 1 (output)."""

    family: Literal["depth"]
    low: float = -3.0
    high: float = 3.0

    @model_validator(mode="after")
    def _bounds(self):
        if not self.low < self.high:
            raise ValueError(f"slope range needs low < high, got low={self.low}, high={self.high}")
        return self


AllocationSearch = Annotated[Union[PerLayerAllocation, DepthAllocation], Field(discriminator="family")]


class Scheduler(_Strict):
    type: Literal["asha", "fifo"] = "asha"
    max_t: Annotated[int, Field(ge=1)] | None = None  # None: the space's epochs
    grace_period: Annotated[int, Field(ge=1)] = 1
    reduction_factor: Annotated[float, Field(gt=1)] = 3.0
    # Trials of a context recorded at a rung before it may stop anyone there (None: the
    # reduction factor, rounded up).
    min_rung_trials: Annotated[int, Field(ge=1)] | None = None


class Objective(_Strict):
    metric: Literal[METRICS]  # type: ignore[valid-type]
    mode: Literal["max", "min"]


class Space(_Strict):
    name: StrictStr | None = None
    description: StrictStr = ""
    settings: dict[StrictStr, Any] = Field(default_factory=dict)
    # The trial config keys whose values form a trial's context (paitune.spaces.context); None:
    # DEFAULT_CONTEXT_KEYS. Contexts are covered by design; every other parameter is a choice.
    context: Annotated[list[StrictStr], Field(min_length=1)] | None = None
    params: dict[StrictStr, Param] = Field(default_factory=dict)
    allocation_search: AllocationSearch | None = None
    seeds: Annotated[list[StrictInt], Field(min_length=1)] = Field(default_factory=lambda: [0])
    scheduler: Scheduler = Field(default_factory=Scheduler)
    objectives: Annotated[list[Objective], Field(min_length=1, max_length=3)] = Field(
        default_factory=lambda: [Objective(metric="val_acc", mode="max")]
    )
    num_samples: Annotated[int, Field(ge=1)] = 20  # trials (configs x seeds) when --num-samples is not given
    max_concurrent: Annotated[int, Field(ge=1)] | None = None

    @model_validator(mode="after")
    def _distinct_seeds(self):
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct, got {self.seeds}")
        metrics = [o.metric for o in self.objectives]
        if len(set(metrics)) != len(metrics):
            raise ValueError(f"objectives name a metric twice: {metrics}")
        if self.context is not None and len(set(self.context)) != len(self.context):
            raise ValueError(f"context names a key twice: {self.context}")
        return self

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1
