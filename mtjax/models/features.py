"""The one way models expose the features regularizers read: they ``sow`` them into the
``FEATURES`` collection, and ``features`` collects them after ``apply(..., mutable=[FEATURES])``.

Every model documents the names it sows. SegNet-MTL: ``"bottleneck"`` [B, H/2**S, W/2**S, f[-1]]
(the encoder's output after its last max-pool, S = len(filters); MTPSL's ``feat``), ``"decoder"``
[B, H, W, f[0]] (the shared decoder's output), ``"head_<task>"`` [B, H, W, f[0]] (each task
head's hidden layer, before its 1x1 conv). Sowing is free when ``FEATURES`` is not mutable:
predictions and parameters are the same either way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax

FEATURES = "intermediates"


def features(mutated: Mapping[str, Any]) -> dict[str, jax.Array]:
  """The features sown during ``apply(..., mutable=[FEATURES, ...])``.

  Args:
    mutated: the collections ``apply`` returned as mutated (a dict that may hold ``FEATURES``).

  Returns:
    dict name -> array (in the model's compute dtype); {} if nothing was sown.
  """
  return {name: values[0] for name, values in mutated.get(FEATURES, {}).items()}
