"""The task record and the registry of task factories (``mtjax.tasks`` re-exports both).

A task is everything mtjax knows about one dense prediction target, in one record (``Task``):
models size and activate their heads from it, the objective takes its loss, evaluation its metric,
the regularizers its a_θ encoding and pixel relation, augmentation its resize / flip / scale rules
and the image panel its colours. Nothing outside ``mtjax/tasks/`` branches on a task's name; a new
task is one module that calls ``register`` (a test can register a toy task the same way).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

# How augmentation resamples a task's ground truth (``mtjax.data.augment``).
RESIZE_RULES = ("nearest", "bilinear", "bilinear_unit")


@dataclasses.dataclass(frozen=True, eq=False)
class Task:
  """How mtjax predicts, trains, evaluates, augments and shows one task.

  Records compare and hash by identity (they are static arguments of jitted functions); the
  factories of ``register`` cache them, so the same name and options give the same record.

  Attributes:
    name: the field's name of the task; the key of its ground truth in a batch and of its
      prediction in a model's output dict.
    channels: output channels of the task's head (classes for a classification task).
    activation: raw head output float32 [B, H, W, channels] -> the prediction the loss reads
      (log-probabilities, metres, unit vectors, or logits of a binary map).
    loss: (prediction, gt) -> float32 [B], the mean of the task's loss over each example's valid
      pixels (0 for an example with none), the partial-label reduction's input.
    gt_dtype: NumPy dtype name of the ground truth ("int32" | "float32").
    gt_shape: trailing ground-truth dims after [H, W] (() for class ids, (1,), (3,)).
    ignore: the ground-truth value of an invalid pixel (what padded examples are filled with).
    is_valid: gt [..., H, W, *gt_shape] -> bool [..., H, W], the pixels that have ground truth.
    to_gt_format: prediction -> the ground truth's layout (class ids, a probability, ...), what
      metrics and the panel compare with the ground truth.
    metric_state: (prediction in gt format, gt) -> a metric state (a dict of arrays), jit-able;
      additive over batches unless ``host_state`` is set.
    finalize: merged state -> {metric: float} (percent / units as the metric says; {} = absent).
    directions: metric -> True when higher is better (s_t = +1 in Δm); every metric ``finalize``
      reports has one.
    host_state: None, or a host (NumPy) function turning ``metric_state``'s per-batch output into
      an additive state, for metrics that cannot run under jit (edge matching).
    encoding_channels: channels of the a_θ input encoding (rdc / xtc; MTPSL's pre-processing).
    encode_gt: gt -> float32 [B, H, W, encoding_channels], a_θ's input from ground truth.
    encode_prediction: (prediction, rng | None, gumbel: bool) -> float32 [B, H, W,
      encoding_channels], a_θ's input from a prediction, differentiable.
    relation: (a [B, N, *gt_shape], c [B, M, *gt_shape], threshold) -> bool [B, N, M], whether
      gathered ground-truth values are related (pixel contrast's positives).
    relation_threshold: the relation's default threshold in the task's units (None: none).
    resize: "nearest" (ids, binary maps, depth), "bilinear" or "bilinear_unit" (bilinear, then
      re-normalised to unit length with invalid pixels kept at 0; normals).
    flip_sign: per-channel signs applied after a horizontal flip (normals: x negated), or None.
    scale_power: after a zoom by s, values are multiplied by s ** scale_power (metric depth: −1;
      disparity: +1; everything else 0).
    to_rgb: (array in gt format, the batch's gt of the task) -> uint8 [..., H, W, 3].
    mean_value: NumPy gt [..., H, W, *gt_shape] -> float64 [..., H, W, K], what the mean
      predictors of ``mtjax.baselines`` average over valid pixels (class ids: one-hot; otherwise
      the value itself).
    from_mean: float64 mean [..., K] -> a prediction in gt format (class ids: the argmax; normals:
      the unit direction; otherwise the mean).
    decimals: metric -> decimals in result tables (``mtjax.experiments``; others: 2).
    released_metric_state: None, or (the model's raw output, gt) -> a metric state as RDC's
      released code computes it (``config.metrics_as_released``: ``<name>_as_released`` beside
      ``<name>``, ``mtjax.evaluation.eval_step``); None: the release scores this task as mtjax.
    released_finalize: that state merged over the split -> {metric: float}; set with
      ``released_metric_state``.
  """

  name: str
  channels: int | None
  activation: Callable[[Array], Array]
  loss: Callable[[Array, Array], Array]
  gt_dtype: str
  gt_shape: tuple[int, ...]
  ignore: float
  is_valid: Callable[[Array], Array]
  to_gt_format: Callable[[Array], Array]
  metric_state: Callable[[Array, Array], dict]
  finalize: Callable[[Mapping[str, Any]], dict[str, float]]
  directions: Mapping[str, bool]
  encoding_channels: int | None
  encode_gt: Callable[[Array], Array]
  encode_prediction: Callable[[Array, Array | None, bool], Array]
  relation: Callable[[Array, Array, Any], Array]
  to_rgb: Callable[[np.ndarray, np.ndarray], np.ndarray]
  relation_threshold: float | None = None
  host_state: Callable[[Mapping[str, np.ndarray]], dict] | None = None
  resize: str = "nearest"
  flip_sign: tuple[float, ...] | None = None
  scale_power: float = 0.0
  mean_value: Callable[[np.ndarray], np.ndarray] = lambda gt: np.asarray(gt, np.float64)
  from_mean: Callable[[np.ndarray], np.ndarray] = lambda mean: mean.astype(np.float32)
  decimals: Mapping[str, int] = dataclasses.field(default_factory=dict)
  released_metric_state: Callable[[Array, Array], dict] | None = None
  released_finalize: Callable[[Mapping[str, Any]], dict[str, float]] | None = None

  def __post_init__(self):
    if (self.released_metric_state is None) != (self.released_finalize is None):
      raise ValueError(
          f"task {self.name!r}: released_metric_state and released_finalize go together"
      )
    if self.resize not in RESIZE_RULES:
      raise ValueError(f"task {self.name!r}: resize={self.resize!r}, expected one of {RESIZE_RULES}")
    if self.gt_dtype not in ("int32", "float32"):
      raise ValueError(f"task {self.name!r}: gt_dtype={self.gt_dtype!r}, expected int32 | float32")

  def invalid_like(self, gt: Array) -> Array:
    """An all-invalid ground truth of gt's shape and dtype (padding)."""
    return jnp.full_like(gt, self.ignore)

  def metric_state_of_output(self, prediction: Array, gt: Array) -> dict:
    """``metric_state`` of a model output (converted by ``to_gt_format`` first)."""
    return self.metric_state(self.to_gt_format(prediction), gt)


# name -> factory(num_classes=None, **options) -> Task.
_FACTORIES: dict[str, Callable[..., Task]] = {}


def register(name: str, factory: Callable[..., Task], *, replace: bool = False) -> None:
  """Makes ``name`` a task: ``factory(num_classes=None, **options)`` builds its record.

  ``num_classes`` is the dataset's semantic class count (``config.dataset.num_classes``); a task
  without classes, or with its own count, ignores it. Options are the task's
  ``config.task_options.<name>`` entries. Factories should cache their records (``functools.cache``)
  so equal arguments give the same record.

  Raises:
    ValueError: ``name`` is already registered and ``replace`` is False.
  """
  if name in _FACTORIES and not replace:
    raise ValueError(f"task {name!r} is already registered; pass replace=True to override it")
  _FACTORIES[name] = factory


def unregister(name: str) -> None:
  """Removes a registered task (tests' toy tasks). Raises KeyError if it is not registered."""
  del _FACTORIES[name]


def names() -> tuple[str, ...]:
  """The registered task names."""
  return tuple(_FACTORIES)


def get_task(name: str, *, num_classes: int | None = None, **options) -> Task:
  """The record of task ``name`` for a dataset of ``num_classes`` classes with ``options``.

  Raises:
    ValueError: an unknown name, or options the task does not take (named).
  """
  if name not in _FACTORIES:
    raise ValueError(f"unknown task {name!r}: expected one of {names()}")
  factory = _FACTORIES[name]
  try:
    inspect.signature(factory).bind(num_classes=num_classes, **options)
  except TypeError as e:
    raise ValueError(f"task {name!r}: bad options {sorted(options)} ({e})") from None
  return factory(num_classes=num_classes, **options)


def masked_mean(values: Array, valid: Array) -> Array:
  """Per-example mean of ``values`` [B, ...] over ``valid`` [B, ...]; 0 for an example with none."""
  axes = tuple(range(1, values.ndim))
  total = jnp.sum(jnp.where(valid, values, 0.0), axis=axes)
  count = jnp.sum(valid, axis=axes)
  return total / jnp.maximum(count, 1)


def scale_by_max(x: Array) -> Array:
  """x / (max |x| over the map + 1e-12) per example: MTPSL's x / (max x + 1e-12) (``pre_process_gt``
  / ``pre_process_pred``) for the non-negative maps it sees, bounded otherwise."""
  peak = jnp.max(jnp.abs(x), axis=tuple(range(1, x.ndim)), keepdims=True)
  return x / (peak + 1e-12)


def grey_to_rgb(value: np.ndarray, valid: np.ndarray) -> np.ndarray:
  """float [..., H, W] in [0, 1] -> uint8 grey RGB [..., H, W, 3]; invalid pixels black."""
  grey = np.where(valid, np.clip(value, 0.0, 1.0), 0.0)
  return np.repeat(np.round(grey[..., None] * 255), 3, axis=-1).astype(np.uint8)
