"""The task-pair-conditioned mapping network a_θ that region-aware distribution contrast (Li et al.,
ECCV 2024; METHODS.md §1 step 1) and MTPSL's cross-task consistency (Li, Liu, Bilen, CVPR 2022;
METHODS.md §3) both configure: one implementation.

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
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from mtjax.models import layers

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


def output_stride(filters: Sequence[int]) -> int:
  """2 ** len(filters): the mapping output's stride in input pixels."""
  return 2 ** len(tuple(filters))
