"""The specs of the 2019-2020 methods (scores in ``scores.py``) and the dense reference."""

from __future__ import annotations

from . import scores as S
from .layers import prunable_parameters
from .registry import MethodSpec, ScoringInputs


def _random(inputs: ScoringInputs):
    fixed = S.random_scores(prunable_parameters(inputs.model), inputs.generator("scores"))
    return lambda masks: fixed


def _magnitude(inputs: ScoringInputs):
    fixed = S.magnitude_scores(prunable_parameters(inputs.model))
    return lambda masks: fixed


def _snip(inputs: ScoringInputs):
    scratch = S.ScoringCopy(inputs.model)
    return lambda masks: S.snip_scores(scratch, masks, inputs.batches)


def _grasp(inputs: ScoringInputs):
    scratch = S.ScoringCopy(inputs.model)
    return lambda masks: S.grasp_scores(scratch, masks, inputs.batches)


def _synflow(inputs: ScoringInputs):
    scratch = S.SynflowCopy(inputs.model)
    return lambda masks: S.synflow_scores(scratch, masks, inputs.input_shape)


SPECS = (
    # The unpruned reference: ``prune`` answers it with all-ones masks before any scoring.
    MethodSpec("dense"),
    MethodSpec("random", make_scorer=_random),
    MethodSpec("magnitude", make_scorer=_magnitude),
    MethodSpec("snip", make_scorer=_snip, needs_data=True),
    MethodSpec("grasp", make_scorer=_grasp, needs_data=True),
    # SynFlow's paper and code use 100 rounds.
    MethodSpec("synflow", make_scorer=_synflow, needs_input_shape=True, default_iterations=100),
    MethodSpec("iterative_snip", make_scorer=_snip, needs_data=True, default_iterations=100),
    MethodSpec("force", make_scorer=_snip, needs_data=True, default_iterations=100, revives=True),
)
