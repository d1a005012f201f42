"""One record per dense prediction task: its loss, its metric state and its visualisation.

Tasks are named by the field's terms (``semseg``, ``depth``, ``normal``); a batch carries each task's
ground truth under the task's name (conventions in ARCHITECTURE.md):

  semseg  int32   [B, H, W]     class ids, -1 = ignore
  depth   float32 [B, H, W, 1]  metres, 0 = invalid
  normal  float32 [B, H, W, 3]  unit vectors, all-zero = invalid

The losses are MTPSL's (Li, Liu, Bilen, CVPR 2022; DATA_AND_METRICS.md "Losses"): each returns one
value per example, the mean over that example's valid pixels (0 where it has none), so that partial
labels can be applied per example by `partial_label_loss`.
"""

import dataclasses
from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from mtjax import metrics


def _masked_mean(values: jax.Array, valid: jax.Array) -> jax.Array:
  """Per-example mean of `values` [B, ...] over `valid` [B, ...]; 0 for an example with none."""
  axes = tuple(range(1, values.ndim))
  total = jnp.sum(jnp.where(valid, values, 0.0), axis=axes)
  count = jnp.sum(valid, axis=axes)
  return total / jnp.maximum(count, 1)


def semseg_loss(log_probs: jax.Array, labels: jax.Array) -> jax.Array:
  """Cross-entropy per example, ignoring label -1 (MTPSL `F.nll_loss(ignore_index=-1)`).

  Args:
    log_probs: float [B, H, W, C] log-probabilities (the SegNet head's log-softmax).
    labels: int [B, H, W] class ids in [0, C), -1 = ignore. Ids outside [-1, C) count as ignore.

  Returns:
    float32 [B]: mean negative log-likelihood over each example's valid pixels (0 if none).
  """
  num_classes = log_probs.shape[-1]
  valid = (labels >= 0) & (labels < num_classes)
  safe = jnp.where(valid, labels, 0)
  nll = -jnp.take_along_axis(log_probs, safe[..., None], axis=-1)[..., 0]
  return _masked_mean(nll.astype(jnp.float32), valid)


def depth_loss(pred: jax.Array, gt: jax.Array) -> jax.Array:
  """L1 depth error per example over pixels with gt != 0 (MTPSL `model_fit`, depth branch).

  Args:
    pred: float [B, H, W, 1] predicted depth in metres.
    gt: float [B, H, W, 1] ground-truth depth in metres, 0 = invalid.

  Returns:
    float32 [B]: mean |pred - gt| over each example's valid pixels (0 if none).
  """
  return _masked_mean(jnp.abs(pred - gt).astype(jnp.float32), gt != 0)


def normal_loss(pred: jax.Array, gt: jax.Array) -> jax.Array:
  """1 - mean cosine similarity per example over pixels whose gt is not all-zero (MTPSL).

  Args:
    pred: float [B, H, W, 3] predicted normals; L2-normalised here (the SegNet head already is).
    gt: float [B, H, W, 3] unit ground-truth normals, all-zero = invalid.

  Returns:
    float32 [B]: 1 - mean_pixels <pred/|pred|, gt> over each example's valid pixels (0 if none).
  """
  unit = pred * jax.lax.rsqrt(jnp.maximum(jnp.sum(pred * pred, -1, keepdims=True), 1e-12))
  cosine = jnp.sum(unit * gt, axis=-1).astype(jnp.float32)
  valid = jnp.any(gt != 0, axis=-1)
  count = jnp.sum(valid, axis=(1, 2))
  return jnp.where(count > 0, 1.0 - _masked_mean(cosine, valid), 0.0)


def _semseg_colours(num_classes: int) -> np.ndarray:
  """A fixed, well-separated palette [num_classes + 1, 3] uint8; the last row (black) is ignore."""
  hues = (np.arange(num_classes) * 0.61803398875) % 1.0
  k = (np.array([5.0, 3.0, 1.0])[None] + hues[:, None] * 6.0) % 6.0
  rgb = 1.0 - 0.8 * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)
  return np.concatenate([np.round(rgb * 255), np.zeros((1, 3))]).astype(np.uint8)


def semseg_to_rgb(ids: np.ndarray, num_classes: int) -> np.ndarray:
  """Class ids int [..., H, W] (-1 = ignore, shown black) -> uint8 RGB [..., H, W, 3]."""
  ids = np.where((ids >= 0) & (ids < num_classes), ids, num_classes)
  return _semseg_colours(num_classes)[ids]


def depth_to_rgb(depth: np.ndarray, max_depth: float) -> np.ndarray:
  """Depth float [..., H, W, 1] metres (0 = invalid, black) -> uint8 grey [..., H, W, 3], near bright."""
  d = depth[..., 0]
  grey = np.where(d > 0, 1.0 - np.clip(d / max(max_depth, 1e-6), 0.0, 1.0), 0.0)
  return np.repeat(np.round(grey[..., None] * 255), 3, axis=-1).astype(np.uint8)


def normal_to_rgb(normal: np.ndarray) -> np.ndarray:
  """Normals float [..., H, W, 3] in [-1, 1] -> uint8 RGB (n + 1) / 2; invalid (all-zero) black."""
  valid = np.any(normal != 0, axis=-1, keepdims=True)
  return np.round(np.where(valid, (normal + 1.0) / 2.0, 0.0) * 255).astype(np.uint8)


