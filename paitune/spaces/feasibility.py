"""Which combinations of a space's model, sparsity and allocation cannot be built.

A layerwise rule can be unable to meet a sparsity on a model: uniform_plus keeps the first conv
layer dense, and ResNet-20's first conv holds 0.16% of its weights, so no uniform_plus mask of
ResNet-20 reaches sparsity 0.999. Such a trial fails the moment it prunes (recorded failed with
the rule's one line, not retried). A sweep says so before it starts, per combination, so a
missing cell in the report is expected, not a surprise. Only rules computed from the layer
shapes are checked (a rule that ranks a method's scores across layers meets any sparsity).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

from paitune.config import TRIAL_DEFAULTS
from paitune.errors import PaituneError
from paitune.spaces.check import possible_setting_values
from paitune.spaces.schema import Space


def check_buildable(space: Space) -> None:
    """A PaituneError (one line) where no trial of a (model, dataset) can run: the model does not
    build for the dataset's input, or an explicit {layer: density} allocation does not name the
    model's prunable layers exactly or does not remove the fraction of weights a sparsity of the
    space asks. Every such trial would fail; the planner knows it first."""
    from paitune.pruning.allocation import explicit
    from paitune.spaces.compile import model_layer_shapes

    shape = tuple(space.settings.get("synthetic_shape", TRIAL_DEFAULTS["synthetic_shape"]))
    classes = int(space.settings.get("synthetic_classes", TRIAL_DEFAULTS["synthetic_classes"]))
    maps = [a for a in possible_setting_values(space, "allocation") if isinstance(a, Mapping)]
    sparsities = [float(s) for s in possible_setting_values(space, "sparsity")]
    for dataset in possible_setting_values(space, "dataset"):
        for model in possible_setting_values(space, "model"):
            try:
                shapes = dict(model_layer_shapes(model, dataset, shape, classes))
                for densities in maps:
                    explicit(shapes, densities)
            except PaituneError as err:
                raise PaituneError(f"no trial of model {model} on dataset {dataset} can run: {err}") from None
            for densities in maps:
                for sparsity in sparsities:
                    try:
                        explicit(shapes, densities, sparsity=sparsity)
                    except PaituneError as err:
                        raise PaituneError(
                            f"model {model} on dataset {dataset} at sparsity {sparsity:g}: {err}"
                        ) from None


def unbuildable(space: Space) -> list[str]:
    """One line per (model, dataset, allocation) that cannot meet some of the space's sparsities."""
    from paitune.pruning.allocation import allocate, allocation_names, allocation_spec
    from paitune.spaces.compile import model_layer_shapes

    shape = tuple(space.settings.get("synthetic_shape", TRIAL_DEFAULTS["synthetic_shape"]))
    classes = int(space.settings.get("synthetic_classes", TRIAL_DEFAULTS["synthetic_classes"]))
    rules = [a for a in possible_setting_values(space, "allocation") if isinstance(a, str) and a in allocation_names()]
    rules = [a for a in rules if not allocation_spec(a).ranks_scores]
    sparsities = sorted(float(s) for s in possible_setting_values(space, "sparsity"))
    failing: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for dataset in possible_setting_values(space, "dataset"):
        for model in possible_setting_values(space, "model"):
            shapes = dict(model_layer_shapes(model, dataset, shape, classes)) if rules else {}
            for rule in rules:
                for sparsity in sparsities:
                    try:
                        allocate(shapes, sparsity, rule)
                    except PaituneError:
                        failing[(model, dataset, rule)].append(sparsity)
    return [
        f"{rule} cannot meet sparsity {', '.join(f'{s:g}' for s in levels)} on {model} ({dataset}): "
        "those trials will be recorded failed"
        for (model, dataset, rule), levels in failing.items()
    ]
