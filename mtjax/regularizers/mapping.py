"""The task-pair-conditioned mapping network a_θ that region-aware distribution contrast (Li et al.,
ECCV 2024; docs/methods.md step 1) and MTPSL's cross-task consistency (Li, Liu, Bilen, CVPR 2022;
docs/methods.md) both configure: one implementation.

Structure (MTPSL's ``Mapfns`` / ``SegNet_enc``): a task-specific input layer (3x3 conv C_task -> f[0],
normalisation, ReLU), then a shared encoder of stages; stage i is ``convs_per_stage[i]`` FiLM convs
(3x3 conv -> normalisation -> x·γ_p + β_p -> ReLU; the first of the stage goes to f[i] channels)
and a 2x2/2 max-pool. One γ, β row per **directed** task pair p (γ init 1, β init 0), so the output
stride is 2 ** len(filters) and the output has f[-1] channels.

Normalisation: MTPSL runs its mapping network on one example at a time in training mode, so each
BatchNorm normalises with the statistics of that single map (mean and biased variance over its
positions); its running averages are never used, because a_θ never runs at evaluation. Here each map
is normalised with its own statistics directly, which is the same function and lets any number of
maps (examples × task pairs × ground truth / prediction) run as one batch. Each normalisation keeps
BatchNorm's affine ``scale`` / ``bias`` params, so parameter counts match MTPSL's.

Pair rows follow MTPSL's ``A_taskpair``: the off-diagonal entries of the T×T matrix
A[prediction task, ground-truth task], row-major (``pair_row``).

Also here, shared by both regularizers: which directed pairs each example contributes
(``pair_validity``, ``pair_slots``), MTPSL's input encodings (``encode_ground_truth``,
``encode_prediction``) and the mapping of every slot's prediction and ground truth
(``mapped_features``, ``mapped_slots``).
"""

from collections.abc import Mapping, Sequence
from typing import Protocol

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from mtjax import tasks as tasks_lib
from mtjax.models import layers

__all__ = [
    "FiLMConv",
    "FiLMEncoder",
    "MapNorm",
    "SlotSettings",
    "all_pairs",
    "encode_ground_truth",
    "encode_prediction",
    "input_channels",
    "map_norm",
    "mapped_features",
    "mapped_slots",
    "max_directed_pairs",
    "num_pairs",
    "output_stride",
    "pair_row",
    "pair_slots",
    "pair_validity",
]


Array = jax.Array


def num_pairs(num_tasks: int) -> int:
  """T(T−1): the directed task pairs (s ≠ t) of T tasks."""
  return num_tasks * (num_tasks - 1)


def pair_row(pred_task, gt_task, num_tasks: int):
  """FiLM row of the directed pair (prediction of ``pred_task``, ground truth of ``gt_task``).

  MTPSL's ordering: the off-diagonal entries of A[pred, gt] row-major, i.e.
  row = pred·(T−1) + gt − [gt > pred]. Works on Python ints and on integer arrays (broadcasting).
  The result is meaningless where pred == gt (no such pair).
  """
  return pred_task * (num_tasks - 1) + gt_task - (gt_task > pred_task)


def all_pairs(num_tasks: int) -> tuple[np.ndarray, np.ndarray]:
  """(pred_task int32 [P], gt_task int32 [P]) of every directed pair, in FiLM row order."""
  pred, gt = np.nonzero(~np.eye(num_tasks, dtype=bool))
  return pred.astype(np.int32), gt.astype(np.int32)


def map_norm(x: Array, scale: Array, bias: Array, epsilon: float = 1e-5) -> Array:
  """Normalises each map of x [N, H, W, C] by its own per-channel mean and biased variance over
  (H, W), then x·scale + bias (PyTorch BatchNorm2d in training mode on a batch of one map).
  Statistics in float32, two-pass. Returns float32 [N, H, W, C]."""
  x = x.astype(jnp.float32)
  mean = jnp.mean(x, axis=(1, 2), keepdims=True)
  centred = x - mean
  var = jnp.mean(jnp.square(centred), axis=(1, 2), keepdims=True)
  return centred * (jax.lax.rsqrt(var + epsilon) * scale) + bias


class MapNorm(nn.Module):
  """``map_norm`` with params ``scale`` (ones) and ``bias`` (zeros), [C] float32."""

  @nn.compact
  def __call__(self, x: Array) -> Array:
    c = x.shape[-1]
    scale = self.param("scale", nn.initializers.ones_init(), (c,), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros_init(), (c,), jnp.float32)
    return map_norm(x, scale, bias)