@dataclasses.dataclass(frozen=True)
class Task:
  """How mtjax trains, evaluates and shows one task.

  Attributes:
    name: the task's name; also the key of its ground truth in a batch and of its prediction.
    loss: (pred, gt) -> float32 [B] per-example loss (mean over the example's valid pixels).
    metric_state: (pred, gt, num_classes) -> additive state of `mtjax.metrics`.
    to_rgb: (array, num_classes, max_depth) -> uint8 [..., H, W, 3] for the image panel; takes a
      ground truth or a prediction converted by `prediction_to_gt_format`.
  """

  name: str
  loss: Callable[[jax.Array, jax.Array], jax.Array]
  metric_state: Callable[[jax.Array, jax.Array, int], dict]
  to_rgb: Callable[[np.ndarray, int, float], np.ndarray]


def prediction_to_gt_format(name: str, pred: jax.Array) -> jax.Array:
  """Turns a model output into the layout of the task's ground truth (semseg: argmax ids int32)."""
  return jnp.argmax(pred, axis=-1).astype(jnp.int32) if name == "semseg" else pred


def metric_state(name: str, pred: jax.Array, gt: jax.Array, num_classes: int) -> dict:
  """Additive `mtjax.metrics` state of a prediction already in the ground truth's layout.

  Args:
    name: "semseg" (pred: int class ids [..., H, W]), "depth" (float [..., H, W, 1] metres) or
      "normal" (float [..., H, W, 3]); see `prediction_to_gt_format`.
    pred, gt: prediction and ground truth of the same shape.
    num_classes: semantic classes (used by semseg only).

  Raises:
    ValueError: an unknown task name, or the metric's own shape/dtype errors.
  """
  if name == "semseg":
    return metrics.segmentation_state(pred, gt, num_classes)
  if name == "depth":
    return metrics.depth_state(pred, gt)
  if name == "normal":
    return metrics.normals_state(pred, gt)
  raise ValueError(f"unknown task {name!r}: expected 'semseg', 'depth' or 'normal'")


def _model_output_metric_state(name: str) -> Callable[[jax.Array, jax.Array, int], dict]:
  return lambda pred, gt, c: metric_state(name, prediction_to_gt_format(name, pred), gt, c)


TASKS: Mapping[str, Task] = {
    "semseg": Task(
        "semseg",
        semseg_loss,
        _model_output_metric_state("semseg"),
        lambda x, c, _: semseg_to_rgb(x, c),
    ),
    "depth": Task(
        "depth",
        depth_loss,
        _model_output_metric_state("depth"),
        lambda x, _, max_depth: depth_to_rgb(x, max_depth),
    ),
    "normal": Task(
        "normal",
        normal_loss,
        _model_output_metric_state("normal"),
        lambda x, *_: normal_to_rgb(x),
    ),
}


def get_tasks(names: Sequence[str]) -> tuple[Task, ...]:
  """The Task records for `names`, in that order.

  Raises:
    ValueError: a name is not a known task, or a name repeats.
  """
  unknown = [n for n in names if n not in TASKS]
  if unknown or len(set(names)) != len(names) or not names:
    raise ValueError(
        f"config.tasks={tuple(names)!r}: expected a non-empty list of distinct task names from "
        f"{tuple(TASKS)}; unknown: {unknown}"
    )
  return tuple(TASKS[n] for n in names)


def partial_label_terms(
    predictions: Mapping[str, jax.Array],
    batch: Mapping[str, jax.Array],
    tasks: Sequence[Task],
) -> tuple[jax.Array, jax.Array, int]:
  """Per-task sums of the labelled examples' losses, what task weightings and MTPSL's loss use.

  Args:
    predictions, batch, tasks: as `partial_label_loss`.

  Returns:
    (sums, counts, batch_size): sums float32 [T], Σ_b m[b, t] L_t(pred_b, gt_b); counts float32
    [T], n_t = Σ_b m[b, t] (padding excluded); batch_size B, the global batch size.
  """
  mask = batch["label_mask"]
  if "valid" in batch:
    mask = mask * batch["valid"][:, None]
  sums = jnp.stack(
      [
          jnp.sum(mask[:, t] * task.loss(predictions[task.name], batch[task.name]))
          for t, task in enumerate(tasks)
      ]
  )
  return sums, jnp.sum(mask, axis=0), mask.shape[0]


def partial_label_loss(
    predictions: Mapping[str, jax.Array],
    batch: Mapping[str, jax.Array],
    tasks: Sequence[Task],
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """MTPSL's partially supervised loss: only each example's labelled tasks count.

  L = (1/B) Σ_b Σ_t m[b, t] · L_t(pred_b, gt_b)   (DATA_AND_METRICS.md "Losses", MTPSL's normalisation)

  Args:
    predictions: task name -> model output [B, H, W, ...] (see `Task`).
    batch: task name -> ground truth [B, H, W, ...]; "label_mask" float32 [B, T] in `tasks` order
      (1 = the task's ground truth is used for that example); optional "valid" float32 [B]
      (0 = padding, never counts). B is the global batch size.
    tasks: the T tasks, in label_mask column order.

  Returns:
    (loss, task_losses): loss float32 scalar; task_losses {name: float32 scalar}, the per-task
    terms (1/B) Σ_b m[b, t] L_t, so loss == Σ_t task_losses[t] (the form a task weighting rescales).
  """
  sums, _, batch_size = partial_label_terms(predictions, batch, tasks)
  task_losses = {task.name: sums[t] / batch_size for t, task in enumerate(tasks)}
  return sum(task_losses.values()), task_losses
