"""HRNetV2 backbones (Wang et al., TPAMI 2020) and the multi-task network on them, in Flax linen.

The backbone is the HRNet-Image-Classification / timm ``hrnet_w18`` (and ``hrnet_w18_small_v2``)
network without its classification head: a stride-4 stem (two 3x3/2 conv-BN-ReLU), stage 1 (one
branch of Bottlenecks), then stages 2-4, each a chain of high-resolution modules: parallel branches
of BasicBlocks at strides 4, 8, 16, 32, fused by summing every branch into every other (1x1 conv-BN
and nearest upsampling from lower resolutions, chains of 3x3/2 conv-BN(-ReLU) from higher ones),
then ReLU. Transitions add each new branch from the previous stage's lowest-resolution output.
BatchNorm has PyTorch's semantics (``layers.BatchNorm``), convs have no bias, NHWC.

Every conv and BatchNorm is a direct child of the model, named by its PyTorch module path with
``.`` replaced by ``_`` (``stage2.0.branches.1.3.conv1`` → ``stage2_0_branches_1_3_conv1``), so a
PyTorch state dict maps one-to-one (``mtjax.models.hrnet_import``).

The multi-task network (``HRNetMTL``; Vandenhende et al., "Multi-Task Learning for Dense Prediction
Tasks: A Survey", TPAMI 2021, and MTI-Net's HRNet heads): the four branches upsampled bilinearly to
stride 4 and concatenated (W18: 18 + 36 + 72 + 144 = 270 channels), one head per task (1x1 conv-BN-
ReLU at that width, then a 1x1 conv to the task's channels), each output upsampled bilinearly to
the input size, with SegNet-MTL's activations (semseg log-probabilities, linear depth, unit
normals). Features sown for regularizers (``mtjax.models.features``): ``bottleneck`` (the stride-32
branch), ``decoder`` (the concatenated stride-4 map), ``head_<task>`` (each head's hidden layer at
stride 4), ``branch_<i>``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from mtjax.models import layers
from mtjax.models.features import FEATURES
from mtjax.models.segnet import head_tasks
from mtjax.tasks import Task

Array = jax.Array

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True)
class Stage:
  """One stage: ``modules`` high-resolution modules of ``len(blocks)`` branches; branch b has
  ``blocks[b]`` blocks of ``channels[b]`` channels (x4 for Bottlenecks)."""

  modules: int
  block: str  # "BASIC" | "BOTTLENECK"
  blocks: tuple[int, ...]
  channels: tuple[int, ...]


# timm's cfg_cls (= HRNet-Image-Classification's yaml files) for the variants mtjax builds.
VARIANTS = {
    "hrnet_w18": (
        Stage(1, "BOTTLENECK", (4,), (64,)),
        Stage(1, "BASIC", (4, 4), (18, 36)),
        Stage(4, "BASIC", (4, 4, 4), (18, 36, 72)),
        Stage(3, "BASIC", (4, 4, 4, 4), (18, 36, 72, 144)),
    ),
    "hrnet_w18_small_v2": (
        Stage(1, "BOTTLENECK", (2,), (64,)),
        Stage(1, "BASIC", (2, 2), (18, 36)),
        Stage(3, "BASIC", (2, 2, 2), (18, 36, 72)),
        Stage(2, "BASIC", (2, 2, 2, 2), (18, 36, 72, 144)),
    ),
}
_EXPANSION = {"BASIC": 1, "BOTTLENECK": 4}
FUSE_UPSAMPLINGS = ("nearest", "bilinear")
_STEM_WIDTH = 64


def _upsample_nearest(x: Array, factor: int) -> Array:
  return jnp.repeat(jnp.repeat(x, factor, axis=1), factor, axis=2)


class _Builder:
  """Creates the model's convs and BatchNorms as direct children of ``parent`` (inside its
  ``nn.compact`` call), named by their PyTorch module paths."""

  def __init__(
      self,
      parent: nn.Module,
      train: bool,
      dtype: Any,
      bn_momentum: float = 0.1,
      fuse_upsampling: str = "nearest",
      conv_impl: str = "auto",
  ):
    self.parent, self.train, self.dtype = parent, train, dtype
    self.bn_momentum, self.fuse_upsampling = bn_momentum, fuse_upsampling
    self.conv_impl = conv_impl

  def conv(self, path: str, x: Array, features: int, kernel: int, stride: int = 1) -> Array:
    return layers.Conv(
        features,
        kernel,
        stride,
        use_bias=False,
        kernel_init=nn.initializers.variance_scaling(2.0, "fan_out", "normal"),  # timm's init.
        impl=self.conv_impl,
        dtype=self.dtype,
        parent=self.parent,
        name=path.replace(".", "_"),
    )(x)

  def bn(self, path: str, x: Array) -> Array:
    return layers.BatchNorm(
        use_running_average=not self.train,
        momentum=1.0 - self.bn_momentum,  # PyTorch's momentum → the running average's decay.
        dtype=self.dtype,
        parent=self.parent,
        name=path.replace(".", "_"),
    )(x)

  def conv_bn(self, path_conv, path_bn, x, features, kernel, stride=1, relu=True):
    x = self.bn(path_bn, self.conv(path_conv, x, features, kernel, stride))
    return nn.relu(x) if relu else x

  def block(self, path: str, kind: str, x: Array, planes: int, downsample: bool) -> Array:
    """A BasicBlock or a Bottleneck (timm / torchvision ResNet blocks, stride 1)."""
    shortcut = x
    if kind == "BASIC":
      y = self.conv_bn(f"{path}.conv1", f"{path}.bn1", x, planes, 3)
      y = self.conv_bn(f"{path}.conv2", f"{path}.bn2", y, planes, 3, relu=False)
    else:
      y = self.conv_bn(f"{path}.conv1", f"{path}.bn1", x, planes, 1)
      y = self.conv_bn(f"{path}.conv2", f"{path}.bn2", y, planes, 3)
      y = self.conv_bn(f"{path}.conv3", f"{path}.bn3", y, planes * 4, 1, relu=False)
    if downsample:
      width = planes * _EXPANSION[kind]
      shortcut = self.conv_bn(
          f"{path}.downsample.0", f"{path}.downsample.1", x, width, 1, relu=False
      )
    return layers.fusion_boundary(nn.relu(y + shortcut))

  def blocks(self, path: str, kind: str, x: Array, planes: int, count: int) -> Array:
    for k in range(count):
      downsample = k == 0 and x.shape[-1] != planes * _EXPANSION[kind]
      x = self.block(f"{path}.{k}", kind, x, planes, downsample)
    return x


class HRNetBackbone(nn.Module):
  """HRNetV2 backbone (module docstring).

  Attributes:
    variant: a key of ``VARIANTS`` (``hrnet_w18`` | ``hrnet_w18_small_v2``).
    dtype: computation dtype (None: float32).
    bn_momentum: BatchNorm momentum in PyTorch's convention (timm: 0.1; RDC's released
      ``model/seg_hrnet.py`` line 20: 0.01).
    fuse_upsampling: how a fuse layer brings a lower-resolution branch up: ``nearest`` (timm,
      HRNet's official code) or ``bilinear`` (RDC's released ``seg_hrnet.py`` lines 238-241,
      ``F.interpolate(mode='bilinear')``, half-pixel centres).
    conv_impl: the convolutions' implementation (``layers.conv2d``; speed only, the parameters
      are the same).

  Call: x float [B, H, W, 3], H and W divisible by 32 → list of 4 float32 arrays, branch i
  [B, H / 2**(i+2), W / 2**(i+2), C_i] (W18: C = 18, 36, 72, 144): timm's
  ``features_only=True, feature_location=''`` outputs 1-4.

  Raises:
    ValueError: unknown variant, or H, W not divisible by 32.
  """

  variant: str = "hrnet_w18"
  dtype: Any = None
  bn_momentum: float = 0.1
  fuse_upsampling: str = "nearest"
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x: Array, *, train: bool) -> list[Array]:
    if self.variant not in VARIANTS:
      raise ValueError(f"HRNet variant {self.variant!r}: expected one of {tuple(VARIANTS)}")
    if self.fuse_upsampling not in FUSE_UPSAMPLINGS:
      raise ValueError(
          f"config.model.fuse_upsampling={self.fuse_upsampling!r}: expected one of "
          f"{FUSE_UPSAMPLINGS}"
      )
    if x.ndim != 4 or x.shape[1] % 32 or x.shape[2] % 32:
      raise ValueError(f"HRNet expects [B, H, W, C] with H, W divisible by 32; got {x.shape}")
    b = _Builder(
        self, train, self.dtype, self.bn_momentum, self.fuse_upsampling, self.conv_impl
    )
    stage1, *stages = VARIANTS[self.variant]
    x = b.conv_bn("conv1", "bn1", x, _STEM_WIDTH, 3, 2)
    x = b.conv_bn("conv2", "bn2", x, 64, 3, 2)
    x = b.blocks("layer1", stage1.block, x, stage1.channels[0], stage1.blocks[0])
    outputs = [x]
    for s, stage in enumerate(stages, start=2):
      widths = [c * _EXPANSION[stage.block] for c in stage.channels]
      outputs = self._transition(b, f"transition{s - 1}", outputs, widths)
      for m in range(stage.modules):
        outputs = self._module(b, f"stage{s}.{m}", outputs, stage, widths)
    return [o.astype(jnp.float32) for o in outputs]

  @staticmethod
  def _transition(b: _Builder, path: str, inputs: list[Array], widths: Sequence[int]):
    out = []
    for i, width in enumerate(widths):
      if i < len(inputs):
        x = inputs[i]
        if x.shape[-1] != width:
          x = b.conv_bn(f"{path}.{i}.0", f"{path}.{i}.1", x, width, 3)
      else:  # A new, lower-resolution branch from the last one.
        x = inputs[-1]
        steps = i + 1 - len(inputs)
        for j in range(steps):
          out_width = width if j == steps - 1 else x.shape[-1]
          x = b.conv_bn(f"{path}.{i}.{j}.0", f"{path}.{i}.{j}.1", x, out_width, 3, 2)
      out.append(x)
    return out

  @staticmethod
  def _module(b: _Builder, path: str, inputs: list[Array], stage: Stage, widths: Sequence[int]):
    xs = [
        b.blocks(f"{path}.branches.{i}", stage.block, x, stage.channels[i], stage.blocks[i])
        for i, x in enumerate(inputs)
    ]
    if len(xs) == 1:
      return xs
    fused = []
    for i in range(len(xs)):
      y = None
      for j, x in enumerate(xs):
        p = f"{path}.fuse_layers.{i}.{j}"
        if j > i:
          x = b.conv_bn(f"{p}.0", f"{p}.1", x, widths[i], 1, relu=False)
          if b.fuse_upsampling == "nearest":
            x = _upsample_nearest(x, 2 ** (j - i))
          else:
            target = (x.shape[0], xs[i].shape[1], xs[i].shape[2], x.shape[-1])
            x = jax.image.resize(x, target, "linear").astype(x.dtype)
        elif j < i:
          for k in range(i - j):
            last = k == i - j - 1
            x = b.conv_bn(
                f"{p}.{k}.0", f"{p}.{k}.1", x, widths[i] if last else widths[j], 3, 2, relu=not last
            )
        y = x if y is None else y + x
      fused.append(layers.fusion_boundary(nn.relu(y)))
    return fused


class HRNetMTL(nn.Module):
  """The multi-task network on an HRNet backbone (module docstring).

  Attributes:
    num_classes: the dataset's semantic classes. tasks: ``SegNetMTL.tasks``.
    variant: ``HRNetBackbone.variant``.
    normalize_input: subtract the ImageNet mean and divide by its std first (pretrained
      backbones expect it); inputs are images in [0, 1].
    dtype: computation dtype (None: float32).
    bn_momentum, fuse_upsampling, conv_impl: the backbone's (``HRNetBackbone``; the heads' 1x1
      convs use conv_impl too); the heads' BatchNorms keep
      PyTorch's momentum 0.1 (as RDC's released ``HighResolutionHead``).

  Params: ``backbone`` (the backbone's convs and BatchNorms, named as PyTorch's), and per task
  ``head_<task>_conv`` / ``head_<task>_bn`` / ``head_<task>_out``.

  Returns:
    dict task -> float32 [B, H, W, C] as ``SegNetMTL``'s.

  Raises:
    ValueError: unknown task or variant; H, W not divisible by 32.
  """

  num_classes: int = 13
  tasks: Sequence[str | Task] = ("semseg", "depth", "normal")
  variant: str = "hrnet_w18"
  normalize_input: bool = True
  dtype: Any = None
  bn_momentum: float = 0.1
  fuse_upsampling: str = "nearest"
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x: Array, *, train: bool) -> dict[str, Array]:
    tasks = head_tasks("HRNetMTL", self.tasks, self.num_classes)
    height, width = x.shape[1], x.shape[2]
    if self.normalize_input:
      x = (x - jnp.asarray(IMAGENET_MEAN)) / jnp.asarray(IMAGENET_STD)
    branches = HRNetBackbone(
        self.variant,
        self.dtype,
        self.bn_momentum,
        self.fuse_upsampling,
        self.conv_impl,
        name="backbone",
    )(x, train=train)
    h4, w4 = branches[0].shape[1], branches[0].shape[2]
    ups = [
        br if i == 0 else jax.image.resize(br, (br.shape[0], h4, w4, br.shape[-1]), "linear")
        for i, br in enumerate(branches)
    ]
    for i, br in enumerate(branches):
      self.sow(FEATURES, f"branch_{i}", br)
    self.sow(FEATURES, "bottleneck", branches[-1])
    feat = jnp.concatenate(ups, axis=-1)
    self.sow(FEATURES, "decoder", feat)
    out = {}
    for task in tasks:
      t, channels = task.name, task.channels
      h = layers.Conv(
          feat.shape[-1], 1, impl=self.conv_impl, dtype=self.dtype, name=f"head_{t}_conv"
      )(feat)
      h = nn.relu(
          layers.BatchNorm(use_running_average=not train, dtype=self.dtype, name=f"head_{t}_bn")(h)
      )
      self.sow(FEATURES, f"head_{t}", h)
      y = layers.Conv(channels, 1, impl=self.conv_impl, dtype=self.dtype, name=f"head_{t}_out")(h)
      y = jax.image.resize(y.astype(jnp.float32), (y.shape[0], height, width, channels), "linear")
      out[t] = task.activation(y)
    return out
