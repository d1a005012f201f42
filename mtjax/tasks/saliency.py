"""``saliency``: salient-object segmentation, a binary map per pixel.

Ground truth float32 [B, H, W, 1]: 1 = salient, 0 = not, 255 = ignore (PASCAL-Context's distilled
maps: png / 255 > 0.5). Loss: binary cross-entropy (``binary.balanced_bce``; plain by default,
HED-balanced as MTI-Net / InvPT with ``pos_weight="auto"``). Metrics: maxF and the mIoU of the
binarised map (``mtjax.saliency_metrics.saliency_state``), computed one of the field's three ways
(``saliency_metrics.SALIENCY_PROTOCOLS``; docs/metrics.md).
"""

from __future__ import annotations

import functools

from mtjax import saliency_metrics
from mtjax.tasks import base, binary


@functools.cache
def saliency(
    *, num_classes: int | None = None, pos_weight: float | str | None = None, protocol="pooled"
) -> base.Task:
  """The ``saliency`` record.

  Args:
    num_classes: unused.
    pos_weight: ``binary.balanced_bce``'s w (None: plain BCE; "auto": HED's balance).
    protocol: a name of ``saliency_metrics.SALIENCY_PROTOCOLS``: "pooled" (ATRC, β² = 0.3; the field's
      standard), "per_image" (ASTMT / MTI-Net / MT-CP, β² = 1) or "invpt" (InvPT's double sigmoid).

  Raises:
    ValueError: an unknown protocol or a bad pos_weight.
  """
  del num_classes
  if protocol not in saliency_metrics.SALIENCY_PROTOCOLS:
    raise ValueError(
        f"saliency protocol={protocol!r}: expected one of {tuple(saliency_metrics.SALIENCY_PROTOCOLS)}"
    )
  return binary.binary_task(
      "saliency",
      pos_weight,
      metric_state=lambda prob, gt: saliency_metrics.saliency_state(prob, gt, protocol=protocol),
      finalize=lambda state: saliency_metrics.finalize_saliency(state, protocol=protocol),
      directions={"maxF": True, "miou": True},
  )


base.register("saliency", saliency)
