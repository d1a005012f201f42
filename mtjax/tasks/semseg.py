"""``semseg``: per-pixel classification (and the shared parts of every class-id task).

Ground truth int32 [B, H, W], class ids in [0, C), −1 = ignore. The head predicts log-probabilities
[B, H, W, C] (log-softmax of the logits); the loss is MTPSL's cross-entropy ignoring −1; the metric a
confusion matrix pooled over the split (``mtjax.metrics.segmentation_state``) giving mIoU and pixel
accuracy. Reference: docs/metrics.md.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from mtjax import metrics
from mtjax.tasks import base

Array = jax.Array


def semseg_loss(log_probs: Array, labels: Array) -> Array:
  """Cross-entropy per example, ignoring label -1 (MTPSL ``F.nll_loss(ignore_index=-1)``).

  Args:
    log_probs: float [B, H, W, C] log-probabilities (the head's log-softmax).
    labels: int [B, H, W] class ids in [0, C), -1 = ignore. Ids outside [-1, C) count as ignore.

  Returns:
    float32 [B]: mean negative log-likelihood over each example's valid pixels (0 if none).
  """
  num_classes = log_probs.shape[-1]
  valid = (labels >= 0) & (labels < num_classes)
  safe = jnp.where(valid, labels, 0)
  nll = -jnp.take_along_axis(log_probs, safe[..., None], axis=-1)[..., 0]
  return base.masked_mean(nll.astype(jnp.float32), valid)


def _class_colours(num_classes: int) -> np.ndarray:
  """A fixed, well-separated palette [num_classes + 1, 3] uint8; the last row (black) is ignore."""
  hues = (np.arange(num_classes) * 0.61803398875) % 1.0
  k = (np.array([5.0, 3.0, 1.0])[None] + hues[:, None] * 6.0) % 6.0
  rgb = 1.0 - 0.8 * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)
  return np.concatenate([np.round(rgb * 255), np.zeros((1, 3))]).astype(np.uint8)


def semseg_to_rgb(ids: np.ndarray, num_classes: int) -> np.ndarray:
  """Class ids int [..., H, W] (-1 = ignore, shown black) -> uint8 RGB [..., H, W, 3]."""
  ids = np.where((ids >= 0) & (ids < num_classes), ids, num_classes)
  return _class_colours(num_classes)[ids]


def encode_one_hot(gt: Array, num_classes: int) -> Array:
  """Class ids int [B, H, W] -> float32 one-hot [B, H, W, C], ignore pixels all-zero (MTPSL
  ``pre_process_gt``)."""
  return jax.nn.one_hot(gt, num_classes, dtype=jnp.float32)  # −1 -> all-zero.


def encode_log_probs(pred: Array, rng: Array | None, gumbel: bool) -> Array:
  """Log-probabilities [B, H, W, C] -> a differentiable hard one-hot float32 [B, H, W, C] (MTPSL
  ``pre_process_pred``).

  With ``gumbel``, a hard Gumbel-softmax sample (τ = 1, MTPSL ``F.gumbel_softmax(hard=True)``),
  else the argmax; the forward pass is exactly one-hot, the gradient the softmax's
  (straight-through): one_hot + (y − stop_gradient(y)), y = softmax(logits [+ g]).

  Raises:
    ValueError: ``gumbel`` without an ``rng``.
  """
  logits = pred.astype(jnp.float32)
  if gumbel:
    if rng is None:
      raise ValueError("a Gumbel one-hot encoding of a class prediction needs an rng")
    logits = logits + jax.random.gumbel(rng, logits.shape, jnp.float32)
  soft = jax.nn.softmax(logits, axis=-1)
  hard = jax.nn.one_hot(jnp.argmax(logits, axis=-1), pred.shape[-1], dtype=jnp.float32)
  return hard + (soft - jax.lax.stop_gradient(soft))


def same_class(a: Array, c: Array, threshold=None) -> Array:
  """bool [B, N, M]: anchor ids a [B, N] equal candidate ids c [B, M] (pixel contrast)."""
  del threshold
  return a[:, :, None] == c[:, None, :]


def class_task(
    name: str,
    num_classes: int | None,
    *,
    metric_state: Callable[[Array, Array, int], dict],
    finalize: Callable[[Mapping], dict[str, float]],
    directions: Mapping[str, bool],
    released_finalize: Callable[[Mapping], dict[str, float]] | None = None,
) -> base.Task:
  """A class-id task of ``num_classes`` classes: log-softmax head, cross-entropy with ignore −1,
  one-hot a_θ encoding, same-class relation, nearest resizing, palette colours; its metric
  ``metric_state(pred_ids, labels, num_classes)`` / ``finalize``; with ``released_finalize``,
  the same state finalised as a released code does (``base.Task.released_finalize``).

  ``num_classes`` None gives a record without a head size (enough for losses and augmentation);
  a model built from it raises.
  """

  def to_rgb(x, gt):
    del gt
    return semseg_to_rgb(x, num_classes or 1)

  def state_of_output(pred, gt):
    return metric_state(jnp.argmax(pred, axis=-1).astype(jnp.int32), gt, num_classes)

  return base.Task(
      name=name,
      channels=num_classes,
      activation=lambda y: jax.nn.log_softmax(y, axis=-1),
      loss=semseg_loss,
      gt_dtype="int32",
      gt_shape=(),
      ignore=-1,
      is_valid=lambda gt: gt >= 0,
      to_gt_format=lambda pred: jnp.argmax(pred, axis=-1).astype(jnp.int32),
      metric_state=lambda pred, gt: metric_state(pred, gt, num_classes),
      finalize=finalize,
      directions=directions,
      encoding_channels=num_classes,
      encode_gt=lambda gt: encode_one_hot(gt, num_classes),
      encode_prediction=encode_log_probs,
      relation=same_class,
      to_rgb=to_rgb,
      mean_value=lambda gt: np.eye(num_classes or 1)[np.where(gt >= 0, gt, 0)] * (gt >= 0)[..., None],
      from_mean=lambda mean: np.argmax(mean, axis=-1).astype(np.int32),
      released_metric_state=None if released_finalize is None else state_of_output,
      released_finalize=released_finalize,
  )


@functools.cache
def semseg(*, num_classes: int | None = None) -> base.Task:
  """The ``semseg`` record: ``num_classes`` output classes (the dataset's count); mIoU over the
  classes present in gt or prediction and pixel accuracy (``metrics.finalize``); as RDC's
  release scores it, the mean over all classes (``metrics.finalize_semseg_as_released``)."""
  if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 1):
    raise ValueError(f"semseg num_classes={num_classes!r}: expected an int >= 1")
  return class_task(
      "semseg",
      num_classes,
      metric_state=metrics.segmentation_state,
      finalize=metrics.finalize,
      directions={"miou": True, "pixel_acc": True},
      released_finalize=metrics.finalize_semseg_as_released,
  )


base.register("semseg", semseg)
