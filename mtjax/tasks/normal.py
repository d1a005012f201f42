"""``normal``: surface normals, unit vectors per pixel.

Ground truth float32 [B, H, W, 3], all-zero = invalid. That is also how a dataset-specific valid mask
reaches the task: a reader zeroes the normals it does not keep (PASCAL-Context keeps its distilled
normals only on 170 classes), so the task needs no other input, and needs no depth. The head's output
is L2-normalised; the loss is MTPSL's 1 − cosine; the metrics are the pooled angle statistics of
``mtjax.metrics.normals_state``. Reference: docs/datasets.md (normals).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from mtjax import metrics
from mtjax.tasks import base

Array = jax.Array


def unit(y: Array) -> Array:
  """y / |y| along the last axis, the norm clamped at 1e-12 (PyTorch's F.normalize divides by
  max(|y|, 1e-12))."""
  return y * jax.lax.rsqrt(jnp.maximum(jnp.sum(y * y, -1, keepdims=True), 1e-24))


def normal_loss(pred: Array, gt: Array) -> Array:
  """1 - mean cosine similarity per example over pixels whose gt is not all-zero (MTPSL).

  Args:
    pred: float [B, H, W, 3] predicted normals; L2-normalised here (the head already is).
    gt: float [B, H, W, 3] unit ground-truth normals, all-zero = invalid.

  Returns:
    float32 [B]: 1 - mean_pixels <pred/|pred|, gt> over each example's valid pixels (0 if none).
  """
  u = pred * jax.lax.rsqrt(jnp.maximum(jnp.sum(pred * pred, -1, keepdims=True), 1e-12))
  cosine = jnp.sum(u * gt, axis=-1).astype(jnp.float32)
  valid = jnp.any(gt != 0, axis=-1)
  count = jnp.sum(valid, axis=(1, 2))
  return jnp.where(count > 0, 1.0 - base.masked_mean(cosine, valid), 0.0)


def normal_mse(pred: Array, gt: Array) -> Array:
  """Mean squared error per example over the elements of valid pixels: MT-CP's released normal
  loss (``NormalsLoss()``, ``losses/loss_functions.py``: ``F.mse_loss`` of the raw output, summed
  over the elements whose label is not 255 and divided by their count; its NYUD labels are never
  255, so every element counts, where this counts the pixels whose gt is not all-zero).

  Args:
    pred: float [B, H, W, 3] the head's output (raw with ``head = "raw"``, as released).
    gt: float [B, H, W, 3] unit ground-truth normals, all-zero = invalid.

  Returns:
    float32 [B]: mean over valid pixels of Σ_c (pred_c − gt_c)² / 3 (0 if none).
  """
  error = jnp.mean(jnp.square(pred.astype(jnp.float32) - gt.astype(jnp.float32)), axis=-1)
  valid = jnp.any(gt != 0, axis=-1)
  return jnp.where(jnp.sum(valid, axis=(1, 2)) > 0, base.masked_mean(error, valid), 0.0)


LOSSES = {"cosine": normal_loss, "mse": normal_mse}


def normal_to_rgb(normal: np.ndarray) -> np.ndarray:
  """Normals float [..., H, W, 3] in [-1, 1] -> uint8 RGB (n + 1) / 2; invalid (all-zero) black."""
  valid = np.any(normal != 0, axis=-1, keepdims=True)
  return np.round(np.where(valid, (normal + 1.0) / 2.0, 0.0) * 255).astype(np.uint8)


def within_angle(a: Array, c: Array, threshold: float) -> Array:
  """bool [B, N, M]: the angle between unit normals a [B, N, 3] and c [B, M, 3] ≤ threshold°."""
  return jnp.einsum("bnc,bmc->bnm", a, c) >= math.cos(math.radians(threshold))


HEADS = ("unit", "raw")


@functools.cache
def normal(
    *,
    num_classes: int | None = None,
    relation_threshold: float = 20.0,
    head: str = "unit",
    loss: str = "cosine",
) -> base.Task:
  """The ``normal`` record. ``relation_threshold``: pixel contrast's positive rule, degrees (ours).

  ``head``: ``unit`` (the head's output L2-normalised, MTPSL's SegNet) or ``raw`` (the head's
  output as it is, RDC's released HRNet and MT-CP's: their predictions are never normalised). The
  metrics normalise either way; only the metrics as released (``released_metric_state``:
  ``mtjax.metrics.normals_state(normalize=False)`` of the output as it is, RDC's
  ``utils/evaluation.py`` line 45), the regularizers' inputs and the ``mse`` loss see the
  difference (the ``cosine`` loss normalises). ``num_classes`` is unused (normals have no classes).

  ``loss``: ``cosine`` (MTPSL's 1 − cos, ``normal_loss``) or ``mse`` (MT-CP's released loss,
  ``normal_mse``; with ``head = "raw"`` as released).

  Raises:
    ValueError: ``head`` not in ``HEADS`` or ``loss`` not in ``LOSSES``.
  """
  del num_classes
  if head not in HEADS:
    raise ValueError(f"config.task_options.normal.head={head!r}: expected one of {HEADS}")
  if loss not in LOSSES:
    raise ValueError(f"config.task_options.normal.loss={loss!r}: expected one of {tuple(LOSSES)}")
  return base.Task(
      name="normal",
      channels=3,
      activation=unit if head == "unit" else (lambda y: y),
      loss=LOSSES[loss],
      gt_dtype="float32",
      gt_shape=(3,),
      ignore=0.0,
      is_valid=lambda gt: jnp.any(gt != 0, axis=-1),
      to_gt_format=lambda pred: pred if head == "unit" else unit(pred),
      metric_state=metrics.normals_state,
      finalize=metrics.finalize,
      directions={
          "mean": False,
          "median": False,
          "rmse": False,
          "within_11_25": True,
          "within_22_5": True,
          "within_30": True,
      },
      encoding_channels=3,
      encode_gt=lambda gt: (gt.astype(jnp.float32) + 1.0) / 2.0,
      encode_prediction=lambda pred, rng, gumbel: (pred.astype(jnp.float32) + 1.0) / 2.0,
      relation=within_angle,
      relation_threshold=float(relation_threshold),
      to_rgb=lambda x, gt: normal_to_rgb(x),
      resize="bilinear_unit",
      flip_sign=(-1.0, 1.0, 1.0),
      from_mean=lambda mean: (mean / np.linalg.norm(mean, axis=-1, keepdims=True)).astype(np.float32),
      released_metric_state=functools.partial(metrics.normals_state, normalize=False),
      released_finalize=metrics.finalize,
  )


base.register("normal", normal)