class FiLMConv(nn.Module):
  """3x3 conv (bias) -> ``MapNorm`` -> x·γ[row] + β[row] -> ReLU (MTPSL's ``conv_task``).

  Params: ``conv`` (``layers.Conv3x3``), ``norm``, ``gamma`` / ``beta`` float32 [P, features]
  (ones / zeros). Call: x [N, H, W, Cin], rows int [N] in [0, P) -> float32 [N, H, W, features].
  """

  features: int
  num_pairs: int
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x: Array, rows: Array) -> Array:
    x = layers.Conv3x3(self.features, impl=self.conv_impl, name="conv")(x)
    x = MapNorm(name="norm")(x)
    gamma = self.param("gamma", nn.initializers.ones_init(), (self.num_pairs, self.features))
    beta = self.param("beta", nn.initializers.zeros_init(), (self.num_pairs, self.features))
    return nn.relu(x * gamma[rows][:, None, None, :] + beta[rows][:, None, None, :])


class FiLMEncoder(nn.Module):
  """a_θ: task-specific input layers and a shared FiLM-conditioned encoder (module docstring).

  Attributes:
    input_channels: channels of each task's encoded input, in task order (NYUv2: 13, 1, 3).
    filters: channels f[i] of each stage (MTPSL: 64, 128, 256, 512, 512).
    convs_per_stage: FiLM convs per stage, the same length as ``filters`` (MTPSL: 2, 2, 3, 3, 3).
    conv_impl: ``layers.conv3x3``'s implementation (speed only; the params are the same).

  Methods:
    ``embed(x, task)``: x float [N, H, W, input_channels[task]] -> float32 [N, H, W, f[0]], the
      input layer of ``task`` (a static int); no pair conditioning (as MTPSL).
    ``__call__(h, rows)``: h float [N, H, W, f[0]] (embedded), rows int32 [N] FiLM rows
      (``pair_row``) -> float32 [N, H / 2**S, W / 2**S, f[-1]], S = len(filters). H and W must be
      divisible by 2**S.

  Initialise with ``init_variables``. Raises ValueError on mismatched ``filters`` /
  ``convs_per_stage``, an empty ``filters``, a stage with no conv, or fewer than two tasks.
  """

  input_channels: Sequence[int]
  filters: Sequence[int] = (64, 128, 256, 512, 512)
  convs_per_stage: Sequence[int] = (2, 2, 3, 3, 3)
  conv_impl: str = "auto"

  def setup(self):
    filters, convs = tuple(self.filters), tuple(self.convs_per_stage)
    if not filters or len(filters) != len(convs) or min(convs) < 1:
      raise ValueError(
          f"mapping filters {filters} and convs_per_stage {convs}: expected equal non-empty "
          "lengths and at least one conv per stage"
      )
    if len(self.input_channels) < 2:
      raise ValueError(
          f"a task-pair mapping needs at least two tasks, got input_channels {self.input_channels}"
      )
    pairs = num_pairs(len(self.input_channels))
    impl = layers.resolve_conv_impl(self.conv_impl)
    self.input_convs = [
        layers.Conv3x3(filters[0], impl=impl, name=f"input_{k}_conv")
        for k in range(len(self.input_channels))
    ]
    self.input_norms = [MapNorm(name=f"input_{k}_norm") for k in range(len(self.input_channels))]
    self.stages = [
        [FiLMConv(f, pairs, impl, name=f"stage_{i}_conv_{j}") for j in range(n)]
        for i, (f, n) in enumerate(zip(filters, convs))
    ]

  def embed(self, x: Array, task: int) -> Array:
    return nn.relu(self.input_norms[task](self.input_convs[task](x)))

  def __call__(self, h: Array, rows: Array) -> Array:
    for stage in self.stages:
      for conv in stage:
        h = conv(h, rows)
      h = layers.max_pool_2x2(h)
    return h

  def init_variables(self, rng: jax.Array, image_shape: tuple[int, int]) -> dict:
    """Params of every input layer and of the encoder, for maps of ``image_shape`` (H, W)."""

    def touch_all(module):
      h = sum(
          module.embed(jnp.zeros((1, *image_shape, c), jnp.float32), k)
          for k, c in enumerate(module.input_channels)
      )
      return module(h, jnp.zeros((1,), jnp.int32))

    return self.init(rng, method=touch_all)


# ---------------------------------------------------------------------------------------------------
# Task pairs
# ---------------------------------------------------------------------------------------------------


