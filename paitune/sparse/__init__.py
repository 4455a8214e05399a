"""The PaI survey's other tracks, as values of the trial config's ``method`` axis.

- Dynamic sparse training: ``set`` and ``rigl`` (``dst``), starting from any static PaI mask.
- Lottery tickets: ``imp``, iterative magnitude pruning with rewinding (``imp``).
- Sparse selection: ``edge_popup``, a learned top-k mask over frozen random weights (``edge_popup``).

``build_sparse_trial`` (``registry``) makes a trial's trainer; ``check_sparse_config`` checks the
rules of their options that span keys (``SPARSE_DEFAULTS``). No Ray, no Optuna.
"""

from .config import (
    DROP_SCHEDULES,
    DST_METHODS,
    INIT_METHODS,
    KEYS_BY_METHOD,
    POPUP_WEIGHT_INITS,
    SPARSE_DEFAULTS,
    SPARSE_METHODS,
    check_sparse_config,
)  # fmt: skip
from .dst import MaskUpdater, drop_fraction_at
from .edge_popup import EdgePopupNet
from .imp import IMPTrainer, RoundMetrics, imp_densities
from .registry import SparseSetup, build_sparse_trial

__all__ = [
    "DROP_SCHEDULES",
    "DST_METHODS",
    "INIT_METHODS",
    "KEYS_BY_METHOD",
    "POPUP_WEIGHT_INITS",
    "SPARSE_DEFAULTS",
    "SPARSE_METHODS",
    "EdgePopupNet",
    "IMPTrainer",
    "MaskUpdater",
    "RoundMetrics",
    "SparseSetup",
    "build_sparse_trial",
    "check_sparse_config",
    "drop_fraction_at",
    "imp_densities",
]
