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

from mtjax.weighting import record, transforms
from mtjax.weighting.record import *  # noqa: F403  (the names of record.__all__)
from mtjax.weighting.transforms import *  # noqa: F403  (the names of transforms.__all__)

__all__ = [*record.__all__, *transforms.__all__]