def pair_validity(label_mask: Array) -> Array:
  """Which directed pairs (prediction t, ground truth s) each example contributes.

  Args:
    label_mask: float or bool [B, T], 1 = task labelled for that example.

  Returns:
    bool [B, P], P = T(T−1) in ``mapping.all_pairs`` order: pair (t, s) is valid when s is labelled
    and t is not, or, for an example with every task labelled, whenever s ≠ t. An example with no
    labelled task has none.
  """
  labelled = jnp.asarray(label_mask) > 0
  pred, gt = all_pairs(labelled.shape[-1])
  everything = jnp.all(labelled, axis=-1, keepdims=True)
  return labelled[:, gt] & (everything | ~labelled[:, pred])


def max_directed_pairs(label_mask: np.ndarray) -> int:
  """The most valid pairs any example of ``label_mask`` [N, T] has (at least 1): the static K."""
  valid = np.asarray(pair_validity(jnp.asarray(np.asarray(label_mask) > 0)))
  return max(1, int(valid.sum(-1).max(initial=0)))


def pair_slots(label_mask: Array, num_slots: int) -> tuple[Array, Array, Array]:
  """Each example's valid pairs packed into ``num_slots`` slots (valid first, in row order).

  Args:
    label_mask: float or bool [B, T].
    num_slots: K (static), 1 ≤ K ≤ T(T−1). Valid pairs beyond K are dropped: pass
      ``max_directed_pairs`` of the label setting.

  Returns:
    (pred_task int32 [B, K], gt_task int32 [B, K], valid bool [B, K]).

  Raises:
    ValueError: K outside 1..T(T−1).
  """
  valid_pairs = pair_validity(label_mask)
  if not 1 <= num_slots <= valid_pairs.shape[-1]:
    raise ValueError(f"num_slots={num_slots}: expected 1..{valid_pairs.shape[-1]} (T(T-1))")
  pred, gt = all_pairs(label_mask.shape[-1])
  order = jnp.argsort(~valid_pairs, axis=-1, stable=True)[:, :num_slots]
  valid = jnp.take_along_axis(valid_pairs, order, -1)
  return jnp.asarray(pred)[order], jnp.asarray(gt)[order], valid


# ---------------------------------------------------------------------------------------------------
# a_θ's inputs (MTPSL's encodings)
# ---------------------------------------------------------------------------------------------------


def input_channels(tasks: Sequence[str], num_classes: int) -> tuple[int, ...]:
  """a_θ's input channels of each task (the records' ``encoding_channels``).

  Raises:
    ValueError: an unknown task, or one without an a_θ encoding.
  """
  records = tasks_lib.resolve(tasks, num_classes)
  missing = [t.name for t in records if not t.encoding_channels]
  if missing:
    raise ValueError(f"tasks {missing} have no a_θ input encoding (num_classes={num_classes})")
  return tuple(t.encoding_channels for t in records)


def encode_ground_truth(name: str, gt: Array, num_classes: int) -> Array:
  """A task's ground truth as a_θ's input: the task record's ``encode_gt`` (MTPSL
  ``pre_process_gt`` for semseg, depth and normal).

  Args:
    name: a registered task (``mtjax.tasks``), e.g. "semseg" (gt int [B, H, W], −1 ignore),
      "depth" (float [B, H, W, 1] metres, 0 invalid) or "normal" (float [B, H, W, 3], 0 invalid).
    num_classes: the dataset's semantic classes (a class task's channels).

  Returns:
    float32 [B, H, W, C], C = the record's ``encoding_channels``: semseg one-hot with ignore
    pixels all-zero; depth / the map's max; (n + 1) / 2; a binary map with ignore at 0.

  Raises:
    ValueError: unknown task.
  """
  return tasks_lib.get_task(name, num_classes=num_classes).encode_gt(gt)


def encode_prediction(name: str, pred: Array, rng: Array | None, *, gumbel: bool = True) -> Array:
  """A task's prediction as a_θ's input, differentiable: the task record's ``encode_prediction``
  (MTPSL ``pre_process_pred`` for semseg, depth and normal).

  Args:
    name: a registered task, e.g. "semseg" (pred float [B, H, W, C] log-probabilities), "depth"
      ([B, H, W, 1]) or "normal" ([B, H, W, 3]).
    rng: key for the Gumbel noise (class tasks with ``gumbel``); unused otherwise (may be None).
    gumbel: class tasks: a hard Gumbel-softmax sample (τ = 1, MTPSL ``F.gumbel_softmax(hard=True)``);
      False: the argmax.

  Returns:
    float32 [B, H, W, C]. Class tasks: the hard one-hot in the forward pass with the gradient of
    the softmax (straight-through).

  Raises:
    ValueError: unknown task, or a class task with ``gumbel`` and no ``rng``.
  """
  return tasks_lib.get_task(name, num_classes=pred.shape[-1]).encode_prediction(pred, rng, gumbel)


