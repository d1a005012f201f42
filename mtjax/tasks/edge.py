"""``edge``: boundary detection, a binary map per pixel.

Ground truth float32 [B, H, W, 1]: 1 = boundary, 0 = not, 255 = ignore. Loss: class-balanced binary
cross-entropy (``binary.balanced_bce``) with positive weight 0.95 as ATRC and InvPT / TaskPrompter
use for NYUD-MT and PASCAL-Context (ATRC's NYUD config: 0.8; DATA_AND_METRICS.md "NYUD-MT",
"PASCAL-Context"). Metric: odsF and oisF by the BSDS protocol (``mtjax.edge_metrics``), counted per
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
  original size, not padded (a reader that pads must crop first; DATA_AND_METRICS.md).

  Raises:
    ValueError: an unknown protocol or a bad pos_weight.
  """
  del num_classes
  if protocol not in edge_metrics.PROTOCOLS:
    raise ValueError(
        f"edge protocol={protocol!r}: expected one of {tuple(edge_metrics.PROTOCOLS)}"
    )
  if not (pos_weight is None or pos_weight == "auto" or 0 < float(pos_weight) < 1):
    raise ValueError(f"edge pos_weight={pos_weight!r}: expected (0, 1), 'auto' or None")
  spec = edge_metrics.PROTOCOLS[protocol]

  def host_state(batch_state):
    return edge_metrics.edge_state(
        np.asarray(batch_state["prob"]),
        np.asarray(batch_state["gt"]),
        spec,
        num_workers=eval_workers,
    )

  return base.Task(
      name="edge",
      channels=1,
      activation=lambda y: y,
      loss=lambda logits, gt: binary.balanced_bce(logits, gt, pos_weight),
      gt_dtype="float32",
      gt_shape=(1,),
      ignore=binary.IGNORE,
      is_valid=binary.is_valid,
      to_gt_format=binary.sigmoid,
      # Matching runs on the host: the jitted part hands over the probability map and the gt.
      metric_state=lambda prob, gt: {"prob": prob, "gt": gt},
      host_state=host_state,
      finalize=lambda state: edge_metrics.finalize_edges(state, spec),
      directions={"odsF": True, "oisF": True, "ap": True},
      encoding_channels=1,
      encode_gt=binary.encode_gt,
      encode_prediction=binary.encode_prediction,
      relation=binary.same_label,
      to_rgb=binary.to_rgb,
  )


base.register("edge", edge)
