"""SegNet-MTL: the multi-task SegNet of MTAN / MTPSL ("split" architecture) in Flax linen.

Reference: lorenmt/mtan ``SegNet`` (model_segnet_split.py) as used by VICO-UoE/MTPSL;
docs/metrics.md "SegNet-MTL architecture" and "Parameter counts"
(13 classes, standard width: 25,055,185 parameters, 14,336 BatchNorm running-stat values).

Speed on the 2-core CPU (jitted fwd + bwd + Adam, 288x384, batch 2, CE + L1 + (1 - cos) loss,
median of 4 steps, as tools/benchmark_train_step.py; +-0.3 s run-to-run):
  conv_impl="xla" 9.2-9.9 s, "im2col" 7.3-8.4 s, "mmgrad" ("auto") 6.1-6.6 s;
  PyTorch 2.13 eager side by side 4.9-5.6 s.
About a quarter of the CPU time of a step is the kernel zeroing freshly mmap'ed pages for XLA's
large temporaries (1.1 M page faults per step). Starting the process with GLIBC_TUNABLES set to
the glibc.malloc tunables arena_max=1, mmap_max=0, trim_threshold=68719476736 (colon-separated)
keeps freed memory for reuse: "auto" then takes 5.0-5.4 s (PyTorch 3.6 s with the same setting).
Without any setting, the trainer runs 8 steps per jitted call on the CPU (config.steps_per_call),
so the zeroing happens once per call, not once per step (docs/performance.md).
2x2 max-pool / max-unpool as fused elementwise selects instead of reduce_window and
select-and-scatter (layers.max_pool_2x2), and the kernel gradient of convs whose widths differ
as nine matmuls: 7.09 -> 6.62 s per step together (docs/performance.md, A/B in one process).
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from mtjax.models import layers
from mtjax.models.features import FEATURES
from mtjax.tasks import Task, resolve

Array = jax.Array



class ConvBNReLU(nn.Module):
  """3x3 conv (with bias) -> BatchNorm -> ReLU: MTAN's ``conv_layer``.

  BatchNorm as PyTorch's ``nn.BatchNorm2d`` defaults (``layers.BatchNorm``: momentum 0.1 in
  PyTorch terms, epsilon 1e-5, unbiased running variance). Input [B, H, W, Cin] ->
  [B, H, W, features] in ``dtype``.
  """

  features: int
  conv_impl: str = "auto"
  dtype: Any = None

  @nn.compact
  def __call__(self, x: Array, *, train: bool) -> Array:
    x = layers.Conv3x3(self.features, impl=self.conv_impl, dtype=self.dtype, name="conv")(x)
    x = layers.BatchNorm(use_running_average=not train, dtype=self.dtype, name="bn")(x)
    return nn.relu(x)


class SegNetMTL(nn.Module):
  """Multi-task SegNet (shared VGG-16-style encoder-decoder, one small head per task).

  Encoder stage i (i = 0..4): ``encoder_block_i`` (conv to f[i]), ``conv_block_enc_i_j`` (1 conv
  for i in {0, 1}, 2 convs for i >= 2), 2x2/2 max-pool keeping the argmax. Decoder stage i = 4..0:
  max-unpool with stage i's argmax, ``decoder_block_i`` (conv f[i] -> f[i-1]; f[0] -> f[0] for
  i = 0), ``conv_block_dec_i_j`` (1 conv for i in {0, 1}, 2 convs for i >= 2, at f[max(i-1, 0)]).
  Each of these convs is conv(3x3, bias) + BatchNorm + ReLU. Head ``pred_<task>_0`` /
  ``pred_<task>_1``: 3x3 conv f[0] -> f[0], then 1x1 conv to the task channels (no BN/ReLU in
  between); the heads are computed as one wider conv (same math, per-task params). Xavier-normal
  kernels, zero biases. Names follow the MTAN module lists so PyTorch weights map one-to-one.

  Attributes:
    num_classes: the dataset's semantic classes (the semseg head's channels).
    tasks: the tasks (``mtjax.tasks.Task`` records, or registered names built with
      ``num_classes``): the output dict's keys; each head has ``task.channels`` outputs and
      returns ``task.activation`` of them.
    filters: channels per stage (MTAN: 64, 128, 256, 512, 512); any length >= 1.
    conv_impl: "auto" | "xla" | "im2col" | "mmgrad" (``layers.conv3x3``); params are the same
      for all, only the speed differs ("auto": "mmgrad" on CPU, "xla" elsewhere).
    dtype: computation dtype (None = float32); parameters, batch stats and outputs are float32.

  Call: ``model.apply(variables, x, train=...)`` with x float32 [B, H, W, Cin] (images in [0, 1],
  NHWC), H and W divisible by 2 ** len(filters) (32). With ``train=True`` BatchNorm uses batch
  statistics and updates ``batch_stats`` (pass ``mutable=["batch_stats"]``); with ``train=False``
  it uses the running averages and mutates nothing.

  Features for regularizers: with ``mutable=[FEATURES, ...]`` the model also sows its bottleneck,
  decoder and head features (``mtjax.models.features``).

  Returns:
    dict task -> float32 [B, H, W, task.channels], the head's output through ``task.activation``
    (semseg: log-probabilities; depth: linear, metres; normal: unit vectors, the norm clamped at
    1e-12 where PyTorch divides unguarded; edge / saliency: logits).

  Raises:
    ValueError: input not 4-D, H or W not divisible by 2 ** len(filters), unknown or no task,
      or unknown conv_impl.

  Reference: lorenmt/mtan ``SegNet`` (split), VICO-UoE/MTPSL; docs/metrics.md: 25,055,185 params and 14,336 BatchNorm running-stat values at 13 classes.
  """

  num_classes: int = 13
  tasks: Sequence[str | Task] = ("semseg", "depth", "normal")
  filters: Sequence[int] = (64, 128, 256, 512, 512)
  conv_impl: str = "auto"
  dtype: Any = None

  @nn.compact
  def __call__(self, x: Array, *, train: bool) -> dict[str, Array]:
    f = tuple(self.filters)
    factor = 2 ** len(f)
    if x.ndim != 4 or x.shape[1] % factor or x.shape[2] % factor:
      raise ValueError(
          f"SegNetMTL expects input [B, H, W, C] with H and W divisible by {factor}; "
          f"got shape {tuple(x.shape)}"
      )
    tasks = head_tasks("SegNetMTL", self.tasks, self.num_classes)
    impl = layers.resolve_conv_impl(self.conv_impl)

    def conv(features: int, name: str, h: Array) -> Array:
      return ConvBNReLU(features, conv_impl=impl, dtype=self.dtype, name=name)(h, train=train)

    if self.dtype is not None:
      x = x.astype(self.dtype)
    pre_pool = []
    for i in range(len(f)):
      x = conv(f[i], f"encoder_block_{i}", x)
      for j in range(1 if i < 2 else 2):
        x = conv(f[i], f"conv_block_enc_{i}_{j}", x)
      pre_pool.append(x)
      x = layers.max_pool_2x2(x)
    self.sow(FEATURES, "bottleneck", x)

    for i in reversed(range(len(f))):
      x = layers.max_unpool_2x2(x, pre_pool[i])
      x = conv(f[max(i - 1, 0)], f"decoder_block_{i}", x)
      for j in range(1 if i < 2 else 2):
        x = conv(f[max(i - 1, 0)], f"conv_block_dec_{i}_{j}", x)
    self.sow(FEATURES, "decoder", x)

    # Heads: the T 3x3 convs read the same features -> one conv with the kernels concatenated on
    # Cout; the T 1x1 convs -> one matmul with a block-diagonal kernel. Params stay per task.
    names = [t.name for t in tasks]
    channels = [t.channels for t in tasks]
    k3, b3 = zip(*(layers.ConvParams(f[0], 3, name=f"pred_{t}_0")(f[0]) for t in names))
    k1, b1 = zip(
        *(layers.ConvParams(c, 1, name=f"pred_{t}_1")(f[0]) for t, c in zip(names, channels))
    )
    k3, b3 = jnp.concatenate(k3, axis=-1), jnp.concatenate(b3)
    k1, b1 = jax.scipy.linalg.block_diag(*(k[0, 0] for k in k1)), jnp.concatenate(b1)
    x, k3, b3, k1, b1 = nn.dtypes.promote_dtype(x, k3, b3, k1, b1, dtype=self.dtype)
    hidden = layers.conv3x3(x, k3, b3, impl=impl)
    for t, part in zip(names, jnp.split(hidden, len(names), axis=-1)):
      self.sow(FEATURES, f"head_{t}", part)
    y = jnp.dot(hidden, k1) + b1
    y = y.astype(jnp.float32)

    parts = jnp.split(y, np.cumsum(channels)[:-1], axis=-1)
    return {t.name: t.activation(part) for t, part in zip(tasks, parts)}


def head_tasks(model: str, tasks: Sequence[str | Task], num_classes: int) -> tuple[Task, ...]:
  """The task records of a model's heads (names resolved with ``num_classes``).

  Raises:
    ValueError: no task, an unknown name, a repeated task, or a task without a head size.
  """
  records = resolve(tasks, num_classes)
  names = [t.name for t in records]
  if not records or len(set(names)) != len(names):
    raise ValueError(f"{model}: tasks must be non-empty and distinct; got {tuple(names)}")
  sizeless = [t.name for t in records if not t.channels]
  if sizeless:
    raise ValueError(f"{model}: tasks {sizeless} have no head size (num_classes={num_classes})")
  return records