# ---------------------------------------------------------------------------------------------------
# The mapping of prediction / ground-truth slots
# ---------------------------------------------------------------------------------------------------


def mapped_features(
    params,
    encoder: FiLMEncoder,
    tasks: Sequence[str],
    num_classes: int,
    predictions: Mapping[str, Array],
    batch: Mapping[str, Array],
    pred_task: Array,
    gt_task: Array,
    rng: Array,
    *,
    gumbel: bool = True,
) -> tuple[Array, Array]:
  """The mapping network applied to every slot's prediction and ground truth (MTPSL ``Mapfns``).

  Args:
    params: the encoder's params.
    encoder: the ``FiLMEncoder``; tasks: its task order; num_classes: semantic classes.
    predictions / batch: the model outputs and the batch (task name -> [B, H, W, ...]).
    pred_task, gt_task: int32 [B, K] task indices of each slot (``pair_slots``).
    rng: key for the semseg prediction's Gumbel noise.
    gumbel: ``encode_prediction``'s.

  Returns:
    (f_pred, f_gt), each float32 [B, K, H / stride, W / stride, D].
  """
  variables = {"params": params}
  gt_in, pred_in = [], []
  for k, name in enumerate(tasks):
    # Each task's input layer runs once per example, for its ground truth and its prediction.
    x = jnp.concatenate(
        [
            encode_ground_truth(name, batch[name], num_classes),
            encode_prediction(name, predictions[name], jax.random.fold_in(rng, k), gumbel=gumbel),
        ]
    )
    h = encoder.apply(variables, x, k, method=FiLMEncoder.embed)
    gt_h, pred_h = jnp.split(h, 2)
    gt_in.append(gt_h)
    pred_in.append(pred_h)
  gt_in, pred_in = jnp.stack(gt_in), jnp.stack(pred_in)  # [T, B, H, W, f0]
  b = jnp.arange(pred_task.shape[0])[:, None]
  h = jnp.stack([pred_in[pred_task, b], gt_in[gt_task, b]], axis=2)  # [B, K, 2, H, W, f0]
  rows = pair_row(pred_task, gt_task, len(tasks))
  rows = jnp.broadcast_to(rows[:, :, None], h.shape[:3])
  out = encoder.apply(variables, h.reshape(-1, *h.shape[3:]), rows.reshape(-1))
  out = out.reshape(*h.shape[:3], *out.shape[1:])
  return out[:, :, 0], out[:, :, 1]


class SlotSettings(Protocol):
  """What `mapped_slots` reads of a regularizer's settings (``RDCSettings``, ``XTCSettings``)."""

  tasks: tuple[str, ...]
  num_classes: int
  max_pairs: int
  gumbel: bool

  def encoder(self) -> FiLMEncoder:
    """a_θ, the FiLM encoder the settings describe."""
    ...


def mapped_slots(
    params,
    settings: SlotSettings,
    predictions: Mapping[str, Array],
    batch: Mapping[str, Array],
    rng: Array,
) -> tuple[Array, Array, Array, Array, Array]:
  """The example-pair slots of a batch and their mapped features: ``pair_slots`` of ``label_mask``
  (times ``valid`` when the batch has it, so padded examples contribute nothing), then
  ``mapped_features`` with ``settings``' encoder, tasks, class count and Gumbel switch. What the
  regularizers start from.

  Args:
    settings: K = ``settings.max_pairs`` slots per example (``max_directed_pairs``).
    batch: ``label_mask`` float32 [B, T] in ``settings.tasks`` order, optional ``valid`` float32
      [B], the ground truths; the rest as ``mapped_features``.

  Returns:
    (pred_task int32 [B, K], gt_task int32 [B, K], slot_valid float32 [B, K], f_pred, f_gt each
    float32 [B, K, H / stride, W / stride, D]).
  """
  mask = batch["label_mask"]
  if "valid" in batch:
    mask = mask * batch["valid"][:, None]
  pred_task, gt_task, slot_valid = pair_slots(mask, settings.max_pairs)
  f_pred, f_gt = mapped_features(
      params,
      settings.encoder(),
      settings.tasks,
      settings.num_classes,
      predictions,
      batch,
      pred_task,
      gt_task,
      rng,
      gumbel=settings.gumbel,
  )
  return pred_task, gt_task, slot_valid, f_pred, f_gt


def output_stride(filters: Sequence[int]) -> int:
  """2 ** len(filters): the mapping output's stride in input pixels."""
  return 2 ** len(tuple(filters))
