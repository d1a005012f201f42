"""Task weightings: MT-CP's Loss Prioritization Scheme (Fontana et al., WACV 2025) and the baselines
of its Table 4 (equal, fixed, log smoothing, LPS without the log, DWA, uncertainty), each an Optax
transform whose state lives in the TrainState's optimizer state.

* ``mtjax.weighting.transforms``: the transforms themselves (``loss_prioritization``,
  ``dynamic_weight_average``, ``uncertainty``, ``constant``), the log projection ``project`` and
  ``current_weights``; what a train step of your own chains after its optimizer.
* ``mtjax.weighting.record``: ``Weighting``, the record mtjax's train step uses (transform, log
  projection, combine rule, learnable params), and ``create``, which builds it from
  ``config.weighting``.

Every public name of both is importable from ``mtjax.weighting``.
"""

from mtjax.weighting.record import (
    BUILDERS,
    NAMES,
    CombineFn,
    Weighting,
    computed_not_applied,
    create,
    kendall_uncertainty,
    log_variances,
    no_params,
    weighted_sum,
)
from mtjax.weighting.transforms import (
    ETA,
    ConstantWeightsState,
    EpochHistoryState,
    UncertaintyState,
    constant,
    current_weights,
    dynamic_weight_average,
    loss_prioritization,
    project,
    uncertainty,
)

__all__ = [
    "BUILDERS",
    "CombineFn",
    "ConstantWeightsState",
    "ETA",
    "EpochHistoryState",
    "NAMES",
    "UncertaintyState",
    "Weighting",
    "computed_not_applied",
    "constant",
    "create",
    "current_weights",
    "dynamic_weight_average",
    "kendall_uncertainty",
    "log_variances",
    "loss_prioritization",
    "no_params",
    "project",
    "uncertainty",
    "weighted_sum",
]
