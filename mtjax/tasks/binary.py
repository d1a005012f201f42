"""What the binary-map tasks (``edge``, ``saliency``) share: the (class-balanced) binary
cross-entropy, the a_θ encoding, the pixel relation and the panel colours.

Ground truth float32 [B, H, W, 1]: 1 = positive, 0 = negative, 255 = ignore (the field's value;
also what padded examples get). The head predicts one logit per pixel; ``to_gt_format`` is the
sigmoid probability.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from mtjax.tasks import base

Array = jax.Array

IGNORE = 255.0


def is_valid(gt: Array) -> Array:
  """bool [..., H, W]: pixels of a binary map [..., H, W, 1] that are 0 or 1 (not 255)."""
  return (gt[..., 0] == 0) | (gt[..., 0] == 1)


def balanced_bce(logits: Array, gt: Array, pos_weight: float | str | None) -> Array:
  """(Class-balanced) binary cross-entropy per example, over pixels whose gt is 0 or 1.

  Per pixel, with σ = sigmoid(logit) and positive weight w:
    ℓ = −[w · y · log σ + (1 − w) · (1 − y) · log(1 − σ)],
  averaged over the example's valid pixels. ``pos_weight`` a float w: ATRC / InvPT's
  ``BalancedBinaryCrossEntropyLoss(pos_weight=w)`` (BCE-with-logits with pos_weight w / (1 − w),
  divided by 1 / (1 − w)), the same as MTI-Net's ``BalancedCrossEntropyLoss(pos_weight=w)``;
  "auto": w = the example's fraction of negative pixels (HED's balancing, both codes with
  pos_weight None); None: plain, unweighted BCE (w = 1 on both terms).

  Args:
    logits: float [B, H, W, 1].
    gt: float [B, H, W, 1] in {0, 1}, anything else (255) ignored.
    pos_weight: w in (0, 1), "auto" or None.

  Returns:
    float32 [B]: the mean over each example's valid pixels (0 if none).

  Raises:
    ValueError: a float pos_weight outside (0, 1), or an unknown string.
  """
  valid = is_valid(gt)[..., None]
  y = jnp.where(valid, gt, 0.0).astype(jnp.float32)
  z = logits.astype(jnp.float32)
  neg_log_p, neg_log_q = jax.nn.softplus(-z), jax.nn.softplus(z)  # −log σ, −log(1 − σ)
  if pos_weight is None:
    w_pos = w_neg = 1.0
  elif pos_weight == "auto":
    axes = (1, 2, 3)
    n_valid = jnp.maximum(jnp.sum(valid, axes, keepdims=True), 1)
    w_pos = jnp.sum(valid & (y == 0), axes, keepdims=True) / n_valid
    w_neg = 1.0 - w_pos
  elif isinstance(pos_weight, (int, float)) and 0 < pos_weight < 1:
    w_pos, w_neg = float(pos_weight), 1.0 - float(pos_weight)
  else:
    raise ValueError(f"pos_weight={pos_weight!r}: expected a float in (0, 1), 'auto' or None")
  pixel = w_pos * y * neg_log_p + w_neg * (1.0 - y) * neg_log_q
  return base.masked_mean(pixel, valid)


def sigmoid(logits: Array) -> Array:
  """Logits [..., 1] -> probabilities float32 [..., 1]."""
  return jax.nn.sigmoid(logits.astype(jnp.float32))


def encode_gt(gt: Array) -> Array:
  """a_θ's input from a binary map: float32 [B, H, W, 1] in {0, 1}, ignore pixels 0."""
  return jnp.where(is_valid(gt)[..., None], gt, 0.0).astype(jnp.float32)


def encode_prediction(pred: Array, rng: Array | None, gumbel: bool) -> Array:
  """a_θ's input from logits [B, H, W, 1]: the probability (differentiable)."""
  del rng, gumbel
  return sigmoid(pred)


def same_label(a: Array, c: Array, threshold=None) -> Array:
  """bool [B, N, M]: gathered binary labels a [B, N, 1] and c [B, M, 1] are equal."""
  del threshold
  return a[:, :, None, 0] == c[:, None, :, 0]


def to_rgb(x: np.ndarray, gt: np.ndarray) -> np.ndarray:
  """A probability or binary map float [..., H, W, 1] -> uint8 grey (1 white); 255 black."""
  del gt
  x = x[..., 0]
  return base.grey_to_rgb(x, x <= 1)


def binary_task(
    name: str,
    pos_weight: float | str | None,
    *,
    metric_state,
    finalize,
    directions,
    host_state=None,
) -> base.Task:
  """The record of a binary-map task: one logit per pixel, ``balanced_bce`` with ``pos_weight``,
  the sigmoid as its gt format, nearest resizing; its metric ``metric_state`` (probability, gt) /
  ``host_state`` / ``finalize`` with ``directions``.

  Raises:
    ValueError: a bad ``pos_weight``.
  """
  if not (pos_weight is None or pos_weight == "auto" or 0 < float(pos_weight) < 1):
    raise ValueError(f"{name} pos_weight={pos_weight!r}: expected (0, 1), 'auto' or None")
  return base.Task(
      name=name,
      channels=1,
      activation=lambda y: y,
      loss=lambda logits, gt: balanced_bce(logits, gt, pos_weight),
      gt_dtype="float32",
      gt_shape=(1,),
      ignore=IGNORE,
      is_valid=is_valid,
      to_gt_format=sigmoid,
      metric_state=metric_state,
      host_state=host_state,
      finalize=finalize,
      directions=directions,
      encoding_channels=1,
      encode_gt=encode_gt,
      encode_prediction=encode_prediction,
      relation=same_label,
      to_rgb=to_rgb,
  )
