"""``edge``: boundary detection, a binary map per pixel.

Ground truth float32 [B, H, W, 1]: 1 = boundary, 0 = not, 255 = ignore. Loss: class-balanced binary
cross-entropy (``binary.balanced_bce``) with positive weight 0.95 as ATRC and InvPT / TaskPrompter
use for NYUD-MT and PASCAL-Context (ATRC's NYUD config: 0.8; docs/datasets.md). Metric: odsF and oisF by the BSDS protocol (``mtjax.edge_metrics``), counted per
image on the host at every threshold and pooled over the split; the protocol (maximum matching
distance, thresholds, NMS) is a named option, ``edge_metrics.PROTOCOLS``.
"""

from __future__ import annotations

import functools

import numpy as np

from mtjax import edge_metrics
from mtjax.tasks import base, binary


@functools.cache
def edge(
    *,
    num_classes: int | None = None,
    pos_weight: float | str | None = 0.95,
    protocol: str = edge_metrics.DEFAULT_PROTOCOL,
    eval_workers: int | None = None,
) -> base.Task:
  """The ``edge`` record.

  Args:
    num_classes: unused.
    pos_weight: ``binary.balanced_bce``'s w: 0.95 (ATRC, InvPT), 0.8 (ATRC's NYUD config),
      "auto" (HED's per-image balance) or None (plain BCE).
    protocol: a name of ``edge_metrics.PROTOCOLS`` (matching distance, thresholds, NMS).
    eval_workers: processes that match an evaluation batch's images (``edge_state``'s
      ``num_workers``: None serial, -1 one per CPU core).

  The matching distance is a fraction of the array's diagonal: evaluate maps at the image's
  original size, not padded (a reader that pads must crop first; docs/metrics.md).

  Raises:
    ValueError: an unknown protocol or a bad pos_weight.
  """
  del num_classes
  if protocol not in edge_metrics.PROTOCOLS:
    raise ValueError(
        f"edge protocol={protocol!r}: expected one of {tuple(edge_metrics.PROTOCOLS)}"
    )
  spec = edge_metrics.PROTOCOLS[protocol]

  def host_state(batch_state):
    return edge_metrics.edge_state(
        np.asarray(batch_state["prob"]),
        np.asarray(batch_state["gt"]),
        spec,
        num_workers=eval_workers,
    )

  return binary.binary_task(
      "edge",
      pos_weight,
      # Matching runs on the host: the jitted part hands over the probability map and the gt.
      metric_state=lambda prob, gt: {"prob": prob, "gt": gt},
      host_state=host_state,
      finalize=lambda state: edge_metrics.finalize_edges(state, spec),
      directions={"odsF": True, "oisF": True, "ap": True},
  )


base.register("edge", edge)
