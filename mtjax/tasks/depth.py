"""``depth``: per-pixel depth regression (metric depth in metres, or disparity).

Ground truth float32 [B, H, W, 1], 0 = invalid. The head's output is the depth itself (linear); the
loss is MTPSL's L1 over valid pixels; the metrics are abs_err, rel_err, rmse and δ<1.25 pooled over
the split (``mtjax.metrics.depth_state``). Reference: docs/metrics.md.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from mtjax import metrics
from mtjax.tasks import base

Array = jax.Array

# What a zoom by s does to the stored value: metric depth comes s times closer (× 1/s, MTPSL's
# NYUv2 loader); disparity grows s times (× s; MTPSL divides Cityscapes disparity by s too, which
# is physically backwards: docs/metrics.md).
SCALE_POWERS = {"metres": -1.0, "disparity": 1.0}


def depth_loss(pred: Array, gt: Array) -> Array:
  """L1 depth error per example over pixels with gt != 0 (MTPSL ``model_fit``, depth branch).

  Args:
    pred: float [B, H, W, 1] predicted depth (the ground truth's units).
    gt: float [B, H, W, 1] ground-truth depth, 0 = invalid.

  Returns:
    float32 [B]: mean |pred - gt| over each example's valid pixels (0 if none).
  """
  return base.masked_mean(jnp.abs(pred - gt).astype(jnp.float32), gt != 0)


def depth_to_rgb(depth: np.ndarray, max_depth: float) -> np.ndarray:
  """Depth float [..., H, W, 1] (0 = invalid, black) -> uint8 grey [..., H, W, 3], near bright."""
  d = depth[..., 0]
  return base.grey_to_rgb(1.0 - d / max(max_depth, 1e-6), d > 0)


def within_threshold(a: Array, c: Array, threshold: float) -> Array:
  """bool [B, N, M]: |a − c| ≤ threshold for gathered depths a [B, N, 1], c [B, M, 1]."""
  return jnp.abs(a[:, :, None, 0] - c[:, None, :, 0]) <= threshold


@functools.cache
def depth(
    *, num_classes: int | None = None, units: str = "metres", relation_threshold: float = 0.2
) -> base.Task:
  """The ``depth`` record.

  Args:
    num_classes: unused (depth has no classes).
    units: "metres" (NYUv2, NYUD-MT: a zoom by s divides depth by s) or "disparity" (Cityscapes'
      MTAN layout: multiplies it by s).
    relation_threshold: pixel contrast's positive rule |Δd| ≤ it, in ``units`` (ours: 0.2 m).

  Raises:
    ValueError: unknown units.
  """
  del num_classes
  if units not in SCALE_POWERS:
    raise ValueError(f"depth units={units!r}: expected one of {tuple(SCALE_POWERS)}")
  return base.Task(
      name="depth",
      channels=1,
      activation=lambda y: y,
      loss=depth_loss,
      gt_dtype="float32",
      gt_shape=(1,),
      ignore=0.0,
      is_valid=lambda gt: gt[..., 0] != 0,
      to_gt_format=lambda pred: pred,
      metric_state=metrics.depth_state,
      finalize=metrics.finalize,
      directions={"abs_err": False, "rel_err": False, "rmse": False, "delta1": True},
      encoding_channels=1,
      encode_gt=lambda gt: base.scale_by_max(gt.astype(jnp.float32)),
      encode_prediction=lambda pred, rng, gumbel: base.scale_by_max(pred.astype(jnp.float32)),
      relation=within_threshold,
      relation_threshold=float(relation_threshold),
      to_rgb=lambda x, gt: depth_to_rgb(x, float(np.max(gt, initial=0.0))),
      scale_power=SCALE_POWERS[units],
      decimals={"abs_err": 3, "rel_err": 3, "rmse": 3},  # Metres: millimetres.
  )


base.register("depth", depth)
